//! A mail client's connection: plain TCP on loopback until STARTTLS (or
//! TLS from the start on the implicit-TLS port), then TLS.

use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between a failed upgrade and the end of the session.
    Closed,
}

impl Transport {
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::Tls(s) => s.read(buf).await,
            Self::Closed => Ok(0),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Self::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Starts TLS on a plain connection (after the client's STARTTLS was
    /// answered); nothing the client sent before the handshake survives.
    pub async fn upgrade(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        match std::mem::replace(self, Self::Closed) {
            Self::Plain(tcp) => {
                *self = Self::Tls(Box::new(acceptor.accept(tcp).await?));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::ErrorKind::InvalidInput.into())
            }
        }
    }
}
