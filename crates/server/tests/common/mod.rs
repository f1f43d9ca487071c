//! What the server's integration tests share: the real `valised` binary on
//! a loopback port (and its `admin` commands), an HTTPS client that trusts
//! its CA, problem checks, an MLS device made the way the client makes one
//! (through valise-mls) that enrols, logs in and signs like a client, and
//! the client's checks of the key directory.
#![allow(dead_code)]
// Test support: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{CredentialWithKey, KeyPackage, OpenMlsProvider as _};
use openmls_basic_credential::SignatureKeyPair;
use openmls_libcrux_crypto::Provider;
use openmls_traits::signatures::Signer as _;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use valise_directory::identity::{Devices, devices};
use valise_directory::{DirectoryKey, SignedRoot, VerifiedRoot, verify_lookup, verify_root};
use valise_mls::{CIPHERSUITE, key_package};
use valise_proto::api::{
    ChallengeResponse, DirectoryProof, DirectoryRoot, EnrollResponse, TokenResponse,
    auth_signed_content,
};
use valise_proto::{DeviceAddress, DeviceId, ErrorCode, Problem, UserId};

/// The domain every test server is initialised with.
pub const DOMAIN: &str = "mfa.example";

pub fn valised() -> Command {
    Command::new(env!("CARGO_BIN_EXE_valised"))
}

/// `valised init`; returns the directory key it printed.
pub fn init(data: &Path) -> DirectoryKey {
    let out = valised()
        .args(["init", "--domain", DOMAIN, "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let hex = stdout
        .lines()
        .find_map(|l| l.strip_prefix("directory key (Ed25519, public): "))
        .unwrap_or_else(|| panic!("no directory key in {stdout:?}"));
    DirectoryKey::try_from(hex.to_owned()).unwrap()
}

/// `valised admin --data D ARGS...`, which must succeed; its stdout.
pub fn admin(data: &Path, args: &[&str]) -> String {
    let out = valised()
        .args(["admin", "--data"])
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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

impl Server {
    /// Sends SIGTERM, as a service manager stops the server, and waits at
    /// most `within` for it to exit: its exit status, `None` if it still runs.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// `valised run` on an initialised `data`, on a free loopback port; returns
/// once it says it listens.
pub fn run(data: &Path) -> Server {
    run_with(data, &[])
}

/// As [`run`], with extra `valised run` flags.
pub fn run_with(data: &Path, extra: &[&str]) -> Server {
    let mut cmd = valised();
    cmd.args(["run", "--listen", "127.0.0.1:0", "--data"])
        .arg(data);
    if !extra.contains(&"--directory-interval-ms") {
        cmd.args(["--directory-interval-ms", "50"]);
    }
    let mut child = cmd
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
    client_builder(data).build().unwrap()
}

/// As [`client`], connecting from `local` (any 127.0.0.0/8 address is
/// this host's, and another client address to the server).
pub fn client_from(data: &Path, local: IpAddr) -> reqwest::Client {
    client_builder(data).local_address(local).build().unwrap()
}

fn client_builder(data: &Path) -> reqwest::ClientBuilder {
    let ca = std::fs::read(data.join("tls/ca.pem")).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(60))
}

/// The API of one running server, as a client calls it.
pub struct Api {
    pub c: reqwest::Client,
    pub port: u16,
}

impl Api {
    pub fn new(data: &Path, server: &Server) -> Self {
        Self {
            c: client(data),
            port: server.port,
        }
    }

    /// As [`Api::new`], calling from another client address (`local`).
    pub fn from_address(data: &Path, server: &Server, local: IpAddr) -> Self {
        Self {
            c: client_from(data, local),
            port: server.port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut rb = self.c.get(self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send().await.unwrap()
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> T {
        let r = self.get(path, token).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A POST with a JSON body, its answer as it comes.
    pub async fn send(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut rb = self.c.post(self.url(path)).json(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send().await.unwrap()
    }

    /// A POST that must succeed; its JSON answer.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> T {
        self.post_as(path, None, body).await
    }

    /// As [`Api::post`], authenticated.
    pub async fn post_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> T {
        let r = self.send(path, token, &body).await;
        let status = r.status();
        let bytes = r.bytes().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {bytes:?}");
        serde_json::from_slice(&bytes).unwrap()
    }

    pub async fn root(&self, key: &DirectoryKey, token: &str) -> VerifiedRoot {
        let r: DirectoryRoot = self.get_json("/v1/directory/root", Some(token)).await;
        verify_root(&SignedRoot::from_bytes(r.root.as_slice()).unwrap(), key).unwrap()
    }

    pub async fn proof(&self, what: &str, u: &str, token: &str) -> (SignedRoot, Vec<u8>) {
        let p: DirectoryProof = self
            .get_json(&format!("/v1/directory/{what}/{u}"), Some(token))
            .await;
        (
            SignedRoot::from_bytes(p.root.as_slice()).unwrap(),
            p.proof.into_vec(),
        )
    }

    /// `user`'s devices as a client sees them: proven by a lookup, each
    /// with the status its signatures give it.
    pub async fn devices_of(&self, key: &DirectoryKey, token: &str, user: &UserId) -> Devices {
        let (root, proof) = self.proof("lookup", user.as_str(), token).await;
        let root = verify_root(&root, key).unwrap();
        devices(user, &verify_lookup(&root, user, &proof).unwrap().devices)
    }

    /// Enrols `d` with a fresh invite from `valised admin invite` (a reset
    /// one if asked).
    pub async fn enroll(&self, data: &Path, d: &Device, reset: bool) -> EnrollResponse {
        let mut args = vec!["invite", d.addr.user.as_str()];
        if reset {
            args.push("--reset");
        }
        let code = admin(data, &args);
        self.post(
            "/v1/enroll",
            serde_json::json!({
                "user": d.addr.user.as_str(),
                "code": code.trim(),
                "device": d.addr.device.to_string(),
                "signature_key": B64.encode(d.signer.public()),
                "key_packages": [B64.encode(bytes(&d.key_package(false)))],
                "last_resort": B64.encode(bytes(&d.key_package(true))),
            }),
        )
        .await
    }

    /// The challenge answered with `d`'s key: a bearer token.
    pub async fn login(&self, d: &Device) -> String {
        let who = serde_json::json!({
            "user": d.addr.user.as_str(),
            "device": d.addr.device.to_string(),
        });
        let c: ChallengeResponse = self.post("/v1/auth/challenge", who.clone()).await;
        let signed = auth_signed_content(DOMAIN, &d.addr, c.challenge.as_slice());
        let mut body = who;
        body["challenge"] = B64.encode(c.challenge.as_slice()).into();
        body["signature"] = B64.encode(d.sign(&signed)).into();
        let t: TokenResponse = self.post("/v1/auth/token", body).await;
        t.token
    }
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
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
        signer.store(provider.storage()).unwrap();
        Self {
            addr: DeviceAddress::new(UserId::parse(user).unwrap(), DeviceId::from_bytes([id; 8])),
            signer,
            provider,
        }
    }

    /// The device's Ed25519 signature, as the client signs approvals,
    /// revocations and challenges.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signer.sign(message).unwrap()
    }

    pub fn cred(&self) -> CredentialWithKey {
        valise_mls::credential(&self.addr, self.signer.public())
    }

    pub fn key_package(&self, last_resort: bool) -> KeyPackage {
        let now_s = valise_server::now_s();
        key_package::build(&self.provider, &self.signer, &self.addr, last_resort, now_s)
            .unwrap()
            .key_package()
            .clone()
    }
}

pub fn bytes(kp: &KeyPackage) -> Vec<u8> {
    kp.tls_serialize_detached().unwrap()
}
