//! The HTTPS accept loop: TLS 1.3 in front of the axum router, caps on
//! concurrent connections (in all and per client address), timeouts that
//! close connections which do not send a request, and a graceful stop that
//! lets in-flight requests finish and then stops the background tasks.
//!
//! ```text
//! accept ─▶ over `max` connections? wait in the kernel's backlog
//!        ─▶ over `per_address` from its address? closed at once (counted)
//!        ─▶ TLS handshake within `header_timeout`
//!        ─▶ HTTP/2 or HTTP/1.1 as ALPN chose
//!              HTTP/1.1: each request's headers within `header_timeout`
//!              both: no request in flight for `idle_timeout` ─▶ closed
//! ```

use crate::background::Background;
use crate::client_addr::{AddressSlots, ClientAddr};
use crate::state::AppState;
use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// How many connections the server holds and for how long a silent one
/// stays open (`valised run --max-connections…`, `--…-timeout-secs`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most connections served at once; further ones wait in the kernel's
    /// backlog.
    pub max: u32,
    /// Most connections open at once from one client address (an IPv6 /64,
    /// see [`ClientAddr`]); further ones are closed at once. Below `max`,
    /// so that one host cannot take the whole server.
    pub per_address: u32,
    /// How long a client has to finish its TLS handshake, and then (HTTP/1.1)
    /// to send each request's headers, counted from when the connection is
    /// ready for the request. Closes a slowloris (headers sent a byte at a
    /// time). hyper starts this clock whenever an HTTP/1.1 connection waits
    /// for a request, so it is also how long one stays open idle.
    pub header_timeout: Duration,
    /// A connection on which no request has been in flight for this long is
    /// closed (HTTP/2 with a GOAWAY). It also ends HTTP/2 connections that
    /// never finish a request's headers, which have no header timeout.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// A quarter of the connections per address: one host (or one embassy
    /// behind its NAT, a few hundred devices each holding one HTTP/2
    /// connection) cannot take the whole server, and it takes four
    /// addresses to fill it. Honest clients send headers in one write; ten
    /// seconds allow for a slow satellite link. The idle timeout is longer
    /// than the gap between two long polls of a device that stays online;
    /// long polls themselves (at most 30 s) are requests in flight.
    fn default() -> Self {
        Self {
            max: 1024,
            per_address: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// After a stop signal, in-flight requests and then the background tasks
/// get this long in all.
pub const GRACE: Duration = Duration::from_secs(10);
/// How long a connection told to close, with no request in flight, has to
/// take its leave (an HTTP/2 client answers the GOAWAY's ping) before it is
/// dropped: one still in its handshake, or a hostile one, never would.
const CLOSE_IDLE: Duration = Duration::from_secs(1);

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting, lets open connections finish their requests and stops
/// `background`, all within [`GRACE`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    limits: ConnectionLimits,
    background: &Background,
    shutdown: impl Future<Output = ()>,
) {
    let http = Http::new(
        crate::routes::router(state.clone()),
        TlsAcceptor::from(tls),
        limits,
    );
    let limit = Arc::new(Semaphore::new(
        usize::try_from(limits.max).unwrap_or(Semaphore::MAX_PERMITS),
    ));
    let slots = Arc::new(AddressSlots::new(limits.per_address));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Typically out of file descriptors: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match slots.take(ClientAddr::of(peer.ip())) {
            Ok(slot) => slot,
            Err(refused) => {
                tracing::debug!(%peer, refused, "over the connections allowed per address: closed");
                continue;
            }
        };
        let (http, stopping) = (http.clone(), state.shutdown.clone());
        let open = state.metrics.connection_opened();
        tokio::spawn(async move {
            http.serve(tcp, peer, stopping, permit).await;
            drop((slot, open));
        });
    }

    let deadline = tokio::time::Instant::now() + GRACE;
    drop(listener);
    state.begin_shutdown();
    tracing::info!("stopping: finishing in-flight requests");
    // Every open connection holds a permit: all of them back means all closed.
    match tokio::time::timeout_at(deadline, limit.acquire_many(limits.max)).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("grace period over; closing remaining connections"),
    }
    if slots.refused() > 0 {
        tracing::info!(
            refused = slots.refused(),
            "connections refused over the per-address cap since start"
        );
    }
    background.stop(deadline).await;
}

/// What every connection is served with.
#[derive(Clone)]
struct Http {
    app: Router,
    acceptor: TlsAcceptor,
    /// For connections whose client chose `h2` by ALPN.
    h2: Arc<auto::Builder<TokioExecutor>>,
    /// For the others (HTTP/1.1 is the default without ALPN).
    h1: Arc<auto::Builder<TokioExecutor>>,
    limits: ConnectionLimits,
}

impl Http {
    fn new(app: Router, acceptor: TlsAcceptor, limits: ConnectionLimits) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        // The protocol is known from ALPN: no waiting for a client's first
        // bytes to guess it (a wait that no timeout would bound).
        Self {
            app,
            acceptor,
            h2: Arc::new(builder.clone().http2_only()),
            h1: Arc::new(builder.http1_only()),
            limits,
        }
    }

    /// Serves one connection until the client leaves, it stays idle for
    /// the idle timeout, or the server stops (then in-flight requests
    /// finish).
    async fn serve(
        self,
        tcp: TcpStream,
        peer: SocketAddr,
        mut stopping: watch::Receiver<bool>,
        _permit: OwnedSemaphorePermit,
    ) {
        let _ = tcp.set_nodelay(true);
        let handshake = tokio::time::timeout(self.limits.header_timeout, self.acceptor.accept(tcp));
        let stream = tokio::select! {
            r = handshake => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            // No request can be in flight yet: nothing to finish.
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let builder = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => &self.h2,
            _ => &self.h1,
        };
        let requests = InFlight::default();
        let client = ClientAddr::of(peer.ip());
        let (app, counted) = (self.app.clone(), requests.clone());
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(client);
            let (app, busy) = (app.clone(), counted.start());
            async move {
                let response = app.oneshot(req).await;
                drop(busy);
                response
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let why = tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = requests.idle_for(self.limits.idle_timeout) => "idle",
            _ = stopping.wait_for(|stop| *stop) => "server stopping",
        };
        tracing::debug!(%peer, why, "closing connection");
        conn.as_mut().graceful_shutdown();
        // Requests in flight finish (when the server stops, `serve` waits
        // for them at most GRACE); then the client has CLOSE_IDLE to take
        // its leave, which a silent or hostile one never does.
        let finished = async {
            requests.none().await;
            tokio::time::sleep(CLOSE_IDLE).await;
        };
        tokio::select! {
            r = conn => if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            },
            () = finished => tracing::debug!(%peer, why, "connection did not close: dropped"),
        }
    }
}

/// How many requests are in flight on one connection.
#[derive(Debug, Clone)]
struct InFlight(Arc<watch::Sender<usize>>);

impl Default for InFlight {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

/// One request in flight, until dropped.
struct Busy(Arc<watch::Sender<usize>>);

impl InFlight {
    fn start(&self) -> Busy {
        self.0.send_modify(|n| *n += 1);
        Busy(self.0.clone())
    }

    /// Resolves once no request is in flight.
    async fn none(&self) {
        // The sender lives in `self`: `wait_for` never fails here.
        let _ = self.0.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        let mut count = self.0.subscribe();
        loop {
            let idle = *count.borrow_and_update() == 0;
            // Every request that starts or ends restarts the clock. The
            // sender lives in `self`, so `changed` never fails here.
            let changed = count.changed();
            if !idle {
                let _ = changed.await;
            } else if tokio::time::timeout(timeout, changed).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}
