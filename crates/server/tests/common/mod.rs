//! What the server's integration tests share: the real `valised` binary on
//! a loopback port, an HTTPS client that trusts its CA, problem checks, and
//! an MLS device made the way the client makes one.
#![allow(dead_code)]
// Test support: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_libcrux_crypto::Provider;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use valise_proto::{DeviceAddress, DeviceId, ErrorCode, Problem, UserId};

pub const CS: Ciphersuite = Ciphersuite::MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519;

pub fn valised() -> Command {
    Command::new(env!("CARGO_BIN_EXE_valised"))
}

/// A running `valised`; killed when the test ends, however it ends.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `valised run` on an initialised `data`, on a free loopback port; returns
/// once it says it listens.
pub fn run(data: &Path) -> Server {
    run_with(data, &[])
}

/// As [`run`], with extra `valised run` flags.
pub fn run_with(data: &Path, extra: &[&str]) -> Server {
    let mut child = valised()
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--directory-interval-ms",
            "50",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut server = Server { child, port: 0 };
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("listening on https://") {
            server.port = addr.rsplit(':').next().unwrap().parse().unwrap();
            break;
        }
    }
    assert_ne!(server.port, 0, "server never said it was listening");
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    server
}

/// An HTTPS client trusting only the server's CA.
pub fn client(data: &Path) -> reqwest::Client {
    let ca = std::fs::read(data.join("tls/ca.pem")).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The answer is a 4xx problem document with this code.
pub async fn expect_problem(resp: reqwest::Response, code: ErrorCode, what: &str) {
    let status = resp.status();
    assert!(status.is_client_error(), "{what}: status {status}");
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/problem+json"), "{what}");
    let body = resp.bytes().await.unwrap();
    let p: Problem = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{what}: not a problem ({e}): {body:?}"));
    assert_eq!(p.code, code, "{what}: {p}");
    assert_eq!(p.status, status.as_u16(), "{what}");
}

/// An MLS device as the client makes one.
pub struct Device {
    pub addr: DeviceAddress,
    pub signer: SignatureKeyPair,
    pub provider: Provider,
}

impl Device {
    pub fn new(user: &str, id: u8) -> Self {
        let provider = Provider::default();
        let signer = SignatureKeyPair::new(CS.signature_algorithm()).unwrap();
        signer.store(provider.storage()).unwrap();
        Self {
            addr: DeviceAddress::new(UserId::parse(user).unwrap(), DeviceId::from_bytes([id; 8])),
            signer,
            provider,
        }
    }

    pub fn cred(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.addr.credential_identity()).into(),
            signature_key: self.signer.public().into(),
        }
    }

    pub fn key_package(&self, last_resort: bool) -> KeyPackage {
        // Like the client: the leaf must declare the last_resort extension.
        let mut b = KeyPackage::builder().leaf_node_capabilities(
            Capabilities::builder()
                .extensions(vec![ExtensionType::LastResort])
                .build(),
        );
        if last_resort {
            b = b.mark_as_last_resort();
        }
        b.build(CS, &self.provider, &self.signer, self.cred())
            .unwrap()
            .key_package()
            .clone()
    }
}

pub fn bytes(kp: &KeyPackage) -> Vec<u8> {
    kp.tls_serialize_detached().unwrap()
}
