//! The real `valised` binary against hostile input (I8): every endpoint gets
//! garbage, and must answer with a problem document and keep serving.
// A test's helpers may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Server, client, expect_problem, run_with, valised};

use std::path::Path;
use std::process::Stdio;
use valise_proto::api::blobs;
use valise_proto::blob::MIN_BLOB_BYTES;
use valise_proto::limits::MAX_REQUEST_BYTES;
use valise_proto::{BlobId, DeviceAddress, DeviceId, ErrorCode, UserId};
use valise_server::store::{Enrollment, NewKeyPackage, SqliteStore, Store};

fn start(data: &Path) -> Server {
    start_with(data, &[])
}

fn start_with(data: &Path, extra: &[&str]) -> Server {
    let status = valised()
        .args(["init", "--domain", "mfa.example", "--data"])
        .arg(data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    run_with(data, extra)
}

/// A device and a token for it, put straight into the server's database
/// (WAL lets this happen while it runs), so that bodies reach their parsers.
fn token_for(data: &Path) -> String {
    let store = SqliteStore::open(&data.join("valised.db")).unwrap();
    let device = DeviceAddress::new(
        UserId::parse("alice@mfa.example").unwrap(),
        DeviceId::from_bytes([1; 8]),
    );
    store
        .create_invite([3; 32], &device.user, 0, i64::MAX, false)
        .unwrap();
    let kp = |b: u8| NewKeyPackage {
        bytes: vec![b],
        not_after: u64::from(u32::MAX),
    };
    store
        .enroll(&Enrollment {
            code_hash: [3; 32],
            device: device.clone(),
            signature_key: vec![0; 32],
            key_packages: vec![kp(1)],
            last_resort: kp(2),
            now_ms: 1,
        })
        .unwrap();
    let token = "hostile-test-token".to_owned();
    store
        .create_token(valise_server::auth::token_hash(&token), &device, i64::MAX)
        .unwrap();
    token
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
}

struct Endpoint {
    method: Method,
    path: &'static str,
    auth: bool,
    /// A JSON body of the right shape but wrong types.
    wrong_types: &'static str,
}

const CONV: &str = "00112233445566778899aabbccddeeff";

fn endpoints() -> Vec<Endpoint> {
    use Method::*;
    vec![
        Endpoint {
            method: Post,
            path: "/v1/enroll",
            auth: false,
            wrong_types: r#"{"user":1,"code":[],"device":true,"signature_key":"***","key_packages":"x","last_resort":null}"#,
        },
        Endpoint {
            method: Post,
            path: "/v1/auth/challenge",
            auth: false,
            wrong_types: r#"{"user":"alice@mfa.example","device":12}"#,
        },
        Endpoint {
            method: Post,
            path: "/v1/auth/token",
            auth: false,
            wrong_types: r#"{"user":"alice@mfa.example","device":"0101010101010101","challenge":5,"signature":"!!"}"#,
        },
        Endpoint {
            method: Put,
            path: "/v1/devices/self/key-packages",
            auth: true,
            wrong_types: r#"{"one_time":"nope"}"#,
        },
        Endpoint {
            method: Post,
            path: "/v1/users/bob@mfa.example/key-packages/claim",
            auth: true,
            wrong_types: r#"{"exclude":[1,2]}"#,
        },
        Endpoint {
            method: Post,
            path: "/v1/devices/0202020202020202/approval",
            auth: true,
            wrong_types: r#"{"number":"one","signature":5}"#,
        },
        Endpoint {
            method: Post,
            path: "/v1/devices/0202020202020202/revocation",
            auth: true,
            wrong_types: r#"{"at":-1,"signature":[]}"#,
        },
        Endpoint {
            method: Post,
            path: "/v1/conversations",
            auth: true,
            wrong_types: r#"{"id":"zz","group_info":1,"ratchet_tree":{}}"#,
        },
        Endpoint {
            method: Post,
            path: "/v1/conversations/00112233445566778899aabbccddeeff/commits",
            auth: true,
            wrong_types: r#"{"epoch":-1,"commit":"AA=="}"#,
        },
        Endpoint {
            method: Post,
            path: "/v1/blobs/links",
            auth: true,
            wrong_types: r#"{"blobs":"00112233445566778899aabbccddeeff"}"#,
        },
    ]
}

fn request(
    c: &reqwest::Client,
    port: u16,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let url = format!("https://127.0.0.1:{port}{path}");
    let rb = match method {
        Method::Get => c.get(url),
        Method::Post => c.post(url),
        Method::Put => c.put(url),
    };
    match token {
        Some(t) => rb.bearer_auth(t),
        None => rb,
    }
}

async fn still_alive(c: &reqwest::Client, port: u16) {
    let resp = request(c, port, Method::Get, "/v1/inbox", None)
        .send()
        .await
        .unwrap();
    expect_problem(resp, ErrorCode::Unauthorized, "liveness").await;
}

/// `POST /v1/letters` with a letter count header and a binary body: each
/// is checked before the next step, and one letter's garbage is that
/// letter's refusal, not the batch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_letters_endpoint_refuses_hostile_batches_and_survives() {
    use valise_proto::wire::{self, CONTENT_TYPE, LETTERS_HEADER, Outcome, OutgoingLetter};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data);
    let token = token_for(&data);
    let c = client(&data);
    let port = server.port;
    let letter = |n: u8, message: Vec<u8>| OutgoingLetter {
        conversation: valise_proto::ConversationId::from_bytes([n; 16]),
        client_msg_id: valise_proto::MessageId::from_bytes([n; 16]),
        message,
    };
    let post = |count: Option<&str>, media: &str, body: Vec<u8>| {
        let mut rb = request(&c, port, Method::Post, "/v1/letters", Some(&token))
            .header(reqwest::header::CONTENT_TYPE, media)
            .body(body);
        if let Some(n) = count {
            rb = rb.header(LETTERS_HEADER, n);
        }
        rb.send()
    };
    let one = wire::encode_letters(&[letter(1, vec![0, 1, 0, 2])]);
    for (count, what) in [
        (None, "no count"),
        (Some("0"), "zero letters"),
        (Some("257"), "too many letters"),
        (Some("two"), "a count that is no number"),
    ] {
        let r = post(count, CONTENT_TYPE, one.clone()).await.unwrap();
        expect_problem(r, ErrorCode::BadRequest, what).await;
    }
    let r = post(Some("1"), "application/json", one.clone())
        .await
        .unwrap();
    expect_problem(r, ErrorCode::UnsupportedMediaType, "JSON").await;
    for (count, body, what) in [
        ("1", vec![0xff, 0x00, 0x13, 0x37], "garbage"),
        ("2", one.clone(), "fewer letters than announced"),
        ("1", [one.clone(), vec![0]].concat(), "trailing bytes"),
        ("1", one[..one.len() - 1].to_vec(), "truncated"),
    ] {
        let r = post(Some(count), CONTENT_TYPE, body).await.unwrap();
        expect_problem(r, ErrorCode::BadRequest, what).await;
    }
    let mut big = one.clone();
    big.resize(MAX_REQUEST_BYTES + 1024, 0);
    if let Ok(r) = post(Some("1"), CONTENT_TYPE, big).await {
        expect_problem(r, ErrorCode::PayloadTooLarge, "oversized").await;
    }
    // A well-formed batch: garbage MLS, then a letter of the same
    // conversation (skipped), and one of an unknown conversation.
    let batch = [
        letter(1, vec![0, 1, 0, 2]),
        letter(1, vec![0, 1, 0, 3]),
        letter(2, vec![0xff; 40]),
    ];
    let r = post(Some("3"), CONTENT_TYPE, wire::encode_letters(&batch))
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let outcomes = wire::decode_outcomes(&r.bytes().await.unwrap(), 3).unwrap();
    assert!(
        matches!(
            &outcomes[0],
            Outcome::Refused {
                code: ErrorCode::InvalidMls,
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Outcome::Skipped);
    assert!(
        matches!(&outcomes[2], Outcome::Refused { .. }),
        "{outcomes:?}"
    );
    still_alive(&c, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_hostile_input_and_survives() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data);
    let token = token_for(&data);
    let c = client(&data);
    let port = server.port;
    let json = "application/json";

    for ep in endpoints() {
        let tok = ep.auth.then_some(token.as_str());
        let send = |body: Vec<u8>, ct: Option<&str>, tok: Option<&str>| {
            let mut rb = request(&c, port, ep.method, ep.path, tok).body(body);
            if let Some(ct) = ct {
                rb = rb.header(reqwest::header::CONTENT_TYPE, ct);
            }
            rb.send()
        };
        let what = |case: &str| format!("{} {case}", ep.path);

        let r = send(vec![0xff, 0x00, 0x13, 0x37], Some(json), tok)
            .await
            .unwrap();
        expect_problem(r, ErrorCode::BadRequest, &what("garbage")).await;

        let r = send(br#"{"user":"alice@mfa.exa"#.to_vec(), Some(json), tok)
            .await
            .unwrap();
        expect_problem(r, ErrorCode::BadRequest, &what("truncated")).await;

        let r = send(ep.wrong_types.as_bytes().to_vec(), Some(json), tok)
            .await
            .unwrap();
        expect_problem(r, ErrorCode::BadRequest, &what("wrong types")).await;

        let r = send(b"[]".to_vec(), Some("text/plain"), tok).await.unwrap();
        expect_problem(r, ErrorCode::UnsupportedMediaType, &what("content type")).await;

        let r = send(b"{}".to_vec(), None, tok).await.unwrap();
        expect_problem(r, ErrorCode::UnsupportedMediaType, &what("no content type")).await;

        let mut big = b"{\"x\":\"".to_vec();
        big.resize(MAX_REQUEST_BYTES + 1024, b'a');
        match send(big, Some(json), tok).await {
            Ok(r) => expect_problem(r, ErrorCode::PayloadTooLarge, &what("oversized")).await,
            // The server may close the stream before the upload ends; what
            // matters is that nothing was accepted and it keeps serving.
            Err(e) => eprintln!("{}: oversized upload cut off: {e}", ep.path),
        }

        if ep.auth {
            let r = send(b"{}".to_vec(), Some(json), None).await.unwrap();
            expect_problem(r, ErrorCode::Unauthorized, &what("no auth")).await;
            let r = send(b"{}".to_vec(), Some(json), Some("not-a-token"))
                .await
                .unwrap();
            expect_problem(r, ErrorCode::Unauthorized, &what("bad token")).await;
            let r = request(&c, port, ep.method, ep.path, None)
                .header(reqwest::header::AUTHORIZATION, "Basic YTpi")
                .body("{}")
                .send()
                .await
                .unwrap();
            expect_problem(r, ErrorCode::Unauthorized, &what("basic auth")).await;
        }
        still_alive(&c, port).await;
    }

    // Inbox: query parameters and auth.
    let t = Some(token.as_str());
    for q in [
        "?after=-1",
        "?after=0",
        "?after=00",
        "?limit=many",
        "?wait_ms=1e9",
        "?unknown=1",
    ] {
        let r = request(&c, port, Method::Get, &format!("/v1/inbox{q}"), t)
            .send()
            .await
            .unwrap();
        expect_problem(r, ErrorCode::BadRequest, q).await;
    }
    let r = request(&c, port, Method::Get, "/v1/inbox", Some("x"))
        .send()
        .await
        .unwrap();
    expect_problem(r, ErrorCode::Unauthorized, "inbox bad token").await;
    let r = request(&c, port, Method::Get, "/v1/inbox?limit=5", t)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // A well-formed cursor this server never handed out.
    let forged = format!("/v1/inbox?after={}", "07".repeat(24));
    let r = request(&c, port, Method::Get, &forged, t)
        .send()
        .await
        .unwrap();
    expect_problem(r, ErrorCode::UnknownCursor, "forged cursor").await;

    // The key directory: bad query parameters, no token, public audit.
    for q in [
        "",
        "?from=1",
        "?to=2",
        "?from=-1&to=2",
        "?from=a&to=b",
        "?from=0&to=1&x=3",
        "?from=18446744073709551616&to=1",
        "?from=0&to=1e3",
        "?from=3&to=1",
        "?from=0&to=1000000",
    ] {
        let path = format!("/v1/directory/audit{q}");
        let r = request(&c, port, Method::Get, &path, None)
            .send()
            .await
            .unwrap();
        expect_problem(r, ErrorCode::BadRequest, &path).await;
    }
    // Public: an epoch not published yet is 404, not 401.
    let r = request(
        &c,
        port,
        Method::Get,
        "/v1/directory/audit?from=0&to=900",
        None,
    )
    .send()
    .await
    .unwrap();
    expect_problem(r, ErrorCode::NotFound, "audit of an unpublished epoch").await;
    for path in [
        "/v1/directory/root",
        "/v1/directory/lookup/alice@mfa.example",
        "/v1/directory/history/alice@mfa.example",
    ] {
        let r = request(&c, port, Method::Get, path, Some("not-a-token"))
            .send()
            .await
            .unwrap();
        expect_problem(r, ErrorCode::Unauthorized, path).await;
        let r = request(&c, port, Method::Post, path, t)
            .header(reqwest::header::CONTENT_TYPE, json)
            .body("{}")
            .send()
            .await
            .unwrap();
        expect_problem(r, ErrorCode::BadRequest, &format!("POST {path}")).await;
    }
    let r = request(&c, port, Method::Get, "/v1/directory/root", t)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = request(
        &c,
        port,
        Method::Get,
        "/v1/directory/lookup/nobody@mfa.example",
        t,
    )
    .send()
    .await
    .unwrap();
    expect_problem(r, ErrorCode::NotFound, "lookup of an unknown user").await;
    for path in [
        "/v1/directory/lookup/not-a-user",
        "/v1/directory/history/a%20b@x",
        "/v1/directory/lookup/%ff%fe@x",
        "/v1/directory/history/alice@mfa.example%00",
    ] {
        let r = request(&c, port, Method::Get, path, t)
            .send()
            .await
            .unwrap();
        expect_problem(r, ErrorCode::BadRequest, path).await;
    }
    let long = format!("/v1/directory/lookup/{}@mfa.example", "a".repeat(5000));
    let r = request(&c, port, Method::Get, &long, t)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "long user: {}", r.status());
    still_alive(&c, port).await;

    // Bad path parameters.
    for path in [
        "/v1/users/not-a-user/devices",
        "/v1/users/a%20b@x/devices",
        "/v1/conversations/xyz/commits",
        "/v1/conversations/0011/commits",
    ] {
        let method = if path.ends_with("devices") {
            Method::Get
        } else {
            Method::Post
        };
        let r = request(&c, port, method, path, t)
            .header(reqwest::header::CONTENT_TYPE, json)
            .body(r#"{"epoch":0,"commit":"AA=="}"#)
            .send()
            .await
            .unwrap();
        expect_problem(r, ErrorCode::BadRequest, path).await;
    }

    // Well-formed JSON with invalid MLS inside.
    let r = request(&c, port, Method::Post, "/v1/conversations", t)
        .json(&serde_json::json!({"id": CONV, "group_info": "AAECAw==", "ratchet_tree": ""}))
        .send()
        .await
        .unwrap();
    expect_problem(r, ErrorCode::InvalidMls, "garbage group info").await;
    let r = request(
        &c,
        port,
        Method::Post,
        &format!("/v1/conversations/{CONV}/commits"),
        t,
    )
    .json(&serde_json::json!({"epoch": 0, "commit": "AAECAw=="}))
    .send()
    .await
    .unwrap();
    expect_problem(r, ErrorCode::NotFound, "commit to unknown conversation").await;
    // The invite is checked before any key package is.
    let garbage = |code: &str| {
        serde_json::json!({
            "user": "alice@mfa.example", "code": code, "device": "0202020202020202",
            "signature_key": "AA==", "key_packages": ["AA=="], "last_resort": "AA=="})
    };
    let r = request(&c, port, Method::Post, "/v1/enroll", None)
        .json(&garbage("AAAAA-BBBBB"))
        .send()
        .await
        .unwrap();
    expect_problem(
        r,
        ErrorCode::InvalidInvite,
        "garbage key packages, no invite",
    )
    .await;
    let out = valised()
        .args(["admin", "--data"])
        .arg(&data)
        .args(["invite", "alice@mfa.example"])
        .output()
        .unwrap();
    let code = String::from_utf8(out.stdout).unwrap();
    let r = request(&c, port, Method::Post, "/v1/enroll", None)
        .json(&garbage(code.trim()))
        .send()
        .await
        .unwrap();
    expect_problem(r, ErrorCode::InvalidMls, "garbage key packages").await;
    let r = request(&c, port, Method::Post, "/v1/auth/challenge", None)
        .json(&serde_json::json!({"user": "bob@mfa.example", "device": "0202020202020202"}))
        .send()
        .await
        .unwrap();
    expect_problem(r, ErrorCode::Unauthorized, "challenge for unknown device").await;
    let r = request(
        &c,
        port,
        Method::Post,
        "/v1/users/nobody@mfa.example/key-packages/claim",
        t,
    )
    .json(&serde_json::json!({}))
    .send()
    .await
    .unwrap();
    expect_problem(r, ErrorCode::NotFound, "claim for unknown user").await;
    for (path, code) in [
        ("/v1/conversations/zz/group-info", ErrorCode::BadRequest),
        (
            "/v1/conversations/00112233445566778899aabbccddeeff/group-info",
            ErrorCode::NotFound,
        ),
    ] {
        let r = request(&c, port, Method::Get, path, t)
            .send()
            .await
            .unwrap();
        expect_problem(r, code, path).await;
    }

    // Unknown routes and methods.
    let r = request(&c, port, Method::Get, "/v2/nothing", None)
        .send()
        .await
        .unwrap();
    expect_problem(r, ErrorCode::NotFound, "unknown route").await;
    let r = request(&c, port, Method::Get, "/v1/enroll", None)
        .send()
        .await
        .unwrap();
    expect_problem(r, ErrorCode::BadRequest, "wrong method").await;

    // TLS 1.2 is refused.
    let ca = std::fs::read(data.join("tls/ca.pem")).unwrap();
    let old = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(
        old.get(format!("https://127.0.0.1:{port}/v1/inbox"))
            .send()
            .await
            .is_err(),
        "a TLS 1.2 client must be refused"
    );
    // Plain garbage on the TLS port does not disturb anyone.
    {
        use std::io::Write as _;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\x01\x02");
    }
    still_alive(&c, port).await;
    drop(server);
}

/// C6/G4: commits are counted per device before their body is parsed or
/// any MLS check runs; past the allowance the answer is `rate_limited`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_rate_limited_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let _server = start_with(&data, &["--max-commits-per-minute", "3"]);
    let token = token_for(&data);
    let c = client(&data);
    let port = _server.port;
    let path = format!("/v1/conversations/{CONV}/commits");
    for n in 0..5 {
        let r = request(&c, port, Method::Post, &path, Some(&token))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(vec![0xff; 64])
            .send()
            .await
            .unwrap();
        let want = if n < 3 {
            ErrorCode::BadRequest
        } else {
            ErrorCode::RateLimited
        };
        expect_problem(r, want, &format!("commit {n}")).await;
    }
}

/// A blob's requests, by `alice`'s token on the test's server.
#[derive(Clone)]
struct Blobs {
    c: reqwest::Client,
    port: u16,
    token: String,
}

impl Blobs {
    fn new(data: &Path, server: &Server) -> Self {
        Self {
            c: client(data),
            port: server.port,
            token: token_for(data),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    async fn create(&self, length: u64) -> BlobId {
        let r = self.create_with(length).await;
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        r.json::<blobs::BlobCreated>().await.unwrap().blob
    }

    async fn create_with(&self, length: u64) -> reqwest::Response {
        self.c
            .post(self.url(blobs::ROUTE))
            .bearer_auth(&self.token)
            .header(blobs::UPLOAD_LENGTH, length)
            .send()
            .await
            .unwrap()
    }

    /// `POST` with the blob's first part (creation-with-upload).
    async fn create_part(&self, length: u64, part: Vec<u8>) -> reqwest::Response {
        self.c
            .post(self.url(blobs::ROUTE))
            .bearer_auth(&self.token)
            .header(blobs::UPLOAD_LENGTH, length)
            .header(reqwest::header::CONTENT_TYPE, blobs::PART_TYPE)
            .body(part)
            .send()
            .await
            .unwrap()
    }

    async fn patch(&self, id: &BlobId, at: u64, part: Vec<u8>) -> reqwest::Response {
        self.c
            .patch(self.url(&blobs::path(id)))
            .bearer_auth(&self.token)
            .header(blobs::UPLOAD_OFFSET, at)
            .header(reqwest::header::CONTENT_TYPE, blobs::PART_TYPE)
            .body(part)
            .send()
            .await
            .unwrap()
    }

    async fn link(&self, ids: &[BlobId]) -> reqwest::Response {
        self.c
            .post(self.url(blobs::LINKS_ROUTE))
            .bearer_auth(&self.token)
            .json(&blobs::LinkBlobs {
                blobs: ids.to_vec(),
            })
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, id: &BlobId, start: u64, len: u64) -> reqwest::Response {
        self.c
            .get(self.url(&blobs::path(id)))
            .bearer_auth(&self.token)
            .header(reqwest::header::RANGE, blobs::range(start, len))
            .send()
            .await
            .unwrap()
    }
}

/// A blob whose file is gone while its record stays (housekeeping expired
/// the upload between a part's read of the record and its write, or a
/// crash came between record and file) is not found: never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_file_is_gone_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data);
    let b = Blobs::new(&data, &server);
    let file = |id: &BlobId| data.join("blobs").join(id.to_string());

    let unfinished = b.create(MIN_BLOB_BYTES).await;
    std::fs::remove_file(file(&unfinished)).unwrap();
    let r = b.patch(&unfinished, 0, vec![1; 8]).await;
    expect_problem(r, ErrorCode::NotFound, "a part of a blob without file").await;

    let complete = b.create(MIN_BLOB_BYTES).await;
    let r = b
        .patch(&complete, 0, vec![2; MIN_BLOB_BYTES as usize])
        .await;
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    std::fs::remove_file(file(&complete)).unwrap();
    let r = b.get(&complete, 0, 4).await;
    expect_problem(r, ErrorCode::NotFound, "a range of a blob without file").await;
    still_alive(&b.c, server.port).await;
}

/// Parts racing for the same offset: one is acknowledged, the others are
/// refused before they touch the file, so the file holds exactly the
/// acknowledged bytes. (The window in which a part that read the offset
/// before the winner moved it cut the winner's bytes off is microseconds
/// wide: this guards the outcome, it rarely hit the old order.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_parts_never_cut_an_acknowledged_one() {
    const LEN: usize = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data);
    let b = Blobs::new(&data, &server);
    for round in 0..20 {
        let id = b.create(LEN as u64).await;
        // Whole parts and one-byte parts, all at offset 0.
        let mut parts = tokio::task::JoinSet::new();
        for n in 0..6u8 {
            let b = b.clone();
            parts.spawn(async move {
                let part = if n % 2 == 0 { vec![n; LEN] } else { vec![n] };
                (n, b.patch(&id, 0, part).await)
            });
        }
        let mut won = Vec::new();
        while let Some(done) = parts.join_next().await {
            let (n, r) = done.unwrap();
            if r.status() == reqwest::StatusCode::NO_CONTENT {
                won.push(n);
            } else {
                expect_problem(r, ErrorCode::UploadOffset, "a losing part").await;
            }
        }
        assert_eq!(won.len(), 1, "round {round}: one part wins: {won:?}");
        let n = won[0];
        let want = if n % 2 == 0 { vec![n; LEN] } else { vec![n] };
        let on_disk = std::fs::read(data.join("blobs").join(id.to_string())).unwrap();
        assert!(
            on_disk == want,
            "round {round}: the file is not the acknowledged part"
        );
    }
}

/// What no client sends costs the server nothing: a blob shorter than an
/// empty file's (free of quota, any number of records, files and audit
/// entries) and an empty part (on a complete blob it logged the blob's
/// completion again, as often as sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_requests_no_client_makes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data);
    let b = Blobs::new(&data, &server);
    for length in [0, 1, MIN_BLOB_BYTES - 1] {
        let r = b.create_with(length).await;
        expect_problem(r, ErrorCode::BadRequest, &format!("a blob of {length}")).await;
    }
    let id = b.create(MIN_BLOB_BYTES).await;
    let r = b.patch(&id, 0, vec![]).await;
    expect_problem(r, ErrorCode::BadRequest, "an empty first part").await;
    let r = b.patch(&id, 0, vec![5; MIN_BLOB_BYTES as usize]).await;
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let r = b.patch(&id, MIN_BLOB_BYTES, vec![]).await;
    expect_problem(r, ErrorCode::BadRequest, "an empty part after the last").await;
    let store = SqliteStore::open(&data.join("valised.db")).unwrap();
    let blob = store.blob(&id).unwrap().unwrap();
    assert_eq!((blob.durable, blob.parts), (MIN_BLOB_BYTES, 1));
    // Links: a letter's blobs at most, and an unfinished blob is not kept.
    let unfinished = b.create(MIN_BLOB_BYTES).await;
    let r = b.link(&[id; 65]).await;
    expect_problem(r, ErrorCode::BadRequest, "65 blobs in one letter").await;
    let r = b.link(&[id, unfinished]).await;
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let linked: blobs::BlobsLinked = r.json().await.unwrap();
    assert_eq!(linked.missing, [unfinished]);
}

/// A blob created with its first part (tus creation-with-upload) holds it
/// durably when the answer comes, with `Upload-Offset`; a first part the
/// server would refuse as a `PATCH` (over 8 MiB, past the declared length)
/// is refused the same way and leaves the blob empty. Parts are read as
/// they arrive, so the 8 MiB bound is the server's own, for `PATCH` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_created_with_its_part_holds_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data);
    let b = Blobs::new(&data, &server);
    let part: Vec<u8> = (0..MIN_BLOB_BYTES).map(|i| i as u8).collect();
    let r = b.create_part(MIN_BLOB_BYTES, part.clone()).await;
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let offset = r.headers().get(blobs::UPLOAD_OFFSET).cloned();
    assert_eq!(offset.unwrap(), MIN_BLOB_BYTES.to_string().as_str());
    let whole = r.json::<blobs::BlobCreated>().await.unwrap().blob;
    let r = b.get(&whole, 0, MIN_BLOB_BYTES).await;
    assert_eq!(r.status(), reqwest::StatusCode::PARTIAL_CONTENT);
    assert!(r.bytes().await.unwrap() == part, "the blob is not its part");

    let over = blobs::MAX_PART_BYTES + 1;
    let r = b.create_part(2 * over as u64, vec![1; over]).await;
    expect_problem(r, ErrorCode::PayloadTooLarge, "a first part over 8 MiB").await;
    let r = b
        .create_part(MIN_BLOB_BYTES, vec![1; MIN_BLOB_BYTES as usize + 1])
        .await;
    expect_problem(r, ErrorCode::BadRequest, "a first part past the length").await;
    let id = b.create(2 * over as u64).await;
    let r = b.patch(&id, 0, vec![1; over]).await;
    expect_problem(r, ErrorCode::PayloadTooLarge, "a part over 8 MiB").await;

    let store = SqliteStore::open(&data.join("valised.db")).unwrap();
    let blob = store.blob(&whole).unwrap().unwrap();
    assert_eq!((blob.durable, blob.parts), (MIN_BLOB_BYTES, 1));
    assert_eq!(store.blob(&id).unwrap().unwrap().durable, 0);
    still_alive(&b.c, server.port).await;
}
