//! A letter as mail: its RFC 5322 form, and what IMAP says of it
//! (ENVELOPE, BODYSTRUCTURE, header fields). Everything here is a pure
//! function of the stored letter, so a UID shows the same bytes forever.
//!
//! [`rfc5322`] is the one place a letter becomes mail. A handling marking
//! shows as a subject prefix and an `X-Valise-Marking` header; a letter
//! the reader's device is not accredited for never reaches the home, so
//! there is nothing to show. Attachments are base64 MIME parts whose bytes
//! are read, range by range, from the engine's checked copy in the sealed
//! home (`Client::cache_attachment`), never held whole; those of a letter
//! whose marking allows saving only into an approved export directory are
//! a notice saying how to save them, never their bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use imap_next::imap_types::core::{Literal, Quoted};
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

/// A letter rendered as mail, without its attachments' bytes: what it
/// holds is the header and the body's own bytes, with a placeholder where
/// each attachment's base64 goes. Sizes, BODYSTRUCTURE and any byte range
/// are known from this alone; [`Mail::read`] fills in only the attachment
/// bytes a range covers, from the engine's checked copy, so a 1 GiB
/// attachment is never whole in memory unless a client fetches it whole.
pub struct Mail {
    /// The header, with its closing blank line.
    header: Vec<u8>,
    /// The body, in order.
    segments: Vec<Segment>,
    /// Each MIME part (the text first, then one per attachment); a letter
    /// without attachments is one text part, the whole body.
    pub parts: Vec<Part>,
    /// `multipart/mixed`'s boundary (`None`: a single text part).
    pub boundary: Option<String>,
}

/// A stretch of the body.
enum Segment {
    Bytes(Vec<u8>),
    /// Attachment `index` (from 1), `size` plaintext bytes, as base64.
    Base64 {
        index: usize,
        size: u64,
    },
}

/// One MIME part: where its header and content are in the message.
pub struct Part {
    /// Its header (`BODY[n.MIME]`): offset and length.
    pub mime: (u64, u64),
    /// Its content as sent (`BODY[n]`): offset and length.
    pub content: (u64, u64),
    /// Lines of its content.
    pub lines: u64,
    pub kind: PartKind,
}

/// What a part holds.
pub enum PartKind {
    /// The letter's text.
    Text { encoding: &'static str },
    /// A part of a draft as the mail client wrote it (Drafts).
    Other {
        media_type: (String, String),
        /// Its Content-Type parameters (but the boundary).
        params: Vec<(String, String)>,
        encoding: String,
    },
    /// An attachment, base64.
    Attachment {
        /// Checked media type (`application/octet-stream` if the sender's
        /// is not a plain `type/subtype`).
        media_type: (String, String),
        /// The file name as the sender gave it (content, not logged).
        name: String,
    },
}

/// The source of attachment plaintext: (attachment from 1, offset, length).
pub type Source<'a> = dyn FnMut(usize, u64, usize) -> valise_client::Result<Vec<u8>> + 'a;

impl Mail {
    /// A draft a mail client filed (Drafts), served as it came: its parts
    /// (one level of multipart) as mail-parser finds them.
    pub fn raw(message: Vec<u8>) -> Mail {
        let at = header_len(&message);
        let mut parts = Vec::new();
        let mut boundary = None;
        if let Some(parsed) = mail_parser::MessageParser::default().parse(&message) {
            let part = |p: &mail_parser::MessagePart<'_>, mime: (u64, u64), content: (u64, u64)| {
                use mail_parser::MimeHeaders as _;
                let ct = p.content_type();
                let media_type = ct.map_or(("text".into(), "plain".into()), |c| {
                    media_type(&format!("{}/{}", c.ctype(), c.subtype().unwrap_or("plain")))
                });
                let params = ct
                    .and_then(|c| c.attributes())
                    .unwrap_or_default()
                    .iter()
                    .filter(|a| !a.name.eq_ignore_ascii_case("boundary"))
                    .map(|a| (a.name.to_lowercase(), a.value.to_string()))
                    .collect();
                let encoding = p
                    .content_transfer_encoding()
                    .unwrap_or("7bit")
                    .to_ascii_lowercase();
                let (from, len) = (content.0 as usize, content.1 as usize);
                Part {
                    mime,
                    content,
                    lines: lines(message.get(from..from + len).unwrap_or_default()),
                    kind: PartKind::Other {
                        media_type,
                        params,
                        encoding,
                    },
                }
            };
            let span = |a: u32, b: u32| (u64::from(a), u64::from(b.saturating_sub(a)));
            match parsed.parts.first().map(|root| &root.body) {
                Some(mail_parser::PartType::Multipart(children)) => {
                    use mail_parser::MimeHeaders as _;
                    boundary = parsed.parts[0]
                        .content_type()
                        .and_then(|c| c.attribute("boundary"))
                        .map(str::to_owned);
                    for &i in children {
                        if let Some(p) = parsed.parts.get(i as usize) {
                            let mime = span(p.offset_header, p.offset_body);
                            parts.push(part(p, mime, span(p.offset_body, p.offset_end)));
                        }
                    }
                }
                Some(_) => {
                    let body = (at as u64, (message.len() - at) as u64);
                    parts.push(part(&parsed.parts[0], (0, 0), body));
                }
                None => {}
            }
        }
        let body = message[at..].to_vec();
        let mut header = message;
        header.truncate(at);
        Mail {
            header,
            segments: vec![Segment::Bytes(body)],
            parts,
            boundary,
        }
    }

    /// RFC822.SIZE.
    pub fn len(&self) -> u64 {
        self.header.len() as u64 + self.segments.iter().map(Segment::len).sum::<u64>()
    }

    /// The header, with its closing blank line.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The attachments (from 1) whose bytes lie in `start..end`.
    pub fn attachments_within(&self, start: u64, end: u64) -> Vec<usize> {
        self.stretches(start, end)
            .into_iter()
            .filter_map(|s| match s {
                Stretch::Base64 { index, .. } => Some(index),
                Stretch::Bytes(_) => None,
            })
            .collect()
    }

    /// The stretches of the message that bytes `start..end` (clamped to
    /// its length) cover, in order: the one place that knows its layout.
    fn stretches(&self, start: u64, end: u64) -> Vec<Stretch<'_>> {
        let end = end.min(self.len());
        let start = start.min(end);
        let mut out = Vec::new();
        let header = self.header.len() as u64;
        if start < header {
            out.push(Stretch::Bytes(
                &self.header[start as usize..end.min(header) as usize],
            ));
        }
        let mut at = header;
        for segment in &self.segments {
            let next = at + segment.len();
            // An empty segment (an empty attachment) is no stretch.
            if at < next && at < end && start < next {
                let (lo, hi) = (start.max(at) - at, end.min(next) - at);
                out.push(match segment {
                    Segment::Bytes(b) => Stretch::Bytes(&b[lo as usize..hi as usize]),
                    Segment::Base64 { index, size } => Stretch::Base64 {
                        index: *index,
                        size: *size,
                        lo,
                        hi,
                    },
                });
            }
            at = next;
        }
        out
    }

    /// The message's bytes `start..end` (clamped to its length), the
    /// attachments' base64 made from only the plaintext they cover.
    pub fn read(
        &self,
        start: u64,
        end: u64,
        source: &mut Source<'_>,
    ) -> valise_client::Result<Vec<u8>> {
        let end = end.min(self.len());
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        for stretch in self.stretches(start, end) {
            match stretch {
                Stretch::Bytes(b) => out.extend_from_slice(b),
                Stretch::Base64 {
                    index,
                    size,
                    lo,
                    hi,
                } => out.extend(base64_range(index, size, lo, hi, source)?),
            }
        }
        Ok(out)
    }

    /// Whether IMAP writes bytes `start..end` as a literal, as imap-types
    /// chooses for them (`IString::try_from`): not NIL (a NUL byte), not a
    /// quoted string (TEXT-CHARs only). Known without reading an
    /// attachment: its base64 holds no NUL, and a CRLF ends each line. A
    /// FETCH streams only what is a literal (`imap::fetch`), so its
    /// answer is the one imap-codec would have written.
    pub fn is_literal(&self, start: u64, end: u64) -> bool {
        let mut quotable = true;
        for stretch in self.stretches(start, end) {
            match stretch {
                Stretch::Bytes(b) => {
                    if Literal::validate(b).is_err() {
                        return false;
                    }
                    quotable &= Quoted::validate(b).is_ok();
                }
                Stretch::Base64 { size, lo, hi, .. } => {
                    // The end of the line that holds byte `lo`: its CRLF
                    // is in the range if that starts before `hi`.
                    let line_end = ((lo / LINE_BYTES + 1) * LINE_BYTES).min(base64_len(size));
                    quotable &= lo >= hi || line_end - 2 >= hi;
                }
            }
        }
        !quotable
    }
}

/// Part of the bytes a range covers.
enum Stretch<'a> {
    /// Held by the mail (its header, its text).
    Bytes(&'a [u8]),
    /// Bytes `lo..hi` of attachment `index`'s base64 (`size` plaintext bytes).
    Base64 {
        index: usize,
        size: u64,
        lo: u64,
        hi: u64,
    },
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::Base64 { size, .. } => base64_len(*size),
        }
    }
}

/// Plaintext bytes per base64 line, and the line with its CRLF.
const LINE_PLAIN: u64 = 57;
const LINE_BYTES: u64 = 78;

/// The length of `size` bytes as base64 in 76-character lines with CRLF.
fn base64_len(size: u64) -> u64 {
    let chars = size.div_ceil(3) * 4;
    chars + 2 * chars.div_ceil(76)
}

/// Bytes `lo..hi` of attachment `index`'s base64: the whole lines that
/// hold them are encoded from their plaintext alone.
fn base64_range(
    index: usize,
    size: u64,
    lo: u64,
    hi: u64,
    source: &mut Source<'_>,
) -> valise_client::Result<Vec<u8>> {
    if lo >= hi {
        return Ok(Vec::new());
    }
    let (first, last) = (lo / LINE_BYTES, (hi - 1) / LINE_BYTES);
    let plain_start = first * LINE_PLAIN;
    let plain_end = ((last + 1) * LINE_PLAIN).min(size);
    let want = (plain_end - plain_start) as usize;
    let plain = source(index, plain_start, want)?;
    if plain.len() != want {
        return Err(valise_client::ClientError::Attachment(format!(
            "attachment {index} is not kept whole in the home"
        )));
    }
    let mut encoded = Vec::with_capacity((plain.len() / 57 + 1) * 78);
    for line in plain.chunks(LINE_PLAIN as usize) {
        encoded.extend_from_slice(B64.encode(line).as_bytes());
        encoded.extend_from_slice(b"\r\n");
    }
    let skip = (lo - first * LINE_BYTES) as usize;
    let take = (hi - lo) as usize;
    Ok(encoded[skip..skip + take].to_vec())
}

/// The letter as an RFC 5322 message, CRLF line ends throughout. The one
/// place a letter becomes mail (see the module doc). A letter with
/// attachments is `multipart/mixed`: its text, then one base64 part per
/// attachment with its RFC 2231 file name.
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
    if let Some(why) = &letter.withheld {
        field("X-Valise-Withheld", &header_text(why));
    }
    field("MIME-Version", "1.0");
    // Deterministic, and never in the text: a sender could write it there
    // to forge parts, so such a text goes in base64.
    let boundary = format!("=_valise_{}", letter.message_id);
    let (encoding, text) = if letter.attachments.is_empty() {
        body_text(&letter.body, None)
    } else {
        body_text(&letter.body, Some(&boundary))
    };
    if letter.attachments.is_empty() {
        h.push_str(&text_header(encoding));
        h.push_str("\r\n");
        let header = h.into_bytes();
        let at = header.len() as u64;
        let part = Part {
            mime: (0, 0),
            content: (at, text.len() as u64),
            lines: lines(text.as_bytes()),
            kind: PartKind::Text { encoding },
        };
        return Mail {
            header,
            segments: vec![Segment::Bytes(text.into_bytes())],
            parts: vec![part],
            boundary: None,
        };
    }
    field(
        "Content-Type",
        &format!("multipart/mixed; boundary=\"{boundary}\""),
    );
    h.push_str("\r\n");
    let header = h.into_bytes();
    let mut at = header.len() as u64;
    let mut segments = Vec::new();
    let mut parts = Vec::new();
    let mut opening = format!("--{boundary}\r\n");
    let push = |bytes: String, segments: &mut Vec<Segment>, at: &mut u64| {
        *at += bytes.len() as u64;
        segments.push(Segment::Bytes(bytes.into_bytes()));
    };
    // A text part: its MIME header, then its text.
    let push_text = |encoding: &'static str,
                     text: String,
                     segments: &mut Vec<Segment>,
                     parts: &mut Vec<Part>,
                     at: &mut u64| {
        let mime = format!("{}\r\n", text_header(encoding));
        let mime_at = *at;
        push(mime.clone(), segments, at);
        parts.push(Part {
            mime: (mime_at, mime.len() as u64),
            content: (*at, text.len() as u64),
            lines: lines(text.as_bytes()),
            kind: PartKind::Text { encoding },
        });
        push(text, segments, at);
    };
    push(opening.clone(), &mut segments, &mut at);
    push_text(encoding, text, &mut segments, &mut parts, &mut at);
    opening = format!("\r\n--{boundary}\r\n");
    let restricted = letter
        .marking
        .as_ref()
        .filter(|l| valise_client::export::restricted(Some(l)));
    for (i, a) in letter.attachments.iter().enumerate() {
        push(opening.clone(), &mut segments, &mut at);
        // Issue 11: such a file leaves the home only by `valise save` into
        // an approved export directory, labelled and reported; a mail
        // client would keep it wherever it likes. Its part says so.
        if let Some(label) = restricted {
            let notice = format!(
                "Attachment {n} of this letter, {name} ({size} bytes), is marked {label}: \
                 it is not given to mail clients. Save it into an approved export \
                 directory with: valise save {id} --attachment {n} --out FILE",
                n = i + 1,
                name = a.name,
                size = a.size,
                id = letter.id,
            );
            let (encoding, text) = body_text(&notice, Some(&boundary));
            push_text(encoding, text, &mut segments, &mut parts, &mut at);
            continue;
        }
        let media_type = media_type(&a.media_type);
        let mime = attachment_header(&media_type, &a.name);
        let mime_at = at;
        push(mime.clone(), &mut segments, &mut at);
        let len = base64_len(a.size);
        parts.push(Part {
            mime: (mime_at, mime.len() as u64),
            content: (at, len),
            lines: len.div_ceil(LINE_BYTES),
            kind: PartKind::Attachment {
                media_type,
                name: a.name.clone(),
            },
        });
        segments.push(Segment::Base64 {
            index: i + 1,
            size: a.size,
        });
        at += len;
    }
    push(format!("\r\n--{boundary}--\r\n"), &mut segments, &mut at);
    Mail {
        header,
        segments,
        parts,
        boundary: Some(boundary),
    }
}

/// A `text/plain` part's header fields (the letter's text, or what stands
/// for an attachment not given to mail clients).
fn text_header(encoding: &str) -> String {
    format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {encoding}\r\n")
}

fn lines(text: &[u8]) -> u64 {
    text.iter().filter(|&&b| b == b'\n').count() as u64
}

/// A sender's media type if it is a plain `type/subtype` a part may have
/// in base64 (not multipart or message, which have structure of their
/// own), lower case; else `application/octet-stream`.
pub fn media_type(given: &str) -> (String, String) {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 63
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match given.to_ascii_lowercase().split_once('/') {
        Some((t, s)) if token(t) && token(s) && t != "multipart" && t != "message" => {
            (t.to_owned(), s.to_owned())
        }
        _ => ("application".into(), "octet-stream".into()),
    }
}

/// A file name as a MIME parameter: quoted if it is plain ASCII, else
/// RFC 2231 (`filename*=utf-8''%C3%A9…`), its path separators made `_`.
/// The parameter's name and value.
pub fn file_name_param(name: &str, base: &str) -> (String, String) {
    // A sender's name, so it names no directory: a mail client that trusts
    // it must not write outside its download folder.
    let name = match name.replace(['/', '\\'], "_") {
        n if n == "." || n == ".." => "_".to_owned(),
        n => n,
    };
    let plain = name
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        return (base.to_owned(), name);
    }
    let mut value = String::from("utf-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            value.push(b as char);
        } else {
            value.push_str(&format!("%{b:02X}"));
        }
    }
    (format!("{base}*"), value)
}

/// An attachment part's header, with its closing blank line.
fn attachment_header((t, s): &(String, String), name: &str) -> String {
    let param = |(k, v): (String, String)| {
        if k.ends_with('*') {
            format!("; {k}={v}")
        } else {
            format!("; {k}=\"{v}\"")
        }
    };
    let (ct_name, disposition) = if name.is_empty() {
        (String::new(), String::new())
    } else {
        (
            param(file_name_param(name, "name")),
            param(file_name_param(name, "filename")),
        )
    };
    format!(
        "Content-Type: {t}/{s}{ct_name}\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment{disposition}\r\n\r\n"
    )
}

/// The body with CRLF line ends: 7bit if it is short-lined ASCII (and
/// does not hold the boundary), else base64 in 76-character lines.
fn body_text(body: &str, boundary: Option<&str>) -> (&'static str, String) {
    let ascii = body
        .lines()
        .all(|l| l.len() <= 998 && l.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
        && boundary.is_none_or(|b| !body.contains(b));
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

    /// The whole message, attachments from [`plain`].
    fn whole(mail: &Mail) -> Vec<u8> {
        mail.read(0, mail.len(), &mut plain).unwrap()
    }

    /// Attachment `i`'s plaintext: bytes `i, i+1, …` (mod 251), `SIZES[i]`.
    fn plain(i: usize, start: u64, len: usize) -> valise_client::Result<Vec<u8>> {
        let end = (start + len as u64).min(SIZES[i - 1]);
        Ok((start..end).map(|b| ((b + i as u64) % 251) as u8).collect())
    }

    const SIZES: [u64; 4] = [0, 1, 57 * 3 + 2, 200_000];

    fn with_attachments(body: &str) -> LetterView {
        let mut l = letter("Files", body);
        let names = ["empty.txt", "a.pdf", "Übersicht \"Q3\".xlsx", "noext"];
        let types = ["text/plain", "application/pdf", "x", "multipart/mixed"];
        l.attachments = (0..4)
            .map(|i| valise_proto::blob::AttachmentRef {
                blob: valise_proto::BlobId::from_bytes([i as u8; 16]),
                key: valise_proto::blob::BlobKey::from_bytes([9; 32]),
                digest: [0; 32],
                size: SIZES[i],
                blob_size: 0,
                name: names[i].into(),
                media_type: types[i].into(),
            })
            .collect();
        l
    }

    #[test]
    fn attachments_are_base64_parts_a_mail_parser_reads_back() {
        let l = with_attachments("See the files.");
        let mail = rfc5322(&l);
        let bytes = whole(&mail);
        assert_eq!(
            bytes.len() as u64,
            mail.len(),
            "RFC822.SIZE without the bytes"
        );
        assert_eq!(whole(&rfc5322(&l)), bytes, "deterministic");
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.body_text(0).unwrap().trim_end(), "See the files.");
        assert_eq!(parsed.attachment_count(), 4);
        for (i, size) in SIZES.iter().enumerate() {
            let a = parsed.attachment(i as u32).unwrap();
            let want = plain(i + 1, 0, *size as usize).unwrap();
            assert_eq!(a.contents(), want.as_slice(), "attachment {}", i + 1);
        }
        use mail_parser::MimeHeaders as _;
        assert_eq!(
            parsed.attachment(2).unwrap().attachment_name(),
            Some("Übersicht \"Q3\".xlsx")
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("filename*=utf-8''%C3%9Cbersicht%20%22Q3%22.xlsx"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: application/octet-stream; name=\"noext\"\r\n"),
            "multipart and bad types are not kept: {text}"
        );
        assert!(bytes.split(|&b| b == b'\n').all(|line| line.len() <= 998));
        // Each part is where its spans say.
        for p in &mail.parts {
            let (at, n) = p.content;
            let part = &bytes[at as usize..(at + n) as usize];
            assert_eq!(part.iter().filter(|&&b| b == b'\n').count() as u64, p.lines);
            let (mat, mn) = p.mime;
            assert!(bytes[mat as usize..(mat + mn) as usize].starts_with(b"Content-Type: "));
            assert!(bytes[..at as usize].ends_with(b"\r\n\r\n"));
        }
    }

    #[test]
    /// Red team: a member names a file `../../.bashrc` (any name without
    /// control characters passes the letter's checks): a mail client that
    /// trusts the file name it is given would write outside its download
    /// folder. The name a mail client sees names no directory.
    fn a_file_name_names_no_directory() {
        for (given, shown) in [
            ("../../.bashrc", ".._.._.bashrc"),
            ("..\\..\\boot.ini", ".._.._boot.ini"),
            ("/etc/passwd", "_etc_passwd"),
            ("..", "_"),
            (".", "_"),
            ("été/x.pdf", "utf-8''%C3%A9t%C3%A9_x.pdf"),
            ("plain.pdf", "plain.pdf"),
        ] {
            let (_, value) = file_name_param(given, "filename");
            assert_eq!(value, shown, "{given}");
        }
    }

    #[test]
    fn a_text_holding_the_boundary_is_base64() {
        let l = with_attachments("x");
        let boundary = rfc5322(&l).boundary.unwrap();
        let forged = with_attachments(&format!("hi\n--{boundary}\nContent-Type: text/html\n\n<b>"));
        let mail = rfc5322(&forged);
        assert!(matches!(
            mail.parts[0].kind,
            PartKind::Text { encoding: "base64" }
        ));
        let bytes = whole(&mail);
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.attachment_count(), 4);
    }

    proptest! {
        /// Any range is the same bytes as the whole message's, and reads
        /// only the attachments it covers.
        #[test]
        fn a_range_reads_what_the_whole_holds(a in 0u64..300_000, n in 0u64..70_000) {
            let mail = rfc5322(&with_attachments("Body"));
            let bytes = whole(&mail);
            let (a, b) = (a.min(mail.len()), (a + n).min(mail.len()));
            let mut asked = Vec::new();
            let mut spy = |i: usize, s: u64, len: usize| {
                asked.push(i);
                prop_assert!(len <= n as usize + 2 * 57, "read {len} for {n}");
                Ok(plain(i, s, len))
            };
            let mut source = |i: usize, s: u64, len: usize| spy(i, s, len).unwrap_or_else(|_| Ok(Vec::new()));
            let got = mail.read(a, b, &mut source).unwrap();
            prop_assert_eq!(&got[..], &bytes[a as usize..b as usize]);
            asked.dedup();
            prop_assert_eq!(asked, mail.attachments_within(a, b));
        }
    }

    proptest! {
        /// A range is a literal exactly when imap-types makes one of its
        /// bytes (what a streamed FETCH relies on), known without them.
        #[test]
        fn a_range_is_a_literal_as_imap_types_says(
            a in 0u64..300_000,
            n in prop_oneof![0u64..200, 0u64..70_000],
            body in prop_oneof![Just("Body"), Just("Genève"), Just("a\0b")],
        ) {
            let mail = rfc5322(&with_attachments(body));
            let (a, b) = (a.min(mail.len()), (a + n).min(mail.len()));
            let bytes = mail.read(a, b, &mut plain).unwrap();
            let literal = matches!(
                imap_next::imap_types::core::IString::try_from(bytes),
                Ok(imap_next::imap_types::core::IString::Literal(_))
            );
            prop_assert_eq!(mail.is_literal(a, b), literal);
        }
    }

    #[test]
    fn a_range_with_a_nul_is_no_literal() {
        let draft = Mail::raw(b"Subject: x\r\n\r\na\0b\r\n".to_vec());
        let len = draft.len();
        assert!(!draft.is_literal(0, len), "NIL, as imap-types makes it");
        assert!(draft.is_literal(0, len - 4), "before the NUL");
        assert!(!draft.is_literal(0, 4), "a quoted string");
    }

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
            withheld: None,
        }
    }

    #[test]
    fn a_marked_letter_says_its_marking_in_the_subject_and_a_header() {
        let mut l = letter("Visit", "Body");
        l.marking = Some(valise_proto::Label::parse("EU RESTRICTED").unwrap());
        let mail = String::from_utf8(whole(&rfc5322(&l))).unwrap();
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
        let unmarked = String::from_utf8(whole(&rfc5322(&letter("Visit", "Body")))).unwrap();
        assert!(unmarked.contains("Subject: Visit\r\n") && !unmarked.contains("X-Valise-Marking"));
    }

    #[test]
    fn a_withheld_letter_says_why_in_a_header() {
        let mut l = letter(
            "(withheld)",
            "This letter is withheld from this device: why.",
        );
        l.marking = Some(valise_proto::Label::parse("EU RESTRICTED").unwrap());
        l.withheld = Some("marked EU RESTRICTED: this device is not accredited".into());
        let mail = String::from_utf8(whole(&rfc5322(&l))).unwrap();
        assert!(
            mail.contains("Subject: [EU RESTRICTED] (withheld)\r\n"),
            "{mail}"
        );
        assert!(
            mail.contains(
                "X-Valise-Withheld: marked EU RESTRICTED: this device is not accredited\r\n"
            ),
            "{mail}"
        );
        let kept = String::from_utf8(whole(&rfc5322(&letter("Visit", "Body")))).unwrap();
        assert!(!kept.contains("X-Valise-Withheld"));
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
            let bytes = whole(&mail);
            prop_assert_eq!(&whole(&rfc5322(&l)), &bytes, "not deterministic");
            let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
            let PartKind::Text { encoding } = mail.parts[0].kind else { panic!() };
            prop_assert_eq!(parsed.subject().unwrap_or_default(), subject.as_str());
            let text = parsed.body_text(0).unwrap_or_default().replace("\r\n", "\n");
            let want = if encoding == "7bit" {
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
            prop_assert!(bytes.split(|&b| b == b'\n').all(|line| line.len() <= 998));
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
        assert_eq!(body_text("a\nb", None), ("7bit", "a\r\nb\r\n".to_owned()));
        let (enc, text) = body_text("Genève", None);
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
