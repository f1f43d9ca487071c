//! The fuzz seeds (`fuzz/seeds/<target>/`) replayed on every `cargo test`,
//! through the fuzz targets' own checks (`fuzz/src/proto.rs`, included here):
//! every decoder of outside bytes, no panic, the round-trip properties. A
//! valid seed must still be accepted (a seed named `bad-*` is there for an
//! error path and need not be). Generated corpora (`fuzz/corpus/<target>/`,
//! not committed) are replayed too when present, for no panic only; crash
//! inputs (`fuzz/artifacts/`) are not: each finding gets its own test. The
//! targets that need valise-directory are replayed by its own tests
//! (`crates/directory/tests/fuzz_seeds.rs`). Most seeds are written by hand;
//! `write_seeds` writes those that need an encoder.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../fuzz/src/proto.rs"]
mod checks;
mod seed_replay;

use seed_replay::{assert_every_target_is_fuzzed, files, fuzz_dir, replay_seeds};
use valise_proto::letter::{EpochCount, Letter, RootBytes};
use valise_proto::{
    AlertReport, ConversationId, DeviceAddress, DeviceId, MessageId, Payload, Sha256Digest,
    ThreadId, UserId,
};

#[test]
fn every_target_has_seeds_and_a_fuzz_target() {
    assert_every_target_is_fuzzed(checks::TARGETS);
    // And no seed directory for a target that does not exist.
    for dir in std::fs::read_dir(fuzz_dir().join("seeds")).unwrap() {
        let name = dir.unwrap().file_name().into_string().unwrap();
        assert!(
            checks::TARGETS.contains(&name.as_str())
                || checks::REPLAYED_BY_DIRECTORY.contains(&name.as_str())
                || checks::REPLAYED_BY_BRIDGE.contains(&name.as_str()),
            "fuzz/seeds/{name}/ names no target"
        );
    }
}

#[test]
fn seeds_decode_and_round_trip() {
    replay_seeds(checks::TARGETS, checks::run);
}

#[test]
fn generated_corpora_do_not_panic() {
    for target in checks::TARGETS {
        for input in files(&fuzz_dir().join("corpus").join(target)) {
            let data = std::fs::read(&input).unwrap();
            // A panic names the input through the test's output.
            eprintln!("replaying {}", input.display());
            checks::run(target, &data).unwrap();
        }
    }
}

#[test]
fn checks_catch_what_they_promise() {
    // The properties are not vacuous: a good record is accepted through both
    // paths, a broken one through neither.
    let letter = std::fs::read(fuzz_dir().join("seeds/letter_record/letter.bin")).unwrap();
    assert_eq!(checks::letter_record(&letter), 1);
    let mut broken = letter.clone();
    broken[3] ^= 0xff;
    assert_eq!(checks::letter_record(&broken[..broken.len() - 1]), 0);
    assert_eq!(checks::run("no_such_target", b""), None);
    // Each decoder that should recognise an id does, and no other.
    assert_eq!(checks::ids(b"alice@mfa.example"), 1);
    // As text and as a credential identity.
    assert_eq!(checks::ids(b"alice@mfa.example/0011223344556677"), 2);
    // A device id as text; 16 raw bytes are also a conversation id.
    assert_eq!(checks::ids(b"0011223344556677"), 2);
    assert_eq!(checks::ids(&[7; 8]), 1);
    // 32 hex digits: a conversation, message and thread id alike.
    assert_eq!(checks::ids(b"00112233445566778899aabbccddeeff"), 3);
    // A policy record is accepted as written, not with its salt cut short.
    let record = std::fs::read(fuzz_dir().join("seeds/policy_record/tlp-amber.bin")).unwrap();
    assert_eq!(checks::policy_record(&record), 1);
    assert_eq!(checks::policy_record(&record[..record.len() - 1]), 0);
}

/// Length of a signed directory root (`valise_directory::root::SIGNED_ROOT_LEN`,
/// which this crate cannot name).
const SIGNED_ROOT_LEN: usize = 168;

/// A letter carrying its sender's directory root: a real one, the root
/// that the `directory_proofs` lookup seed starts with.
fn letter_with_root() -> Payload {
    let lookup = std::fs::read(fuzz_dir().join("seeds/directory_proofs/lookup.bin")).unwrap();
    Payload::Letter(Letter {
        message_id: MessageId::from_bytes([4; 16]),
        subject: "Rendez-vous".into(),
        body: "Thursday at ten, at the consulate.".into(),
        to: vec![UserId::parse("bob@mfa.example").unwrap()],
        thread: ThreadId::from_bytes([5; 16]),
        in_reply_to: None,
        sent_at_ms: 1_700_000_000_000,
        marking: None,
        seq: 2,
        prev: Some(EpochCount { epoch: 1, last: 3 }),
        root: Some(RootBytes(lookup[..SIGNED_ROOT_LEN].to_vec())),
        attachments: vec![],
        policy: None,
    })
}

/// The delivery bodies of the binary seeds: a page with a Welcome and a
/// letter, an empty page, a batch of two letters and their outcomes.
fn delivery_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use valise_proto::wire::{self, Entry, EntryKind, InboxPage, Outcome, OutgoingLetter};
    let conversation = ConversationId::from_bytes([1; 16]);
    let sender = DeviceAddress::parse("alice@mfa.example/0011223344556677").unwrap();
    let page = InboxPage {
        entries: vec![
            Entry {
                seq: 7,
                kind: EntryKind::Welcome,
                conversation,
                sender: sender.clone(),
                message: vec![0, 1, 0, 3, 9, 9],
                ratchet_tree: Some(vec![1, 2, 3]),
            },
            Entry {
                seq: 9,
                kind: EntryKind::Application,
                conversation,
                sender,
                message: vec![0, 1, 0, 2, 7],
                ratchet_tree: None,
            },
        ],
        more: true,
        pending: Some(40),
        cursor: vec![
            0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ],
    };
    let empty = InboxPage {
        entries: vec![],
        more: false,
        pending: None,
        cursor: vec![],
    };
    let batch = [
        OutgoingLetter {
            conversation,
            client_msg_id: MessageId::from_bytes([2; 16]),
            message: vec![0, 1, 0, 2, 1],
        },
        OutgoingLetter {
            conversation: ConversationId::from_bytes([3; 16]),
            client_msg_id: MessageId::from_bytes([4; 16]),
            message: vec![0, 1, 0, 2, 2],
        },
    ];
    let outcomes = [
        Outcome::Accepted {
            recipients: 9,
            seq: 10,
        },
        Outcome::Refused {
            code: valise_proto::ErrorCode::NotMember,
            message: "not a member".into(),
        },
    ];
    let counted = |body: Vec<u8>| [vec![2], body].concat();
    vec![
        ("inbox_page/page.bin", wire::encode_page(page)),
        ("inbox_page/empty.bin", wire::encode_page(empty)),
        ("letters/batch.bin", counted(wire::encode_letters(&batch))),
        (
            "letters/outcomes.bin",
            counted(wire::encode_outcomes(&outcomes)),
        ),
    ]
}

/// Writes the seeds made with an encoder (run by hand; the committed ones
/// are replayed, and must be what the encoders write today).
#[test]
#[ignore = "writes the binary seeds under fuzz/seeds/"]
fn write_seeds() {
    let bytes = letter_with_root().encode().unwrap();
    std::fs::write(
        fuzz_dir().join("seeds/letter_record/letter-root.bin"),
        bytes,
    )
    .unwrap();
    for (path, bytes) in delivery_seeds()
        .into_iter()
        .chain(blob_seeds())
        .chain(checkpoint_seeds())
        .chain(report_seeds())
        .chain(marking_seeds())
    {
        std::fs::write(fuzz_dir().join("seeds").join(path), bytes).unwrap();
    }
}

/// Blobs of 1,000 and 70,000 bytes (one chunk, two) as the
/// `chunk_stream` target reads them: the size, then the blob, sealed under
/// the target's key.
fn blob_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use valise_proto::blob::{BlobKey, Sealer};
    let seal = |size: u32| {
        let key = BlobKey::from_bytes(checks::CHUNK_STREAM_KEY);
        let mut s = Sealer::new(&key, &[1; 7], u64::from(size)).unwrap();
        let mut out = size.to_be_bytes().to_vec();
        out.extend(s.header());
        for _ in 0..s.layout().chunks {
            let n = s.next_file_bytes();
            out.extend(s.seal_next(&vec![0x61; n]).unwrap());
        }
        out
    };
    vec![
        ("chunk_stream/one-chunk.bin", seal(1000)),
        ("chunk_stream/two-chunks.bin", seal(70_000)),
    ]
}

/// The audit log's seeds: a checkpoint signed by the fuzz key (see
/// `checks::checkpoint`), its body alone, an entry, and a note whose
/// signature line lost its em dash.
fn checkpoint_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use valise_proto::audit::{Action, Actor, Detail, Entry, Salt, Subject};
    use valise_proto::tlog::CheckpointSigner;
    let signer = CheckpointSigner::from_seed("mfa.example/valise-audit", &[7; 32]).unwrap();
    let signed = signer.sign(5, [3; 32]).unwrap().note().to_owned();
    let body = signed.split_once("\n\n").unwrap().0.to_owned() + "\n";
    let entry = Entry {
        index: 4,
        time_ms: 1_700_000_000_000,
        actor: Actor::Device(DeviceAddress::parse("alice@mfa.example/0011223344556677").unwrap()),
        action: Action::DeviceRevoked,
        subject: Some(Subject::Device(
            DeviceAddress::parse("alice@mfa.example/8899aabbccddeeff").unwrap(),
        )),
        from: Some("192.0.2.7".parse().unwrap()),
        details: [("count".to_owned(), Detail::Count(1))].into(),
        salt: Salt([0x5c; 16]),
    };
    vec![
        ("checkpoint/signed.note", signed.clone().into_bytes()),
        ("checkpoint/body.txt", body.into_bytes()),
        ("checkpoint/entry.json", entry.encode()),
        (
            "checkpoint/bad-no-dash.note",
            signed.replace('\u{2014}', "-").into_bytes(),
        ),
    ]
}

/// An alert report for the security desk (issue 10), and one whose kind no
/// honest device writes (refused on receipt; unpadded CBOR, so that the
/// check's padding path reaches the report's own check).
fn report_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let report = |kind: &str| {
        Payload::Alert(AlertReport {
            message_id: MessageId::from_bytes([6; 16]),
            kind: kind.into(),
            at_ms: 1_700_000_000_000,
            conversation: Some(ConversationId::from_bytes([1; 16])),
            detail: "a message failed verification".into(),
            evidence_sha256: vec![Sha256Digest([0xab; 32])],
            suppressed: 3,
            seq: 2,
            prev: Some(EpochCount { epoch: 1, last: 1 }),
            root: None,
        })
    };
    let record = ciborium::Value::Map(vec![
        (
            ciborium::Value::Text("v".into()),
            ciborium::Value::Integer(1.into()),
        ),
        (
            ciborium::Value::Text("p".into()),
            ciborium::Value::serialized(&report("Refused Message")).unwrap(),
        ),
    ]);
    let mut bad = Vec::new();
    ciborium::into_writer(&record, &mut bad).unwrap();
    vec![
        (
            "letter_record/alert-report.bin",
            report("refused_message").encode().unwrap(),
        ),
        ("letter_record/bad-alert-kind.cbor", bad),
    ]
}

#[test]
fn report_seeds_are_what_the_encoders_write() {
    for (path, bytes) in report_seeds() {
        let stored = std::fs::read(fuzz_dir().join("seeds").join(path)).unwrap();
        assert_eq!(stored, bytes, "{path} (run write_seeds)");
    }
    let seed = std::fs::read(fuzz_dir().join("seeds/letter_record/alert-report.bin")).unwrap();
    assert!(matches!(Payload::decode(&seed), Ok(Payload::Alert(_))));
}

#[test]
fn delivery_seeds_are_what_the_encoders_write() {
    for (path, bytes) in delivery_seeds().into_iter().chain(checkpoint_seeds()) {
        let stored = std::fs::read(fuzz_dir().join("seeds").join(path)).unwrap();
        assert_eq!(stored, bytes, "{path} (run write_seeds)");
    }
    // The batch seed reads as a batch, the outcomes seed as outcomes.
    let seed = |p: &str| std::fs::read(fuzz_dir().join("seeds").join(p)).unwrap();
    assert_eq!(checks::letters(&seed("letters/batch.bin")), 1);
    assert_eq!(checks::letters(&seed("letters/outcomes.bin")), 1);
}

/// The seeds of issue 8's bodies and fields are accepted by the decoder
/// they are for, and carry the new fields.
#[test]
fn device_approval_seeds_reach_their_decoders() {
    let seed = |path: &str| std::fs::read(fuzz_dir().join("seeds").join(path)).unwrap();
    for body in ["approve.json", "revoke.json", "key_packages_replace.json"] {
        let bytes = seed(&format!("api_requests/{body}"));
        assert_eq!(checks::api_requests(&bytes), 1, "{body}");
    }
    let upload: valise_proto::api::KeyPackageUpload =
        serde_json::from_slice(&seed("api_requests/key_packages_replace.json")).unwrap();
    assert!(upload.replace);
    let devices: valise_proto::api::DeviceList =
        serde_json::from_slice(&seed("api_responses/devices.json")).unwrap();
    assert_eq!(devices.devices[0].status, "approved");
    assert_eq!(
        checks::api_responses(&seed("api_responses/devices.json")),
        1
    );
    let letter = seed("letter_record/letter-root.bin");
    assert_eq!(checks::letter_record(&letter), 1);
    let Payload::Letter(l) = Payload::decode(&letter).unwrap() else {
        panic!("letter-root.bin is not a letter");
    };
    assert_eq!(l.root.map(|r| r.0.len()), Some(SIGNED_ROOT_LEN));
}

/// Hex ids have one spelling: `from_str_radix` alone would take a leading
/// `+` (found by fuzzing `ids`).
#[test]
fn hex_ids_have_one_spelling() {
    for s in ["+000561110485501", "+0+1+2+3+4+5+6+7"] {
        assert!(DeviceId::parse(s).is_err(), "{s} parses as a device id");
    }
    assert!(DeviceAddress::from_credential_identity(b"bob@mfa.example/+000561110485501").is_err());
    assert!(ConversationId::parse(&format!("+{}", "0".repeat(31))).is_err());
    // The fuzz check itself (printed form == input) passes on the input.
    checks::ids(b"+000561110485501");
}

/// Issue 11: a label in CBOR and as text, one with its REL TO unsorted (not
/// its one encoding), and an attestation signed by the fuzz key.
fn marking_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use valise_proto::Label;
    use valise_proto::attestation::Accreditation;
    let label = Label::parse("EU RESTRICTED//CRYPTO//REL TO CZE, FRA").unwrap();
    let unsorted = ciborium::Value::Map(vec![
        ("l".into(), "RESTRICTED".into()),
        ("p".into(), "EU".into()),
        (
            "r".into(),
            ciborium::Value::Array(vec!["FRA".into(), "CZE".into()]),
        ),
    ]);
    let mut bad = Vec::new();
    ciborium::into_writer(&unsorted, &mut bad).unwrap();
    let attestation = Accreditation {
        device: Some(DeviceId::from_bytes([1; 8])),
        issued_at_s: 1_800_000_000,
        label: label.clone(),
        not_after_s: 1_900_000_000,
        user: UserId::parse("alice@mfa.example").unwrap(),
    }
    .sign(&checks::fuzz_authority())
    .unwrap();
    let mut truncated = attestation.clone();
    truncated.pop();
    vec![
        ("label/restricted.cbor", label.to_cbor().unwrap()),
        ("label/text.txt", label.to_string().into_bytes()),
        ("label/bad-unsorted.cbor", bad),
        ("attestation/restricted.cose", attestation),
        ("attestation/bad-truncated.cose", truncated),
    ]
}

#[test]
fn marking_seeds_are_what_the_encoders_write() {
    for (path, bytes) in marking_seeds() {
        assert_eq!(
            std::fs::read(fuzz_dir().join("seeds").join(path)).unwrap(),
            bytes,
            "{path}: run write_seeds"
        );
    }
}
