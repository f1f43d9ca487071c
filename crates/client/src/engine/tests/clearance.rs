//! A marked letter is judged on directory entries proven during the
//! current read of the inbox: an older entry may predate an accreditation
//! published since (`engine/accreditation.rs`, `Engine::clearance`).

use super::*;
use valise_proto::Label;
use valise_proto::attestation::{Accreditation, AuthoritySecret};

struct Officer {
    key: AuthoritySecret,
    label: Label,
}

impl Officer {
    fn new(devs: &[&Dev]) -> Self {
        let key = AuthoritySecret::generate();
        for d in devs {
            let named = key.public().to_string();
            d.engine.pin_authority(Some(&named), None).unwrap();
        }
        Self {
            key,
            label: Label::parse("EU RESTRICTED").unwrap(),
        }
    }

    /// `dev`'s own entry, carrying an accreditation for the label.
    fn accredited(&self, dev: &Dev) -> DeviceList {
        let now = i64::try_from(dev.engine.clock.now_s()).unwrap();
        let at = Accreditation {
            device: None,
            issued_at_s: now - 60,
            label: self.label.clone(),
            not_after_s: now + 86_400,
            user: dev.me().user.clone(),
        }
        .sign(&self.key)
        .unwrap();
        dev.entry().with_attestations(vec![at]).unwrap()
    }

    fn marked(&self, subject: &str) -> Letter {
        Letter {
            marking: Some(self.label.clone()),
            ..letter(subject)
        }
    }
}

#[test]
fn a_marked_letter_is_judged_on_entries_proven_during_this_read() {
    let alice = Dev::new("alice");
    let bob = Dev::new("bob");
    let so = Officer::new(&[&alice, &bob]);
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    // The officer accredits both; alice's device reads both new entries,
    // bob's reads none of them before alice's letter comes.
    for d in [&alice, &bob] {
        alice.learn(&d.me().user, &so.accredited(d));
    }
    let sealed = alice.write_letter(&conv, so.marked("Démarche"));
    bob.engine.begin_inbox_read();
    let (entry, out) = bob.take_entry(&conv, EntryKind::Application, &alice, &sealed);
    let Ok(Applied::StaleClearance(users)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(users, [alice.me().user.clone(), bob.me().user.clone()]);
    assert!(bob.subjects().is_empty() && bob.alerts().is_empty());

    // Undone, so it opens again once the entries are read.
    for d in [&alice, &bob] {
        bob.learn(&d.me().user, &so.accredited(d));
    }
    let out = bob.engine.apply_entry(&entry);
    assert!(matches!(out, Ok(Applied::Letter)), "{out:?}");
    assert_eq!(bob.subjects(), ["Démarche"]);
    assert!(bob.alerts().is_empty(), "{:?}", bob.alerts());
}

#[test]
fn an_entry_proven_this_read_that_lacks_the_accreditation_refuses() {
    let alice = Dev::new("alice");
    let carol = Dev::new("carol");
    let so = Officer::new(&[&alice, &carol]);
    Dev::introduce(&[&alice, &carol]);
    let conv = conversation(&alice, &[&carol]);
    alice.learn(&alice.me().user, &so.accredited(&alice));
    carol.learn(&alice.me().user, &so.accredited(&alice));
    // A modified client: alice's device seals past its own check.
    alice.learn(&carol.me().user, &so.accredited(&carol));
    let sealed = alice.write_letter(&conv, so.marked("Note"));

    carol.engine.begin_inbox_read();
    let (entry, out) = carol.take_entry(&conv, EntryKind::Application, &alice, &sealed);
    assert!(matches!(out, Ok(Applied::StaleClearance(_))), "{out:?}");
    // Read again (or not readable now): still not accredited.
    carol.engine.proven_this_read(&carol.me().user);
    let out = carol.engine.apply_entry(&entry);
    assert!(matches!(out, Ok(Applied::Spilled)), "{out:?}");
    assert!(carol.subjects().is_empty());
    assert_eq!(carol.alerts(), ["spillage"]);
}
