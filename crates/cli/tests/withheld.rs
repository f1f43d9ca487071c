//! A7: a server that withholds a letter from one device. Each letter
//! carries its sender's count inside the encryption, so the gap shows as an
//! alert even though the server deleted every trace of the letter.

mod common;
use common::{Server, addr};

#[test]
fn a_withheld_letter_is_noticed() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    for n in 1..=3 {
        alice.send_to(&["bob"], &format!("Letter {n}"), "text");
    }
    // The intruder deletes letter 2, which only bob reads (application
    // rows in order: the conversation's settings, then letters 1, 2, 3).
    let db = server.db();
    let removed = db
        .execute(
            "DELETE FROM log WHERE seq =
                 (SELECT seq FROM log WHERE kind = 3 ORDER BY seq LIMIT 1 OFFSET 2)",
            [],
        )
        .unwrap();
    assert_eq!(removed, 1);
    drop(db);

    let report = bob.sync();
    assert_eq!(report["new_letters"], 2);
    assert_eq!(bob.subjects(), vec!["Letter 1", "Letter 3"]);
    let alerts = bob.json(&["alerts"]);
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts[0]["kind"], "letters_withheld");
    let detail = alerts[0]["detail"].as_str().unwrap();
    assert!(detail.contains("1 of alice@mfa.example/"), "{detail}");

    // No false alarm when nothing is withheld, across an epoch change.
    let carol = server.device("carol");
    let conv = bob.inbox()[0]["conversation"].as_str().unwrap().to_owned();
    alice.ok(&["conversation", "add", &conv, &addr("carol")]);
    alice.send_in(&conv, "Letter 4", "text");
    assert_eq!(bob.sync()["new_letters"], 1);
    assert_eq!(carol.sync()["new_letters"], 1);
    assert_eq!(bob.json(&["alerts"]).as_array().unwrap().len(), 1);
    assert!(carol.alert_kinds().is_empty());
}
