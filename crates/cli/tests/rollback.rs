//! Issue 8, attack 2 (C1, A10, F7): the intruder holds the server's
//! database and an old backup of it. After alice removed carol, it puts the
//! conversation's hub state (its `conversations`, `members` and
//! `memberships` rows) back as it was before, hides her removal's commit
//! from her so her device never
//! learns of her removal, and hands alice a garbage commit so that she
//! falls out of step and looks at the hub's state. Alice refuses to rejoin
//! a state older than the one she shares (`rollback`), keeps her own, and
//! seals nothing there: her letter waits in the outbox. Carol, playing
//! along, then commits on the restored state to push its epoch forward:
//! alice sees a fork, follows the hub's side, and still refuses it, because
//! it brings back a member her side removed.
// Test helpers: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Server, addr, log};

#[test]
fn a_rolled_back_hub_and_a_forced_rejoin_let_no_removed_member_read() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let _dave = server.device("dave");
    let conv = alice.create("cell", &["bob", "carol"]);
    for d in [&bob, &carol] {
        d.sync();
    }
    let backup = server.backup();

    alice.ok(&["conversation", "remove", &conv, &addr("carol")]);
    bob.sync();

    // The intruder's edits, on the stopped server (its writer keeps each
    // conversation's roster in memory).
    server.kill9();
    let id = hex::decode(&conv).unwrap();
    let db = server.db();
    let num = log::conv_num(&db, &conv);
    db.execute("ATTACH DATABASE ?1 AS bak", [backup.to_str().unwrap()])
        .unwrap();
    db.execute(
        "UPDATE conversations SET (epoch, state, group_info) =
             (SELECT epoch, state, group_info FROM bak.conversations WHERE id = ?1)
         WHERE id = ?1",
        [&id],
    )
    .unwrap();
    db.execute("DELETE FROM members WHERE conversation = ?1", [&id])
        .unwrap();
    db.execute(
        "INSERT INTO members SELECT * FROM bak.members WHERE conversation = ?1",
        [&id],
    )
    .unwrap();
    db.execute("DELETE FROM memberships WHERE conv = ?1", [num])
        .unwrap();
    db.execute(
        "INSERT INTO memberships SELECT * FROM bak.memberships WHERE conv = ?1",
        [num],
    )
    .unwrap();
    // Carol is a member again, but reads nothing up to her removal's
    // commit: her membership ends just before it and starts again after.
    let removal = log::newest(&db, log::COMMIT, &conv, None).unwrap().seq;
    let carol_n = log::device_num(&db, &addr("carol"));
    db.execute(
        "UPDATE memberships SET to_seq = ?1 - 1 WHERE device = ?2 AND conv = ?3",
        rusqlite::params![removal, carol_n, num],
    )
    .unwrap();
    db.execute(
        "INSERT INTO memberships (device, conv, from_seq, to_seq) VALUES (?1, ?2, ?3, NULL)",
        rusqlite::params![carol_n, num, removal],
    )
    .unwrap();
    log::deliver(
        &db,
        log::device_num(&db, &addr("alice")),
        num,
        log::device_num(&db, &addr("bob")),
        log::COMMIT,
        &[0x00, 0x01, 0xde, 0xad, 0xbe, 0xef],
    );
    drop(db);
    server.restart();

    // Alice refuses the garbage, then refuses the rolled-back state.
    let report = alice.sync();
    assert_eq!(report["rejoined"], 0, "{report}");
    let kinds = alice.alert_kinds();
    assert!(kinds.contains(&"refused_message".to_owned()), "{kinds:?}");
    assert_eq!(kinds.last().unwrap(), "rollback", "{kinds:?}");
    assert!(!kinds.contains(&"rejoined".to_owned()), "{kinds:?}");
    let rollback = alice
        .json(&["alerts"])
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        rollback["evidence"].as_str().is_some(),
        "the GroupInfo is kept"
    );
    assert_eq!(alice.conversation(&conv)["diverged"], true);
    let members = alice.conversation(&conv)["members"].clone();
    assert!(members.get(addr("carol")).is_none(), "{members}");

    // Nothing is sealed there: the letter stays in the outbox.
    let out = alice.try_send_in(&conv, "after carol");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of step"));
    assert_eq!(alice.json(&["outbox"]).as_array().unwrap().len(), 1);
    // `conversation show` puts the two rosters side by side.
    let shown = alice.json(&["conversation", "show", &conv]);
    assert!(shown["trusted"].get(addr("carol")).is_none(), "{shown}");
    assert!(shown["hub"].get(addr("carol")).is_some(), "{shown}");

    // Carol, still a member of the restored state, commits on it.
    carol.ok(&["conversation", "add", &conv, &addr("dave")]);
    alice.sync();
    let kinds = alice.alert_kinds();
    assert!(kinds.contains(&"fork".to_owned()), "{kinds:?}");
    assert_eq!(kinds.last().unwrap(), "rollback", "{kinds:?}");
    assert!(!kinds.contains(&"rejoined".to_owned()), "{kinds:?}");
    let detail = alice.json(&["alerts"]).as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains(&carol.address()), "{detail}");
    assert_eq!(alice.json(&["outbox"]).as_array().unwrap().len(), 1);

    // Carol read nothing alice wrote after removing her.
    carol.sync();
    assert!(!carol.subjects().contains(&"after carol".to_owned()));
    assert!(
        !bob.subjects().contains(&"after carol".to_owned()),
        "not sent at all"
    );
}
