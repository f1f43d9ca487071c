//! `valised`: initialise a data directory, run the server, administer it.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use valise_proto::{DeviceAddress, DeviceId, UserId};
use valise_server::background::Background;
use valise_server::datadir::{DataDir, DataDirError};
use valise_server::directory::DirectoryService;
use valise_server::limits::Limits;
use valise_server::server::ConnectionLimits;
use valise_server::store::{NewRevocation, SqliteStore, Store, StoreError, UserRecord};
use valise_server::{AppState, invite, now_ms, serve, tls};

#[derive(Parser, Debug)]
#[command(name = "valised", version, about = "The Valise server")]
struct Cli {
    /// Log level or filter (overridden by RUST_LOG).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
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
    Run {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        listen: SocketAddr,
        /// Domain, needed only when the directory is not initialised yet.
        #[arg(long)]
        domain: Option<String>,
        /// User to print a first enrolment code for, on first initialisation
        /// (default admin@<domain>).
        #[arg(long)]
        first_invite: Option<String>,
        /// Write logs to this file instead of stderr.
        #[arg(long)]
        log_file: Option<PathBuf>,
        #[command(flatten)]
        rates: RateFlags,
        #[command(flatten)]
        connections: ConnectionFlags,
        /// Least time between two key directory epochs (changes arriving
        /// meanwhile are batched into the next one).
        #[arg(long, default_value_t = valise_server::directory::DEFAULT_INTERVAL_MS)]
        directory_interval_ms: u64,
        /// Bytes (MiB) of letters one account's devices may keep waiting
        /// unread on this server; past it that account's letters are
        /// refused with `storage_full`, and nobody else's.
        #[arg(long, default_value_t = valise_server::store::DEFAULT_ACCOUNT_QUOTA_MIB)]
        account_quota_mib: u64,
    },
    /// Administration; works while the server runs.
    Admin {
        #[arg(long)]
        data: PathBuf,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// Per-device allowances, checked before a request's body is parsed.
#[derive(clap::Args, Debug)]
struct RateFlags {
    /// Letters per second one device may send (a burst of twice as many).
    #[arg(long, default_value_t = Limits::default().sends_per_second)]
    max_sends_per_second: u32,
    /// Key-package claims per minute one device may make.
    #[arg(long, default_value_t = Limits::default().claims_per_minute)]
    max_claims_per_minute: u32,
    /// Commits (membership changes) and new conversations per minute one
    /// device may submit.
    #[arg(long, default_value_t = Limits::default().commits_per_minute)]
    max_commits_per_minute: u32,
    /// Directory audit proofs per minute one device may ask for (one client
    /// address, for callers without a token: auditors).
    #[arg(long, default_value_t = Limits::default().audits_per_minute)]
    max_audits_per_minute: u32,
    /// Key packages per minute one device may upload (each is verified).
    /// One full upload is always allowed at once.
    #[arg(long, default_value_t = Limits::default().key_packages_per_minute)]
    max_key_packages_per_minute: u32,
}

impl From<RateFlags> for Limits {
    fn from(f: RateFlags) -> Self {
        Self {
            sends_per_second: f.max_sends_per_second,
            claims_per_minute: f.max_claims_per_minute,
            commits_per_minute: f.max_commits_per_minute,
            audits_per_minute: f.max_audits_per_minute,
            key_packages_per_minute: f.max_key_packages_per_minute,
        }
    }
}

/// How many connections the server holds, and how long a silent one.
#[derive(clap::Args, Debug)]
struct ConnectionFlags {
    /// Most connections served at once; further ones wait in the kernel's
    /// backlog.
    #[arg(long, default_value_t = ConnectionLimits::default().max)]
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Most connections open at once from one client address (an IPv4
    /// address, or an IPv6 /64); further ones are closed at once. Raise it
    /// for a site whose devices all come through one NAT address.
    #[arg(long, default_value_t = ConnectionLimits::default().per_address)]
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_address: u32,
    /// Seconds a client has to finish its TLS handshake, and then to send
    /// each request's headers (HTTP/1.1); also how long an idle HTTP/1.1
    /// connection stays open.
    #[arg(long, default_value_t = ConnectionLimits::default().header_timeout.as_secs())]
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Seconds without a request in flight after which a connection is
    /// closed (long polls are requests in flight).
    #[arg(long, default_value_t = ConnectionLimits::default().idle_timeout.as_secs())]
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
}

impl From<ConnectionFlags> for ConnectionLimits {
    fn from(f: ConnectionFlags) -> Self {
        Self {
            max: f.max_connections,
            per_address: f.max_connections_per_address,
            header_timeout: Duration::from_secs(f.header_timeout_secs),
            idle_timeout: Duration::from_secs(f.idle_timeout_secs),
        }
    }
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
    /// Change a setting of the organisation.
    #[command(subcommand)]
    Set(SetCommand),
}

#[derive(Subcommand, Debug)]
enum SetCommand {
    /// Name the security desk: the user to whom every device reports the
    /// alerts it raises, end to end encrypted. Devices pin the desk they
    /// learn first; a later change is an alert on each device, which
    /// keeps reporting to the pinned desk until its user accepts the new
    /// one (`valise desk accept`).
    SecurityDesk { user: String },
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
            println!("{}", create_invite(&store, &user, ttl_hours, reset)?);
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
            tracing::info!(%device, "device revoked by the administrator");
            println!(
                "revoked {device}; the running server refuses it and publishes the revocation"
            );
        }
        AdminCommand::Users { json } => print_users(&store.list_users()?, json),
        AdminCommand::Set(SetCommand::SecurityDesk { user }) => {
            let user = parse_user(&user)?;
            let before = store.set_security_desk(&user, now_ms())?;
            match before.filter(|b| *b != user) {
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
    }
    Ok(())
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

// Each argument is one of `valised run`'s flags or groups of flags.
#[allow(clippy::too_many_arguments)]
fn run(
    data: &Path,
    listen: SocketAddr,
    domain: Option<String>,
    first_invite: Option<String>,
    limits: Limits,
    connections: ConnectionLimits,
    directory_interval: Duration,
    account_quota_mib: u64,
) -> Result<(), CliError> {
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
    let keys = Arc::new(dir.directory_keys()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("runtime: {e}")))?;
    let db_path = dir.db_path();
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
        valise_server::housekeeping::start_collector(store.clone(), &background);
        let state = AppState::new(store, &config.domain, Arc::new(directory), &background)
            .map_err(|e| CliError::Io(format!("crypto provider: {e:?}")))?
            .with_limits(limits);
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

fn main() {
    let cli = Cli::parse();
    let log_file = match &cli.command {
        Command::Run { log_file, .. } => log_file.clone(),
        _ => None,
    };
    if let Err(e) = init_logging(&cli.log_level, log_file.as_deref()) {
        eprintln!("valised: {e}");
        std::process::exit(1);
    }
    let result = match cli.command {
        Command::Init { data, domain } => init(&data, &domain),
        Command::Run {
            data,
            listen,
            domain,
            first_invite,
            log_file: _,
            rates,
            connections,
            directory_interval_ms,
            account_quota_mib,
        } => run(
            &data,
            listen,
            domain,
            first_invite,
            rates.into(),
            connections.into(),
            Duration::from_millis(directory_interval_ms),
            account_quota_mib,
        ),
        Command::Admin { data, command } => admin(&data, command),
    };
    if let Err(e) = result {
        eprintln!("valised: {e}");
        std::process::exit(1);
    }
}
