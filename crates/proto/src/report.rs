//! The report a device sends its organisation's security desk for each
//! alert it raises (issue 10): a [`crate::Payload::Alert`], sealed with MLS
//! in a direct conversation between the device's user and the desk, and
//! numbered like a letter, so that the server can neither read, forge nor
//! drop one unseen (withheld-letter detection applies to it).
//!
//! It carries what the alert is (kind, time, conversation, the device's
//! own description, SHA-256 of the evidence bytes) and never letter
//! content nor the evidence itself. Who reported it is not in the record:
//! the desk takes it from the MLS sender, which nobody can forge.
//! The stable JSON the desk prints is in docs/PROTOCOL.md, "Security desk
//! reports (issue 10)".

use crate::id::{ConversationId, MessageId};
use crate::letter::{EpochCount, LetterError, RootBytes};
use serde::{Deserialize, Serialize};

/// Longest alert kind name (snake_case ASCII).
pub const MAX_KIND_BYTES: usize = 64;
/// Longest alert description carried (a device's own words, a few lines).
pub const MAX_DETAIL_BYTES: usize = 4096;
/// Most evidence digests in one report.
pub const MAX_EVIDENCE: usize = 8;

/// One alert, as reported to the security desk.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertReport {
    /// Chosen by the reporting device; the desk stores each id once per
    /// sender.
    #[serde(rename = "id")]
    pub message_id: MessageId,
    /// The alert's kind (`refused_message`, `letters_withheld`, ...).
    #[serde(rename = "k")]
    pub kind: String,
    /// When the device raised it, milliseconds since the Unix epoch
    /// (the device's clock).
    #[serde(rename = "at")]
    pub at_ms: i64,
    /// The conversation the alert is about, if any.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationId>,
    /// The alert's description, as the device shows it to its user.
    #[serde(rename = "d")]
    pub detail: String,
    /// SHA-256 of each piece of evidence the device keeps (the bytes stay
    /// on the device, which may hold content).
    #[serde(rename = "e", default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_sha256: Vec<Sha256Digest>,
    /// Alerts of this kind the device raised since its previous report of
    /// the kind and did not report (its hourly budget was spent).
    #[serde(rename = "s", default)]
    pub suppressed: u64,
    /// Number, previous epoch's count and directory root, exactly as a
    /// letter carries them (see [`crate::Letter`]): reports and letters of
    /// a conversation share one numbering.
    #[serde(rename = "n", default)]
    pub seq: u64,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<EpochCount>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootBytes>,
}

/// A SHA-256 digest, carried as a 32-byte CBOR byte string.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sha256Digest(pub [u8; 32]);

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = RootBytes::deserialize(d)?.0;
        let len = bytes.len();
        <[u8; 32]>::try_from(bytes)
            .map(Sha256Digest)
            .map_err(|_| serde::de::Error::invalid_length(len, &"32 bytes"))
    }
}

// The description may quote what a server did; only the kind is logged.
impl std::fmt::Debug for AlertReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertReport")
            .field("message_id", &self.message_id)
            .field("kind", &self.kind)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl AlertReport {
    /// Refuses a report no honest device writes: an empty or odd kind name,
    /// an oversized description, too many digests. Checked before sealing
    /// and on receipt.
    pub fn check(&self) -> Result<(), LetterError> {
        let too_large = |field, got, max| Err(LetterError::TooLarge { field, got, max });
        if self.kind.len() > MAX_KIND_BYTES {
            return too_large("kind", self.kind.len(), MAX_KIND_BYTES);
        }
        if self.detail.len() > MAX_DETAIL_BYTES {
            return too_large("detail", self.detail.len(), MAX_DETAIL_BYTES);
        }
        if self.evidence_sha256.len() > MAX_EVIDENCE {
            return too_large("evidence", self.evidence_sha256.len(), MAX_EVIDENCE);
        }
        if self.kind.is_empty()
            || !self
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(LetterError::Invalid(
                "an alert kind is snake_case ASCII".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;
    use proptest::prelude::*;

    fn report(kind: &str, detail: &str, evidence: Vec<Sha256Digest>) -> AlertReport {
        AlertReport {
            message_id: MessageId::from_bytes([3; 16]),
            kind: kind.into(),
            at_ms: 1_700_000_000_000,
            conversation: Some(ConversationId::from_bytes([1; 16])),
            detail: detail.into(),
            evidence_sha256: evidence,
            suppressed: 2,
            seq: 4,
            prev: Some(EpochCount { epoch: 2, last: 9 }),
            root: Some(RootBytes(vec![5; 40])),
        }
    }

    #[test]
    fn refuses_malformed_reports() {
        let encode = |r: AlertReport| Payload::Alert(r).encode();
        assert!(encode(report("refused_message", "x", vec![])).is_ok());
        assert!(encode(report("", "x", vec![])).is_err());
        assert!(encode(report("Refused message", "x", vec![])).is_err());
        assert!(encode(report(&"k".repeat(MAX_KIND_BYTES + 1), "x", vec![])).is_err());
        assert!(encode(report("fork", &"d".repeat(MAX_DETAIL_BYTES + 1), vec![])).is_err());
        let many = vec![Sha256Digest([0; 32]); MAX_EVIDENCE + 1];
        assert!(encode(report("fork", "x", many)).is_err());
        // A kind no honest sender writes is refused on receipt too: the
        // record is built by hand, past the sender's check.
        let mut bad = Vec::new();
        let p = Payload::Alert(report("Fork!", "x", vec![]));
        ciborium::into_writer(
            &ciborium::Value::Map(vec![
                (
                    ciborium::Value::Text("v".into()),
                    ciborium::Value::Integer(crate::letter::LETTER_VERSION.into()),
                ),
                (
                    ciborium::Value::Text("p".into()),
                    ciborium::Value::serialized(&p).unwrap(),
                ),
            ]),
            &mut bad,
        )
        .unwrap();
        bad.push(0x80);
        bad.resize(crate::letter::bucket(bad.len() - 1), 0);
        assert!(matches!(
            Payload::decode(&bad),
            Err(crate::LetterError::Invalid(_))
        ));
        // A digest of another length is no digest.
        let good = Payload::Alert(report("fork", "x", vec![Sha256Digest([7; 32])]))
            .encode()
            .unwrap();
        let at = good
            .windows(33)
            .position(|w| w[0] == 0x58 && w[1] == 32 && w[2..].iter().all(|b| *b == 7))
            .unwrap();
        let mut short = good.clone();
        short[at + 1] = 31;
        assert!(Payload::decode(&short).is_err());
    }

    #[test]
    fn debug_shows_no_detail() {
        let s = format!("{:?}", report("fork", "secret canary", vec![]));
        assert!(!s.contains("canary"), "{s}");
    }

    proptest! {
        #[test]
        fn any_report_round_trips(
            kind in "[a-z_]{1,64}",
            detail in ".{0,300}",
            at_ms in any::<i64>(),
            digests in proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_EVIDENCE),
            suppressed in any::<u64>(),
            seq in any::<u64>(),
            conv in proptest::option::of(any::<[u8; 16]>()),
        ) {
            let mut r = report(&kind, &detail, digests.into_iter().map(Sha256Digest).collect());
            r.at_ms = at_ms;
            r.suppressed = suppressed;
            r.seq = seq;
            r.conversation = conv.map(ConversationId::from_bytes);
            let p = Payload::Alert(r);
            prop_assert_eq!(Payload::decode(&p.encode().unwrap()).unwrap(), p);
        }
    }
}
