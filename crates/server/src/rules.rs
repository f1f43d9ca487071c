//! Server-side alert rules (issue 10): what the audit log's events say that
//! a security desk should look at now, without reading the whole log.
//!
//! ```text
//! handlers ─Evidence::emit─▶ audit writer ─▶ Rules::observe(event) ─▶ Raised
//!                                 │                                    │ debounced
//!                                 ▼                                    ▼
//!                         the event's entry           an `alert_raised` entry in the same
//!                                                     log (+ a row in `alerts`), then
//!                                                     /metrics and the webhook
//! ```
//!
//! The rules consume the audit log's own events (one concept, one place):
//! no handler calls a rule, and an alert is itself an audit entry, so an
//! intruder who deletes one breaks the log's verification. The rules keep
//! their windows in memory only: a restart starts them afresh (it is on
//! record as `server_started`).
//!
//! Every alert kind is debounced: one alert per kind and subject per
//! [`RuleSettings::debounce`]; the next one after the window carries how
//! many were held back (`suppressed`).

use crate::audit::Event;
use crate::client_addr::ClientAddr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;
use valise_proto::audit::{Action, Actor, Detail, Entry, Subject};
use valise_proto::{DeviceAddress, UserId};

/// What a rule found. The names are stable: a SIEM matches on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Many failed authentications for one device, or from one address.
    AuthFailureBurst,
    /// One device read far more inbox entries than it usually does.
    HeavyReader,
    /// A revoked device, or a token of one, still tries.
    RevokedDeviceActivity,
    /// A claim handed out a device's last-resort key package: its one-time
    /// ones had run out.
    KeyPackagesExhausted,
    /// An auditor reported a checkpoint that does not verify.
    AuditCheckpointConflict,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthFailureBurst => "auth_failure_burst",
            Self::HeavyReader => "heavy_reader",
            Self::RevokedDeviceActivity => "revoked_device_activity",
            Self::KeyPackagesExhausted => "key_packages_exhausted",
            Self::AuditCheckpointConflict => "audit_checkpoint_conflict",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::AuthFailureBurst,
            Self::HeavyReader,
            Self::RevokedDeviceActivity,
            Self::KeyPackagesExhausted,
            Self::AuditCheckpointConflict,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// How urgent: `critical` is evidence of an attack (or of the server
/// itself lying), `warning` is worth a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Warning, Self::Critical]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Whom an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSubject {
    Device(DeviceAddress),
    User(UserId),
    /// A client address (an IPv6 client by its /64).
    Address(IpAddr),
}

/// One alert as `valised alerts --json` prints it and the webhook receives
/// it (docs/OPERATIONS.md, "Server alerts"). `id` is the number of the
/// audit entry that records it: increasing, and checkable against the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub at_ms: i64,
    pub kind: AlertKind,
    pub severity: Severity,
    pub subject: Option<AlertSubject>,
    /// Counts and codes; never content.
    pub detail: BTreeMap<String, Detail>,
}

impl Alert {
    /// The alert an `alert_raised` entry records; none for another entry.
    pub fn from_entry(entry: Entry) -> Option<Self> {
        if entry.action != Action::AlertRaised {
            return None;
        }
        let mut detail = entry.details;
        let text = |d: Option<Detail>| match d {
            Some(Detail::Text(t)) => Some(t),
            _ => None,
        };
        let kind = AlertKind::parse(&text(detail.remove("kind"))?)?;
        let severity = Severity::parse(&text(detail.remove("severity"))?)?;
        let subject = match (entry.subject, entry.from) {
            (Some(Subject::Device(d)), _) => Some(AlertSubject::Device(d)),
            (Some(Subject::User(u)), _) => Some(AlertSubject::User(u)),
            (_, Some(ip)) => Some(AlertSubject::Address(ip)),
            _ => None,
        };
        Some(Self {
            id: entry.index,
            at_ms: entry.time_ms,
            kind,
            severity,
            subject,
            detail,
        })
    }
}

/// An alert a rule raised, before the audit log numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub kind: AlertKind,
    pub severity: Severity,
    pub subject: AlertSubject,
    pub detail: BTreeMap<String, Detail>,
}

impl Raised {
    fn new(kind: AlertKind, severity: Severity, subject: AlertSubject) -> Self {
        Self {
            kind,
            severity,
            subject,
            detail: BTreeMap::new(),
        }
    }

    fn count(mut self, key: &str, n: u64) -> Self {
        self.detail.insert(key.to_owned(), Detail::Count(n));
        self
    }

    /// The audit event that records this alert.
    pub fn event(self) -> Event {
        let mut event = Event::new(Actor::Server, Action::AlertRaised)
            .text("kind", self.kind.as_str())
            .text("severity", self.severity.as_str());
        event.details.extend(self.detail);
        match self.subject {
            AlertSubject::Device(d) => event.on_device(&d),
            AlertSubject::User(u) => event.on_user(&u),
            AlertSubject::Address(ip) => event.from(Some(ClientAddr::of(ip))),
        }
    }
}

/// The rules' thresholds. Only the ones an operator may need to tune are
/// settings of `valised run` ([`crate::config`]); the rest are fixed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSettings {
    /// `auth_failure_burst`: this many failed authentications for one
    /// device, or from one address, within [`Self::auth_window`].
    pub auth_failures: u32,
    pub auth_window: Duration,
    /// `heavy_reader`: a device that reads at least this many inbox entries
    /// in one checkpoint interval...
    pub heavy_reader_floor: u64,
    /// ...and more than this many times its own running average.
    pub heavy_reader_factor: u64,
    /// One alert per kind and subject per this long.
    pub debounce: Duration,
}

/// `valised run --alert-auth-failures`'s default.
pub const DEFAULT_AUTH_FAILURES: u32 = 10;
/// `valised run --alert-heavy-reader-floor`'s default: about ten times
/// what a busy embassy desk reads in a minute.
pub const DEFAULT_HEAVY_READER_FLOOR: u64 = 5000;

impl Default for RuleSettings {
    fn default() -> Self {
        Self {
            auth_failures: DEFAULT_AUTH_FAILURES,
            auth_window: Duration::from_secs(60),
            heavy_reader_floor: DEFAULT_HEAVY_READER_FLOOR,
            heavy_reader_factor: 10,
            debounce: Duration::from_secs(600),
        }
    }
}

/// Most subjects (devices, addresses, debounce keys) a rule tracks; past
/// it the oldest state is dropped, so a flood from many addresses costs
/// bounded memory (it still raises its alerts from the addresses tracked).
const MAX_TRACKED: usize = 100_000;

/// How much a new interval weighs in a device's running average of
/// entries read (1/8: a device's habit changes over a few intervals).
const AVERAGE_WEIGHT: f64 = 0.125;

/// One alert kind and subject's debounce window.
#[derive(Debug)]
struct Quiet {
    until_ms: i64,
    suppressed: u64,
}

/// The rules' state: sliding windows, running averages, debounce windows.
#[derive(Debug)]
pub struct Rules {
    settings: RuleSettings,
    /// Times (ms) of recent failed authentications (logins and enrolments
    /// with a bad code), per device and per address; at most
    /// [`RuleSettings::auth_failures`] each, the most that a window needs.
    failures: HashMap<AlertSubject, VecDeque<i64>>,
    /// Each device's running average of inbox entries read per interval.
    reads: HashMap<DeviceAddress, f64>,
    /// Debounce windows by kind and key (the subject, or none for alerts
    /// debounced across subjects).
    quiet: HashMap<(AlertKind, Option<AlertSubject>), Quiet>,
}

fn text<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    match event.details.get(key) {
        Some(Detail::Text(t)) => Some(t),
        _ => None,
    }
}

fn count(event: &Event, key: &str) -> u64 {
    match event.details.get(key) {
        Some(Detail::Count(n)) => *n,
        _ => 0,
    }
}

/// Milliseconds in `d`, saturating.
fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Rules {
    pub fn new(settings: RuleSettings) -> Self {
        Self {
            settings,
            failures: HashMap::new(),
            reads: HashMap::new(),
            quiet: HashMap::new(),
        }
    }

    /// The alerts one audit event raises at `at_ms` (after debouncing).
    pub fn observe(&mut self, event: &Event, at_ms: i64) -> Vec<Raised> {
        let device = match &event.subject {
            Some(Subject::Device(d)) => Some(d),
            _ => None,
        };
        let raised: Vec<(Raised, Option<AlertSubject>)> = match event.action {
            Action::AuthFailed if text(event, "code") == Some("device_revoked") => device
                .map(|d| {
                    let s = AlertSubject::Device(d.clone());
                    let r = Raised::new(
                        AlertKind::RevokedDeviceActivity,
                        Severity::Critical,
                        s.clone(),
                    );
                    (r, Some(s))
                })
                .into_iter()
                .collect(),
            Action::AuthFailed => {
                let subjects = device
                    .map(|d| AlertSubject::Device(d.clone()))
                    .into_iter()
                    .chain(event.from.map(|a| AlertSubject::Address(a.ip())));
                subjects
                    .filter_map(|s| self.auth_failure(s, at_ms))
                    .collect()
            }
            Action::InboxRead => match &event.actor {
                Actor::Device(d) => self.inbox_read(d, count(event, "entries")),
                _ => None,
            }
            .into_iter()
            .collect(),
            Action::KeyPackagesClaimed => match &event.subject {
                Some(Subject::User(u)) if count(event, "last_resort") > 0 => {
                    let s = AlertSubject::User(u.clone());
                    let r = Raised::new(
                        AlertKind::KeyPackagesExhausted,
                        Severity::Warning,
                        s.clone(),
                    )
                    .count("last_resort", count(event, "last_resort"));
                    vec![(r, Some(s))]
                }
                _ => Vec::new(),
            },
            Action::AuditReported => event
                .from
                .map(|a| Self::audit_report(event, AlertSubject::Address(a.ip())))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        raised
            .into_iter()
            .filter_map(|(r, key)| self.debounced(r, key, at_ms))
            .collect()
    }

    /// One failed authentication for `subject`: an alert when its window
    /// holds [`RuleSettings::auth_failures`].
    fn auth_failure(
        &mut self,
        subject: AlertSubject,
        at_ms: i64,
    ) -> Option<(Raised, Option<AlertSubject>)> {
        let window = ms(self.settings.auth_window);
        if self.failures.len() >= MAX_TRACKED {
            self.failures
                .retain(|_, times| times.back().is_some_and(|t| at_ms - t < window));
            if self.failures.len() >= MAX_TRACKED {
                self.failures.clear();
            }
        }
        let most = self.settings.auth_failures as usize;
        let times = self.failures.entry(subject.clone()).or_default();
        times.push_back(at_ms);
        while times.len() > most || times.front().is_some_and(|t| at_ms - t >= window) {
            times.pop_front();
        }
        let failures = times.len() as u64;
        if failures < u64::from(self.settings.auth_failures) {
            return None;
        }
        let r = Raised::new(
            AlertKind::AuthFailureBurst,
            Severity::Warning,
            subject.clone(),
        )
        .count("failures", failures)
        .count("window_secs", self.settings.auth_window.as_secs());
        Some((r, Some(subject)))
    }

    /// One interval's reads of `device`: an alert when at or over the
    /// floor and over `factor` times its running average (zero for a
    /// device never seen reading). Intervals without reads leave the
    /// average as it was.
    fn inbox_read(
        &mut self,
        device: &DeviceAddress,
        entries: u64,
    ) -> Option<(Raised, Option<AlertSubject>)> {
        if self.reads.len() >= MAX_TRACKED && !self.reads.contains_key(device) {
            self.reads.clear();
        }
        let average = self.reads.entry(device.clone()).or_insert(0.0);
        let before = *average;
        let seen = entries as f64;
        *average = if before == 0.0 {
            seen
        } else {
            before + (seen - before) * AVERAGE_WEIGHT
        };
        let heavy = entries >= self.settings.heavy_reader_floor
            && seen > before * self.settings.heavy_reader_factor as f64;
        heavy.then(|| {
            let s = AlertSubject::Device(device.clone());
            let r = Raised::new(AlertKind::HeavyReader, Severity::Warning, s.clone())
                .count("entries", entries)
                .count("average", before.round() as u64);
            (r, Some(s))
        })
    }

    /// An auditor's report: critical if its evidence verified (the
    /// handler's verdict), debounced per reporting address; otherwise a
    /// warning debounced across all addresses, so that junk from many
    /// addresses is one warning per window.
    fn audit_report(event: &Event, from: AlertSubject) -> (Raised, Option<AlertSubject>) {
        let verified = text(event, "verdict") == Some("verified");
        let severity = if verified {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut r = Raised::new(AlertKind::AuditCheckpointConflict, severity, from.clone());
        for key in ["verdict", "reason", "code"] {
            if let Some(v) = event.details.get(key) {
                r.detail.insert(key.to_owned(), v.clone());
            }
        }
        (r, verified.then_some(from))
    }

    /// `raised`, unless its kind and `key` alerted within the debounce
    /// window; then it is counted, and the next one says how many were.
    fn debounced(
        &mut self,
        mut raised: Raised,
        key: Option<AlertSubject>,
        at_ms: i64,
    ) -> Option<Raised> {
        if self.quiet.len() >= MAX_TRACKED {
            self.quiet.retain(|_, q| q.until_ms > at_ms);
        }
        let until_ms = at_ms.saturating_add(ms(self.settings.debounce));
        match self.quiet.get_mut(&(raised.kind, key.clone())) {
            Some(q) if q.until_ms > at_ms => {
                q.suppressed += 1;
                None
            }
            Some(q) => {
                if q.suppressed > 0 {
                    raised = raised.count("suppressed", q.suppressed);
                }
                *q = Quiet {
                    until_ms,
                    suppressed: 0,
                };
                Some(raised)
            }
            None => {
                self.quiet.insert(
                    (raised.kind, key),
                    Quiet {
                        until_ms,
                        suppressed: 0,
                    },
                );
                Some(raised)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valise_proto::DeviceId;

    fn dev(n: u8) -> DeviceAddress {
        DeviceAddress::new(
            UserId::parse("alice@mfa.example").unwrap(),
            DeviceId::from_bytes([n; 8]),
        )
    }

    fn addr(n: u8) -> Option<ClientAddr> {
        Some(ClientAddr::of(IpAddr::from([192, 0, 2, n])))
    }

    fn failed(device: u8, from: u8, code: &str) -> Event {
        Event::new(Actor::Anonymous, Action::AuthFailed)
            .on_device(&dev(device))
            .from(addr(from))
            .text("code", code)
    }

    fn kinds(raised: &[Raised]) -> Vec<(AlertKind, AlertSubject)> {
        raised.iter().map(|r| (r.kind, r.subject.clone())).collect()
    }

    #[test]
    fn a_burst_of_failures_raises_one_alert_per_subject_and_window() {
        let mut rules = Rules::new(RuleSettings::default());
        let mut raised = Vec::new();
        // Nine failures a second apart: under the threshold.
        for t in 0..9 {
            raised.extend(rules.observe(&failed(1, 1, "unauthorized"), t * 1000));
        }
        assert!(raised.is_empty());
        // The tenth within the minute alerts, for the device and the address.
        raised.extend(rules.observe(&failed(1, 1, "unauthorized"), 9_000));
        assert_eq!(
            kinds(&raised),
            [
                (AlertKind::AuthFailureBurst, AlertSubject::Device(dev(1))),
                (
                    AlertKind::AuthFailureBurst,
                    AlertSubject::Address(addr(1).unwrap().ip())
                ),
            ]
        );
        assert_eq!(raised[0].detail["failures"], Detail::Count(10));
        // Twenty more in the debounce window: counted, not raised.
        for t in 10..30 {
            assert!(
                rules
                    .observe(&failed(1, 1, "unauthorized"), t * 1000)
                    .is_empty()
            );
        }
        // The window keeps no more times than the threshold needs.
        assert!(rules.failures.values().all(|times| times.len() == 10));
        // After the window, the next burst alerts and says what was held back.
        let later = 700_000;
        let mut again = Vec::new();
        for t in 0..10 {
            again.extend(rules.observe(&failed(1, 1, "unauthorized"), later + t));
        }
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].detail["suppressed"], Detail::Count(20));
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_alert() {
        let mut rules = Rules::new(RuleSettings::default());
        for t in 0..100 {
            // One every 7 s, from ever new addresses: at most 9 per minute.
            assert!(
                rules
                    .observe(&failed(1, (t % 250) as u8, "unauthorized"), t * 7_000)
                    .is_empty()
            );
        }
    }

    #[test]
    fn a_revoked_device_alerts_once_per_window_and_not_as_a_burst() {
        let mut rules = Rules::new(RuleSettings::default());
        let first = rules.observe(&failed(2, 1, "device_revoked"), 0);
        assert_eq!(
            kinds(&first),
            [(
                AlertKind::RevokedDeviceActivity,
                AlertSubject::Device(dev(2))
            )]
        );
        assert_eq!(first[0].severity, Severity::Critical);
        for t in 1..50 {
            assert!(rules.observe(&failed(2, 1, "device_revoked"), t).is_empty());
        }
        assert!(rules.failures.is_empty(), "not counted as failed logins");
    }

    fn read(device: u8, entries: u64) -> Event {
        Event::by(&dev(device), Action::InboxRead)
            .count("reads", 1)
            .count("entries", entries)
    }

    #[test]
    fn a_heavy_reader_is_over_the_floor_and_over_its_own_habit() {
        let settings = RuleSettings {
            heavy_reader_floor: 100,
            ..RuleSettings::default()
        };
        let mut rules = Rules::new(settings);
        // A device that reads 50 an interval, then 900 (over the floor and
        // over ten times its average): alert.
        for t in 0..10 {
            assert!(rules.observe(&read(1, 50), t).is_empty());
        }
        let heavy = rules.observe(&read(1, 900), 10);
        assert_eq!(
            kinds(&heavy),
            [(AlertKind::HeavyReader, AlertSubject::Device(dev(1)))]
        );
        assert_eq!(heavy[0].detail["average"], Detail::Count(50));
        // A device never seen reading that reads over the floor: alert
        // (nothing to compare with). Then 400 an interval is its habit:
        // none, even long after the debounce window.
        assert_eq!(rules.observe(&read(2, 400), 0).len(), 1);
        for t in 1..10 {
            let at = t * 3_600_000;
            assert!(rules.observe(&read(2, 400), at).is_empty(), "interval {t}");
        }
        // Ten times the average but under the floor: none.
        let mut quiet = Rules::new(RuleSettings {
            heavy_reader_floor: 100,
            ..RuleSettings::default()
        });
        quiet.observe(&read(3, 1), 0);
        assert!(quiet.observe(&read(3, 90), 1).is_empty());
    }

    #[test]
    fn a_last_resort_claim_alerts_for_the_user() {
        let mut rules = Rules::new(RuleSettings::default());
        let claim = |last_resort| {
            Event::by(&dev(9), Action::KeyPackagesClaimed)
                .on_user(&dev(1).user)
                .count("count", 2)
                .count("last_resort", last_resort)
        };
        assert!(rules.observe(&claim(0), 0).is_empty());
        let raised = rules.observe(&claim(1), 1);
        assert_eq!(
            kinds(&raised),
            [(
                AlertKind::KeyPackagesExhausted,
                AlertSubject::User(dev(1).user)
            )]
        );
    }

    fn report(from: u8, verdict: &str) -> Event {
        Event::new(Actor::Anonymous, Action::AuditReported)
            .from(addr(from))
            .text("verdict", verdict)
    }

    #[test]
    fn junk_reports_are_one_warning_per_window_verified_ones_critical() {
        let mut rules = Rules::new(RuleSettings::default());
        let mut raised = Vec::new();
        for n in 0..200u8 {
            raised.extend(rules.observe(&report(n, "unverified"), i64::from(n)));
        }
        assert_eq!(raised.len(), 1, "junk from 200 addresses");
        assert_eq!(raised[0].severity, Severity::Warning);
        let genuine = rules.observe(&report(7, "verified"), 300);
        assert_eq!(genuine.len(), 1);
        assert_eq!(genuine[0].severity, Severity::Critical);
        assert_eq!(
            genuine[0].detail["verdict"],
            Detail::Text("verified".into())
        );
    }

    #[test]
    fn an_alert_round_trips_through_its_audit_entry() {
        let raised = Raised::new(
            AlertKind::AuthFailureBurst,
            Severity::Warning,
            AlertSubject::Address(addr(4).unwrap().ip()),
        )
        .count("failures", 12);
        let entry = raised.event().entry(41, 1_000);
        let alert = Alert::from_entry(Entry::decode(&entry.encode()).unwrap()).unwrap();
        assert_eq!(alert.id, 41);
        assert_eq!(alert.kind, AlertKind::AuthFailureBurst);
        assert_eq!(
            alert.subject,
            Some(AlertSubject::Address(addr(4).unwrap().ip()))
        );
        assert_eq!(
            alert.detail,
            BTreeMap::from([("failures".into(), Detail::Count(12))])
        );
        let json = serde_json::to_value(&alert).unwrap();
        assert_eq!(json["kind"], "auth_failure_burst");
        assert_eq!(json["severity"], "warning");
        assert_eq!(json["subject"]["address"], "192.0.2.4");
    }
}
