//! G4: an account flooding the server is held to its rate before its
//! letters are parsed; its letters still all arrive (the client waits and
//! retries), and another account's letter goes through at once meanwhile.

// Test helpers: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;
use common::{PASSPHRASE, Server};
use std::time::{Duration, Instant};
use valise_client::{Client, Draft, Passphrase};

/// Opens the device at `home` and seals `n` letters into its outbox in
/// conversation `conv` (hex), subjects `"{subject} {i}"`.
fn seal(home: &std::path::Path, conv: &str, subject: &str, n: usize) -> Client {
    let mut client = Client::open(home, &Passphrase::new(PASSPHRASE.into())).unwrap();
    let conv = conv.parse().unwrap();
    for i in 0..n {
        let draft = Draft {
            message_id: None,
            subject: format!("{subject} {i}"),
            body: "x".into(),
            marking: None,
            attachments: Vec::new(),
        };
        client.seal_in(&conv, draft).unwrap();
    }
    client
}

#[test]
fn a_flooding_account_does_not_slow_others() {
    // 5 letters/s per device, a burst of 10.
    let server = Server::start_with(&["--max-sends-per-second", "5"]);
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let conv = alice.create("flood", &["bob", "carol"]);
    bob.sync();
    carol.sync();

    // Alice's device seals 40 letters and pushes them as fast as it can.
    let home = alice.home.clone();
    let flood = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut client = seal(&home, &conv, "flood", 40);
        let started = Instant::now();
        let (sent, _) = rt.block_on(client.deliver_outbox()).unwrap();
        (sent, started.elapsed())
    });

    // Meanwhile bob writes once: answered at once.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    bob.send_to(&["carol"], "not slowed", "hello");
    let bob_took = t.elapsed();

    let (sent, flood_took) = flood.join().unwrap();
    assert_eq!(sent, 40);
    // 30 letters past the burst at 5/s: the limit held alice back...
    assert!(
        flood_took >= Duration::from_secs(4),
        "flood took {flood_took:?}"
    );
    // ...and not bob.
    assert!(bob_took < Duration::from_secs(3), "bob took {bob_took:?}");

    // Every flooded letter arrives exactly once.
    carol.sync();
    let subjects = carol.subjects();
    assert_eq!(
        subjects.iter().filter(|s| s.starts_with("flood ")).count(),
        40
    );
    assert!(subjects.contains(&"not slowed".to_owned()));
}

/// An outbox longer than one batch (256 letters) goes in several, each
/// letter counted once and delivered once.
#[test]
fn an_outbox_longer_than_a_batch_is_delivered_whole() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.create("many", &["bob"]);
    bob.sync();
    let home = alice.home.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = seal(&home, &conv, "many", 300);
    assert_eq!(rt.block_on(client.deliver_outbox()).unwrap(), (300, 0));
    assert_eq!(rt.block_on(client.deliver_outbox()).unwrap(), (0, 0));
    drop(client);
    assert_eq!(bob.sync()["new_letters"], 300);
}
