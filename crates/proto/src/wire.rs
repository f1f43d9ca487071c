//! The binary bodies of delivery, the hot path: a batch of letters sent
//! (`POST /v1/letters`), one outcome per letter, and an inbox page
//! (`GET /v1/inbox`). JSON and base64 of every delivered copy cost the
//! server more than storing it; these are TLS presentation language
//! (RFC 8446 §3) with QUIC-style length prefixes, as MLS itself is encoded,
//! through `tls_codec`.
//!
//! ```text
//! LetterBatch   = Letter<V>            Letter  = conversation[16] client_msg_id[16] message<V>
//! Outcomes      = Outcome<V>           Outcome = tag(u8) ...
//!   1 accepted  recipients(u32) seq(u64)     3 stale_epoch current(u64)
//!   2 duplicate recipients(u32) epoch(u64)   4 refused code<V> message<V>
//!   5 skipped (an earlier letter of its conversation in this batch was not accepted)
//! InboxPage     = Entry<V> more(u8) pending(optional u64) cursor<V>
//! Entry         = seq(u64) kind(u8: 1 commit, 2 welcome, 3 application)
//!                 conversation[16] sender_user<V> sender_device[8]
//!                 message<V> ratchet_tree(optional <V>)
//! ```
//!
//! `<V>` is a variable-length vector (a QUIC varint of its byte length, then
//! the bytes). Decoders turn the wire structs into typed values ("parse,
//! don't validate") and refuse trailing bytes.

use crate::id::{ConversationId, DeviceAddress, DeviceId, MessageId, UserId};
use crate::problem::ErrorCode;
use tls_codec::{TlsDeserialize, TlsSerialize, TlsSize, VLBytes};

/// The media type of every body of this module.
pub const CONTENT_TYPE: &str = "application/vnd.valise.delivery";

/// Request header of `POST /v1/letters`: how many letters the body holds,
/// so that the rate limiter counts letters before the body is read.
pub const LETTERS_HEADER: &str = "valise-letters";

/// Most letters in one batch.
pub const MAX_BATCH_LETTERS: usize = 256;

/// Longest opaque cursor a server may hand out.
pub const MAX_CURSOR_BYTES: usize = 64;

/// Why bytes did not decode.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed body: {0}")]
    Codec(#[from] tls_codec::Error),
    #[error("malformed body: {0}")]
    Invalid(String),
}

fn invalid(what: impl Into<String>) -> WireError {
    WireError::Invalid(what.into())
}

/// A letter to deliver: an MLS application message of one conversation,
/// idempotent on `client_msg_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingLetter {
    pub conversation: ConversationId,
    pub client_msg_id: MessageId,
    /// `MlsMessage` (PrivateMessage) bytes.
    pub message: Vec<u8>,
}

/// What became of one letter of a batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored: queued for `recipients` devices at log position `seq`.
    Accepted { recipients: u32, seq: u64 },
    /// This sender's `client_msg_id` was accepted before: nothing new
    /// stored. The conversation's fan-out now (`recipients` other devices)
    /// at its `epoch` now, so that a retry is checked against the sender's
    /// roster too.
    Duplicate { recipients: u32, epoch: u64 },
    /// Sealed in another epoch than the conversation's `current` one.
    StaleEpoch { current: u64 },
    /// Refused for good (not a member, malformed, …).
    Refused { code: ErrorCode, message: String },
    /// Not tried: an earlier letter of the same conversation in the batch
    /// was not accepted, and a sender's letters are taken in order.
    Skipped,
}

/// What an inbox entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Commit,
    Welcome,
    Application,
}

/// One entry of an inbox page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the server's log: increases strictly along a device's
    /// inbox (for logs and tests; progress is the page's cursor).
    pub seq: u64,
    pub kind: EntryKind,
    pub conversation: ConversationId,
    /// The sending device, as the server saw it (the client trusts only MLS).
    pub sender: DeviceAddress,
    /// `MlsMessage` bytes.
    pub message: Vec<u8>,
    /// For a Welcome: the ratchet tree of the epoch it joins.
    pub ratchet_tree: Option<Vec<u8>>,
}

/// A page of a device's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxPage {
    pub entries: Vec<Entry>,
    /// More entries follow the last one.
    pub more: bool,
    /// Asked for with `count`: entries waiting after the request's cursor,
    /// this page included (for a progress bar).
    pub pending: Option<u64>,
    /// Where the next read starts, once this page is processed (the
    /// request's own cursor for an empty page). Opaque to the client.
    pub cursor: Vec<u8>,
}

// The wire shapes, private: decoding goes through the typed values above.
// (`Debug` because tls_codec wants it of vector elements; they hold
// ciphertexts, never secrets.)

#[derive(Debug, TlsSerialize, TlsDeserialize, TlsSize)]
struct WireLetter {
    conversation: [u8; 16],
    client_msg_id: [u8; 16],
    message: VLBytes,
}

#[derive(Debug, TlsSerialize, TlsDeserialize, TlsSize)]
struct WireRefusal {
    code: VLBytes,
    message: VLBytes,
}

#[derive(Debug, TlsSerialize, TlsDeserialize, TlsSize)]
struct WireAccepted {
    recipients: u32,
    seq: u64,
}

#[derive(Debug, TlsSerialize, TlsDeserialize, TlsSize)]
struct WireDuplicate {
    recipients: u32,
    epoch: u64,
}

#[derive(Debug, TlsSerialize, TlsDeserialize, TlsSize)]
#[repr(u8)]
enum WireOutcome {
    #[tls_codec(discriminant = 1)]
    Accepted(WireAccepted),
    #[tls_codec(discriminant = 2)]
    Duplicate(WireDuplicate),
    #[tls_codec(discriminant = 3)]
    StaleEpoch(u64),
    #[tls_codec(discriminant = 4)]
    Refused(WireRefusal),
    #[tls_codec(discriminant = 5)]
    Skipped(()),
}

#[derive(Debug, TlsSerialize, TlsDeserialize, TlsSize)]
struct WireEntry {
    seq: u64,
    kind: u8,
    conversation: [u8; 16],
    sender_user: VLBytes,
    sender_device: [u8; 8],
    message: VLBytes,
    ratchet_tree: Option<VLBytes>,
}

#[derive(Debug, TlsSerialize, TlsDeserialize, TlsSize)]
struct WirePage {
    entries: Vec<WireEntry>,
    more: u8,
    pending: Option<u64>,
    cursor: VLBytes,
}

fn encode(value: &impl tls_codec::Serialize) -> Vec<u8> {
    // Writing to a Vec fails only on lengths past 2^62: never built here.
    value.tls_serialize_detached().unwrap_or_default()
}

fn decode<T: tls_codec::Deserialize>(bytes: &[u8]) -> Result<T, WireError> {
    Ok(T::tls_deserialize_exact(bytes)?)
}

/// The body of `POST /v1/letters`.
pub fn encode_letters(letters: &[OutgoingLetter]) -> Vec<u8> {
    let wire: Vec<WireLetter> = letters
        .iter()
        .map(|l| WireLetter {
            conversation: *l.conversation.as_bytes(),
            client_msg_id: *l.client_msg_id.as_bytes(),
            message: VLBytes::new(l.message.clone()),
        })
        .collect();
    encode(&wire)
}

/// Reads the body of `POST /v1/letters`, which must hold exactly
/// `announced` letters (the request's [`LETTERS_HEADER`]), at most
/// [`MAX_BATCH_LETTERS`].
pub fn decode_letters(bytes: &[u8], announced: usize) -> Result<Vec<OutgoingLetter>, WireError> {
    let wire: Vec<WireLetter> = decode(bytes)?;
    if wire.len() != announced {
        return Err(invalid(format!(
            "{} letters in the body, {announced} announced",
            wire.len()
        )));
    }
    if wire.len() > MAX_BATCH_LETTERS {
        return Err(invalid(format!("more than {MAX_BATCH_LETTERS} letters")));
    }
    Ok(wire
        .into_iter()
        .map(|l| OutgoingLetter {
            conversation: ConversationId::from_bytes(l.conversation),
            client_msg_id: MessageId::from_bytes(l.client_msg_id),
            message: l.message.into(),
        })
        .collect())
}

/// The answer to `POST /v1/letters`.
pub fn encode_outcomes(outcomes: &[Outcome]) -> Vec<u8> {
    let wire: Vec<WireOutcome> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Accepted { recipients, seq } => WireOutcome::Accepted(WireAccepted {
                recipients: *recipients,
                seq: *seq,
            }),
            Outcome::Duplicate { recipients, epoch } => WireOutcome::Duplicate(WireDuplicate {
                recipients: *recipients,
                epoch: *epoch,
            }),
            Outcome::StaleEpoch { current } => WireOutcome::StaleEpoch(*current),
            Outcome::Refused { code, message } => WireOutcome::Refused(WireRefusal {
                code: VLBytes::new(code.as_str().as_bytes().to_vec()),
                message: VLBytes::new(message.as_bytes().to_vec()),
            }),
            Outcome::Skipped => WireOutcome::Skipped(()),
        })
        .collect();
    encode(&wire)
}

/// Reads the answer to a batch of `sent` letters: one outcome each.
pub fn decode_outcomes(bytes: &[u8], sent: usize) -> Result<Vec<Outcome>, WireError> {
    let wire: Vec<WireOutcome> = decode(bytes)?;
    if wire.len() != sent {
        return Err(invalid(format!(
            "{} outcomes for {sent} letters",
            wire.len()
        )));
    }
    wire.into_iter()
        .map(|o| {
            Ok(match o {
                WireOutcome::Accepted(a) => Outcome::Accepted {
                    recipients: a.recipients,
                    seq: a.seq,
                },
                WireOutcome::Duplicate(d) => Outcome::Duplicate {
                    recipients: d.recipients,
                    epoch: d.epoch,
                },
                WireOutcome::StaleEpoch(current) => Outcome::StaleEpoch { current },
                WireOutcome::Refused(r) => Outcome::Refused {
                    code: code_of(r.code.as_slice())?,
                    message: text(r.message.as_slice())?,
                },
                WireOutcome::Skipped(()) => Outcome::Skipped,
            })
        })
        .collect()
}

/// An inbox page, taken by value: its messages move into the encoding
/// rather than being copied (a server answers many pages at once).
pub fn encode_page(page: InboxPage) -> Vec<u8> {
    let wire = WirePage {
        entries: page
            .entries
            .into_iter()
            .map(|e| WireEntry {
                seq: e.seq,
                kind: match e.kind {
                    EntryKind::Commit => 1,
                    EntryKind::Welcome => 2,
                    EntryKind::Application => 3,
                },
                conversation: *e.conversation.as_bytes(),
                sender_user: VLBytes::new(e.sender.user.as_str().as_bytes().to_vec()),
                sender_device: *e.sender.device.as_bytes(),
                message: VLBytes::new(e.message),
                ratchet_tree: e.ratchet_tree.map(VLBytes::new),
            })
            .collect(),
        more: u8::from(page.more),
        pending: page.pending,
        cursor: VLBytes::new(page.cursor),
    };
    encode(&wire)
}

/// Reads an inbox page (a hostile server's choice of every byte).
pub fn decode_page(bytes: &[u8]) -> Result<InboxPage, WireError> {
    let wire: WirePage = decode(bytes)?;
    let cursor: Vec<u8> = wire.cursor.into();
    if cursor.len() > MAX_CURSOR_BYTES {
        return Err(invalid("cursor too long"));
    }
    let more = match wire.more {
        0 => false,
        1 => true,
        _ => return Err(invalid("`more` is neither 0 nor 1")),
    };
    let entries = wire
        .entries
        .into_iter()
        .map(|e| {
            let user = UserId::parse(&text(e.sender_user.as_slice())?)
                .map_err(|err| invalid(format!("sender: {err}")))?;
            Ok(Entry {
                seq: e.seq,
                kind: match e.kind {
                    1 => EntryKind::Commit,
                    2 => EntryKind::Welcome,
                    3 => EntryKind::Application,
                    other => return Err(invalid(format!("entry kind {other}"))),
                },
                conversation: ConversationId::from_bytes(e.conversation),
                sender: DeviceAddress::new(user, DeviceId::from_bytes(e.sender_device)),
                message: e.message.into(),
                ratchet_tree: e.ratchet_tree.map(Into::into),
            })
        })
        .collect::<Result<_, WireError>>()?;
    Ok(InboxPage {
        entries,
        more,
        pending: wire.pending,
        cursor,
    })
}

fn text(bytes: &[u8]) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| invalid("text is not UTF-8"))
}

fn code_of(bytes: &[u8]) -> Result<ErrorCode, WireError> {
    // A code this client does not know (a newer server) is `Unknown`.
    serde_json::from_value(serde_json::Value::String(text(bytes)?))
        .map_err(|e| invalid(format!("error code: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(n: u8) -> OutgoingLetter {
        OutgoingLetter {
            conversation: ConversationId::from_bytes([n; 16]),
            client_msg_id: MessageId::from_bytes([n + 1; 16]),
            message: vec![n; 300],
        }
    }

    #[test]
    fn letters_round_trip_and_must_match_the_header() {
        let letters = vec![letter(1), letter(2)];
        let body = encode_letters(&letters);
        assert_eq!(decode_letters(&body, 2).unwrap(), letters);
        assert!(decode_letters(&body, 3).is_err());
        assert!(decode_letters(&body[..body.len() - 1], 2).is_err());
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_letters(&longer, 2).is_err(), "trailing bytes");
        let many: Vec<_> = (0..=MAX_BATCH_LETTERS).map(|_| letter(3)).collect();
        assert!(decode_letters(&encode_letters(&many), many.len()).is_err());
    }

    #[test]
    fn outcomes_round_trip() {
        let outcomes = vec![
            Outcome::Accepted {
                recipients: 10,
                seq: 1 << 40,
            },
            Outcome::Duplicate {
                recipients: 3,
                epoch: 9,
            },
            Outcome::StaleEpoch { current: 7 },
            Outcome::Refused {
                code: ErrorCode::NotMember,
                message: "not a member".into(),
            },
            Outcome::Skipped,
        ];
        let body = encode_outcomes(&outcomes);
        assert_eq!(decode_outcomes(&body, 5).unwrap(), outcomes);
        assert!(decode_outcomes(&body, 4).is_err());
        assert!(decode_outcomes(&[1, 6], 1).is_err(), "unknown tag");
    }

    #[test]
    fn pages_round_trip_and_refuse_what_is_not_a_page() {
        let page = InboxPage {
            entries: vec![
                Entry {
                    seq: 5,
                    kind: EntryKind::Welcome,
                    conversation: ConversationId::from_bytes([9; 16]),
                    sender: DeviceAddress::parse("alice@mfa.example/0102030405060708").unwrap(),
                    message: vec![1, 2, 3],
                    ratchet_tree: Some(vec![4; 70]),
                },
                Entry {
                    seq: 6,
                    kind: EntryKind::Application,
                    conversation: ConversationId::from_bytes([9; 16]),
                    sender: DeviceAddress::parse("bob@mfa.example/0102030405060709").unwrap(),
                    message: vec![7; 2000],
                    ratchet_tree: None,
                },
            ],
            more: true,
            pending: Some(12),
            cursor: vec![0xab; 24],
        };
        let body = encode_page(page.clone());
        assert_eq!(decode_page(&body).unwrap(), page);
        let empty = InboxPage {
            entries: vec![],
            more: false,
            pending: None,
            cursor: vec![],
        };
        assert_eq!(decode_page(&encode_page(empty.clone())).unwrap(), empty);
        let mut bad_user = page.clone();
        bad_user.entries[0].sender.user = UserId::parse("x@y.z").unwrap();
        let body = encode_page(bad_user);
        let bogus = body
            .windows(5)
            .position(|w| w == b"x@y.z")
            .map(|i| {
                let mut b = body.clone();
                b[i + 1] = b' ';
                b
            })
            .unwrap();
        assert!(decode_page(&bogus).is_err(), "a sender that is no user id");
        let long_cursor = InboxPage {
            cursor: vec![0; MAX_CURSOR_BYTES + 1],
            ..empty
        };
        assert!(decode_page(&encode_page(long_cursor)).is_err());
    }
}
