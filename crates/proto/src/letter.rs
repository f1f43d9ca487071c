//! The plaintext inside every MLS application message: a versioned CBOR
//! record, padded so that its length falls into a bucket.
//!
//! ```text
//! bytes  = cbor(Envelope) || 0x80 || 0x00*   (length = bucket(len + 1))
//! bucket = 256 · 2^k up to 1 MiB, then whole MiB
//! ```
//! The server sees only the bucket, never the exact length.

pub use crate::blob::AttachmentRef;
use crate::blob::{BlobError, MAX_ATTACHMENTS};
use crate::id::{MessageId, ThreadId, UserId};
use crate::limits;
use crate::marking::Label;
use crate::policy::PolicyRecord;
use crate::report::AlertReport;
use serde::{Deserialize, Serialize};

/// Version of the record format; a reader refuses versions it does not know.
pub const LETTER_VERSION: u8 = 1;

/// Why bytes are not a letter record.
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    #[error("letter record is not padded correctly")]
    Padding,
    /// What was wrong, never the record's own words: a decoder's message
    /// may quote a field's text, and this error reaches alerts, logs and
    /// the security desk's reports.
    #[error("letter record is not valid CBOR: {0}")]
    Cbor(String),
    #[error("letter record version {0} is not supported (expected {LETTER_VERSION})")]
    Version(u8),
    #[error("letter record has trailing bytes after the record")]
    Trailing,
    #[error("letter is too large: {field} has {got} bytes, at most {max}")]
    TooLarge {
        field: &'static str,
        got: usize,
        max: usize,
    },
    #[error("letter record is invalid: {0}")]
    Invalid(String),
    #[error("letter has an invalid attachment: {0}")]
    Attachment(#[from] BlobError),
}

/// Where and how a record failed to decode, without what it said (serde
/// quotes the offending text: `invalid type: string "…"`).
fn cbor_fault<T>(e: &ciborium::de::Error<T>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(_) => "the record ends early".into(),
        Error::Syntax(at) => format!("syntax error at byte {at}"),
        Error::Semantic(Some(at), _) => format!("a field of the wrong type or value at byte {at}"),
        Error::Semantic(None, _) => "a field of the wrong type or value".into(),
        Error::RecursionLimitExceeded => "nested too deeply".into(),
    }
}

/// A letter: what a user writes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Letter {
    /// Chosen by the sender's client; retries and replays carry the same id.
    #[serde(rename = "id")]
    pub message_id: MessageId,
    #[serde(rename = "s")]
    pub subject: String,
    #[serde(rename = "b")]
    pub body: String,
    /// The people the letter is addressed to (its conversation may have more).
    #[serde(rename = "to")]
    pub to: Vec<UserId>,
    #[serde(rename = "th")]
    pub thread: ThreadId,
    #[serde(rename = "re", default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<MessageId>,
    /// Sender's clock, milliseconds since the Unix epoch.
    #[serde(rename = "at")]
    pub sent_at_ms: i64,
    /// Handling label (see [`crate::marking`]): only ever inside the
    /// encryption, never in MLS authenticated data.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub marking: Option<Label>,
    /// The sender device's count of letters in this conversation and MLS
    /// epoch, from 1: a receiver that sees 1, 2, 4 knows 3 was withheld.
    /// Inside the encryption, so the server can neither read nor fix it.
    #[serde(rename = "n", default)]
    pub seq: u64,
    /// The sender's last earlier epoch with letters the server accepted,
    /// and the highest number among them: letters withheld at the very end
    /// of an epoch leave no gap in the next epoch's numbers, but this shows.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<EpochCount>,
    /// The sender's newest verified key-directory root (a signed root as
    /// the directory crate encodes it): a receiver shown another root for
    /// the same epoch knows the server splits the directory's view.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootBytes>,
    /// The attachments: each an encrypted blob (see [`crate::blob`]).
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRef>,
    /// A marked letter's conversation policy record, as the sender holds
    /// it: a receiver that does not hold the record (the server withheld
    /// the member's `ConversationMeta`) takes it from here if the group
    /// context holds its hash, instead of refusing an admissible letter.
    #[serde(rename = "cp", default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRecord>,
}

/// Bytes carried as a CBOR byte string (not an array of numbers).
#[derive(Clone, PartialEq, Eq)]
pub struct RootBytes(pub Vec<u8>);

impl std::fmt::Debug for RootBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootBytes({} B)", self.0.len())
    }
}

impl Serialize for RootBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RootBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RootBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RootBytes, E> {
                Ok(RootBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RootBytes, E> {
                Ok(RootBytes(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl std::fmt::Debug for Letter {
    // Content never reaches a log: only ids and sizes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Letter")
            .field("message_id", &self.message_id)
            .field("subject_len", &self.subject.len())
            .field("body_len", &self.body.len())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

/// How many letters a sender had numbered in one MLS epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochCount {
    #[serde(rename = "e")]
    pub epoch: u64,
    #[serde(rename = "n")]
    pub last: u64,
}

/// Conversation settings shared among members inside the encryption, so the
/// server never learns a conversation's name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationMeta {
    #[serde(rename = "n")]
    pub name: String,
    /// True for the conversation that `send --to` reuses when writing again
    /// to exactly its members.
    #[serde(rename = "d", default)]
    pub direct: bool,
    /// The conversation's ceiling, whose salted hash the group context
    /// holds ([`crate::policy`]); none for a conversation without one.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRecord>,
}

/// What an application message carries.
// One payload at a time is decoded or encoded, never stored in bulk: the
// size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Payload {
    #[serde(rename = "letter")]
    Letter(Letter),
    #[serde(rename = "meta")]
    Meta(ConversationMeta),
    /// A device's report of an alert to its security desk (issue 10).
    #[serde(rename = "alert")]
    Alert(AlertReport),
}

/// The numbers that let a receiver see what the server withheld (A7):
/// letters and alert reports carry them, conversation settings do not.
pub struct Numbers<'a> {
    pub message_id: MessageId,
    pub seq: &'a mut u64,
    pub prev: &'a mut Option<EpochCount>,
    pub root: &'a mut Option<RootBytes>,
}

impl std::fmt::Debug for ConversationMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationMeta").finish_non_exhaustive()
    }
}

/// The versioned record on the wire (borrowed to encode, owned to decode).
#[derive(Serialize)]
struct Envelope<'a> {
    v: u8,
    p: &'a Payload,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    v: u8,
    p: Payload,
}

/// Length of the padded plaintext for a record of `len` bytes (plus marker).
pub fn bucket(len: usize) -> usize {
    const MIB: usize = 1024 * 1024;
    let need = len + 1;
    if need <= 256 {
        256
    } else if need <= MIB {
        need.next_power_of_two()
    } else {
        need.div_ceil(MIB) * MIB
    }
}

impl Letter {
    /// Checks the sizes a client must refuse before sealing.
    pub fn check_limits(&self) -> Result<(), LetterError> {
        let check = |field, got, max| {
            if got > max {
                Err(LetterError::TooLarge { field, got, max })
            } else {
                Ok(())
            }
        };
        check("subject", self.subject.len(), limits::MAX_SUBJECT_BYTES)?;
        check("body", self.body.len(), limits::MAX_BODY_BYTES)?;
        check("to", self.to.len(), limits::MAX_RECIPIENTS)?;
        check("attachments", self.attachments.len(), MAX_ATTACHMENTS)?;
        self.attachments
            .iter()
            .try_for_each(|a| a.check().map_err(LetterError::from))
    }
}

impl Payload {
    /// Encodes and pads the record.
    pub fn encode(&self) -> Result<Vec<u8>, LetterError> {
        self.check()?;
        let mut out = Vec::new();
        ciborium::into_writer(
            &Envelope {
                v: LETTER_VERSION,
                p: self,
            },
            &mut out,
        )
        .map_err(|_| LetterError::Cbor("cannot encode the record".into()))?;
        let padded = bucket(out.len());
        out.push(0x80);
        out.resize(padded, 0);
        Ok(out)
    }

    /// Strips the padding and decodes the record; refuses anything else.
    pub fn decode(bytes: &[u8]) -> Result<Self, LetterError> {
        let end = bytes
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(LetterError::Padding)?;
        if bytes[end] != 0x80 || bucket(end) != bytes.len() {
            return Err(LetterError::Padding);
        }
        let mut record = &bytes[..end];
        let env: EnvelopeIn =
            ciborium::from_reader(&mut record).map_err(|e| LetterError::Cbor(cbor_fault(&e)))?;
        if !record.is_empty() {
            return Err(LetterError::Trailing);
        }
        if env.v != LETTER_VERSION {
            return Err(LetterError::Version(env.v));
        }
        match &env.p {
            Payload::Alert(r) => r.check()?,
            // A receiver refuses what no honest sender seals.
            Payload::Letter(l) => l.check_limits()?,
            Payload::Meta(_) => {}
        }
        Ok(env.p)
    }

    /// What a sender must refuse to seal.
    fn check(&self) -> Result<(), LetterError> {
        match self {
            Payload::Letter(l) => l.check_limits(),
            Payload::Alert(r) => r.check(),
            Payload::Meta(_) => Ok(()),
        }
    }

    /// The numbers this payload carries, if it is numbered.
    pub fn numbers(&mut self) -> Option<Numbers<'_>> {
        match self {
            Payload::Letter(l) => Some(Numbers {
                message_id: l.message_id,
                seq: &mut l.seq,
                prev: &mut l.prev,
                root: &mut l.root,
            }),
            Payload::Alert(r) => Some(Numbers {
                message_id: r.message_id,
                seq: &mut r.seq,
                prev: &mut r.prev,
                root: &mut r.root,
            }),
            Payload::Meta(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn letter(body: &str) -> Letter {
        Letter {
            message_id: MessageId::from_bytes([1; 16]),
            subject: "Démarche".into(),
            body: body.into(),
            to: vec![UserId::parse("bob@mfa.example").unwrap()],
            thread: ThreadId::from_bytes([2; 16]),
            in_reply_to: None,
            sent_at_ms: 1_700_000_000_000,
            marking: Some(Label::parse("TLP:AMBER").unwrap()),
            seq: 1,
            prev: Some(EpochCount { epoch: 3, last: 7 }),
            root: None,
            attachments: vec![],
            policy: None,
        }
    }

    /// A record naming a kind of payload no client writes, in the words a
    /// sender chose: the error says what is wrong, and never those words
    /// (serde quotes an unknown variant; the error reaches alerts and the
    /// security desk).
    #[test]
    fn a_malformed_record_is_refused_without_quoting_it() {
        let canary = "the minister will resign on Friday";
        let bytes = Payload::Letter(letter("hello")).encode().unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap();
        let mut record: ciborium::Value = ciborium::from_reader(&bytes[..end]).unwrap();
        let ciborium::Value::Map(envelope) = &mut record else {
            panic!("the record is a map")
        };
        let (_, payload) = envelope
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some("p"))
            .unwrap();
        let ciborium::Value::Map(variant) = payload else {
            panic!("the payload is a one-entry map")
        };
        variant[0].0 = ciborium::Value::Text(canary.into());
        let mut out = Vec::new();
        ciborium::into_writer(&record, &mut out).unwrap();
        let padded = bucket(out.len());
        out.push(0x80);
        out.resize(padded, 0);
        let err = Payload::decode(&out).unwrap_err().to_string();
        assert!(err.starts_with("letter record is not valid CBOR"), "{err}");
        assert!(!err.contains("minister"), "{err}");
    }

    #[test]
    fn round_trip_and_buckets() {
        let p = Payload::Letter(letter("hello"));
        let bytes = p.encode().unwrap();
        assert_eq!(bytes.len(), 256);
        assert_eq!(Payload::decode(&bytes).unwrap(), p);
        let long = Payload::Letter(letter(&"x".repeat(300)));
        assert_eq!(long.encode().unwrap().len(), 512);
        // The sender's directory root travels as a byte string.
        let mut rooted = letter("hello");
        rooted.root = Some(RootBytes(vec![7; 160]));
        let p = Payload::Letter(rooted);
        assert_eq!(Payload::decode(&p.encode().unwrap()).unwrap(), p);
        // Two bodies of different length in one bucket encode to one length.
        let a = Payload::Letter(letter("a")).encode().unwrap();
        let b = Payload::Letter(letter("abcdefghijklmnop"))
            .encode()
            .unwrap();
        assert_eq!(a.len(), b.len());
    }

    #[test]
    fn refuses_bad_padding_and_oversize() {
        let mut bytes = Payload::Letter(letter("hi")).encode().unwrap();
        bytes.push(0);
        assert!(matches!(Payload::decode(&bytes), Err(LetterError::Padding)));
        assert!(Payload::decode(&[]).is_err());
        assert!(Payload::decode(&[0x80]).is_err());
        let big = letter(&"x".repeat(limits::MAX_BODY_BYTES + 1));
        assert!(matches!(
            Payload::Letter(big).encode(),
            Err(LetterError::TooLarge { field: "body", .. })
        ));
    }

    #[test]
    fn debug_hides_content() {
        let s = format!("{:?}", Payload::Letter(letter("secret canary")));
        assert!(!s.contains("canary") && !s.contains("Démarche"));
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Payload::decode(&b);
        }

        #[test]
        fn any_letter_round_trips(subject in ".{0,100}", body in ".{0,2000}") {
            let mut l = letter(&body);
            l.subject = subject;
            let p = Payload::Letter(l);
            prop_assert_eq!(Payload::decode(&p.encode().unwrap()).unwrap(), p);
        }
    }
}
