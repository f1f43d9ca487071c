//! What the mail bridge's fuzz target checks: a mail a client submits over
//! SMTP, read by `crates/bridge/src/submission.rs` (included here, so the
//! target needs neither the engine nor SQLCipher). Replayed over the seeds
//! by `crates/bridge/tests/fuzz_seeds.rs`.
#![forbid(unsafe_code)]

#[path = "../../crates/bridge/src/submission.rs"]
mod submission;

/// Every target of this file, by name.
pub const TARGETS: &[&str] = &["bridge_submission"];

/// Submitted mail: never a panic; what is accepted has LF line ends only,
/// names no recipient the headers do not, and reads the same twice.
/// Returns 1 if the mail was accepted as a letter.
pub fn bridge_submission(data: &[u8]) -> usize {
    // The first line names the RCPT set (comma-separated), the rest is DATA.
    let (rcpt, mail) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let recipients: Vec<String> = String::from_utf8_lossy(rcpt)
        .split(',')
        .map(|r| r.trim().to_lowercase())
        .filter(|r| !r.is_empty())
        .collect();
    let first = submission::read(mail, &recipients);
    assert_eq!(
        first,
        submission::read(mail, &recipients),
        "not deterministic"
    );
    match first {
        Ok(s) => {
            assert!(!s.body.contains("\r\n"), "CRLF kept in the body");
            for (name, _) in &s.attachments {
                assert!(
                    !name.is_empty()
                        && name.len() <= submission::MAX_NAME_BYTES
                        && !name.chars().any(char::is_control),
                    "{name:?}"
                );
            }
            if let Some(id) = &s.in_reply_to {
                assert!(!id.is_empty() && !id.contains('@'), "{id:?}");
            }
            1
        }
        Err(_) => 0,
    }
}
