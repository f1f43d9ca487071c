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
    "label",
    "attestation",
    "blob_header",
    "chunk_stream",
    "blob_api",
    "policy_record",
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
        "label" => label(data),
        "attestation" => attestation(data),
        "blob_header" => blob_header(data),
        "chunk_stream" => chunk_stream(data),
        "blob_api" => blob_api(data),
        "policy_record" => policy_record(data),
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

/// A handling label (issue 11): in its canonical CBOR (inside a letter,
/// which a member controls, and inside attestations) and as a user writes
/// it. What decodes has one encoding, reads back the same, and dominates
/// itself.
pub fn label(data: &[u8]) -> usize {
    use valise_proto::Label;
    let mut accepted = 0;
    if let Ok(l) = Label::from_cbor(data) {
        assert_eq!(l.to_cbor().expect("a label encodes"), data, "one encoding");
        assert!(l.dominates(&l));
        accepted += 1;
    }
    if let Ok(l) = std::str::from_utf8(data)
        .map(Label::parse)
        .unwrap_or(Err(valise_proto::MarkingError::Unknown))
    {
        assert_eq!(Label::parse(&l.to_string()).expect("shown text parses"), l);
        accepted += 1;
    }
    accepted
}

/// The fuzz authority key (seed `[7; 32]`) the attestation seeds are
/// signed with.
pub fn fuzz_authority() -> valise_proto::attestation::AuthoritySecret {
    let text = format!("valise-authority-key-v1\n{}\n", "07".repeat(32));
    valise_proto::attestation::AuthoritySecret::from_file_text(&text).expect("a key file")
}

/// An accreditation attestation (issue 11): published by the server in a
/// directory entry, so whatever the server chooses. What decodes says,
/// once verified under the fuzz key, what it claimed; its claims signed
/// again decode and verify to the same.
pub fn attestation(data: &[u8]) -> usize {
    use valise_proto::attestation::UnverifiedAttestation;
    let Ok(a) = UnverifiedAttestation::decode(data) else {
        return 0;
    };
    let claimed = a.claimed().clone();
    let key = fuzz_authority();
    if let Ok(v) = a.verify(&key.public()) {
        assert_eq!(v, claimed);
    }
    let again = claimed.sign(&key).expect("claims sign");
    let back = UnverifiedAttestation::decode(&again)
        .expect("a signed attestation decodes")
        .verify(&key.public())
        .expect("and verifies");
    assert_eq!(back, claimed);
    1
}

/// An attachment blob's header, the first bytes a downloader parses of
/// what the server serves.
pub fn blob_header(data: &[u8]) -> usize {
    use valise_proto::blob::{HEADER_BYTES, parse_header};
    match parse_header(data) {
        Ok(prefix) => {
            assert_eq!(data.len(), HEADER_BYTES);
            assert_eq!(&data[HEADER_BYTES - prefix.len()..], prefix.as_slice());
            1
        }
        Err(_) => 0,
    }
}

/// The key of the `chunk_stream` seeds.
pub const CHUNK_STREAM_KEY: [u8; 32] = [7; 32];

/// A blob as a server serves it, opened as a downloader opens it: the
/// input is the file's size (4 bytes, big-endian) and then the blob,
/// under [`CHUNK_STREAM_KEY`] with the digest of exactly these bytes (so
/// that the fuzzer reaches the chunks). What opens seals again, from its
/// header's nonce prefix, to the same bytes.
pub fn chunk_stream(data: &[u8]) -> usize {
    use valise_proto::blob::{AttachmentRef, BlobKey, Layout, Opener, Sealer, parse_header};
    let Some((size, blob)) = data.split_first_chunk::<4>() else {
        return 0;
    };
    let size = u64::from(u32::from_be_bytes(*size) % (1 << 20));
    let Ok(layout) = Layout::for_plain(size) else {
        return 0;
    };
    let reference = AttachmentRef {
        blob: valise_proto::BlobId::from_bytes([1; 16]),
        key: BlobKey::from_bytes(CHUNK_STREAM_KEY),
        digest: *blake3::hash(blob).as_bytes(),
        size,
        blob_size: layout.blob,
        name: String::new(),
        media_type: String::new(),
    };
    let Ok(mut opener) = Opener::new(&reference) else {
        return 0;
    };
    let mut plain = Vec::new();
    for piece in blob.chunks(1000) {
        match opener.push(piece) {
            Ok(p) => plain.extend(p),
            Err(_) => return 0,
        }
    }
    if opener.finish(&reference.digest).is_err() {
        return 0;
    }
    assert_eq!(plain.len() as u64, size);
    let prefix = parse_header(&blob[..13]).expect("an opened blob has a header");
    let mut sealer = Sealer::new(&reference.key, &prefix, size).expect("a valid size");
    let mut again = sealer.header().to_vec();
    let mut at = 0;
    for _ in 0..layout.chunks {
        let n = sealer.next_file_bytes();
        again.extend(sealer.seal_next(&plain[at..at + n]).expect("seals"));
        at += n;
    }
    assert_eq!(again, blob, "a blob has one sealing");
    1
}

/// The blob API's headers and answer, which the server parses from any
/// device and a device from the server.
pub fn blob_api(data: &[u8]) -> usize {
    use valise_proto::api::blobs::{
        BlobCreated, BlobsLinked, LinkBlobs, parse_count, parse_range, range,
    };
    let mut accepted = 0;
    if let Ok(n) = parse_count("upload-offset", data) {
        assert_eq!(
            parse_count("upload-offset", n.to_string().as_bytes()),
            Ok(n)
        );
        accepted += 1;
    }
    if let Ok((start, len)) = parse_range(data) {
        assert!(len > 0);
        assert_eq!(parse_range(range(start, len).as_bytes()), Ok((start, len)));
        accepted += 1;
    }
    accepted += json_round_trip::<BlobCreated>(data);
    accepted += json_round_trip::<LinkBlobs>(data);
    accepted += json_round_trip::<BlobsLinked>(data);
    accepted
}

/// 1 if `data` is a `T` in JSON, which encodes and decodes to itself.
fn json_round_trip<T>(data: &[u8]) -> usize
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return 0;
    };
    let again = serde_json::to_vec(&value).expect("encodes");
    assert_eq!(serde_json::from_slice::<T>(&again).ok(), Some(value));
    1
}

/// A conversation's policy record (issue 11): what a member sends inside
/// the conversation's settings, which any member controls completely. What
/// decodes has one encoding, and its hash is the hash of those bytes (the
/// group context compares exactly that); a record also decodes carried in
/// the settings, where a broken one refuses the whole settings message.
pub fn policy_record(data: &[u8]) -> usize {
    use valise_proto::policy::{PolicyRecord, hash};
    use valise_proto::{ConversationMeta, Payload};
    let Ok(record) = PolicyRecord::decode(data) else {
        return 0;
    };
    assert_eq!(record.encode().expect("re-encodes"), data, "one encoding");
    assert_eq!(record.hash().expect("hashes"), hash(data));
    let meta = Payload::Meta(ConversationMeta {
        name: String::new(),
        direct: false,
        policy: Some(record),
    });
    let again = Payload::decode(&meta.encode().expect("settings encode")).expect("decode");
    assert_eq!(again, meta, "carried in the settings, it round-trips");
    1
}
