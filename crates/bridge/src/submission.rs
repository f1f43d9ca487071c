//! A mail a client submits over SMTP, read into what a letter needs.
//! Untrusted bytes: parsed by mail-parser, checked here, and nothing else
//! of them goes on. No I/O and no engine, so the fuzz target
//! `bridge_submission` runs this very file.

use valise_proto::Label;

/// What a letter takes from a submitted mail.
#[derive(Debug, PartialEq, Eq)]
pub struct Submission {
    pub subject: String,
    /// Text with LF line ends (mail gets CRLF again when rendered).
    pub body: String,
    /// The message id (without `<…@host>`) the mail answers, if any.
    pub in_reply_to: Option<String>,
    /// The client's own Message-ID (without `<>`), if it gave one.
    pub message_id: Option<String>,
    /// Its attachments, decoded: file name (control characters replaced,
    /// at most [`MAX_NAME_BYTES`]) and bytes.
    pub attachments: Vec<(String, Vec<u8>)>,
    /// The handling markings it names ([`markings`]).
    pub markings: Vec<Label>,
}

/// The longest attachment name a letter carries (the engine's limit,
/// `valise_proto::blob::MAX_NAME_BYTES`).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a mail cannot become a letter.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the letter is not a mail message")]
    NotMail,
    #[error("Bcc is not possible: every member of a conversation sees every other")]
    Blind,
}

/// The markings a mail names: each `[LABEL]` in its subject (how a marked
/// letter's subject shows, which a client's Forward or Reply keeps) and
/// each `X-Valise-Marking:` line anywhere in it, quoted or not (a letter
/// forwarded inline with its header, or attached whole). A mail made from
/// a marked letter goes marked at least as high, so the engine's
/// accreditation and ceiling rules apply to it: a mail client's Forward
/// never sends a restricted letter on unmarked.
pub fn markings(subject: &str, data: &[u8]) -> Vec<Label> {
    const HEADER: &str = "x-valise-marking:";
    let mut found = Vec::new();
    let mut rest = subject;
    while let Some(open) = rest.find('[') {
        let Some(len) = rest[open..].find(']') else {
            break;
        };
        found.extend(Label::parse(&rest[open + 1..open + len]).ok());
        rest = &rest[open + len + 1..];
    }
    for line in String::from_utf8_lossy(data).lines() {
        let line = line.trim_start_matches(['>', ' ', '\t']);
        if let Some(head) = line.get(..HEADER.len())
            && head.eq_ignore_ascii_case(HEADER)
        {
            found.extend(Label::parse(line[HEADER.len()..].trim()).ok());
        }
    }
    found.sort_by_key(ToString::to_string);
    found.dedup();
    found
}

/// The Message-ID a mail carries, without `<>`.
pub fn message_id(mail: &mail_parser::Message<'_>) -> Option<String> {
    mail.message_id()
        .map(|id| id.trim_matches(['<', '>', ' ']))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// Reads `data` sent to `recipients` (the RCPT set, lower case): every
/// recipient must be named in To or Cc, and there may be no Bcc.
pub fn read(data: &[u8], recipients: &[String]) -> Result<Submission, Refusal> {
    let mail = mail_parser::MessageParser::default()
        .parse(data)
        .ok_or(Refusal::NotMail)?;
    let headed: Vec<String> = [mail.to(), mail.cc()]
        .into_iter()
        .flatten()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address().map(str::to_lowercase))
        .collect();
    if mail.bcc().is_some() || recipients.iter().any(|r| !headed.contains(r)) {
        return Err(Refusal::Blind);
    }
    let in_reply_to = mail
        .in_reply_to()
        .as_text()
        .map(|id| id.trim_matches(['<', '>', ' ']))
        .and_then(|id| id.split('@').next())
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let subject = mail.subject().unwrap_or_default().to_owned();
    Ok(Submission {
        message_id: message_id(&mail),
        markings: markings(&subject, data),
        subject,
        body: mail
            .body_text(0)
            .map(|b| lf_line_ends(&b))
            .unwrap_or_default(),
        in_reply_to,
        attachments: mail
            .attachments()
            .enumerate()
            .map(|(i, a)| {
                use mail_parser::MimeHeaders as _;
                let name = a.attachment_name().unwrap_or_default();
                (file_name(name, i + 1), a.contents().to_vec())
            })
            .collect(),
    })
}

/// An attachment's name as a letter may carry it: control characters
/// replaced, cut (on a character) to [`MAX_NAME_BYTES`], `attachment-N`
/// for none.
fn file_name(name: &str, n: usize) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        let c = if c.is_control() { '_' } else { c };
        if out.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        format!("attachment-{n}")
    } else {
        out
    }
}

/// The text with LF line ends: every CR that ends a line goes, however
/// many (one replace of CRLF would turn a client's CR CR LF into CRLF).
fn lf_line_ends(text: &str) -> String {
    text.split('\n')
        .map(|line| line.trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &[u8] = b"From: bob@mfa.example\r\nTo: Alice <alice@mfa.example>\r\n\
        Subject: =?utf-8?q?R=C3=A9union?=\r\nIn-Reply-To: <0011aabb@valise>\r\n\r\nLine 1\r\nLine 2\r\n";

    #[test]
    fn a_mail_becomes_the_parts_of_a_letter() {
        let s = read(MAIL, &["alice@mfa.example".into()]).unwrap();
        assert_eq!(s.subject, "Réunion");
        assert_eq!(s.body, "Line 1\nLine 2\n");
        assert_eq!(s.in_reply_to.as_deref(), Some("0011aabb"));
    }

    #[test]
    fn line_ends_become_lf_whatever_crs_precede_them() {
        assert_eq!(lf_line_ends("a\r\nb\r\r\nc\n\rd"), "a\nb\nc\n\rd");
        let mail = b"To: alice@mfa.example\r\n\r\nsee attached\r\r\nmore\r\n";
        let s = read(mail, &["alice@mfa.example".into()]).unwrap();
        assert_eq!(s.body, "see attached\nmore\n");
    }

    #[test]
    fn attachments_are_decoded_with_safe_names() {
        let mail = b"To: alice@mfa.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
            --b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
            --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; \
            filename*=utf-8''R%C3%A9sum%C3%A9%0A.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n\
            --b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment\r\n\r\nraw\r\n--b--\r\n";
        let s = read(mail, &["alice@mfa.example".into()]).unwrap();
        assert_eq!(s.body, "See attached.");
        assert_eq!(
            s.attachments,
            vec![
                ("Résumé_.pdf".to_owned(), b"%PDF-".to_vec()),
                ("attachment-2".to_owned(), b"raw".to_vec()),
            ]
        );
        let long = "é".repeat(200);
        assert_eq!(file_name(&long, 1).len(), 254);
    }

    #[test]
    fn a_recipient_the_headers_do_not_name_is_a_bcc() {
        let rcpt = ["alice@mfa.example".into(), "carol@mfa.example".into()];
        assert_eq!(read(MAIL, &rcpt), Err(Refusal::Blind));
        let bcc = b"To: alice@mfa.example\r\nBcc: carol@mfa.example\r\n\r\nx";
        assert_eq!(
            read(bcc, &["alice@mfa.example".into()]),
            Err(Refusal::Blind)
        );
    }

    #[test]
    fn a_mail_names_the_markings_of_its_subject_and_quoted_headers() {
        let names = |subject: &str, data: &str| -> Vec<String> {
            markings(subject, data.as_bytes())
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(names("Fwd: [EU RESTRICTED] Mandate", ""), ["EU RESTRICTED"]);
        assert_eq!(
            names("Re: [TLP:AMBER+STRICT] [x] [", ""),
            ["TLP:AMBER+STRICT"]
        );
        assert_eq!(
            names(
                "Fwd: Mandate",
                "Subject: x\r\n\r\n> X-VALISE-MARKING:  TLP:RED\r\n"
            ),
            ["TLP:RED"]
        );
        assert!(names("Visit [draft]", "no marking here").is_empty());
        assert_eq!(
            names("[TLP:RED] a", "X-Valise-Marking: TLP:RED\r\n"),
            ["TLP:RED"],
            "named twice, counted once"
        );
    }
}
