//! Story: bob enrols a second device and approves it from his first; it
//! receives letters sent to bob, and joins bob's existing conversations
//! as the approval is made.

mod common;
use common::{Server, addr};

#[test]
fn second_device_receives_letters() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob_laptop = server.device("bob");

    let first = alice.send_to(&["bob"], "Before the phone", "Sent to one device.");
    let conv = first["conversation"].as_str().unwrap().to_owned();
    bob_laptop.sync();

    // A second device for bob, enrolled with a new invite code and
    // approved from the laptop by the link code it shows.
    let bob_phone = server.second_device("bob", &bob_laptop);
    let devices = bob_phone.json(&["devices"]);
    assert_eq!(devices.as_array().unwrap().len(), 2);
    assert_eq!(
        devices
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["this_device"] == true)
            .count(),
        1
    );

    // Approving it, the laptop added the phone to bob's conversations.
    assert_eq!(bob_laptop.sync()["devices_added"], 0);
    assert_eq!(bob_phone.sync()["joined"], 1);

    let list = alice.json(&["conversation", "list"]);
    alice.sync();
    let list_after = alice.json(&["conversation", "list"]);
    assert_eq!(list[0]["members"][addr("bob")].as_array().unwrap().len(), 1);
    assert_eq!(
        list_after[0]["members"][addr("bob")]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Letters to bob now reach both devices, and each device's own letters
    // reach the other.
    let second = alice.send_to(&["bob"], "After the phone", "Sent to both devices.");
    assert_eq!(second["conversation"], conv.as_str());
    assert_eq!(bob_phone.sync()["new_letters"], 1);
    assert_eq!(bob_laptop.sync()["new_letters"], 1);
    assert_eq!(bob_phone.subjects(), vec!["After the phone"]);

    bob_phone.ok(&[
        "reply",
        &bob_phone.inbox()[0]["id"].to_string(),
        "--body",
        "From my phone.",
    ]);
    assert_eq!(alice.sync()["new_letters"], 1);
    assert_eq!(bob_laptop.sync()["new_letters"], 1);
    let from_phone = bob_laptop.inbox().last().unwrap().clone();
    assert_eq!(from_phone["from"], addr("bob"));

    // A new conversation with bob includes both devices from the start.
    let c2 = &alice.create("Both", &["bob"]);
    alice.send_in(c2, "To both at once", "Hi.");
    assert_eq!(bob_phone.sync()["new_letters"], 1);
    assert_eq!(bob_laptop.sync()["new_letters"], 1);
}
