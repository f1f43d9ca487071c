//! `valise-bridge`: local IMAP and SMTP so that ordinary mail clients
//! (Thunderbird, Outlook, mutt) read and send Valise letters. A thin front
//! end over the client engine: it holds no keys of its own (the home's
//! database holds its password hash and TLS key, sealed like the rest),
//! and it serves this machine only.
//!
//! ```text
//! mail client ─IMAP─▶ imap.rs ─┐                        ┌─▶ render.rs (letter → RFC 5322)
//!             ─SMTP─▶ smtp.rs ─┴─▶ device.rs (engine) ──┤
//!                                   └─ sync loop ───────┴─▶ news → IDLE sessions
//! ```
#![forbid(unsafe_code)]

mod auth;
mod device;
mod error;
mod folders;
mod imap;
mod malloc;
mod password;
mod render;
mod smtp;
mod submission;
mod tls;
mod transport;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use error::BridgeError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use valise_client::{Client, Passphrase};

#[derive(Parser)]
#[command(
    name = "valise-bridge",
    version,
    about = "Local IMAP and SMTP over a Valise home"
)]
struct Cli {
    /// The device's home (default: ~/.valise). Unlocked by VALISE_PASSPHRASE.
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// Where mail clients read (IMAP with STARTTLS); loopback only.
    #[arg(long, default_value = "127.0.0.1:1143")]
    imap: SocketAddr,
    /// Where mail clients send (SMTP submission with STARTTLS); loopback only.
    #[arg(long, default_value = "127.0.0.1:1025")]
    smtp: SocketAddr,
    /// Also IMAP over TLS from the first byte (IMAPS); loopback only.
    #[arg(long)]
    imaps: Option<SocketAddr>,
    /// Plain text on the loopback ports, for clients that cannot import
    /// the bridge's certificate.
    #[arg(long)]
    no_tls: bool,
    /// A FETCH literal longer than this many bytes is written as it is
    /// read, this many at a time (tests lower it to compare the answers).
    #[arg(long, hide = true, default_value_t = 1 << 20)]
    stream_over: usize,
    /// Log filter (tracing's syntax); logs never carry letter content.
    #[arg(long, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sets the bridge up once: prints its password, writes its certificate.
    Init,
    /// Prints a new bridge password; the old one stops working at once.
    Password {
        #[arg(long, required = true)]
        reset: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Serving runs for days: glibc's malloc with fixed thresholds (malloc.rs).
    let malloc = match cli.command {
        None => malloc::fix_thresholds(),
        Some(_) => Ok(()),
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log_level));
    // imap-next traces every byte it reads and writes (passwords, letters):
    // whatever the filter asks, it logs at info at most.
    let never_bytes = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("imap_next", LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter.and(never_bytes)),
        )
        .init();
    if let Err(e) = malloc {
        tracing::warn!("glibc's malloc thresholds left as they are: {e}");
    }
    // One thread: the engine is one device with one database connection,
    // and its futures stay on the thread that made them (a LocalSet).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    match runtime.block_on(tokio::task::LocalSet::new().run_until(run(cli))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One clear line, with the stable code when there is one.
fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    match e.downcast_ref::<BridgeError>() {
        Some(b) => eprintln!("error [{}]: {e:#}", b.code()),
        None => eprintln!("error: {e:#}"),
    }
    std::process::ExitCode::FAILURE
}

fn home(cli: &Cli) -> Result<PathBuf> {
    match &cli.home {
        Some(h) => Ok(h.clone()),
        None => {
            let base = std::env::var_os("HOME").context("no --home given and $HOME is not set")?;
            Ok(PathBuf::from(base).join(".valise"))
        }
    }
}

fn open(cli: &Cli) -> Result<Client> {
    let passphrase =
        std::env::var("VALISE_PASSPHRASE").context("set VALISE_PASSPHRASE to unlock the home")?;
    Ok(Client::open(&home(cli)?, &Passphrase::new(passphrase))?)
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Cmd::Init) => init(&cli),
        Some(Cmd::Password { .. }) => reset_password(&cli),
        None => serve(cli).await,
    }
}

/// `init`: a password (printed once), its hash and a TLS key in the
/// sealed home, the certificate beside it.
fn init(cli: &Cli) -> Result<()> {
    let client = open(cli)?;
    if client.home().bridge_account()?.is_some() {
        return Err(BridgeError::AlreadyInitialised.into());
    }
    let password = password::generate();
    let (cert, key) = tls::generate()?;
    let cert_path = tls::cert_path(&home(cli)?);
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    std::fs::write(&cert_path, cert).with_context(|| cert_path.display().to_string())?;
    client
        .home()
        .init_bridge_account(&password::hash(&password)?, &key)?;
    println!("bridge password: {}", password.as_str());
    println!("user: {}", client.me().user);
    println!("certificate: {}", cert_path.display());
    println!("The password is shown once; `valise-bridge password --reset` makes a new one.");
    Ok(())
}

fn reset_password(cli: &Cli) -> Result<()> {
    let client = open(cli)?;
    let password = password::generate();
    if !client
        .home()
        .set_bridge_password_hash(&password::hash(&password)?)?
    {
        return Err(BridgeError::NotInitialised.into());
    }
    println!("bridge password: {}", password.as_str());
    Ok(())
}

/// Binds a loopback address, or refuses.
async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(BridgeError::NotLoopback(addr).into());
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

async fn serve(cli: Cli) -> Result<()> {
    let client = open(&cli)?;
    // A budget lowered since the last run, or a download a crash cut
    // off: the cache is brought within its bound before anything is
    // served (caching then keeps it there).
    client.trim_attachment_cache()?;
    let Some((_, key)) = client.home().bridge_account()? else {
        return Err(BridgeError::NotInitialised.into());
    };
    let tls = if cli.no_tls {
        None
    } else {
        let config = tls::server_config(&tls::cert_path(&home(&cli)?), &key)?;
        Some(tokio_rustls::TlsAcceptor::from(config))
    };
    drop(key);
    if cli.imaps.is_some() && tls.is_none() {
        anyhow::bail!("--imaps needs TLS: drop --no-tls");
    }
    let imap = bind(cli.imap).await?;
    let smtp = bind(cli.smtp).await?;
    let imaps = match cli.imaps {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let device = device::Device::new(client)?;
    let ctx = Arc::new(imap::Ctx {
        device: device.clone(),
        tls,
        stream_over: cli.stream_over,
    });
    // Tests and scripts read the bound ports (port 0 picks one).
    println!("imap listening on {}", imap.local_addr()?);
    println!("smtp listening on {}", smtp.local_addr()?);
    if let Some(l) = &imaps {
        println!("imaps listening on {}", l.local_addr()?);
    }
    tokio::task::spawn_local(device.clone().sync_loop());
    tokio::task::spawn_local(accept(imap, ctx.clone(), Protocol::Imap));
    tokio::task::spawn_local(accept(smtp, ctx.clone(), Protocol::Smtp));
    if let Some(l) = imaps {
        tokio::task::spawn_local(accept(l, ctx.clone(), Protocol::Imaps));
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Protocol {
    Imap,
    Imaps,
    Smtp,
}

/// Accepts connections forever, one task each.
async fn accept(listener: TcpListener, ctx: Arc<imap::Ctx>, protocol: Protocol) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        // Answers go out in one write each; no need to wait for more.
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            let result = match protocol {
                Protocol::Imap => imap::serve(tcp, ctx, false).await,
                Protocol::Imaps => imap::serve(tcp, ctx, true).await,
                Protocol::Smtp => smtp::serve(tcp, ctx).await,
            };
            if let Err(e) = result {
                tracing::debug!("session ended: {e}");
            }
        });
    }
}
