//! What each fuzz target of valise-proto's decoders checks, shared by the
//! targets (`fuzz_targets/`, through `lib.rs`) and by valise-proto's seed
//! replay test (`crates/proto/tests/fuzz_seeds.rs`, which includes this
//! file), so that the seeds under `fuzz/seeds/<target>/` run through
//! exactly the same decoders and properties on every `cargo test`.
//!
//! Each check feeds outside bytes to every decoder of its kind, asserts
//! the round-trip properties of what decodes, and returns how many decoders
//! accepted the input (the replay test wants a valid seed to be accepted).
//! A panic is a finding.
#![forbid(unsafe_code)]

use serde::Serialize;
use serde::de::DeserializeOwned;
use valise_proto::api::{
    ApproveDevice, ChallengeRequest, ChallengeResponse, ClaimRequest, ClaimResponse,
    ConversationState, CreateConversation, DeviceList, DirectoryAudit, DirectoryProof,
    DirectoryRoot, EnrollRequest, EnrollResponse, GroupInfoState, KeyPackageStock,
    KeyPackageUpload, RevokeDevice, SubmitCommit, TokenRequest, TokenResponse,
};
use valise_proto::letter::bucket;
use valise_proto::wire;
use valise_proto::{
    ConversationId, DeviceAddress, DeviceId, MessageId, Payload, Problem, ThreadId, UserId,
};

/// Every target, by name: `fuzz_targets/<name>.rs`, `fuzz/seeds/<name>/`.
pub const TARGETS: &[&str] = &[
    "letter_record",
    "api_requests",
    "api_responses",
    "inbox_page",
    "letters",
    "ids",
    "checkpoint",
];

/// Targets whose checks need valise-directory (`directory.rs`): valise-proto
/// cannot depend on it, so `crates/directory/tests/fuzz_seeds.rs` replays
/// their seeds instead.
pub const REPLAYED_BY_DIRECTORY: &[&str] = &["directory_proofs", "directory_entry"];

/// Targets of the mail bridge (`bridge.rs`), whose seeds
/// `crates/bridge/tests/fuzz_seeds.rs` replays.
pub const REPLAYED_BY_BRIDGE: &[&str] = &["bridge_submission"];

/// Runs the check of target `name`; `None` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> Option<usize> {
    Some(match name {
        "letter_record" => letter_record(data),
        "api_requests" => api_requests(data),
        "api_responses" => api_responses(data),
        "inbox_page" => inbox_page(data),
        "letters" => letters(data),
        "ids" => ids(data),
        "checkpoint" => checkpoint(data),
        _ => return None,
    })
}

/// The letter record: the plaintext of an MLS application message, which a
/// member of the conversation controls completely. The bytes are tried as
/// they are, and padded as a sender would pad them (so that the fuzzer
/// reaches the CBOR decoder without having to find the padding).
pub fn letter_record(data: &[u8]) -> usize {
    let mut padded = data.to_vec();
    padded.push(0x80);
    padded.resize(bucket(data.len()), 0);
    [data, &padded]
        .into_iter()
        .filter(|bytes| match Payload::decode(bytes) {
            Ok(p) => {
                // What decodes re-encodes (same bucket rules) to the same value.
                let again = p.encode().expect("a decoded record re-encodes");
                assert_eq!(again.len(), bucket(again.len() - 1), "padded to a bucket");
                assert_eq!(Payload::decode(&again).expect("round trip"), p);
                true
            }
            Err(_) => false,
        })
        .count()
}

/// JSON bodies the server parses from any enrolled (or not yet enrolled)
/// client.
pub fn api_requests(data: &[u8]) -> usize {
    [
        json::<EnrollRequest>(data),
        json::<ChallengeRequest>(data),
        json::<TokenRequest>(data),
        json::<KeyPackageUpload>(data),
        json::<ClaimRequest>(data),
        json::<CreateConversation>(data),
        json::<SubmitCommit>(data),
        json::<ApproveDevice>(data),
        json::<RevokeDevice>(data),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

/// JSON bodies a client parses from its server (which may be hostile),
/// problem details included.
pub fn api_responses(data: &[u8]) -> usize {
    [
        json::<EnrollResponse>(data),
        json::<ChallengeResponse>(data),
        json::<TokenResponse>(data),
        json::<KeyPackageStock>(data),
        json::<ClaimResponse>(data),
        json::<DeviceList>(data),
        json::<ConversationState>(data),
        json::<GroupInfoState>(data),
        // The envelopes only: the root and proof bytes inside are
        // valise-directory's to decode.
        json::<DirectoryRoot>(data),
        json::<DirectoryProof>(data),
        json::<DirectoryAudit>(data),
        json::<Problem>(data),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

/// The inbox page (binary, [`wire`]): the largest body a client reads,
/// every entry chosen by the server. What decodes encodes to bytes that
/// decode to the same page.
pub fn inbox_page(data: &[u8]) -> usize {
    let Ok(page) = wire::decode_page(data) else {
        return 0;
    };
    let again =
        wire::decode_page(&wire::encode_page(page.clone())).expect("an encoded page decodes");
    assert_eq!(again, page, "inbox page round trip");
    1
}

/// The binary bodies of `POST /v1/letters`: the batch the server reads
/// from any approved device, and the outcomes a client reads from its
/// server. The first byte is the count the request's header announces.
pub fn letters(data: &[u8]) -> usize {
    let Some((&announced, body)) = data.split_first() else {
        return 0;
    };
    let announced = usize::from(announced);
    let mut accepted = 0;
    if let Ok(batch) = wire::decode_letters(body, announced) {
        assert_eq!(batch.len(), announced);
        let again = wire::decode_letters(&wire::encode_letters(&batch), announced)
            .expect("an encoded batch decodes");
        assert_eq!(again, batch, "letter batch round trip");
        accepted += 1;
    }
    if let Ok(outcomes) = wire::decode_outcomes(body, announced) {
        assert_eq!(outcomes.len(), announced);
        let again = wire::decode_outcomes(&wire::encode_outcomes(&outcomes), announced)
            .expect("encoded outcomes decode");
        assert_eq!(again, outcomes, "outcomes round trip");
        accepted += 1;
    }
    accepted
}

/// Identifiers as they arrive in paths, arguments, JSON strings and MLS
/// credentials: the bytes as a credential identity and as raw id bytes,
/// their UTF-8 text through every text parser.
pub fn ids(data: &[u8]) -> usize {
    let mut accepted = 0;
    if let Ok(a) = DeviceAddress::from_credential_identity(data) {
        // The identity we would write for it reads back as the same device.
        let again = DeviceAddress::from_credential_identity(&a.credential_identity())
            .expect("a written identity parses");
        assert_eq!(again, a);
        accepted += 1;
    }
    accepted += usize::from(DeviceId::from_slice(data).is_ok());
    accepted += usize::from(ConversationId::from_slice(data).is_ok());
    let Ok(s) = std::str::from_utf8(data) else {
        return accepted;
    };
    if let Ok(u) = UserId::parse(s) {
        let text = u.to_string();
        assert_eq!(text, text.to_ascii_lowercase(), "user ids are lowercase");
        assert_eq!(format!("{}@{}", u.local(), u.domain()), text);
        assert_eq!(UserId::parse(&text).expect("a printed user id parses"), u);
        accepted += 1;
    }
    if let Ok(a) = DeviceAddress::parse(s) {
        assert_eq!(DeviceAddress::parse(&a.to_string()).expect("round trip"), a);
        accepted += 1;
    }
    accepted += hex::<DeviceId>(s, DeviceId::parse, DeviceId::to_string);
    accepted += hex::<ConversationId>(s, ConversationId::parse, ConversationId::to_string);
    accepted += hex::<MessageId>(s, MessageId::parse, MessageId::to_string);
    accepted += hex::<ThreadId>(s, ThreadId::parse, ThreadId::to_string);
    accepted
}

/// The audit log's outside text (issue 10): a signed checkpoint note as
/// `GET /v1/audit/checkpoint` serves it, its checkpoint body, and an audit
/// entry as `GET /v1/audit/account` serves it. What parses prints back to
/// the same bytes (one spelling each); a note signed by anyone but the
/// fuzz key never verifies.
pub fn checkpoint(data: &[u8]) -> usize {
    use valise_proto::audit::Entry;
    use valise_proto::tlog::{Checkpoint, CheckpointSigner, SignedCheckpoint};
    let mut accepted = 0;
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(entry.encode(), data, "entries have one spelling");
        accepted += 1;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return accepted;
    };
    if let Ok(c) = Checkpoint::parse(text) {
        assert_eq!(c.to_text(), text, "checkpoints have one spelling");
        accepted += 1;
    }
    if let Ok(signed) = SignedCheckpoint::parse(text) {
        let claimed = signed.claimed().clone();
        // Re-signed by a key of the same origin, it verifies and reads the same.
        let key = CheckpointSigner::from_seed(claimed.origin(), &[9; 32])
            .expect("a parsed origin is a key name");
        let again = key.sign(claimed.size(), *claimed.root()).expect("signs");
        let reparsed = SignedCheckpoint::parse(again.note()).expect("a signed note parses");
        assert_eq!(reparsed.claimed(), &claimed);
        assert!(reparsed.verify(key.public_key()).is_ok());
        // The seeds are signed by the fuzz key [7; 32]: a mutation that still
        // verifies must say what the seed said.
        let fuzz_key = CheckpointSigner::from_seed(claimed.origin(), &[7; 32]).expect("key");
        if let Ok(v) = signed.verify(fuzz_key.public_key()) {
            assert_eq!(v.checkpoint(), &claimed);
        }
        accepted += 1;
    }
    accepted
}

fn hex<T: PartialEq + std::fmt::Debug>(
    s: &str,
    parse: fn(&str) -> Result<T, valise_proto::IdError>,
    print: fn(&T) -> String,
) -> usize {
    match parse(s) {
        Ok(id) => {
            let text = print(&id);
            assert_eq!(text, text.to_ascii_lowercase(), "hex ids print lowercase");
            assert_eq!(text, s.trim().to_ascii_lowercase());
            assert_eq!(parse(&text).expect("a printed id parses"), id);
            1
        }
        Err(_) => 0,
    }
}

/// Decodes a JSON body as `T`; what decodes encodes, and its encoding
/// decodes to a value that encodes the same (the encoding is stable).
fn json<T: Serialize + DeserializeOwned>(data: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return false;
    };
    let once = serde_json::to_value(&value).expect("a decoded body encodes");
    let again: T = serde_json::from_value(once.clone()).expect("an encoded body decodes");
    assert_eq!(
        serde_json::to_value(&again).expect("re-encodes"),
        once,
        "JSON round trip"
    );
    true
}
