//! Command-line arguments. The words are a contract: scripts rely on them.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use valise_proto::{ConversationId, DeviceId, Label, UserId};

/// Valise: end-to-end encrypted correspondence.
///
/// Letters are encrypted on this device with MLS (post-quantum hybrid) and
/// only ciphertext reaches the server. The device's home holds its keys and
/// letters, sealed under a passphrase (VALISE_PASSPHRASE, or a prompt).
#[derive(Debug, Parser)]
#[command(name = "valise", version, propagate_version = true)]
pub struct Cli {
    /// This device's home directory [default: $VALISE_HOME or ~/.valise].
    #[arg(long, global = true, env = "VALISE_HOME")]
    pub home: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn")]
    pub log_level: String,

    /// Renew this device's keys in each conversation at least this often
    /// (hours): a copy of the device taken earlier reads nothing after.
    #[arg(
        long,
        global = true,
        env = "VALISE_UPDATE_EVERY_HOURS",
        default_value_t = 24
    )]
    pub update_every_hours: u32,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn home(&self) -> Result<PathBuf> {
        match &self.home {
            Some(h) => Ok(h.clone()),
            None => {
                let base = std::env::var_os("HOME")
                    .ok_or_else(|| anyhow::anyhow!("no --home given and $HOME is not set"))?;
                Ok(PathBuf::from(base).join(".valise"))
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enrol this device with an invite code from the server's administrator.
    ///
    /// Creates the device's keys in --home (asking for a new passphrase),
    /// registers the device with the server and uploads its key packages.
    /// The first device of an account founds its identity. On an account
    /// that already has devices, this one is PENDING: it prints a link code
    /// to approve it from one of your other devices (`valise devices approve
    /// CODE`), names the devices already there, and exits with status 3.
    Enroll {
        /// The server, e.g. https://127.0.0.1:8443
        server: String,
        /// Your address, e.g. alice@mfa.example
        user: UserId,
        /// The one-time enrolment code.
        code: String,
        /// The server's CA certificate (PEM); the only certificate trusted.
        #[arg(long)]
        ca: PathBuf,
        /// The key directory's signing key (hex), as given out of band by
        /// the administrator; without it the key the server names is pinned.
        #[arg(long)]
        directory_key: Option<String>,
        /// The accreditation authority key's fingerprint (hex), as the
        /// security officer gave it out of band (`valise authority-key`
        /// prints it); enrolment fails if the server names another key.
        #[arg(long)]
        authority_fingerprint: Option<String>,
    },
    /// Write a letter to people, or in a conversation.
    ///
    /// With --to, the letter goes to the conversation that holds exactly
    /// these people and you (created on first use). With --conversation, it
    /// starts a new thread there, addressed to every member.
    Send {
        /// A recipient (repeat for several).
        #[arg(
            long,
            required_unless_present = "conversation",
            conflicts_with = "conversation"
        )]
        to: Vec<UserId>,
        /// Write in this conversation instead.
        #[arg(long)]
        conversation: Option<ConversationId>,
        #[arg(long)]
        subject: String,
        /// The body text.
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        /// Read the body from a file.
        #[arg(long)]
        body_file: Option<PathBuf>,
        /// Handling marking from the catalogue (`valise markings`), e.g.
        /// 'EU RESTRICTED' or 'TLP:AMBER//REL TO CZE, FRA'.
        #[arg(long, value_parser = Label::parse)]
        marking: Option<Label>,
        /// Attach a file (repeat for several). Each is encrypted on this
        /// device with its own key, padded, and uploaded in resumable parts
        /// before the letter goes; the server sees only a rounded size. If
        /// the upload is interrupted, `valise sync` (or any command that
        /// sends) resumes it; a file changed meanwhile is uploaded anew.
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<PathBuf>,
    },
    /// Print the catalogue of handling markings `--marking` accepts, with
    /// the other spellings of each and the markings it covers.
    Markings,
    /// Security officer, offline: make the accreditation authority's
    /// signing key (file mode 0600; keep it off the network). Prints the
    /// public key for `valised admin set accreditation-authority` and its
    /// fingerprint for `valise enroll --authority-fingerprint`.
    AuthorityKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Security officer, offline: sign an attestation that USER is
    /// accredited for MARKING (and what it covers) until the end of DATE
    /// (UTC), on all their devices or one; publish it with `valised admin
    /// publish-attestation FILE`.
    Accredit {
        /// The authority key file (`valise authority-key`).
        #[arg(long)]
        authority_key: PathBuf,
        user: UserId,
        #[arg(value_parser = Label::parse)]
        marking: Label,
        /// Last day of validity, YYYY-MM-DD.
        #[arg(long)]
        until: String,
        /// Only this device of the user.
        #[arg(long)]
        device: Option<DeviceId>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Save a letter's attachment to a file: downloaded, every chunk and
    /// the whole checked (nothing altered, reordered, cut or swapped), and
    /// written only if all passed. A failed check raises an alert and
    /// writes nothing. `read ID` lists the attachments and their numbers.
    Save {
        /// The letter's id, as `inbox` and `read` show it.
        id: i64,
        /// The attachment's number (from 1), as `read` lists it.
        #[arg(long)]
        attachment: usize,
        /// Where to write it (must not exist yet).
        #[arg(long)]
        out: PathBuf,
    },
    /// Fetch, decrypt and store new letters; prints how many arrived.
    Sync {
        /// Wait up to this many seconds for something to arrive.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// List received letters.
    Inbox,
    /// Show one letter.
    Read {
        /// The letter's id as `inbox` shows it.
        id: i64,
    },
    /// Answer a letter in its conversation and thread. The answer carries
    /// the thread's highest marking unless --marking raises it.
    Reply {
        id: i64,
        /// A marking at least as high as every marking of the thread.
        #[arg(long, value_parser = Label::parse)]
        marking: Option<Label>,
        #[arg(
            long,
            required_unless_present = "body_file",
            conflicts_with = "body_file"
        )]
        body: Option<String>,
        #[arg(long)]
        body_file: Option<PathBuf>,
    },
    /// Forward a letter into another conversation, as a new letter with
    /// its marking. TLP:RED is never forwarded; TLP:AMBER+STRICT only
    /// within your own domain; EU markings only to your domain and the
    /// `eu_domains` of the home's settings.json; the target's ceiling applies.
    Forward {
        /// The letter's id as `inbox` shows it.
        id: i64,
        #[arg(long)]
        conversation: ConversationId,
    },
    /// Create and manage conversations.
    #[command(subcommand)]
    Conversation(ConversationCmd),
    /// List, approve and revoke your devices.
    Devices {
        #[command(subcommand)]
        command: Option<DevicesCmd>,
    },
    /// List letters that wait in the outbox unsent, and why.
    Outbox,
    /// List alerts: what this device refused or noticed (kind, time, evidence).
    ///
    /// With --desk (on the security desk's device): the alert reports every
    /// device of the organisation sent, as JSON lines with --json (schema in
    /// docs/PROTOCOL.md, "Security desk reports").
    Alerts {
        /// The reports received as the security desk, not this device's alerts.
        #[arg(long)]
        desk: bool,
        /// Keep syncing and print each new report as it arrives. A restart
        /// resumes after the last report printed (kept in the home).
        #[arg(long, requires = "desk")]
        follow: bool,
    },
    /// The security desk this device reports its alerts to.
    Desk {
        #[command(subcommand)]
        command: Option<DeskCmd>,
    },
    /// Print the safety code you share with a person, to compare over a
    /// trusted channel (in person, by phone); with --code, record that you did.
    Verify {
        user: UserId,
        /// The code the other person read to you.
        #[arg(long)]
        code: Option<String>,
    },
    /// Audit a server's key directory (no enrolment needed): check that its
    /// epochs only ever appended since the last run; non-zero exit otherwise.
    Audit {
        #[command(flatten)]
        auditor: Auditor,
        /// The directory key (hex), needed on the first run.
        #[arg(long)]
        directory_key: Option<String>,
    },
    /// Audit a server's audit log (no enrolment needed): check the signed
    /// checkpoint and that the log only grew since the last run (a
    /// consistency proof); non-zero exit on a fork, a shrink or a bad
    /// signature. The state is written only after success.
    AuditLog {
        #[command(flatten)]
        auditor: Auditor,
        /// The audit key (hex, `valised init` prints it); without it the
        /// key is trusted on first use and pinned in the state file.
        #[arg(long)]
        key: Option<String>,
        /// Also fetch every new entry and check that they hash to the
        /// signed root (finds edited entries the proofs alone do not show).
        #[arg(long)]
        entries: bool,
    },
}

/// What both auditors (`audit`, `audit-log`) are given.
#[derive(Debug, clap::Args)]
pub struct Auditor {
    /// The server, e.g. https://127.0.0.1:8443
    pub server: String,
    /// Where the auditor keeps what it verified last, between runs
    /// (written only after success).
    #[arg(long)]
    pub state: PathBuf,
    /// The server's CA certificate (PEM).
    #[arg(long)]
    pub ca: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ConversationCmd {
    /// Create a conversation; prints its id.
    Create {
        #[arg(long)]
        name: String,
        /// A member (repeat for several); all their devices join.
        #[arg(long = "member", required = true)]
        members: Vec<UserId>,
        /// The highest marking letters here may carry, e.g. 'EU RESTRICTED'
        /// (every device must be accredited for it); fixed for good.
        /// Without it, only the readers' accreditations limit markings.
        #[arg(long, value_parser = Label::parse)]
        ceiling: Option<Label>,
    },
    /// Add a person (all their devices).
    Add { id: ConversationId, user: UserId },
    /// Remove a person (all their devices); they cannot read what follows.
    Remove { id: ConversationId, user: UserId },
    /// List conversations with their members and devices.
    List,
    /// Show a conversation's members as this device trusts them, beside
    /// what the server holds (compare them when it is out of step).
    Show { id: ConversationId },
    /// Rejoin a conversation that is out of step from the server's state,
    /// after comparing its members out of band (`conversation show`).
    Rejoin {
        id: ConversationId,
        /// Take the server's state although this device could not verify
        /// it (recorded as an alert).
        #[arg(long, required = true)]
        accept: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCmd {
    /// List your devices with their status (approved, pending, revoked).
    List,
    /// Approve your new device: give the link code it showed when enrolled.
    Approve {
        /// The link code the new device showed (25 digits; spaces ignored).
        code: String,
    },
    /// Revoke one of your devices (a lost or stolen one): it can no longer
    /// log in and is removed from every conversation.
    Revoke { device: DeviceId },
}

#[derive(Debug, Subcommand)]
pub enum DeskCmd {
    /// Show the desk this device reports to, and any other the server names.
    Show,
    /// Report to the desk the server names now, after a
    /// `security_desk_changed` alert (check with your organisation first:
    /// an intruder holding the server can name a desk of its own).
    Accept,
}
