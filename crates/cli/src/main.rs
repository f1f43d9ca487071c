//! `valise`: the Valise command line.
#![forbid(unsafe_code)]

mod args;
mod output;

use anyhow::{Context, Result};
use args::{Cli, Command, ConversationCmd};
use clap::Parser;
use output::Output;
use std::path::Path;
use valise_client::{AuditState, Client, Draft, Enrollment, Passphrase, audit_directory};
use zeroize::Zeroizing;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return output::fail(&e.into(), cli.json),
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => output::fail(&e, cli.json),
    }
}

async fn run(cli: &Cli) -> Result<()> {
    let out = Output { json: cli.json };
    let home = cli.home()?;
    match &cli.command {
        Command::Enroll {
            server,
            user,
            code,
            ca,
            directory_key,
        } => {
            let ca_pem = std::fs::read_to_string(ca)
                .with_context(|| format!("cannot read CA file {}", ca.display()))?;
            let directory_key = directory_key
                .as_deref()
                .map(|k| hex::decode(k.trim()).context("--directory-key is not hex"))
                .transpose()?;
            let passphrase = passphrase(true)?;
            let client = Client::enroll(
                &home,
                &passphrase,
                Enrollment {
                    server,
                    ca_pem: &ca_pem,
                    user,
                    code,
                    directory_key: directory_key.as_deref(),
                },
            )
            .await?;
            out.enrolled(client.me());
        }
        Command::Send {
            to,
            conversation,
            subject,
            body,
            body_file,
            marking,
        } => {
            let mut client = open(&home)?;
            let draft = Draft {
                subject: subject.clone(),
                body: read_body(body, body_file)?,
                marking: marking.clone(),
            };
            let sent = match conversation {
                Some(conv) => client.send_in(conv, draft).await?,
                None => client.send_to(to, draft).await?,
            };
            out.sent(&sent);
        }
        Command::Sync { wait } => {
            let mut client = open(&home)?;
            let bar = output::SyncBar::new(out.json);
            let report = client
                .sync_with(wait.saturating_mul(1000), &mut |p| bar.update(p))
                .await?;
            bar.finish();
            out.synced(&report, &client.take_new_alerts()?);
        }
        Command::Inbox => out.inbox(&open(&home)?.inbox()?),
        Command::Read { id } => out.letter(&open(&home)?.letter(*id)?),
        Command::Reply {
            id,
            body,
            body_file,
        } => {
            let mut client = open(&home)?;
            let sent = client.reply(*id, read_body(body, body_file)?).await?;
            out.sent(&sent);
        }
        Command::Conversation(cmd) => conversation(&home, cmd, &out).await?,
        Command::Alerts => out.alerts(&open(&home)?.alerts()?),
        Command::Verify { user, code } => {
            let mut client = open(&home)?;
            match code {
                None => out.safety_code(user, &client.safety_code(user).await?),
                Some(code) => {
                    anyhow::ensure!(
                        client.confirm_safety_code(user, code).await?,
                        "the code does not match the safety code for {user}: do not trust this contact's keys"
                    );
                    out.verified(user);
                }
            }
        }
        Command::Audit {
            server,
            state,
            ca,
            directory_key,
        } => audit(server, state, ca, directory_key.as_deref(), &out).await?,
        Command::Devices => {
            let mut client = open(&home)?;
            out.devices(&client.devices().await?);
        }
    }
    Ok(())
}

async fn conversation(home: &Path, cmd: &ConversationCmd, out: &Output) -> Result<()> {
    let mut client = open(home)?;
    match cmd {
        ConversationCmd::Create { name, members } => {
            let id = client.create_conversation(name, members).await?;
            out.created(&id);
        }
        ConversationCmd::Add { id, user } => {
            client.add_member(id, user).await?;
            out.changed("added", id, user);
        }
        ConversationCmd::Remove { id, user } => {
            client.remove_member(id, user).await?;
            out.changed("removed", id, user);
        }
        ConversationCmd::List => out.conversations(&client.conversations()?),
    }
    Ok(())
}

async fn audit(
    server: &str,
    state_file: &Path,
    ca: &Path,
    directory_key: Option<&str>,
    out: &Output,
) -> Result<()> {
    let ca_pem = std::fs::read_to_string(ca)
        .with_context(|| format!("cannot read CA file {}", ca.display()))?;
    let mut state = match std::fs::read_to_string(state_file) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not an audit state", state_file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuditState {
            directory_key: directory_key
                .context("first audit: give the directory key with --directory-key")?
                .to_owned(),
            ledger: Default::default(),
        },
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", state_file.display())),
    };
    let report = audit_directory(server, &ca_pem, &mut state).await?;
    std::fs::write(state_file, serde_json::to_string_pretty(&state)?)
        .with_context(|| format!("cannot write {}", state_file.display()))?;
    out.audited(&report);
    Ok(())
}

fn open(home: &Path) -> Result<Client> {
    Ok(Client::open(home, &passphrase(false)?)?)
}

/// `VALISE_PASSPHRASE`, or a prompt on the terminal (twice when choosing one).
fn passphrase(new: bool) -> Result<Passphrase> {
    if let Ok(p) = std::env::var("VALISE_PASSPHRASE") {
        return Ok(Passphrase::new(p));
    }
    // Wiped on every path out, refusals included.
    let mut first = Zeroizing::new(
        rpassword::prompt_password("Passphrase for this device: ")
            .context("no passphrase: set VALISE_PASSPHRASE or run in a terminal")?,
    );
    if new {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat the passphrase: ")?);
        anyhow::ensure!(first == again, "the two passphrases differ");
        anyhow::ensure!(
            first.len() >= 8,
            "choose a passphrase of at least 8 characters"
        );
    }
    Ok(Passphrase::new(std::mem::take(&mut *first)))
}

fn read_body(body: &Option<String>, file: &Option<std::path::PathBuf>) -> Result<String> {
    match (body, file) {
        (Some(b), _) => Ok(b.clone()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read body file {}", f.display())),
        (None, None) => anyhow::bail!("give the letter a body with --body or --body-file"),
    }
}
