//! Connections an attacker opens and holds (G4, I8), against the real
//! `valised` over real TLS: silent sockets, a slowloris sending headers a
//! byte at a time, silent HTTP/2 clients, a crowd from one address; and a
//! stop signal that lets a request in flight finish, closes everything else
//! and stops the background tasks.
// A test's helpers may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Api, Device, Server, init, run_with};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The client preface of HTTP/2 and an empty SETTINGS frame: what an
/// HTTP/2 client sends before its first request.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

const ANOTHER_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn start(data: &Path, extra: &[&str]) -> Server {
    init(data);
    run_with(data, extra)
}

/// A TCP connection to the server from 127.0.0.1 that says nothing.
async fn tcp(server: &Server) -> TcpStream {
    TcpStream::connect((Ipv4Addr::LOCALHOST, server.port))
        .await
        .unwrap()
}

/// A TLS connection trusting the server's CA, offering only `alpn`.
async fn tls(data: &Path, server: &Server, alpn: &[u8]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data.join("tls/ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp(server).await)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
    stream
}

/// Reads (and drops) whatever the server sends until it closes the
/// connection: how long that took. Fails if it is still open after `within`.
async fn closed_within(mut conn: impl AsyncRead + Unpin, within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        while let Ok(n) = conn.read(&mut buf).await
            && n > 0
        {}
    };
    tokio::time::timeout(within, read_to_end)
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after {within:?}"));
    start.elapsed()
}

/// The connection is still open: nothing to read, and no end, for a while.
async fn still_open(conn: &mut (impl AsyncRead + Unpin), what: &str) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf)).await;
    assert!(read.is_err(), "{what}: closed or answered: {read:?}");
}

/// An honest client is served, from `local`.
async fn served(data: &Path, server: &Server, local: IpAddr) {
    let r = Api::from_address(data, server, local)
        .get("/v1/directory/root", None)
        .await;
    assert!(r.status().is_success(), "{local}: {}", r.status());
}

/// G4: whoever opens a connection and says nothing, or sends a request's
/// headers a byte at a time, or opens HTTP/2 and sends no request, is
/// disconnected once the header or idle timeout is over; honest clients
/// are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(
        &data,
        &["--header-timeout-secs", "1", "--idle-timeout-secs", "4"],
    );
    // Far enough apart that a connection closed by the header timeout is
    // not one the idle timeout closed.
    let header = Duration::from_secs(1);
    let idle = Duration::from_secs(4);
    let slack = Duration::from_millis(1500);

    // No TLS handshake at all.
    let silent_tcp = async {
        let waited = closed_within(tcp(&server).await, header + slack, "silent TCP").await;
        assert!(waited >= header - Duration::from_millis(200), "{waited:?}");
    };
    // A request's headers, a byte every 50 ms, never finished.
    let slowloris = async {
        let (mut rx, mut tx) = tokio::io::split(tls(&data, &server, b"http/1.1").await);
        let trickle = tokio::spawn(async move {
            tx.write_all(b"GET /v1/directory/root HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
                .await
                .unwrap();
            while tx.write_all(b"a").await.is_ok() && tx.flush().await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let waited = closed_within(&mut rx, header + slack, "slowloris").await;
        assert!(waited >= header - Duration::from_millis(200), "{waited:?}");
        assert!(!trickle.is_finished() || trickle.await.is_ok());
    };
    // HTTP/2 chosen by ALPN, and then not a byte.
    let silent_h2 = async {
        let conn = tls(&data, &server, b"h2").await;
        let waited = closed_within(conn, idle + slack, "silent HTTP/2").await;
        assert!(waited >= idle - Duration::from_millis(200), "{waited:?}");
    };
    // HTTP/2 set up, and then no request.
    let idle_h2 = async {
        let mut conn = tls(&data, &server, b"h2").await;
        conn.write_all(H2_PREFACE).await.unwrap();
        conn.flush().await.unwrap();
        let waited = closed_within(conn, idle + slack, "idle HTTP/2").await;
        assert!(waited >= idle - Duration::from_millis(200), "{waited:?}");
    };
    // Meanwhile, honest clients are served.
    let honest = async {
        for _ in 0..10 {
            served(&data, &server, Ipv4Addr::LOCALHOST.into()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::join!(silent_tcp, slowloris, silent_h2, idle_h2, honest);
    served(&data, &server, Ipv4Addr::LOCALHOST.into()).await;
}

/// The idle timeout counts time without a request in flight: a request
/// that takes longer (an enrolment waiting for its directory epoch, like a
/// long poll) is answered on its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_outlives_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(
        &data,
        &[
            "--idle-timeout-secs",
            "1",
            "--directory-interval-ms",
            "3000",
        ],
    );
    let api = Api::new(&data, &server);
    // Alice's enrolment publishes an epoch; Bob's waits up to 3 s for the next.
    api.enroll(&data, &Device::new("alice@mfa.example", 1), false)
        .await;
    let started = Instant::now();
    api.enroll(&data, &Device::new("bob@mfa.example", 1), false)
        .await;
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

/// G4: one address holding as many connections as it may open gets its
/// next one closed at once, while another address is served; when it
/// closes one, it may open one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(
        &data,
        &[
            "--max-connections-per-address",
            "4",
            "--header-timeout-secs",
            "60",
        ],
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tcp(&server).await);
    }
    // Accepted in order: the four above are counted before the fifth.
    closed_within(
        tcp(&server).await,
        Duration::from_secs(2),
        "fifth connection",
    )
    .await;
    for (n, conn) in held.iter_mut().enumerate() {
        still_open(conn, &format!("held connection {n}")).await;
    }
    served(&data, &server, ANOTHER_HOST).await;

    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    served(&data, &server, Ipv4Addr::LOCALHOST.into()).await;
}

/// A stop signal (SIGTERM) lets a request in flight finish, closes idle and
/// half-open connections at once rather than after their timeouts, stops
/// every background task (none aborted), and the server exits cleanly well
/// within its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_signal_finishes_requests_and_stops_background_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let log = dir.path().join("valised.log");
    let mut server = start(
        &data,
        &[
            "--log-file",
            log.to_str().unwrap(),
            "--directory-interval-ms",
            "3000",
            "--header-timeout-secs",
            "60",
            "--idle-timeout-secs",
            "60",
        ],
    );
    let api = Api::new(&data, &server);
    // Alice's enrolment publishes an epoch: the next one comes 3 s later,
    // and Bob's enrolment waits for it.
    api.enroll(&data, &Device::new("alice@mfa.example", 1), false)
        .await;
    let bob = tokio::spawn({
        let data = data.clone();
        let api = Api::new(&data, &server);
        async move {
            api.enroll(&data, &Device::new("bob@mfa.example", 1), false)
                .await
        }
    });
    let mut half_open = tcp(&server).await;
    let mut idle_h2 = tls(&data, &server, b"h2").await;
    idle_h2.write_all(H2_PREFACE).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !bob.is_finished(),
        "Bob's enrolment should wait for its epoch"
    );

    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(9));
        (server, status)
    });
    // Bob's enrolment is answered (it would panic otherwise).
    let enrolled = bob.await.unwrap();
    assert_eq!(enrolled.user.as_str(), "bob@mfa.example");
    closed_within(&mut half_open, Duration::from_secs(1), "half-open").await;
    closed_within(&mut idle_h2, Duration::from_secs(1), "idle HTTP/2").await;
    let (_server, status) = status.await.unwrap();
    let status = status.expect("still running 9 s after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(6));

    let log = std::fs::read_to_string(&log).unwrap();
    for task in [
        "directory publisher",
        "revoked devices refresh",
        "housekeeping",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("background task stopped") && l.contains(task)),
            "{task} not stopped:\n{log}"
        );
    }
    assert!(!log.contains("aborted"), "{log}");
    assert!(log.contains("all connections closed"), "{log}");
}
