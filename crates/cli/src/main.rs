//! `valise`: the Valise command line.
#![forbid(unsafe_code)]

mod accredit;
mod args;
mod output;

use anyhow::{Context, Result};
use args::{Auditor, Cli, Command, ConversationCmd, DeskCmd, DevicesCmd};
use clap::Parser;
use output::Output;
use valise_client::{
    AuditLogState, AuditState, Client, Draft, Enrollment, Passphrase, audit_directory,
};
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
        Ok(code) => code,
        Err(e) => output::fail(&e, cli.json),
    }
}

/// Exit status of an enrolment into an account that already has devices:
/// the device is pending, which scripts must notice.
const EXIT_PENDING: u8 = 3;

async fn run(cli: &Cli) -> Result<std::process::ExitCode> {
    let out = Output { json: cli.json };
    let home = cli.home()?;
    match &cli.command {
        Command::Enroll {
            server,
            user,
            code,
            ca,
            directory_key,
            authority_fingerprint,
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
                    authority_fingerprint: authority_fingerprint.as_deref(),
                },
            )
            .await?;
            let mut client = client;
            let others = client.enrolled_into().await?;
            if others.is_empty() {
                out.enrolled(client.me());
            } else {
                out.enrolled_pending(client.me(), &client.link_code(), &others);
                return Ok(std::process::ExitCode::from(EXIT_PENDING));
            }
        }
        Command::Outbox => out.held(&open(cli)?.held()?),
        Command::Markings => out.markings(),
        Command::AuthorityKey { out: file } => {
            out.authority_key(&accredit::new_key(file)?.public(), file)
        }
        Command::Accredit {
            authority_key,
            user,
            marking,
            until,
            device,
            out: file,
        } => {
            let claims = accredit::accredit(authority_key, user, marking, until, *device, file)?;
            out.accredited(&claims, file);
        }
        Command::Send {
            to,
            conversation,
            subject,
            body,
            body_file,
            marking,
            attach,
        } => {
            let mut client = open(cli)?;
            client.set_progress(output::transfer_bar(out.json));
            let draft = Draft {
                subject: subject.clone(),
                body: read_body(body, body_file)?,
                marking: marking.clone(),
                attachments: attach
                    .iter()
                    .cloned()
                    .map(valise_client::attachments::AttachmentSource::File)
                    .collect(),
            };
            let sent = match conversation {
                Some(conv) => client.send_in(conv, draft).await?,
                None => client.send_to(to, draft).await?,
            };
            out.sent(&sent);
        }
        Command::Save {
            id,
            attachment,
            out: file,
        } => {
            let mut client = open(cli)?;
            client.set_progress(output::transfer_bar(out.json));
            out.saved(&client.save_attachment(*id, *attachment, file).await?);
        }
        Command::Sync { wait } => {
            let mut client = open(cli)?;
            client.set_progress(output::transfer_bar(out.json));
            let bar = output::SyncBar::new(out.json);
            let report = client
                .sync_with(wait.saturating_mul(1000), &mut |p| bar.update(p))
                .await?;
            bar.finish();
            out.synced(&report, &client.take_new_alerts()?);
        }
        Command::Inbox => out.inbox(&open(cli)?.inbox()?),
        Command::Read { id } => out.letter(&open(cli)?.letter(*id)?),
        Command::Reply {
            id,
            marking,
            body,
            body_file,
        } => {
            let mut client = open(cli)?;
            let sent = client
                .reply(*id, read_body(body, body_file)?, marking.clone())
                .await?;
            out.sent(&sent);
        }
        Command::Forward { id, conversation } => {
            let sent = open(cli)?.forward(*id, conversation).await?;
            out.sent(&sent);
        }
        Command::Conversation(cmd) => conversation(cli, cmd, &out).await?,
        Command::Alerts { desk: false, .. } => out.alerts(&open(cli)?.alerts()?),
        Command::Alerts { desk: true, follow } => desk_reports(cli, *follow, &out).await?,
        Command::Desk { command } => {
            let client = open(cli)?;
            match command.as_ref().unwrap_or(&DeskCmd::Show) {
                DeskCmd::Show => out.desk(&client.security_desk()?),
                DeskCmd::Accept => out.desk_accepted(client.accept_desk()?.as_ref()),
            }
        }
        Command::Verify { user, code } => {
            let mut client = open(cli)?;
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
            auditor,
            directory_key,
        } => audit(auditor, directory_key.as_deref(), &out).await?,
        Command::AuditLog {
            auditor,
            key,
            entries,
        } => audit_log(auditor, key.as_deref(), *entries, &out).await?,
        Command::Devices { command } => {
            let mut client = open(cli)?;
            match command.as_ref().unwrap_or(&DevicesCmd::List) {
                DevicesCmd::List => out.devices(&client.own_devices().await?),
                DevicesCmd::Approve { code } => {
                    let device = client.approve_device(code).await?;
                    out.device_changed("approved", &device);
                }
                DevicesCmd::Revoke { device } => {
                    client.revoke_device(device).await?;
                    out.device_changed("revoked", device);
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn conversation(cli: &Cli, cmd: &ConversationCmd, out: &Output) -> Result<()> {
    let mut client = open(cli)?;
    match cmd {
        ConversationCmd::Create {
            name,
            members,
            ceiling,
        } => {
            let id = client
                .create_conversation(name, members, ceiling.clone())
                .await?;
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
        ConversationCmd::Show { id } => out.conversation(&client.conversation_detail(id).await?),
        ConversationCmd::Rejoin { id, accept: _ } => {
            client.accept_hub_state(id).await?;
            out.rejoined(id);
        }
    }
    Ok(())
}

/// How long one sync of `alerts --desk --follow` waits for something to
/// arrive (the server answers as soon as something does).
const FOLLOW_WAIT_MS: u64 = 25_000;

/// The security desk's reports: all of them, or (`follow`) those after
/// the last one printed, then each new one as syncs bring it. The marker
/// moves only once a line is written and flushed: a follower killed and
/// restarted misses nothing (a line whose marker did not reach the disk
/// is printed again; `report_id` tells it).
async fn desk_reports(cli: &Cli, follow: bool, out: &Output) -> Result<()> {
    let mut client = open(cli)?;
    if !follow {
        return out.desk_reports(&client.desk_reports(0)?);
    }
    loop {
        for report in client.desk_reports(client.printed_report()?)? {
            out.desk_report(&report)?;
            client.set_printed_report(report.id)?;
        }
        match client.sync_wait(FOLLOW_WAIT_MS).await {
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "sync failed; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Auditor {
    fn ca_pem(&self) -> Result<String> {
        std::fs::read_to_string(&self.ca)
            .with_context(|| format!("cannot read CA file {}", self.ca.display()))
    }

    /// What the last run kept, if there was one.
    fn read_state<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<Option<T>> {
        match std::fs::read_to_string(&self.state) {
            Ok(text) => {
                Ok(Some(serde_json::from_str(&text).with_context(|| {
                    format!("{} is not {what}", self.state.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.state.display())),
        }
    }

    fn write_state(&self, state: &impl serde::Serialize) -> Result<()> {
        std::fs::write(&self.state, serde_json::to_string_pretty(state)?)
            .with_context(|| format!("cannot write {}", self.state.display()))
    }
}

async fn audit(auditor: &Auditor, directory_key: Option<&str>, out: &Output) -> Result<()> {
    let ca_pem = auditor.ca_pem()?;
    let mut state = match auditor.read_state("an audit state")? {
        Some(state) => state,
        None => AuditState {
            directory_key: directory_key
                .context("first audit: give the directory key with --directory-key")?
                .to_owned(),
            ledger: Default::default(),
        },
    };
    let report = audit_directory(&auditor.server, &ca_pem, &mut state).await?;
    auditor.write_state(&state)?;
    out.audited(&report);
    Ok(())
}

async fn audit_log(auditor: &Auditor, key: Option<&str>, walk: bool, out: &Output) -> Result<()> {
    let ca_pem = auditor.ca_pem()?;
    let state: Option<AuditLogState> = auditor.read_state("an audit-log state")?;
    let (state, report) =
        valise_client::audit_log(&auditor.server, &ca_pem, state.as_ref(), key, walk).await?;
    auditor.write_state(&state)?;
    out.audit_logged(&report);
    Ok(())
}

fn open(cli: &Cli) -> Result<Client> {
    let mut client = Client::open(&cli.home()?, &passphrase(false)?)?;
    client.set_update_interval_ms(i64::from(cli.update_every_hours) * 3_600_000);
    Ok(client)
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
