//! `valised run`'s settings, from its flags and from a TOML file
//! (`--config valised.toml`).
//!
//! Every setting is both a flag and a file key of the same name
//! (`--max-connections` is `max_connections`), because both come from one
//! struct, [`RunSettings`], which clap and serde each read. Every field is
//! an `Option`, so that "not given" is visible:
//!
//! ```text
//! flags ──┐
//!         ├─ overlay (a flag wins) ─▶ RunSettings ─▶ resolve ─▶ RunConfig
//! file  ──┘                            over the defaults, checked
//! ```
//!
//! The defaults live where they always did ([`Limits::default`],
//! [`ConnectionLimits::default`], the directory and store constants):
//! [`RunSettings::defaults`] makes them the lowest layer, and is the only
//! place that reads them (`--help` shows them from there). A key the
//! file does not know is an error, never ignored: an operator who typed
//! `max_send_per_second` must not believe the limit is set.

use crate::limits::Limits;
use crate::server::ConnectionLimits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The log filter when neither `--log-level`, `log_level` nor `RUST_LOG`
/// says otherwise.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// What can be wrong with the configuration; each is one line for the
/// operator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    /// Bad TOML, a value of the wrong type, or a key this version does not
    /// know (the message names it).
    #[error("{path}, line {line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    #[error("no {what}: give --{flag} or `{key}` in the configuration file")]
    Missing {
        what: &'static str,
        flag: &'static str,
        key: &'static str,
    },
    #[error("{key} (--{flag}) must be at least 1")]
    Zero { key: &'static str, flag: String },
    #[error(
        "metrics_listen {0} is not a loopback address: /metrics is plain HTTP, \
         serve it on 127.0.0.1 or ::1 and let a local agent or a TLS proxy carry it further"
    )]
    MetricsNotLoopback(SocketAddr),
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
    #[error("security_desk {0:?} is not a user address (local@domain)")]
    SecurityDesk(String),
}

/// `valised run`'s settings as given, each as a flag and as a key of the
/// configuration file; `None` is "not given".
#[derive(clap::Args, Deserialize, Serialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Data directory (database, keys, TLS material). Required.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address and port of the HTTPS API, e.g. 0.0.0.0:8443. Required.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Domain, needed only when the data directory is not initialised yet.
    #[arg(long)]
    pub domain: Option<String>,
    /// User to print a first enrolment code for, on first initialisation
    /// (default admin@<domain>).
    #[arg(long)]
    pub first_invite: Option<String>,
    /// Log level or filter, e.g. `info` or `valise_server=debug`; RUST_LOG
    /// overrides it. As a flag it is `valised`'s global `--log-level`,
    /// which every subcommand takes.
    #[arg(skip)]
    pub log_level: Option<String>,
    /// Write logs to this file instead of stderr.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics over plain HTTP on this loopback address
    /// (e.g. 127.0.0.1:9464) at /metrics. Off unless given.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Letters per second one device may send (a burst of twice as many).
    #[arg(long)]
    pub max_sends_per_second: Option<u32>,
    /// Key-package claims per minute one device may make.
    #[arg(long)]
    pub max_claims_per_minute: Option<u32>,
    /// Commits (membership changes) and new conversations per minute one
    /// device may submit.
    #[arg(long)]
    pub max_commits_per_minute: Option<u32>,
    /// Directory audit proofs per minute one device may ask for (one client
    /// address, for callers without a token: auditors).
    #[arg(long)]
    pub max_audits_per_minute: Option<u32>,
    /// Key packages per minute one device may upload (each is verified).
    /// One full upload is always allowed at once.
    #[arg(long)]
    pub max_key_packages_per_minute: Option<u32>,
    /// Most connections served at once; further ones wait in the kernel's
    /// backlog.
    #[arg(long)]
    pub max_connections: Option<u32>,
    /// Most connections open at once from one client address (an IPv4
    /// address, or an IPv6 /64); further ones are closed at once. Raise it
    /// for a site whose devices all come through one NAT address.
    #[arg(long)]
    pub max_connections_per_address: Option<u32>,
    /// Seconds a client has to finish its TLS handshake, and then to send
    /// each request's headers (HTTP/1.1); also how long an idle HTTP/1.1
    /// connection stays open.
    #[arg(long)]
    pub header_timeout_secs: Option<u64>,
    /// Seconds without a request in flight after which a connection is
    /// closed (long polls are requests in flight).
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Least time between two key directory epochs, in milliseconds
    /// (changes arriving meanwhile are batched into the next one).
    #[arg(long)]
    pub directory_interval_ms: Option<u64>,
    /// Bytes (MiB) of letters one account's devices may keep waiting
    /// unread on this server; past it that account's letters are refused
    /// with `storage_full`, and nobody else's.
    #[arg(long)]
    pub account_quota_mib: Option<u64>,
    /// Largest attachment blob a device may upload, in MiB; a larger one
    /// is refused (413) before any byte is stored.
    #[arg(long)]
    pub max_blob_mib: Option<u64>,
    /// Bytes (MiB) of attachment blobs one account may keep on this
    /// server; past it that account's uploads are refused with
    /// `storage_full`, and nobody else's.
    #[arg(long)]
    pub blob_quota_mib: Option<u64>,
    /// Seconds a blob may stay unfinished, or finished but named by no
    /// letter its uploader sends, before it is deleted (a day).
    #[arg(long)]
    pub blob_window_secs: Option<u64>,
    /// Seconds between two signed checkpoints of the audit log (one is
    /// signed only if the log grew, and always when the server stops).
    #[arg(long)]
    pub checkpoint_interval_secs: Option<u64>,
    /// POST each server alert as JSON to this URL (https; http only to a
    /// loopback address). Off unless given.
    #[arg(long)]
    pub webhook: Option<String>,
    /// PEM file of the CA(s) the webhook's certificate must chain to,
    /// instead of the system's roots.
    #[arg(long)]
    pub webhook_ca: Option<PathBuf>,
    /// `auth_failure_burst` alert: failed authentications for one device,
    /// or from one address, within a minute.
    #[arg(long)]
    pub alert_auth_failures: Option<u32>,
    /// `heavy_reader` alert: inbox entries one device must read in one
    /// checkpoint interval (and more than ten times its own average).
    #[arg(long)]
    pub alert_heavy_reader_floor: Option<u64>,
    /// The organisation's security desk user (e.g. soc@mfa.example), to
    /// whom every device reports its alerts; set at start as by `valised
    /// admin set security-desk` (a change is logged and alerted on the
    /// devices, which keep the desk they pinned until their users accept).
    #[arg(long)]
    pub security_desk: Option<String>,
}

/// `valised run`'s settings with every default applied and checked.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub domain: Option<String>,
    pub first_invite: Option<String>,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    /// Loopback only (checked).
    pub metrics_listen: Option<SocketAddr>,
    pub limits: Limits,
    pub connections: ConnectionLimits,
    pub directory_interval: Duration,
    pub account_quota_mib: u64,
    pub max_blob_mib: u64,
    pub blob_quota_mib: u64,
    pub blob_window: Duration,
    pub checkpoint_interval: Duration,
    pub alerts: AlertConfig,
    pub security_desk: Option<valise_proto::UserId>,
}

/// Where server alerts go, and the rules' thresholds.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub rules: crate::rules::RuleSettings,
    /// Checked: https, or http to loopback.
    pub webhook: Option<reqwest::Url>,
    pub webhook_ca: Option<PathBuf>,
}

impl RunSettings {
    /// Reads a configuration file. Relative paths in it are taken from the
    /// file's own directory, so that the file means the same whatever
    /// directory the service manager starts `valised` in.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut settings = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in [
            &mut settings.data,
            &mut settings.log_file,
            &mut settings.webhook_ca,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(settings)
    }

    /// Parses a configuration file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().trim().to_owned(),
        })
    }

    /// These settings, with those of `file` where these say nothing: flags
    /// given on the command line override the file.
    pub fn overlay(self, file: Self) -> Self {
        Self {
            data: self.data.or(file.data),
            listen: self.listen.or(file.listen),
            domain: self.domain.or(file.domain),
            first_invite: self.first_invite.or(file.first_invite),
            log_level: self.log_level.or(file.log_level),
            log_file: self.log_file.or(file.log_file),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            max_sends_per_second: self.max_sends_per_second.or(file.max_sends_per_second),
            max_claims_per_minute: self.max_claims_per_minute.or(file.max_claims_per_minute),
            max_commits_per_minute: self.max_commits_per_minute.or(file.max_commits_per_minute),
            max_audits_per_minute: self.max_audits_per_minute.or(file.max_audits_per_minute),
            max_key_packages_per_minute: self
                .max_key_packages_per_minute
                .or(file.max_key_packages_per_minute),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_address: self
                .max_connections_per_address
                .or(file.max_connections_per_address),
            header_timeout_secs: self.header_timeout_secs.or(file.header_timeout_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(file.idle_timeout_secs),
            directory_interval_ms: self.directory_interval_ms.or(file.directory_interval_ms),
            account_quota_mib: self.account_quota_mib.or(file.account_quota_mib),
            max_blob_mib: self.max_blob_mib.or(file.max_blob_mib),
            blob_quota_mib: self.blob_quota_mib.or(file.blob_quota_mib),
            blob_window_secs: self.blob_window_secs.or(file.blob_window_secs),
            checkpoint_interval_secs: self
                .checkpoint_interval_secs
                .or(file.checkpoint_interval_secs),
            webhook: self.webhook.or(file.webhook),
            webhook_ca: self.webhook_ca.or(file.webhook_ca),
            alert_auth_failures: self.alert_auth_failures.or(file.alert_auth_failures),
            alert_heavy_reader_floor: self
                .alert_heavy_reader_floor
                .or(file.alert_heavy_reader_floor),
            security_desk: self.security_desk.or(file.security_desk),
        }
    }

    /// The defaults, as the lowest layer: under the file, which is under
    /// the flags. The only place that reads [`Limits::default`] and the
    /// others.
    pub fn defaults() -> Self {
        let (rates, conns) = (Limits::default(), ConnectionLimits::default());
        Self {
            log_level: Some(DEFAULT_LOG_LEVEL.to_owned()),
            max_sends_per_second: Some(rates.sends_per_second),
            max_claims_per_minute: Some(rates.claims_per_minute),
            max_commits_per_minute: Some(rates.commits_per_minute),
            max_audits_per_minute: Some(rates.audits_per_minute),
            max_key_packages_per_minute: Some(rates.key_packages_per_minute),
            max_connections: Some(conns.max),
            max_connections_per_address: Some(conns.per_address),
            header_timeout_secs: Some(conns.header_timeout.as_secs()),
            idle_timeout_secs: Some(conns.idle_timeout.as_secs()),
            directory_interval_ms: Some(crate::directory::DEFAULT_INTERVAL_MS),
            account_quota_mib: Some(crate::store::DEFAULT_ACCOUNT_QUOTA_MIB),
            max_blob_mib: Some(crate::blobs::DEFAULT_MAX_BLOB_MIB),
            blob_quota_mib: Some(crate::blobs::DEFAULT_BLOB_QUOTA_MIB),
            blob_window_secs: Some(crate::blobs::DEFAULT_WINDOW.as_secs()),
            checkpoint_interval_secs: Some(crate::audit::DEFAULT_CHECKPOINT_INTERVAL.as_secs()),
            alert_auth_failures: Some(crate::rules::DEFAULT_AUTH_FAILURES),
            alert_heavy_reader_floor: Some(crate::rules::DEFAULT_HEAVY_READER_FLOOR),
            ..Self::default()
        }
    }

    /// Each default by key, as `--help` shows it.
    pub fn defaults_by_key() -> Vec<(String, String)> {
        let Ok(serde_json::Value::Object(all)) = serde_json::to_value(Self::defaults()) else {
            return Vec::new();
        };
        all.into_iter()
            .filter_map(|(key, value)| match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some((key, s)),
                v => Some((key, v.to_string())),
            })
            .collect()
    }

    /// Applies the defaults and checks what they cannot.
    pub fn resolve(self) -> Result<RunConfig, ConfigError> {
        // Every setting below that `defaults` sets is `Some` from here on
        // (a unit test holds `defaults` to it).
        let s = self.overlay(Self::defaults());
        let data = s.data.ok_or(ConfigError::Missing {
            what: "data directory",
            flag: "data",
            key: "data",
        })?;
        let listen = s.listen.ok_or(ConfigError::Missing {
            what: "listen address",
            flag: "listen",
            key: "listen",
        })?;
        if let Some(addr) = s.metrics_listen.filter(|a| !a.ip().is_loopback()) {
            return Err(ConfigError::MetricsNotLoopback(addr));
        }
        Ok(RunConfig {
            data,
            listen,
            domain: s.domain,
            first_invite: s.first_invite,
            log_level: s.log_level.unwrap_or_default(),
            log_file: s.log_file,
            metrics_listen: s.metrics_listen,
            limits: Limits {
                sends_per_second: s.max_sends_per_second.unwrap_or_default(),
                claims_per_minute: s.max_claims_per_minute.unwrap_or_default(),
                commits_per_minute: s.max_commits_per_minute.unwrap_or_default(),
                audits_per_minute: s.max_audits_per_minute.unwrap_or_default(),
                key_packages_per_minute: s.max_key_packages_per_minute.unwrap_or_default(),
            },
            connections: ConnectionLimits {
                max: at_least_one("max_connections", s.max_connections)?,
                per_address: at_least_one(
                    "max_connections_per_address",
                    s.max_connections_per_address,
                )?,
                header_timeout: Duration::from_secs(at_least_one(
                    "header_timeout_secs",
                    s.header_timeout_secs,
                )?),
                idle_timeout: Duration::from_secs(at_least_one(
                    "idle_timeout_secs",
                    s.idle_timeout_secs,
                )?),
            },
            directory_interval: Duration::from_millis(s.directory_interval_ms.unwrap_or_default()),
            account_quota_mib: s.account_quota_mib.unwrap_or_default(),
            max_blob_mib: s.max_blob_mib.unwrap_or_default(),
            blob_quota_mib: s.blob_quota_mib.unwrap_or_default(),
            blob_window: Duration::from_secs(at_least_one("blob_window_secs", s.blob_window_secs)?),
            checkpoint_interval: Duration::from_secs(at_least_one(
                "checkpoint_interval_secs",
                s.checkpoint_interval_secs,
            )?),
            alerts: AlertConfig {
                rules: crate::rules::RuleSettings {
                    auth_failures: at_least_one("alert_auth_failures", s.alert_auth_failures)?,
                    heavy_reader_floor: at_least_one(
                        "alert_heavy_reader_floor",
                        s.alert_heavy_reader_floor,
                    )?,
                    ..crate::rules::RuleSettings::default()
                },
                webhook: s
                    .webhook
                    .as_deref()
                    .map(crate::webhook::parse_url)
                    .transpose()?,
                webhook_ca: s.webhook_ca,
            },
            security_desk: s
                .security_desk
                .map(|d| valise_proto::UserId::parse(&d).map_err(|_| ConfigError::SecurityDesk(d)))
                .transpose()?,
        })
    }
}

/// The line (from 1) of the first token at or after byte `at`: toml's
/// spans may start on the whitespace before the key they blame.
fn line_of(text: &str, at: usize) -> usize {
    let rest = text.get(at..).unwrap_or("");
    let token = at + rest.len() - rest.trim_start().len();
    text.get(..token).unwrap_or(text).matches('\n').count() + 1
}

/// Refuses a zero where zero would stop the server serving anyone.
fn at_least_one<T: Default + PartialEq>(
    key: &'static str,
    value: Option<T>,
) -> Result<T, ConfigError> {
    match value.unwrap_or_default() {
        v if v == T::default() => Err(ConfigError::Zero {
            key,
            flag: key.replace('_', "-"),
        }),
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    /// `valised run`'s flags alone, as the binary flattens them.
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        settings: RunSettings,
    }

    fn flags(args: &[&str]) -> RunSettings {
        Flags::try_parse_from(std::iter::once("valised").chain(args.iter().copied()))
            .unwrap()
            .settings
    }

    fn file(text: &str) -> Result<RunSettings, ConfigError> {
        RunSettings::parse(text, Path::new("/etc/valised.toml"))
    }

    #[test]
    fn an_unknown_key_names_the_key_the_file_and_the_line() {
        let err = file("data = \"/srv/valised\"\nmax_send_per_second = 5\n").unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with("/etc/valised.toml, line 2: "), "{line}");
        assert!(line.contains("max_send_per_second"), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        let err = file("max_connections = \"many\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { line: 1, .. }), "{err}");
        let err = file("data = \"D\"\n\n# limits\nmax_sendz = 3\n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { line: 4, .. }), "{err}");
    }

    #[test]
    fn flags_override_the_file_and_the_file_the_defaults() {
        let from_file = file(
            "data = \"/srv/valised\"\nlisten = \"0.0.0.0:8443\"\n\
             max_sends_per_second = 7\nmax_connections = 64\nlog_level = \"debug\"\n",
        )
        .unwrap();
        let given = flags(&["--listen", "127.0.0.1:9443", "--max-connections", "32"]);
        let config = given.overlay(from_file).resolve().unwrap();
        assert_eq!(config.data, PathBuf::from("/srv/valised"));
        assert_eq!(config.listen, "127.0.0.1:9443".parse().unwrap());
        assert_eq!(config.connections.max, 32);
        assert_eq!(config.limits.sends_per_second, 7);
        assert_eq!(config.log_level, "debug");
        // Untouched: the defaults.
        let defaults = ConnectionLimits::default();
        assert_eq!(config.connections.per_address, defaults.per_address);
        assert_eq!(
            config.limits.claims_per_minute,
            Limits::default().claims_per_minute
        );
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn the_first_command_of_the_readme_needs_no_file() {
        let config = flags(&["--data", "D", "--listen", "127.0.0.1:8443"])
            .overlay(RunSettings::default())
            .resolve()
            .unwrap();
        assert_eq!(config.data, PathBuf::from("D"));
        assert_eq!(config.log_level, DEFAULT_LOG_LEVEL);
        assert_eq!(
            config.directory_interval,
            Duration::from_millis(crate::directory::DEFAULT_INTERVAL_MS)
        );
    }

    /// `resolve` relies on it: every setting but those that are off or
    /// required unless given has a default.
    #[test]
    fn every_setting_has_a_default_or_is_optional() {
        let d = RunSettings::defaults();
        let optional = RunSettings {
            data: None,
            listen: None,
            domain: None,
            first_invite: None,
            log_file: None,
            metrics_listen: None,
            ..d.clone()
        };
        assert_eq!(optional, d);
        let shown = RunSettings::defaults_by_key();
        let all = format!("{d:?}");
        assert_eq!(all.matches("Some(").count(), shown.len());
        assert!(shown.contains(&("max_connections".to_owned(), "1024".to_owned())));
        assert!(shown.contains(&("log_level".to_owned(), "info".to_owned())));
    }

    #[test]
    fn a_missing_data_directory_or_address_is_one_clear_line() {
        let err = flags(&["--listen", "127.0.0.1:8443"])
            .resolve()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no data directory: give --data or `data` in the configuration file"
        );
        let err = flags(&["--data", "D"]).resolve().unwrap_err();
        assert!(err.to_string().starts_with("no listen address"), "{err}");
    }

    #[test]
    fn metrics_are_served_on_loopback_only() {
        let base = flags(&["--data", "D", "--listen", "0.0.0.0:8443"]);
        for ok in ["127.0.0.1:9464", "[::1]:9464"] {
            let s = RunSettings {
                metrics_listen: Some(ok.parse().unwrap()),
                ..base.clone()
            };
            assert!(s.resolve().is_ok(), "{ok}");
        }
        let s = RunSettings {
            metrics_listen: Some("0.0.0.0:9464".parse().unwrap()),
            ..base
        };
        assert!(matches!(
            s.resolve(),
            Err(ConfigError::MetricsNotLoopback(_))
        ));
    }

    #[test]
    fn zero_connections_or_timeouts_are_refused() {
        let err = file("data = \"D\"\nlisten = \"127.0.0.1:1\"\nidle_timeout_secs = 0\n")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "idle_timeout_secs (--idle-timeout-secs) must be at least 1"
        );
    }

    #[test]
    fn relative_paths_in_a_file_are_taken_from_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("valised.toml");
        std::fs::write(
            &path,
            "data = \"data\"\nlog_file = \"/var/log/valised.log\"\n",
        )
        .unwrap();
        let s = RunSettings::load(&path).unwrap();
        assert_eq!(s.data, Some(dir.path().join("data")));
        assert_eq!(s.log_file, Some(PathBuf::from("/var/log/valised.log")));
        let missing = RunSettings::load(&dir.path().join("nope.toml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }));
    }

    /// The shipped example sets every key to its default (commented out):
    /// each is a key this version knows, and each value is the default.
    #[test]
    fn the_shipped_example_lists_every_key_with_its_default() {
        let example = include_str!("../../../packaging/valised.toml");
        let uncommented: String = example
            .lines()
            .filter_map(|l| l.strip_prefix("# ").or(Some(l)))
            .filter(|l| l.contains(" = ") && !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let s = file(&uncommented).unwrap();
        // Every field is present in the example.
        let all = format!("{s:?}");
        assert!(
            !all.contains("None"),
            "a key is missing from the example: {all}"
        );
        // And every value is the default, but for those without one.
        let defaulted = RunSettings {
            data: None,
            listen: None,
            domain: None,
            first_invite: None,
            log_file: None,
            metrics_listen: None,
            webhook: None,
            webhook_ca: None,
            security_desk: None,
            ..s.clone()
        };
        assert_eq!(defaulted, RunSettings::defaults());
        assert!(s.resolve().is_ok());
    }
}
