//! A letter as mail: its RFC 5322 form, and what IMAP says of it
//! (ENVELOPE, BODYSTRUCTURE, header fields). Everything here is a pure
//! function of the stored letter, so a UID shows the same bytes forever.
//!
//! [`rfc5322`] is the one place a letter becomes mail. A handling marking
//! shows as a subject prefix and an `X-Valise-Marking` header; a letter
//! the reader's device is not accredited for never reaches the home, so
//! there is nothing to show. Attachments (MIME parts) are to come here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use valise_client::LetterView;

/// The domain-free right side of Message-IDs made from letter ids.
pub const ID_HOST: &str = "valise";

/// `<message id@valise>`: stable, unique per letter.
pub fn message_id(id: &impl std::fmt::Display) -> String {
    format!("<{id}@{ID_HOST}>")
}

/// The RFC 5322 date of a millisecond timestamp, in UTC.
pub fn date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

/// A header value: as is if it is printable ASCII, else RFC 2047
/// encoded words (UTF-8, base64) of at most 45 bytes of text each.
/// ENVELOPE shows the Subject in this form too, as it stands in the header.
pub fn header_text(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_owned();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?b?{}?=", B64.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?b?{}?=", B64.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// The letter's subject as mail shows it: its handling marking first, as
/// every front end shows it (`[EU RESTRICTED] Subject`).
pub fn subject(letter: &LetterView) -> String {
    let prefix = letter
        .marking
        .as_ref()
        .map(valise_proto::Label::subject_prefix)
        .unwrap_or_default();
    format!("{prefix}{}", letter.subject)
}

/// A letter rendered as mail.
pub struct Mail {
    /// The RFC 5322 message.
    pub bytes: Vec<u8>,
    /// The body's Content-Transfer-Encoding.
    pub encoding: &'static str,
}

impl Mail {
    /// The header, with its closing blank line.
    pub fn header(&self) -> &[u8] {
        &self.bytes[..header_len(&self.bytes)]
    }

    /// The body (after the blank line).
    pub fn body(&self) -> &[u8] {
        &self.bytes[header_len(&self.bytes)..]
    }
}

/// The letter as an RFC 5322 message, CRLF line ends throughout. The one
/// place a letter becomes mail (see the module doc).
pub fn rfc5322(letter: &LetterView) -> Mail {
    let to = letter
        .to
        .iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut h = String::new();
    let mut field = |name: &str, value: &str| {
        h.push_str(name);
        h.push_str(": ");
        h.push_str(value);
        h.push_str("\r\n");
    };
    field("Date", &date(letter.sent_at_ms));
    field("From", letter.from.as_str());
    if !to.is_empty() {
        field("To", &to);
    }
    field("Subject", &header_text(&subject(letter)));
    field("Message-ID", &message_id(&letter.message_id));
    if let Some(parent) = &letter.in_reply_to {
        field("In-Reply-To", &message_id(parent));
        field("References", &message_id(parent));
    }
    field("X-Valise-Conversation", &letter.conversation.to_string());
    field("X-Valise-Thread", &letter.thread.to_string());
    if let Some(label) = &letter.marking {
        field("X-Valise-Marking", &label.to_string());
    }
    field("MIME-Version", "1.0");
    let (encoding, body) = body_text(&letter.body);
    field("Content-Type", "text/plain; charset=utf-8");
    field("Content-Transfer-Encoding", encoding);
    let mut bytes = h.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body.as_bytes());
    Mail { bytes, encoding }
}

/// The body with CRLF line ends: 7bit if it is short-lined ASCII, else
/// base64 in 76-character lines.
fn body_text(body: &str) -> (&'static str, String) {
    let ascii = body
        .lines()
        .all(|l| l.len() <= 998 && l.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
    if ascii {
        let mut out = body.lines().collect::<Vec<_>>().join("\r\n");
        out.push_str("\r\n");
        return ("7bit", out);
    }
    let encoded = B64.encode(body.as_bytes());
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    ("base64", out)
}

/// Where the header ends (after its blank line).
pub fn header_len(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4)
}

/// The header fields named in `names` (or, with `not`, all others), in
/// message order, followed by the blank line (RFC 3501 HEADER.FIELDS).
pub fn header_fields(message: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let header = &message[..header_len(message).saturating_sub(2)];
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let named = names.iter().any(|n| n.eq_ignore_ascii_case(name));
            keep = named != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use valise_proto::{ConversationId, MessageId, ThreadId, UserId};

    fn letter(subject: &str, body: &str) -> LetterView {
        LetterView {
            id: 7,
            conversation: ConversationId::from_bytes([1; 16]),
            message_id: MessageId::from_bytes([2; 16]),
            from: UserId::parse("alice@mfa.example").unwrap(),
            from_device: "d".into(),
            subject: subject.into(),
            body: body.into(),
            to: vec![UserId::parse("bob@mfa.example").unwrap()],
            thread: ThreadId::from_bytes([3; 16]),
            in_reply_to: Some(MessageId::from_bytes([4; 16])),
            sent_at_ms: 1_700_000_000_123,
            received_at_ms: 1_700_000_001_000,
            marking: None,
            outgoing: false,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn a_marked_letter_says_its_marking_in_the_subject_and_a_header() {
        let mut l = letter("Visit", "Body");
        l.marking = Some(valise_proto::Label::parse("EU RESTRICTED").unwrap());
        let mail = String::from_utf8(rfc5322(&l).bytes).unwrap();
        let label = l.marking.as_ref().unwrap().to_string();
        assert!(
            mail.contains(&format!("Subject: [{label}] Visit\r\n")),
            "{mail}"
        );
        assert!(
            mail.contains(&format!("X-Valise-Marking: {label}\r\n")),
            "{mail}"
        );
        assert_eq!(subject(&l), format!("[{label}] Visit"));
        let unmarked = String::from_utf8(rfc5322(&letter("Visit", "Body")).bytes).unwrap();
        assert!(unmarked.contains("Subject: Visit\r\n") && !unmarked.contains("X-Valise-Marking"));
    }

    proptest! {
        /// What a mail client parses out of a rendered letter is the
        /// letter: subject, body (line ends aside for 7bit), ids.
        #[test]
        fn a_mail_parser_reads_back_the_letter(
            subject in "[^\\s\\p{C}]([^\\p{C}]{0,80}[^\\s\\p{C}])?",
            body in "[^\\p{C}]{0,60}(\n[^\\p{C}]{0,60}){0,4}",
        ) {
            let l = letter(&subject, &body);
            let mail = rfc5322(&l);
            prop_assert_eq!(&rfc5322(&l).bytes, &mail.bytes, "not deterministic");
            let parsed = mail_parser::MessageParser::default().parse(&mail.bytes).unwrap();
            prop_assert_eq!(parsed.subject().unwrap_or_default(), subject.as_str());
            let text = parsed.body_text(0).unwrap_or_default().replace("\r\n", "\n");
            let want = if mail.encoding == "7bit" {
                // Every line ends with a line end; an empty body is one.
                let lines = body.lines().map(|l| format!("{l}\n")).collect::<String>();
                if lines.is_empty() { "\n".to_owned() } else { lines }
            } else {
                body.clone()
            };
            prop_assert_eq!(text, want);
            prop_assert_eq!(
                parsed.message_id().unwrap_or_default(),
                "02020202020202020202020202020202@valise"
            );
            prop_assert!(mail.bytes.split(|&b| b == b'\n').all(|line| line.len() <= 998));
        }
    }

    #[test]
    fn non_ascii_subjects_become_encoded_words() {
        assert_eq!(header_text("Visa"), "Visa");
        let enc = header_text("Visa pour la délégation à Genève, troisième réunion");
        assert!(enc.starts_with("=?utf-8?b?"), "{enc}");
        assert!(enc.contains("\r\n "), "long text is folded: {enc}");
        assert!(enc.lines().all(|l| l.len() <= 76), "{enc}");
    }

    #[test]
    fn bodies_are_7bit_or_base64_with_crlf() {
        assert_eq!(body_text("a\nb"), ("7bit", "a\r\nb\r\n".to_owned()));
        let (enc, text) = body_text("Genève");
        assert_eq!(enc, "base64");
        assert_eq!(B64.decode(text.trim_end()).unwrap(), "Genève".as_bytes());
    }

    #[test]
    fn header_fields_keep_folded_lines_and_order() {
        let msg = b"Subject: a\r\n b\r\nFrom: x@y\r\nTo: z@y\r\n\r\nbody\r\n";
        assert_eq!(
            header_fields(msg, &[b"to".to_vec(), b"SUBJECT".to_vec()], false),
            b"Subject: a\r\n b\r\nTo: z@y\r\n\r\n"
        );
        assert_eq!(
            header_fields(msg, &[b"subject".to_vec()], true),
            b"From: x@y\r\nTo: z@y\r\n\r\n"
        );
        assert_eq!(header_len(msg), msg.len() - 6);
    }
}
