//! NO-PLAINTEXT (invariant I1, threat A11, D1): random canaries in subjects
//! and bodies appear nowhere in the server's data directory, nor in a
//! client home read without its passphrase. And the conversation really
//! uses the post-quantum hybrid ciphersuite (I4).

mod common;
use common::{Server, addr, contains, files};

fn canary(tag: &str) -> String {
    format!("CANARY{tag}{:016x}", rand::random::<u64>())
}

#[test]
fn canaries_stay_on_devices() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");

    let mut canaries = Vec::new();
    for i in 0..3 {
        let (s, b) = (canary(&format!("S{i}")), canary(&format!("B{i}")));
        alice.send_to(&["bob"], &s, &format!("body {b} end"));
        canaries.extend([s, b]);
    }
    let name = canary("NAME");
    let conv = alice.create(&name, &["carol"]);
    canaries.push(name);
    let (s, b) = (canary("S9"), canary("B9"));
    alice.send_in(&conv, &s, &b);
    canaries.extend([s, b]);
    bob.sync();
    carol.sync();
    bob.ok(&["reply", "1", "--body", &canary("R")]);
    alice.sync();

    // The devices did read them.
    assert_eq!(bob.inbox().len(), 3);
    assert_eq!(carol.inbox().len(), 1);

    let mut places: Vec<std::path::PathBuf> = files(&server.data());
    for dev in [&alice, &bob, &carol] {
        places.extend(files(&dev.home));
    }
    assert!(
        places
            .iter()
            .any(|p| p.ends_with("valised.db-wal") || p.ends_with("valised.db"))
    );
    assert!(places.iter().any(|p| p.ends_with("valised.log")));
    // Controls: the scan reads what the server stores (its metadata is
    // there), and the homes are sealed (no SQLite header in clear).
    let server_bytes: Vec<u8> = files(&server.data())
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(contains(&server_bytes, addr("alice").as_bytes()));
    for dev in [&alice, &bob, &carol] {
        let db = std::fs::read(dev.home.join("valise.db")).unwrap();
        assert!(
            !db.starts_with(b"SQLite format 3"),
            "{} is not sealed",
            dev.user
        );
    }
    for path in &places {
        let bytes = std::fs::read(path).unwrap();
        for c in &canaries {
            assert!(
                !contains(&bytes, c.as_bytes()),
                "canary {c} found in {}",
                path.display()
            );
        }
    }
}

#[test]
fn conversations_use_the_post_quantum_suite() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.send_to(&["bob"], "pq", "pq");
    bob.sync();
    for dev in [&alice, &bob] {
        let list = dev.json(&["conversation", "list"]);
        assert_eq!(
            list[0]["ciphersuite"], "MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519",
            "{}",
            dev.user
        );
    }
    // The hub recorded the same suite (0x004D) for the group.
    let suite: i64 = server
        .db()
        .query_row("SELECT ciphersuite FROM conversations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(suite, 0x004D);
}
