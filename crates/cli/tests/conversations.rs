//! Story: a three-person conversation; carol is added, then removed, and
//! cannot read what follows, even with her old state and a server that
//! hands her the ciphertext.

mod common;
use common::{Server, addr, log};

#[test]
fn three_people_add_and_remove() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");

    let conv = alice.create("Consular crisis cell", &["bob"]);
    alice.send_in(&conv, "Before carol", "Only alice and bob read this.");

    alice.ok(&["conversation", "add", &conv, &addr("carol")]);
    alice.send_in(&conv, "With carol", "All three read this.");

    assert_eq!(bob.sync()["new_letters"], 2);
    let c = carol.sync();
    assert_eq!(c["joined"], 1);
    assert_eq!(
        carol.subjects(),
        vec!["With carol"],
        "no letters from before joining"
    );

    // Everyone sees the same roster and the conversation's name.
    for dev in [&alice, &bob, &carol] {
        let list = dev.json(&["conversation", "list"]);
        let me = list
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == conv.as_str())
            .unwrap();
        assert_eq!(me["name"], "Consular crisis cell");
        let members: Vec<&String> = me["members"].as_object().unwrap().keys().collect();
        assert_eq!(members, vec![&addr("alice"), &addr("bob"), &addr("carol")]);
    }

    // Carol writes; both others read it.
    carol.send_in(&conv, "From carol", "Hello both.");
    assert_eq!(alice.sync()["new_letters"], 1);
    assert_eq!(bob.sync()["new_letters"], 1);

    // Keep carol's state from before her removal.
    let old_home = server.dir.path().join("carol-old");
    common::copy_dir(&carol.home, &old_home);

    bob.ok(&["conversation", "remove", &conv, &addr("carol")]);
    alice.sync();
    let after = alice.send_in(&conv, "After carol", "Carol must not read this.");
    assert_eq!(carol.sync()["commits"], 1);
    let list = carol.json(&["conversation", "list"]);
    assert_eq!(list[0]["active"], false);
    assert!(!carol.subjects().contains(&"After carol".to_owned()));
    let refused = carol.run(&[
        "send",
        "--conversation",
        &conv,
        "--subject",
        "x",
        "--body",
        "y",
    ]);
    assert!(!refused.status.success());

    // The attacker who holds the server queues the new ciphertext for
    // carol's device, and carol runs her state from before the removal.
    // The newest letter there is "After carol", not yet read by bob, so
    // its ciphertext is still on the server; queuing a row needs the
    // server stopped.
    let db = server.db();
    let letter = log::newest(&db, log::APPLICATION, &conv, Some(&addr("alice")))
        .expect("the letter after removal is on the server");
    drop(db);
    server.kill9();
    let db = server.db();
    log::deliver(
        &db,
        log::device_num(&db, &addr("carol")),
        letter.conv,
        log::device_num(&db, &addr("alice")),
        log::APPLICATION,
        &letter.bytes,
    );
    drop(db);
    server.restart();
    let old_carol = common::Device {
        home: old_home,
        user: addr("carol"),
        link_code: None,
    };
    // That state reads on from where it was: first the commit that removed
    // carol (the log still holds it for the copy's cursor), then the letter,
    // which it refuses as a removed member, and says so.
    let report = old_carol.sync();
    assert_eq!(report["new_letters"], 0, "{report}");
    assert!(!old_carol.subjects().contains(&"After carol".to_owned()));
    let alerts = old_carol.json(&["alerts"]);
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "refused_message" || a["kind"] == "letters_withheld"),
        "{alerts}"
    );

    // Bob still reads it.
    assert_eq!(bob.sync()["new_letters"], 1);
    let _ = after;
    assert_eq!(bob.subjects().last().unwrap(), "After carol");
}
