//! What the CLI prints: text for people, `--json` for scripts.

use serde::Serialize;
use serde_json::json;
use valise_client::{
    Alert, AuditLogReport, AuditReport, ClientError, ConversationDetail, ConversationView,
    DeskReport, DeskState, DeviceView, HeldLetter, LetterSummary, LetterView, SentLetter,
    SyncProgress, SyncReport, attachment_infos,
};
use valise_proto::attestation::{Accreditation, AuthorityKey};
use valise_proto::{ConversationId, DeviceAddress, DeviceId, Label, UserId};

pub struct Output {
    pub json: bool,
}

impl Output {
    fn emit(&self, value: impl Serialize, text: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string_pretty(&value) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot encode JSON: {e}"),
            }
        } else {
            println!("{}", text());
        }
    }

    pub fn enrolled(&self, me: &DeviceAddress) {
        self.emit(
            json!({"user": me.user, "device": me.device, "status": "approved"}),
            || format!("enrolled {} as device {}", me.user, me.device),
        );
    }

    /// The account already had devices: this one waits for one of them.
    pub fn enrolled_pending(&self, me: &DeviceAddress, link_code: &str, others: &[DeviceView]) {
        let value = json!({
            "user": me.user,
            "device": me.device,
            "status": "pending",
            "link_code": link_code,
            "existing_devices": others,
        });
        self.emit(value, || {
            let list = others
                .iter()
                .map(|d| format!("  {}  {}", d.device, d.status))
                .collect::<Vec<_>>()
                .join("\n");
            format!(
                "enrolled {} as device {}, PENDING APPROVAL.\n\
                 This account already has devices:\n{list}\n\
                 To approve this device, run on one of them:\n  valise devices approve {link_code}\n\
                 If none of these devices is yours, someone else holds your account: do not use \
                 it, and report it to your security officer now (your administrator can reset \
                 the account with `valised admin invite --reset`).",
                me.user, me.device
            )
        });
    }

    pub fn saved(&self, s: &valise_client::attachments::Saved) {
        self.emit(s, || {
            let label = s
                .label_file
                .as_ref()
                .map(|l| format!("; its label in {}", l.display()))
                .unwrap_or_default();
            format!(
                "saved {} ({}, {} bytes){label}",
                s.path.display(),
                s.media_type,
                s.size
            )
        });
    }

    pub fn sent(&self, s: &SentLetter) {
        self.emit(s, || match &s.conversation {
            Some(c) => format!("sent letter {} in conversation {c}", s.id),
            None => format!("letter {} kept in the outbox", s.id),
        });
    }

    pub fn held(&self, list: &[HeldLetter]) {
        self.emit(list, || {
            if list.is_empty() {
                return "nothing waits in the outbox".into();
            }
            list.iter()
                .map(|h| format!("{}  {}", h.message_id, h.reason))
                .collect::<Vec<_>>()
                .join("\n")
        });
    }

    pub fn device_changed(&self, what: &str, device: &DeviceId) {
        self.emit(json!({"device": device, "status": what}), || {
            format!("device {device} {what}")
        });
    }

    pub fn rejoined(&self, id: &ConversationId) {
        self.emit(json!({"conversation": id, "rejoined": true}), || {
            format!("rejoined conversation {id} from the server's state")
        });
    }

    pub fn conversation(&self, c: &ConversationDetail) {
        self.emit(c, || {
            let roster = |m: &std::collections::BTreeMap<UserId, Vec<String>>| {
                m.iter()
                    .map(|(u, d)| format!("  {u}: {}", d.join(", ")))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let state = if c.diverged { " [out of step]" } else { "" };
            let hub = match (&c.hub, c.hub_epoch) {
                (Some(h), Some(e)) => format!("the server's state (epoch {e}):\n{}", roster(h)),
                _ => "the server gave no state".into(),
            };
            format!(
                "{}{state}\n{}this device trusts (epoch {}):\n{}\n{hub}",
                c.id,
                policy_line(c.ceiling.as_deref(), c.ceiling_known, c.degraded.as_deref()),
                c.epoch,
                roster(&c.trusted)
            )
        });
    }

    pub fn synced(&self, r: &SyncReport, alerts: &[Alert]) {
        let mut value = serde_json::to_value(r).unwrap_or_default();
        value["alerts"] = serde_json::to_value(alerts).unwrap_or_default();
        self.emit(value, || {
            let n = r.new_letters;
            let mut line = format!("{n} new letter{}", plural(n));
            for (n, what) in [
                (r.joined, "conversations joined"),
                (r.new_devices, "NEW DEVICES on your account"),
                (r.commits, "membership changes"),
                (r.devices_added, "devices added to conversations"),
                (
                    r.devices_removed,
                    "revoked devices removed from conversations",
                ),
                (
                    r.updated,
                    "conversations where this device renewed its keys",
                ),
                (r.delivered, "queued letters delivered"),
                (
                    r.new_reports,
                    "alert reports received (`valise alerts --desk`)",
                ),
                (r.held, "letters WAITING to go (see `valise outbox`)"),
                (r.rejoined, "conversations rejoined after losing track"),
                (r.resent, "own letters sent again (the server was restored)"),
                (
                    r.rejected,
                    "messages REFUSED (failed verification; see --log-level warn)",
                ),
            ] {
                if n > 0 {
                    line.push_str(&format!(", {n} {what}"));
                }
            }
            for a in alerts {
                line.push_str(&format!("\n!!! ALERT {}: {}", a.kind, a.detail));
            }
            if !alerts.is_empty() {
                line.push_str("\n!!! see `valise alerts` for the evidence");
            }
            line
        });
    }

    pub fn safety_code(&self, user: &UserId, code: &str) {
        self.emit(json!({"user": user, "safety_code": code}), || {
            format!(
                "safety code with {user}:\n  {code}\ncompare it with {user} over a trusted channel, \
                 then run `valise verify {user} --code '<code>'`"
            )
        });
    }

    pub fn verified(&self, user: &UserId) {
        self.emit(json!({"user": user, "verified": true}), || {
            format!("{user} verified: the safety codes match")
        });
    }

    pub fn audited(&self, r: &AuditReport) {
        self.emit(r, || match r.from_epoch {
            Some(from) => format!(
                "directory consistent: epochs {from} → {} only appended ({} proofs checked)",
                r.to_epoch, r.proofs_checked
            ),
            None => format!("first audit: root of epoch {} recorded", r.to_epoch),
        });
    }

    pub fn audit_logged(&self, r: &AuditLogReport) {
        self.emit(r, || {
            let walked = match r.entries_checked {
                0 => String::new(),
                n => format!(", {n} new entries hash to the signed root"),
            };
            match r.from_size {
                Some(from) => format!(
                    "audit log {} consistent: {from} → {} entries, only appended{walked}",
                    r.origin, r.to_size
                ),
                None => format!(
                    "first audit of {}: checkpoint of {} entries recorded{walked}",
                    r.origin, r.to_size
                ),
            }
        });
    }

    pub fn alerts(&self, list: &[Alert]) {
        let rows: Vec<_> = list
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "time": rfc3339(a.at_ms),
                    "kind": a.kind,
                    "conversation": a.conversation,
                    "detail": a.detail,
                    "evidence": a.evidence,
                })
            })
            .collect();
        self.emit(rows, || {
            if list.is_empty() {
                return "no alerts".into();
            }
            list.iter()
                .map(|a| {
                    format!(
                        "{}  {}  {}",
                        rfc3339(a.at_ms),
                        a.kind,
                        shown(&a.detail, false)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    }

    /// Security desk reports: one JSON object per line with --json (for a
    /// SIEM), or one line of text each.
    pub fn desk_reports(&self, reports: &[DeskReport]) -> anyhow::Result<()> {
        if reports.is_empty() && !self.json {
            println!("no reports");
        }
        reports.iter().try_for_each(|r| self.desk_report(r))
    }

    /// One report, written and flushed before the caller moves on.
    pub fn desk_report(&self, r: &DeskReport) -> anyhow::Result<()> {
        use std::io::Write as _;
        let line = if self.json {
            serde_json::to_string(r)?
        } else {
            let mut line = format!(
                "{}  {}/{}  {}  {}  {}",
                rfc3339(r.at_ms),
                r.user,
                r.device,
                shown(r.kind.as_str(), false),
                r.conversation.as_deref().unwrap_or("-"),
                shown(&r.detail, false)
            );
            if r.suppressed > 0 {
                line.push_str(&format!("  (+{} not reported)", r.suppressed));
            }
            line
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        Ok(())
    }

    pub fn desk(&self, s: &DeskState) {
        self.emit(s, || {
            let mut text = match &s.pinned {
                Some(d) => format!("alerts are reported to the security desk {d}"),
                None => "no security desk is known: alerts stay on this device".into(),
            };
            if s.changed {
                let named = s.offered.as_ref().map_or("none".into(), |d| d.to_string());
                text.push_str(&format!(
                    "\nthe server names another desk: {named} (`valise desk accept` to report there)"
                ));
            }
            text
        });
    }

    pub fn desk_accepted(&self, desk: Option<&UserId>) {
        self.emit(json!({ "pinned": desk }), || match desk {
            Some(d) => format!("alerts are reported to the security desk {d} from now on"),
            None => "no security desk from now on: alerts stay on this device".into(),
        });
    }

    pub fn inbox(&self, letters: &[LetterSummary]) {
        let rows: Vec<_> = letters
            .iter()
            .map(|l| {
                json!({
                    "id": l.id,
                    "conversation": l.conversation,
                    "from": l.from,
                    "subject": l.subject,
                    "sent_at": rfc3339(l.sent_at_ms),
                    "marking": l.marking.as_ref().map(Label::to_string),
                    "withheld": l.withheld,
                })
            })
            .collect();
        self.emit(rows, || {
            if letters.is_empty() {
                return "no letters".into();
            }
            letters
                .iter()
                .map(|l| {
                    format!(
                        "{:>5}  {}  {:<28} {}{}",
                        l.id,
                        rfc3339(l.sent_at_ms),
                        l.from.as_str(),
                        marking_prefix(&l.marking),
                        shown(&l.subject, false)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    }

    pub fn letter(&self, l: &LetterView) {
        let value = json!({
            "id": l.id,
            "conversation": l.conversation,
            "from": l.from,
            "subject": l.subject,
            "sent_at": rfc3339(l.sent_at_ms),
            "marking": l.marking.as_ref().map(Label::to_string),
            "body": l.body,
            "to": l.to,
            "thread": l.thread,
            "in_reply_to": l.in_reply_to,
            "message_id": l.message_id,
            "from_device": l.from_device,
            "attachments": attachment_infos(&l.attachments),
            "withheld": l.withheld,
        });
        self.emit(value, || {
            let to: Vec<&str> = l.to.iter().map(UserId::as_str).collect();
            let annexes: String = attachment_infos(&l.attachments)
                .iter()
                .map(|a| {
                    format!(
                        "\nAttachment {}: {} ({}, {} bytes)",
                        a.index,
                        shown(a.name, false),
                        shown(a.media_type, false),
                        a.size
                    )
                })
                .collect();
            format!(
                "From:    {} (device {})\nTo:      {}\nDate:    {}\nSubject: {}{}{annexes}\n\n{}",
                l.from,
                l.from_device,
                to.join(", "),
                rfc3339(l.sent_at_ms),
                marking_prefix(&l.marking),
                shown(&l.subject, false),
                shown(&l.body, true)
            )
        });
    }

    pub fn created(&self, id: &ConversationId) {
        self.emit(json!({"conversation": id}), || id.to_string());
    }

    pub fn changed(&self, what: &str, id: &ConversationId, user: &UserId) {
        self.emit(json!({"conversation": id, what: user}), || {
            format!("{what} {user} in conversation {id}")
        });
    }

    pub fn conversations(&self, list: &[ConversationView]) {
        self.emit(list, || {
            if list.is_empty() {
                return "no conversations".into();
            }
            list.iter()
                .map(|c| {
                    let members = c
                        .members
                        .iter()
                        .map(|(u, d)| format!("  {u} ({} device{})", d.len(), plural(d.len())))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let name = if c.name.is_empty() {
                        "(no name)".to_owned()
                    } else {
                        shown(&c.name, false)
                    };
                    let state = match (c.active, c.diverged) {
                        (false, _) => " [left]",
                        (true, true) => " [out of step: see `valise alerts`]",
                        (true, false) => "",
                    };
                    format!(
                        "{}  {name}  epoch {}{state}\n{}{members}",
                        c.id,
                        c.epoch,
                        policy_line(c.ceiling.as_deref(), c.ceiling_known, c.degraded.as_deref())
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    }

    pub fn devices(&self, list: &[DeviceView]) {
        self.emit(list, || {
            list.iter()
                .map(|d| {
                    let this = if d.this_device { "  (this device)" } else { "" };
                    let by =
                        d.by.as_ref()
                            .map(|b| format!(" by {b}"))
                            .unwrap_or_default();
                    let code = match (&d.link_code, d.status.as_str()) {
                        (Some(c), "pending") => format!("  link code {c}"),
                        _ => String::new(),
                    };
                    format!("{}  {}{by}{code}{this}", d.device, d.status)
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    }

    pub fn markings(&self) {
        use valise_proto::marking::CATALOGUE;
        let names = |ms: &[valise_proto::Marking]| -> Vec<&str> {
            ms.iter().map(|m| m.entry().name).collect()
        };
        let rows: Vec<_> = CATALOGUE
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "shown_as": e.short,
                    "policy": e.policy,
                    "level": e.level,
                    "aliases": e.aliases,
                    "covers": names(e.covers),
                })
            })
            .collect();
        self.emit(rows, || {
            let mut text: Vec<String> = CATALOGUE
                .iter()
                .map(|e| {
                    let mut line = format!("{:<30} {:<5} {}", e.name, e.policy, e.level);
                    if !e.aliases.is_empty() {
                        line += &format!("; also {}", e.aliases.join(", "));
                    }
                    if !e.covers.is_empty() {
                        line += &format!("; covers {}", names(e.covers).join(", "));
                    }
                    line
                })
                .collect();
            text.push(
                "add caveats and releasability as MARKING//CAVEAT//REL TO CZE, FRA; an \
                 accreditation covers a letter when it covers its marking (transitively), holds \
                 all its caveats and names no one outside its REL TO"
                    .into(),
            );
            text.join("\n")
        });
    }

    pub fn authority_key(&self, key: &AuthorityKey, file: &std::path::Path) {
        self.emit(
            json!({
                "file": file,
                "public_key": key.to_string(),
                "fingerprint": key.fingerprint_hex(),
            }),
            || {
                format!(
                    "authority key written to {} (keep it offline)\npublic key:  {key}\n\
                     fingerprint: {}",
                    file.display(),
                    key.fingerprint_hex()
                )
            },
        );
    }

    pub fn accredited(&self, a: &Accreditation, file: &std::path::Path) {
        let until = rfc3339(a.not_after_s.saturating_mul(1000));
        self.emit(
            json!({
                "file": file,
                "user": a.user,
                "device": a.device,
                "marking": a.label.to_string(),
                "not_after": until,
            }),
            || {
                format!(
                    "{} accredited for {} until {until}, {}: attestation written to {}",
                    a.user,
                    a.label,
                    a.device
                        .map_or("on all devices".into(), |d| format!("on device {d}")),
                    file.display()
                )
            },
        );
    }
}

/// An attachment transfer's progress on stderr, never with `--json`.
pub fn transfer_bar(json: bool) -> Option<valise_client::attachments::Progress> {
    if json {
        return None;
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "attachment {msg} {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(Box::new(move |t: valise_client::attachments::Transfer| {
        bar.set_message(t.index.to_string());
        bar.set_length(t.total);
        bar.set_position(t.done);
        if t.done == t.total {
            bar.finish_and_clear();
            bar.reset();
        }
    }))
}

/// Progress of a long sync on stderr; shown only for a real backlog on a
/// terminal, never with `--json`.
pub struct SyncBar(Option<indicatif::ProgressBar>);

/// Below this many waiting entries a sync is quick and shows no bar.
const BAR_FROM: u64 = 2_000;

impl SyncBar {
    pub fn new(json: bool) -> Self {
        if json {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "syncing {bar:40} {pos}/{len} messages ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(Some(bar))
    }

    pub fn update(&self, p: SyncProgress) {
        let Some(bar) = &self.0 else { return };
        if let Some(total) = p.total.filter(|t| *t >= BAR_FROM) {
            if bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            bar.set_length(total.max(p.entries));
        }
        bar.set_position(p.entries);
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Prints one line for the user and picks the exit code.
pub fn fail(e: &anyhow::Error, json: bool) -> std::process::ExitCode {
    eprintln!("{}", failure_line(e, json));
    std::process::ExitCode::FAILURE
}

/// The line [`fail`] prints. An error may quote what the server wrote (a
/// problem's title and detail): shown as any text from outside.
fn failure_line(e: &anyhow::Error, json: bool) -> String {
    let code = e
        .downcast_ref::<ClientError>()
        .map_or("error", ClientError::code);
    let message = shown(&format!("{e:#}"), false);
    if json {
        json!({"error": code, "message": message}).to_string()
    } else {
        format!("valise: {message}")
    }
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A conversation's ceiling and whether it is degraded, as a line (empty
/// for a conversation without a ceiling that is not degraded).
fn policy_line(ceiling: Option<&str>, known: bool, degraded: Option<&str>) -> String {
    let mut line = match (ceiling, known) {
        (Some(c), _) => format!("  ceiling: {c}"),
        (None, false) => "  ceiling: not known yet (sync)".into(),
        (None, true) => String::new(),
    };
    if let Some(why) = degraded {
        line.push_str(&format!("  DEGRADED ({why}): no marked letters"));
    }
    if !line.is_empty() {
        line.push('\n');
    }
    line
}

/// Text a member or the server wrote (subject, body, annex name and type,
/// conversation name, alert details, desk reports), as the terminal may
/// show it: control characters (escape
/// sequences, carriage returns) and bidirectional overrides become U+FFFD,
/// so that no member redraws the marking, the sender or a file's type.
/// `lines`: a body keeps its line breaks and tabs.
fn shown(text: &str, lines: bool) -> String {
    text.chars()
        .map(|c| {
            let kept = lines && matches!(c, '\n' | '\t');
            let bidi = matches!(c, '\u{61C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if !kept && (c.is_control() || bidi) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// The label as a subject prefix, `[EU RESTRICTED] `.
fn marking_prefix(m: &Option<Label>) -> String {
    m.as_ref().map(Label::subject_prefix).unwrap_or_default()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::{failure_line, shown};
    use valise_client::ClientError;
    use valise_proto::{ErrorCode, Problem};

    /// The server's problem text is the intruder's: it reaches the
    /// terminal only as text.
    #[test]
    fn a_servers_error_cannot_drive_the_terminal() {
        let problem = Problem::new(
            ErrorCode::BadRequest,
            "\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{9b}2J",
        );
        let e = anyhow::Error::from(ClientError::Server(problem));
        for json in [false, true] {
            let line = failure_line(&e, json);
            assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
            assert!(line.contains("bad_request") || !json, "{line}");
        }
    }

    #[test]
    fn members_text_cannot_drive_the_terminal() {
        assert_eq!(
            shown("a\u{1b}[2K\rb\u{202E}c", false),
            "a\u{FFFD}[2K\u{FFFD}b\u{FFFD}c"
        );
        assert_eq!(shown("l1\n\tl2\r", true), "l1\n\tl2\u{FFFD}");
        assert_eq!(shown("Démarche\n", false), "Démarche\u{FFFD}");
    }
}
