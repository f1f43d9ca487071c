//! `valised`: initialise a data directory, run the server, administer it.
#![forbid(unsafe_code)]

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use valise_proto::attestation::AuthorityKey;
use valise_proto::audit::{Action, Actor};
use valise_proto::tlog::AuditKey;
use valise_proto::{DeviceAddress, DeviceId, UserId};
use valise_server::audit::{Alerting, Event};
use valise_server::background::Background;
use valise_server::blobs::BlobFiles;
use valise_server::config::{ConfigError, DEFAULT_LOG_LEVEL, RunConfig, RunSettings};
use valise_server::datadir::{DataDir, DataDirError};
use valise_server::directory::DirectoryService;
use valise_server::info::ServerInfo;
use valise_server::rules::Alert;
use valise_server::store::{NewRevocation, SqliteStore, Store, StoreError, UserRecord};
use valise_server::webhook::Webhook;
use valise_server::{AppState, invite, now_ms, serve, tls};

#[derive(Parser, Debug)]
#[command(name = "valised", version, about = "The Valise server")]
struct Cli {
    /// Log level or filter, e.g. `debug` or `valise_server=debug`
    /// (overridden by RUST_LOG; `log_level` in a `run` configuration file).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a data directory: database, server key, TLS certificates.
    Init {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        domain: String,
    },
    /// Run the server in the foreground (initialising the directory if needed).
    #[command(
        after_help = "Every flag is also a key of the configuration file, with the \
same name in snake_case (--max-connections is max_connections); a flag given \
here overrides the file, and the file the defaults. \
packaging/valised.toml lists every key."
    )]
    Run {
        /// TOML file with any of the settings below (an unknown key is an
        /// error).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<RunSettings>,
    },
    /// Administration; works while the server runs.
    Admin {
        #[arg(long)]
        data: PathBuf,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The audit log (issue 10).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the server's alerts (docs/OPERATIONS.md, "Server alerts"),
    /// oldest first; works while the server runs. With --follow, keeps
    /// printing new ones; --since ID resumes after the last one seen.
    Alerts {
        #[arg(long)]
        data: PathBuf,
        /// Keep printing alerts as the server raises them.
        #[arg(long)]
        follow: bool,
        /// Only alerts after this id (the `id` of the last one handled).
        #[arg(long)]
        since: Option<u64>,
        /// One JSON object per line (the schema in docs/OPERATIONS.md).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Verify the whole audit log offline: entries contiguous and in place,
    /// every checkpoint signed over the tree at its size, none past the
    /// last entry. Exits 1 with one line on the first fault.
    Verify {
        #[arg(long)]
        data: PathBuf,
        /// The audit public key (hex) to trust, instead of the key file's.
        #[arg(long)]
        key: Option<String>,
        /// One JSON object on stdout, success or not.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Print a one-time enrolment code for a user.
    Invite {
        user: String,
        #[arg(long, default_value_t = 24)]
        ttl_hours: u32,
        /// For a person who lost every device: the device enrolled with this
        /// code founds a new identity, and all the user's other devices are
        /// revoked. Everyone who writes to the user must verify them again.
        #[arg(long)]
        reset: bool,
    },
    /// Revoke a device (a stolen laptop, its user unreachable): its tokens
    /// are refused at once, and the revocation is published (unsigned).
    Revoke { user: String, device: String },
    /// List users and their devices (number, status, identity generation).
    Users {
        #[arg(long)]
        json: bool,
    },
    /// Print the domain, the public keys and the TLS CA (with its SHA-256
    /// fingerprint): what auditors and partner servers pin. No secret.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Copy the live database to FILE (a consistent snapshot, `VACUUM
    /// INTO`), while the server runs. The keys are not in it: back up
    /// `keys/` and `tls/` separately, offline.
    Backup {
        /// Where to write the copy; must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Change a setting of the organisation.
    #[command(subcommand)]
    Set(SetCommand),
    /// Publish an accreditation attestation (made offline by the security
    /// officer with `valise accredit`) in its user's key-directory entry.
    /// Refused unless it verifies under the accreditation authority set.
    PublishAttestation { file: PathBuf },
}

#[derive(Subcommand, Debug)]
enum SetCommand {
    /// Name the security desk: the user to whom every device reports the
    /// alerts it raises, end to end encrypted. Devices pin the desk they
    /// learn first; a later change is an alert on each device, which
    /// keeps reporting to the pinned desk until its user accepts the new
    /// one (`valise desk accept`).
    SecurityDesk { user: String },
    /// Name the accreditation authority: the security officer's offline
    /// public key (hex, printed by `valise authority-key`). Devices pin
    /// the key they learn at enrolment; a later change is an alert on each
    /// device, never obeyed.
    AccreditationAuthority { key: String },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("key directory: {0}")]
    Directory(#[from] valise_directory::DirectoryError),
    #[error("key directory: {0}")]
    DirectoryService(#[from] valise_server::directory::DirectoryServiceError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Random(#[from] invite::RandomError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Webhook(#[from] valise_server::webhook::WebhookError),
    #[error("attestation not published: {0}")]
    Publish(#[from] valise_server::accreditation::PublishError),
    #[error("audit log: {0}")]
    Audit(valise_server::audit::VerifyError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

fn init_logging(level: &str, file: Option<&Path>) -> Result<(), CliError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .map_err(|e| CliError::Usage(format!("invalid log level {level:?}: {e}")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
            builder.with_ansi(false).with_writer(Arc::new(f)).init();
        }
        None => {
            use std::io::IsTerminal as _;
            let ansi = std::io::stderr().is_terminal();
            builder.with_ansi(ansi).with_writer(std::io::stderr).init()
        }
    }
    Ok(())
}

fn create_invite(
    store: &dyn Store,
    user: &UserId,
    ttl_hours: u32,
    reset: bool,
) -> Result<String, CliError> {
    let code = invite::generate()?;
    let now = now_ms();
    let expires = now.saturating_add(i64::from(ttl_hours).saturating_mul(3_600_000));
    store.create_invite(invite::hash(&code), user, now, expires, reset)?;
    Ok(code)
}

fn parse_user(s: &str) -> Result<UserId, CliError> {
    UserId::parse(s).map_err(|e| CliError::Usage(e.to_string()))
}

fn init(data: &Path, domain: &str) -> Result<(), CliError> {
    let dir = DataDir::new(data);
    let keys = dir.init(domain, now_ms())?;
    println!("initialised {} for {domain}", data.display());
    println!("server signing key (Ed25519, public): {}", keys.server_key);
    println!("directory key (Ed25519, public): {}", keys.directory_key);
    println!(
        "audit key (Ed25519, public): {} {}",
        valise_server::audit::origin(domain),
        keys.audit_key
    );
    println!("TLS CA certificate: {}", dir.ca_path().display());
    Ok(())
}

fn admin(data: &Path, command: AdminCommand) -> Result<(), CliError> {
    let dir = DataDir::new(data);
    dir.config()?;
    // The store first: a data directory that cannot be carried over is
    // refused before anything in it changes. Then the directory keys of an
    // older data directory move out of the database.
    let store = dir.open_store()?;
    dir.directory_keys()?;
    match command {
        AdminCommand::Invite {
            user,
            ttl_hours,
            reset,
        } => {
            let user = parse_user(&user)?;
            let code = create_invite(&store, &user, ttl_hours, reset)?;
            audit_admin(
                &store,
                Event::new(Actor::Admin, Action::InviteIssued)
                    .on_user(&user)
                    .count("reset", u64::from(reset))
                    .count("ttl_hours", u64::from(ttl_hours)),
            )?;
            println!("{code}");
        }
        AdminCommand::Revoke { user, device } => {
            let device = DeviceAddress::new(
                parse_user(&user)?,
                DeviceId::parse(&device).map_err(|e| CliError::Usage(e.to_string()))?,
            );
            store
                .revoke_device(&NewRevocation {
                    device: device.clone(),
                    at: None,
                    by: None,
                    now_ms: now_ms(),
                })
                .map_err(|e| match e {
                    StoreError::NotFound => CliError::Usage(format!("no device {device}")),
                    StoreError::Changed(why) => CliError::Usage(why),
                    e => e.into(),
                })?;
            audit_admin(
                &store,
                Event::new(Actor::Admin, Action::DeviceRevoked).on_device(&device),
            )?;
            tracing::info!(%device, "device revoked by the administrator");
            println!(
                "revoked {device}; the running server refuses it and publishes the revocation"
            );
        }
        AdminCommand::Users { json } => {
            audit_admin(&store, admin_command("users"))?;
            print_users(&store.list_users()?, json)
        }
        AdminCommand::Info { json } => {
            audit_admin(&store, admin_command("info"))?;
            let info = ServerInfo::read(&dir)?;
            if json {
                let v = serde_json::to_value(&info)
                    .map_err(|e| CliError::Io(format!("cannot encode: {e}")))?;
                println!("{v}");
            } else {
                print!("{}", info.text());
            }
        }
        AdminCommand::Backup { out } => {
            audit_admin(&store, admin_command("backup"))?;
            drop(store);
            let bytes = valise_server::backup::backup(&dir, &out)?;
            println!(
                "{} ({bytes} bytes): a consistent copy of the database",
                out.display()
            );
            println!(
                "not in it: the keys; copy {}, {} and {} separately, offline (docs/OPERATIONS.md)",
                dir.root().join("keys").display(),
                dir.root().join("tls").display(),
                dir.config_path().display()
            );
        }
        AdminCommand::Set(SetCommand::SecurityDesk { user }) => {
            let user = parse_user(&user)?;
            match set_security_desk(&store, &user)? {
                Some(before) => {
                    tracing::warn!(%before, desk = %user, "security desk changed by the administrator");
                    println!(
                        "security desk: {user} (was {before}); devices that pinned {before} \
                         alert their users and keep reporting there until they accept {user}"
                    );
                }
                None => {
                    tracing::info!(desk = %user, "security desk named by the administrator");
                    println!("security desk: {user}");
                }
            }
        }
        AdminCommand::Set(SetCommand::AccreditationAuthority { key }) => {
            let key = AuthorityKey::parse(&key).map_err(|e| CliError::Usage(e.to_string()))?;
            let before = store.set_accreditation_authority(&key.to_string(), now_ms())?;
            audit_admin(
                &store,
                Event::new(Actor::Admin, Action::ConfigurationChanged)
                    .text("setting", "accreditation_authority")
                    .text("value", key.to_string()),
            )?;
            match before.filter(|b| *b != key.to_string()) {
                Some(before) => {
                    tracing::warn!(%before, %key, "accreditation authority changed by the administrator");
                    println!(
                        "accreditation authority: {key} (was {before}); enrolled devices keep \
                         the key they pinned and alert their users"
                    );
                }
                None => println!(
                    "accreditation authority: {key} (fingerprint {})",
                    key.fingerprint_hex()
                ),
            }
        }
        AdminCommand::PublishAttestation { file } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::Io(format!("{}: {e}", file.display())))?;
            let (claims, added) = valise_server::accreditation::publish(&store, &bytes, now_ms())?;
            audit_admin(
                &store,
                Event::new(Actor::Admin, Action::AttestationPublished)
                    .on_user(&claims.user)
                    .text("sha256", hex::encode(Sha256::digest(&bytes)))
                    .count("new", u64::from(added)),
            )?;
            if added {
                println!(
                    "attestation for {} queued; the running server publishes it in the key \
                     directory",
                    claims.user
                );
            } else {
                println!("that attestation for {} is published already", claims.user);
            }
        }
    }
    Ok(())
}

/// Names the security desk, on record in the audit log; the desk named
/// before, if it was another.
fn set_security_desk(store: &dyn Store, user: &UserId) -> Result<Option<UserId>, CliError> {
    let before = store.set_security_desk(user, now_ms())?;
    audit_admin(
        store,
        Event::new(Actor::Admin, Action::ConfigurationChanged)
            .text("setting", "security_desk")
            .text("value", user.as_str()),
    )?;
    Ok(before.filter(|b| b != user))
}

/// An administrator's command that changes nothing but is on record.
fn admin_command(name: &str) -> Event {
    Event::new(Actor::Admin, Action::AdminCommand).text("command", name)
}

/// Queues an administrator's action for the audit log (the running
/// server, or the next one to start, appends it).
fn audit_admin(store: &dyn Store, event: Event) -> Result<(), CliError> {
    store.queue_audit(&event.entry(0, now_ms()).encode())?;
    Ok(())
}

/// `valised audit verify`: prints one line (or one JSON object); exits 1
/// on the first fault found.
fn audit_verify(data: &Path, key: Option<String>, json: bool) -> Result<(), CliError> {
    let dir = DataDir::new(data);
    let config = dir.config()?;
    let origin = valise_server::audit::origin(&config.domain);
    let key = match key {
        Some(hex_key) => {
            let mut public = [0u8; 32];
            hex::decode_to_slice(hex_key.trim(), &mut public).map_err(|_| {
                CliError::Usage(format!("--key {hex_key:?}: expected 64 hex digits"))
            })?;
            AuditKey::new(&origin, &public).map_err(|e| CliError::Usage(e.to_string()))?
        }
        None => dir.audit_signer(&config.domain)?.public_key().clone(),
    };
    let store = dir.open_store()?;
    match valise_server::audit::verify_offline(&store, &key) {
        Ok(v) => {
            if json {
                println!("{}", serde_json::json!({"ok": true, "verified": v}));
            } else {
                println!(
                    "audit log verified: {} entries, {} checkpoints (newest at size {}), root {}",
                    v.entries, v.checkpoints, v.newest_checkpoint, v.root
                );
            }
            Ok(())
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "code": e.code(), "error": e.to_string()})
                );
            }
            Err(CliError::Audit(e))
        }
    }
}

/// Alerts read from the database per query.
const ALERTS_PAGE: usize = 256;

/// How often `valised alerts --follow` looks for new alerts.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// `valised alerts`: every alert after `since`, then (with `follow`) each
/// new one as the running server writes it. Reads the database only, so
/// it needs no state of its own: `--since` the last id printed resumes.
fn alerts(data: &Path, follow: bool, since: Option<u64>, json: bool) -> Result<(), CliError> {
    use std::io::Write as _;
    let dir = DataDir::new(data);
    dir.config()?;
    let store = dir.open_store()?;
    let mut from = since.map_or(0, |id| id.saturating_add(1));
    loop {
        let page = store.alerts_from(from, ALERTS_PAGE)?;
        let mut out = std::io::stdout().lock();
        for (id, bytes) in &page {
            from = id.saturating_add(1);
            let alert = valise_proto::audit::Entry::decode(bytes)
                .ok()
                .and_then(Alert::from_entry)
                .ok_or_else(|| {
                    CliError::Io(format!(
                        "alert {id} is not an alert entry: run `valised audit verify`"
                    ))
                })?;
            let line = if json {
                serde_json::to_string(&alert)
                    .map_err(|e| CliError::Io(format!("cannot encode: {e}")))?
            } else {
                alert_line(&alert)
            };
            writeln!(out, "{line}")
                .and_then(|()| out.flush())
                .map_err(|e| CliError::Io(format!("stdout: {e}")))?;
        }
        if page.len() < ALERTS_PAGE {
            if !follow {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_EVERY);
        }
    }
}

/// One alert as a line for a person.
fn alert_line(a: &Alert) -> String {
    let subject = match &a.subject {
        Some(valise_server::rules::AlertSubject::Device(d)) => d.to_string(),
        Some(valise_server::rules::AlertSubject::User(u)) => u.to_string(),
        Some(valise_server::rules::AlertSubject::Address(ip)) => ip.to_string(),
        None => "-".to_owned(),
    };
    let detail: Vec<String> = a
        .detail
        .iter()
        .map(|(k, v)| match v {
            valise_proto::audit::Detail::Count(n) => format!("{k}={n}"),
            valise_proto::audit::Detail::Text(t) => format!("{k}={t}"),
        })
        .collect();
    format!(
        "#{} at_ms {} {} {} {} {}",
        a.id,
        a.at_ms,
        a.severity.as_str(),
        a.kind.as_str(),
        subject,
        detail.join(" ")
    )
}

fn print_users(users: &[UserRecord], json: bool) {
    if json {
        let v: Vec<serde_json::Value> = users
            .iter()
            .map(|u| {
                serde_json::json!({
                    "user": u.user.as_str(),
                    "generation": u.identity.generation,
                    "devices": u.devices.iter().map(|d| serde_json::json!({
                        "device": d.device.to_string(),
                        "number": d.number,
                        "status": d.status.as_str(),
                        "generation": d.generation,
                        "signature_key": hex::encode(&d.signature_key),
                        "enrolled_at_ms": d.enrolled_at_ms,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return;
    }
    for u in users {
        println!(
            "{} ({} devices, identity generation {})",
            u.user,
            u.devices.len(),
            u.identity.generation
        );
        for d in &u.devices {
            println!(
                "  #{} {}  {}  generation {}  key {}  enrolled_at_ms {}",
                d.number,
                d.device,
                d.status.as_str(),
                d.generation,
                hex::encode(&d.signature_key),
                d.enrolled_at_ms
            );
        }
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stop signal received");
}

/// `valised run`'s settings: its flags over its configuration file.
fn run_config(
    log_level: Option<String>,
    config: Option<&Path>,
    flags: RunSettings,
) -> Result<RunConfig, CliError> {
    let file = config.map(RunSettings::load).transpose()?;
    let flags = RunSettings { log_level, ..flags };
    Ok(flags.overlay(file.unwrap_or_default()).resolve()?)
}

fn run(config: RunConfig) -> Result<(), CliError> {
    let RunConfig {
        data,
        listen,
        domain,
        first_invite,
        metrics_listen,
        limits,
        connections,
        directory_interval,
        account_quota_mib,
        max_blob_mib,
        blob_quota_mib,
        blob_window,
        checkpoint_interval,
        alerts,
        security_desk,
        log_level: _,
        log_file: _,
    } = config;
    let data = data.as_path();
    let dir = DataDir::new(data);
    if !dir.is_initialised() {
        let domain = domain.clone().ok_or_else(|| {
            CliError::Usage(format!(
                "{} is not initialised: pass --domain to initialise it",
                data.display()
            ))
        })?;
        let user = parse_user(&first_invite.unwrap_or_else(|| format!("admin@{domain}")))?;
        let keys = dir.init(&domain, now_ms())?;
        tracing::info!(key = %keys.server_key, directory_key = %keys.directory_key, "initialised data directory");
        println!("directory key (Ed25519, public): {}", keys.directory_key);
        let store = dir.open_store()?;
        let code = create_invite(&store, &user, 24, false)?;
        println!("enrolment code for {user}: {code}");
    }
    let config = dir.config()?;
    if let Some(d) = domain.filter(|d| *d != config.domain) {
        tracing::warn!(given = %d, stored = %config.domain, "--domain ignored: the directory has its own");
    }
    let tls = tls::server_config(&dir.cert_path(), &dir.key_path())?;
    // The store first (see `admin`).
    let sqlite = Arc::new(SqliteStore::open(&dir.db_path())?);
    let store: Arc<dyn Store> = sqlite.clone();
    store.set_account_quota(account_quota_mib.saturating_mul(1 << 20));
    // Named again on each start only if the file says otherwise than the
    // database: a change is an audited event, a restart is not.
    let named = store.security_desk()?;
    if let Some(desk) = security_desk.filter(|d| named.as_ref() != Some(d)) {
        if let Some(before) = set_security_desk(store.as_ref(), &desk)? {
            tracing::warn!(%before, %desk, "security desk changed by the configuration");
        } else {
            tracing::info!(%desk, "security desk named by the configuration");
        }
    }
    let keys = Arc::new(dir.directory_keys()?);
    let audit_signer = Arc::new(dir.audit_signer(&config.domain)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("runtime: {e}")))?;
    let db_path = dir.db_path();
    let blobs = Arc::new(
        BlobFiles::open(
            &dir.blobs_path(),
            max_blob_mib.saturating_mul(1 << 20),
            blob_quota_mib.saturating_mul(1 << 20),
            blob_window,
        )
        .map_err(|e| CliError::Io(format!("blob directory: {e}")))?,
    );
    rt.block_on(async move {
        let background = Background::default();
        let directory = valise_server::directory::open(&db_path, &keys).await?;
        let directory = DirectoryService::start(
            directory,
            keys,
            store.clone(),
            directory_interval,
            &background,
        )
        .await?;
        tracing::info!(key = %directory.directory_key(), "key directory open");
        valise_server::housekeeping::start(store.clone(), &background);
        valise_server::housekeeping::start_blob_expiry(store.clone(), blobs.clone(), &background);
        valise_server::housekeeping::start_collector(store.clone(), &background);
        tracing::info!(key = %audit_signer.public_key().hex(), origin = %audit_signer.public_key().name(), "audit log open");
        let audit_key = audit_signer.public_key().clone();
        let webhook = alerts
            .webhook
            .map(|url| {
                let to = valise_server::webhook::host_of(&url);
                tracing::info!(%to, "alerts go to the webhook");
                Webhook::start(url, alerts.webhook_ca.as_deref(), &background)
            })
            .transpose()?;
        let evidence = valise_server::audit::start(
            store.clone(),
            audit_signer,
            checkpoint_interval,
            Alerting {
                rules: alerts.rules,
                webhook,
            },
            &background,
        )?;
        let state = AppState::new(
            store,
            &config.domain,
            Arc::new(directory),
            (evidence, audit_key),
            blobs,
            &background,
        )
        .map_err(|e| CliError::Io(format!("crypto provider: {e:?}")))?
        .with_limits(limits);
        if let Some(at) = metrics_listen {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| CliError::Io(format!("cannot listen for metrics on {at}: {e}")))?;
            let at = listener
                .local_addr()
                .map_err(|e| CliError::Io(format!("metrics listener: {e}")))?;
            tracing::info!(%at, "metrics served on /metrics");
            println!("metrics on http://{at}/metrics");
            background.spawn(
                "metrics listener",
                valise_server::metrics::serve(listener, state.clone(), background.signal()),
            );
        }
        #[cfg(feature = "adversary")]
        let state = state.with_tampering(sqlite);
        #[cfg(not(feature = "adversary"))]
        drop(sqlite);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| CliError::Io(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::Io(format!("listener: {e}")))?;
        tracing::info!(%addr, domain = %config.domain, "serving");
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on https://{addr}");
            let _ = out.flush();
        }
        serve(
            listener,
            tls,
            state,
            connections,
            &background,
            stop_signal(),
        )
        .await;
        Ok::<(), CliError>(())
    })?;
    // Dropping the runtime ends the delivery writer (the background tasks
    // have stopped); the store (and its connections) close when the last
    // handle goes.
    rt.shutdown_timeout(Duration::from_secs(2));
    tracing::info!("stopped");
    Ok(())
}

/// The command line, with the defaults of `run`'s settings in its help:
/// they are applied after the configuration file is read, so clap cannot
/// know them.
fn command() -> clap::Command {
    let defaults = RunSettings::defaults_by_key();
    let show = |cmd: clap::Command| {
        defaults.iter().fold(cmd, |cmd, (key, value)| {
            if cmd.get_arguments().all(|a| a.get_id() != key.as_str()) {
                return cmd;
            }
            cmd.mut_arg(key, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {value}]"))
            })
        })
    };
    show(Cli::command()).mut_subcommand("run", show)
}

fn main() {
    let cli = Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    if let Err(e) = main_inner(cli) {
        eprintln!("valised: {e}");
        std::process::exit(1);
    }
}

fn main_inner(cli: Cli) -> Result<(), CliError> {
    let level = cli.log_level.as_deref().unwrap_or(DEFAULT_LOG_LEVEL);
    match cli.command {
        Command::Run { config, settings } => {
            // The configuration first: it says where to log.
            let config = run_config(cli.log_level, config.as_deref(), *settings)?;
            init_logging(&config.log_level, config.log_file.as_deref())?;
            run(config)
        }
        Command::Init { data, domain } => {
            init_logging(level, None)?;
            init(&data, &domain)
        }
        Command::Admin { data, command } => {
            init_logging(level, None)?;
            admin(&data, command)
        }
        Command::Audit {
            command: AuditCommand::Verify { data, key, json },
        } => {
            init_logging(level, None)?;
            audit_verify(&data, key, json)
        }
        Command::Alerts {
            data,
            follow,
            since,
            json,
        } => {
            init_logging(level, None)?;
            alerts(&data, follow, since, json)
        }
    }
}
