//! Devices with fixed keys and the device lists they sign: the
//! `directory_entry` fuzz seeds (`fuzz_seeds.rs`) and the identity property
//! tests (`identity_props.rs`) start from the same real lists.
// Each test file uses only part of these helpers.
#![allow(dead_code)]

use ed25519_dalek::{Signer as _, SigningKey};
use valise_directory::{
    Approval, DeviceEntry, DeviceList, DeviceStatus, Identity, Revocation, SignatureKey,
    approval_message, revocation_message,
};
use valise_proto::{DeviceId, UserId};

/// A device: its id and its MLS signature key.
pub struct Dev {
    pub id: DeviceId,
    pub key: SigningKey,
}

impl Dev {
    /// Device `n`: id `[n; 8]`, key from the seed `[n; 32]`.
    pub fn new(n: u8) -> Self {
        Self {
            id: DeviceId::from_bytes([n; 8]),
            key: SigningKey::from_bytes(&[n; 32]),
        }
    }

    pub fn public(&self) -> Vec<u8> {
        self.key.verifying_key().to_bytes().to_vec()
    }

    /// Its entry as enrolled (`number`, under `generation`), unsigned.
    pub fn entry(&self, number: u64, generation: u32) -> DeviceEntry {
        DeviceEntry::new(self.id, self.public(), number, generation)
    }

    /// The identity it founds, reset `generation - 1` times.
    pub fn founds(&self, generation: u32) -> Identity {
        Identity {
            key: SignatureKey(self.public()),
            generation,
        }
    }
}

/// Signs approvals and revocations of one user's devices under one identity.
pub struct Signer<'a> {
    pub user: &'a UserId,
    pub identity: Identity,
}

impl Signer<'_> {
    /// Gives `e` an approval naming `by`, signed with `key` (`by`'s own key
    /// for a real approval).
    pub fn approve(&self, e: &mut DeviceEntry, by: DeviceId, key: &SigningKey) {
        let m = approval_message(
            self.user,
            &self.identity,
            &e.device,
            e.signature_key.as_bytes(),
            e.number,
        );
        e.approval = Some(Approval {
            by,
            signature: SignatureKey(key.sign(&m).to_bytes().to_vec()),
        });
    }

    /// Revokes `e` at `at`: by the server (`None`), or naming a device and
    /// signed with a key (the device's own for a real revocation).
    pub fn revoke(&self, e: &mut DeviceEntry, at: u64, by: Option<(DeviceId, &SigningKey)>) {
        let m = revocation_message(
            self.user,
            &self.identity,
            &e.device,
            e.signature_key.as_bytes(),
            at,
        );
        e.revocation = Some(Revocation {
            at,
            by: by.map(|(id, _)| id),
            signature: by.map(|(_, key)| SignatureKey(key.sign(&m).to_bytes().to_vec())),
        });
    }

    pub fn list(&self, devices: Vec<DeviceEntry>) -> DeviceList {
        DeviceList::new(self.identity.clone(), devices).unwrap()
    }
}

/// A real list of a user, with the status each device must get.
pub struct SignedList {
    pub name: &'static str,
    pub list: DeviceList,
    pub statuses: Vec<(DeviceId, DeviceStatus)>,
}

/// Real lists of `user`: a founder alone, devices of every status, a reset.
pub fn signed_lists(user: &UserId) -> Vec<SignedList> {
    use DeviceStatus::{Approved, Pending, Revoked};
    let [a, b, c, d, x, t, e, n, m] = [1, 2, 3, 4, 5, 6, 7, 8, 9].map(Dev::new);

    let founder = DeviceList::founded_by(a.id, a.public()).unwrap();

    // a founds; b and c approved in a chain; d approved, then revoked by b
    // when the devices were numbered below 5; x enrolled by the server
    // alone; t approved by d after d's revocation (a thief's approval);
    // e approved, then revoked by the server.
    let s = Signer {
        user,
        identity: a.founds(1),
    };
    let (ea, mut eb, mut ec, mut ed) = (a.entry(0, 1), b.entry(1, 1), c.entry(2, 1), d.entry(3, 1));
    let (ex, mut et, mut ee) = (x.entry(4, 1), t.entry(5, 1), e.entry(6, 1));
    s.approve(&mut eb, a.id, &a.key);
    s.approve(&mut ec, b.id, &b.key);
    s.approve(&mut ed, a.id, &a.key);
    s.revoke(&mut ed, 5, Some((b.id, &b.key)));
    s.approve(&mut et, d.id, &d.key);
    s.approve(&mut ee, c.id, &c.key);
    s.revoke(&mut ee, 7, None);
    let devices = s.list(vec![ea, eb, ec, ed, ex, et, ee]);

    // a and b of generation 1; n founds generation 2 and approves m.
    let old = Signer {
        user,
        identity: a.founds(1),
    };
    let new = Signer {
        user,
        identity: n.founds(2),
    };
    let mut eb = b.entry(1, 1);
    old.approve(&mut eb, a.id, &a.key);
    let mut em = m.entry(3, 2);
    new.approve(&mut em, n.id, &n.key);
    let reset = new.list(vec![a.entry(0, 1), eb, n.entry(2, 2), em]);

    let server = Revoked { by: None };
    let signed = |name, list, statuses| SignedList {
        name,
        list,
        statuses,
    };
    vec![
        signed("founder", founder, vec![(a.id, Approved { by: None })]),
        signed(
            "devices",
            devices,
            vec![
                (a.id, Approved { by: None }),
                (b.id, Approved { by: Some(a.id) }),
                (c.id, Approved { by: Some(b.id) }),
                (d.id, Revoked { by: Some(b.id) }),
                (x.id, Pending),
                (t.id, Pending),
                (e.id, server),
            ],
        ),
        signed(
            "reset",
            reset,
            vec![
                (a.id, server),
                (b.id, server),
                (n.id, Approved { by: None }),
                (m.id, Approved { by: Some(n.id) }),
            ],
        ),
    ]
}
