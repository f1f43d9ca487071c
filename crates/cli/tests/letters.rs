//! Story: alice writes to bob, bob answers in the same thread.

mod common;
use common::{Server, addr};

#[test]
fn alice_writes_bob_replies_in_thread() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");

    let sent = alice.json(&[
        "send",
        "--to",
        &addr("bob"),
        "--subject",
        "Visa for the delegation",
        "--body",
        "Please confirm the dates.",
        "--marking",
        "TLP:GREEN",
    ]);
    let conv = sent["conversation"].as_str().unwrap().to_owned();

    let report = bob.sync();
    assert_eq!(report["new_letters"], 1);
    assert_eq!(report["joined"], 1);
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1);
    let first = &inbox[0];
    assert_eq!(first["from"], addr("alice"));
    assert_eq!(first["subject"], "Visa for the delegation");
    assert_eq!(first["marking"], "TLP:GREEN");
    assert_eq!(first["conversation"], conv.as_str());
    assert!(first["sent_at"].as_str().unwrap().starts_with("20"));

    let letter = bob.read(first["id"].as_i64().unwrap());
    assert_eq!(letter["body"], "Please confirm the dates.");
    assert_eq!(letter["to"], serde_json::json!([addr("bob")]));
    assert!(letter["in_reply_to"].is_null());

    // Bob answers; alice sees it in the same conversation and thread.
    bob.ok(&[
        "reply",
        &first["id"].to_string(),
        "--body",
        "Confirmed: 3 to 5 May.",
    ]);
    assert_eq!(alice.sync()["new_letters"], 1);
    let answer = &alice.inbox()[0];
    assert_eq!(answer["subject"], "Re: Visa for the delegation");
    assert_eq!(answer["conversation"], conv.as_str());
    let answer = alice.read(answer["id"].as_i64().unwrap());
    assert_eq!(answer["thread"], letter["thread"]);
    assert_eq!(answer["in_reply_to"], letter["message_id"]);
    assert_eq!(answer["marking"], "TLP:GREEN");

    // Writing to bob again reuses the conversation, on both sides.
    let again = alice.send_to(&["bob"], "Second", "Another letter.");
    assert_eq!(again["conversation"], conv.as_str());
    let back = bob.send_to(&["alice"], "From bob", "Hello.");
    assert_eq!(back["conversation"], conv.as_str());
    assert_eq!(bob.sync()["new_letters"], 1);
    assert_eq!(alice.sync()["new_letters"], 1);

    // Nothing is shown twice: a second sync brings nothing new.
    assert_eq!(bob.sync()["new_letters"], 0);
    assert_eq!(bob.inbox().len(), 2);
}

#[test]
fn body_from_file_and_clear_errors() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let file = server.dir.path().join("body.txt");
    std::fs::write(&file, "Line one\nLine two\n").unwrap();
    alice.ok(&[
        "send",
        "--to",
        &addr("bob"),
        "--subject",
        "From a file",
        "--body-file",
        file.to_str().unwrap(),
    ]);
    bob.sync();
    let id = bob.inbox()[0]["id"].as_i64().unwrap();
    assert_eq!(bob.read(id)["body"], "Line one\nLine two\n");

    // Errors: one line, non-zero exit.
    for args in [
        vec!["read", "999"],
        vec![
            "send",
            "--to",
            "nobody@mfa.example",
            "--subject",
            "x",
            "--body",
            "y",
        ],
    ] {
        let out = alice.run(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("999") || err.contains("nobody@mfa.example"),
            "{args:?}: the error names what is wrong: {err}"
        );
    }
    // The letter to nobody was taken back, not left waiting.
    assert_eq!(alice.json(&["outbox"]).as_array().unwrap().len(), 0);

    // Malformed arguments: clap's usage error, exit code 2.
    let out = alice.run(&[
        "send",
        "--to",
        "not an address",
        "--subject",
        "x",
        "--body",
        "y",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: invalid value"));

    // A wrong passphrase opens nothing.
    let out = std::process::Command::new(common::valise_bin())
        .arg("--home")
        .arg(&alice.home)
        .arg("inbox")
        .env("VALISE_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));

    // An invite code works once.
    let code = server.invite("carol");
    let home = server.dir.path().join("carol");
    let enroll = |h: &std::path::Path| {
        std::process::Command::new(common::valise_bin())
            .arg("--home")
            .arg(h)
            .args(["enroll", &server.url, &addr("carol"), &code, "--ca"])
            .arg(server.ca())
            .env("VALISE_PASSPHRASE", common::PASSPHRASE)
            .output()
            .unwrap()
    };
    assert!(enroll(&home).status.success());
    let again = enroll(&server.dir.path().join("carol2"));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("invalid_invite"));
}

#[test]
fn send_to_reaches_exactly_its_recipients() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let first = alice.send_to(&["bob"], "one", "for bob")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.sync();
    // Any member may add people: bob adds carol to that conversation.
    bob.ok(&["conversation", "add", &first, &addr("carol")]);
    alice.sync();
    carol.sync();

    // A letter to bob alone no longer goes there: a new conversation.
    let second = alice.send_to(&["bob"], "two", "for bob alone")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second, first);
    assert_eq!(bob.sync()["new_letters"], 1);
    assert_eq!(carol.sync()["new_letters"], 0);
    assert!(!carol.subjects().contains(&"two".to_owned()));
    // And the new one is reused for the next letter to bob.
    let third = alice.send_to(&["bob"], "three", "again")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(third, second);
}
