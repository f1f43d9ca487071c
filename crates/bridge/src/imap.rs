//! IMAP4rev1 for mail clients, over the home's letters.
//!
//! imap-next parses commands and encodes responses (sans I/O); this module
//! owns the connection, so STARTTLS can swap it for TLS mid-session, and
//! IDLE can wake on the device's news instead of on client input.
//!
//! ```text
//! bytes ─▶ imap_next::Server ─▶ Event::CommandReceived ─▶ Session::command
//!                 ▲                                            │
//!                 └──── enqueue_data / enqueue_status ◀────────┘
//! ```
//!
//! FETCH answers are the exception: `fetch` encodes them with imap-codec
//! itself and writes them batch by batch, a long literal as it is read
//! (imap-next would hold each answer whole, encoded twice over). Nothing
//! interleaves: imap-next gives a command only once it has given out all
//! it queued (it sends before it receives), and nothing is queued before a
//! FETCH runs; its tagged status is queued after.

mod fetch;
mod search;

use crate::auth::Login;
use crate::device::Device;
use crate::folders::{self, CONVERSATIONS, DELIMITER, Folder};
use crate::password;
use crate::transport::Transport;
use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::{IString, NString, QuotedChar, Tag, Vec1};
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::flag::{Flag, FlagNameAttribute, FlagPerm};
use imap_next::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_next::imap_types::response::{
    Capability, Code, CommandContinuationRequest, Data, Greeting, Status,
};
use imap_next::imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_next::server::{Event, Options, ResponseHandle, Server};
use imap_next::types::CommandAuthenticate;
use imap_next::{Interrupt, Io, State};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use valise_client::home::mail::{FolderEntry, FolderState, MailFlags};

/// A session without a command for this long is closed (RFC 3501: at
/// least 30 minutes; IDLE clients re-issue every 29).
const AUTOLOGOUT: Duration = Duration::from_secs(31 * 60);

/// Bytes a session that has not logged in may send towards one command.
/// A login is a few hundred; without a bound any user of this machine
/// could make the bridge hold a literal of `max_literal_size` (64 MiB, for
/// APPEND) per connection, without the password.
const PRE_LOGIN_INPUT: usize = 64 * 1024;

/// What every session needs.
pub struct Ctx {
    pub device: Arc<Device>,
    /// `None` with `--no-tls`.
    pub tls: Option<TlsAcceptor>,
    /// A FETCH literal longer than this is written as it is read, this
    /// many bytes at a time (`fetch`), never whole in memory.
    pub stream_over: usize,
}

/// The selected folder and the letters this session knows in it (their
/// position is their message sequence number).
struct Selected {
    folder: Folder,
    read_only: bool,
    entries: Vec<FolderEntry>,
}

struct Session {
    ctx: Arc<Ctx>,
    server: Server,
    io: Transport,
    /// The login this session is served under (`None` before it).
    login: Option<Login>,
    selected: Option<Selected>,
    /// The tag of the IDLE in progress.
    idle: Option<Tag<'static>>,
    /// The AUTHENTICATE in progress.
    authenticating: Option<Tag<'static>>,
    /// The OK to STARTTLS: once sent, TLS starts.
    starttls: Option<ResponseHandle>,
    /// The OK to LOGOUT: once sent, the session ends.
    logout: Option<ResponseHandle>,
    news: watch::Receiver<u64>,
    /// Encoded responses not yet written.
    out: Vec<u8>,
    /// Bytes read since the parser last gave an event.
    unparsed: usize,
}

/// Serves one connection until the client leaves. `tls_now`: the port
/// speaks TLS from the first byte (IMAPS).
pub async fn serve(tcp: TcpStream, ctx: Arc<Ctx>, tls_now: bool) -> std::io::Result<()> {
    let mut io = Transport::Plain(tcp);
    if tls_now && let Some(acceptor) = &ctx.tls {
        io.upgrade(acceptor).await?;
    }
    let news = ctx.device.news();
    let mut session = Session {
        server: new_server(true),
        ctx,
        io,
        login: None,
        selected: None,
        idle: None,
        authenticating: None,
        starttls: None,
        logout: None,
        news,
        out: Vec::new(),
        unparsed: 0,
    };
    session.run().await
}

/// Sets (`on`) or clears the system flags of `flags` that a letter
/// keeps; others (keywords, `\Recent`) are not kept.
fn set_flags(f: &mut MailFlags, flags: &[Flag<'_>], on: bool) {
    for flag in flags {
        match flag {
            Flag::Seen => f.seen = on,
            Flag::Flagged => f.flagged = on,
            Flag::Answered => f.answered = on,
            Flag::Deleted => f.deleted = on,
            _ => {}
        }
    }
}

fn new_server(greet: bool) -> Server {
    let mut options = Options::default();
    options.max_literal_size = 64 * 1024 * 1024;
    options.max_command_size = options.max_literal_size + 64 * 1024;
    let greeting = match Greeting::ok(None, "Valise mail bridge ready") {
        Ok(g) => g,
        Err(_) => Greeting {
            kind: imap_next::imap_types::response::GreetingKind::Ok,
            code: None,
            text: imap_next::imap_types::core::Text::unvalidated("ready"),
        },
    };
    let mut server = Server::new(options, greeting);
    if !greet {
        // A fresh parser after STARTTLS: its greeting was sent already
        // (in plain text); drain it unsent.
        while let Err(Interrupt::Io(Io::Output(_))) = server.next() {}
    }
    server
}

/// `text` as IMAP human-readable text (ours are constant ASCII).
fn text(s: &'static str) -> imap_next::imap_types::core::Text<'static> {
    imap_next::imap_types::core::Text::unvalidated(s)
}

fn ok(tag: Tag<'static>, code: Option<Code<'static>>, t: &'static str) -> Status<'static> {
    Status::Tagged(imap_next::imap_types::response::Tagged {
        tag,
        body: imap_next::imap_types::response::StatusBody {
            kind: imap_next::imap_types::response::StatusKind::Ok,
            code,
            text: text(t),
        },
    })
}

fn no(tag: Tag<'static>, t: &'static str) -> Status<'static> {
    Status::Tagged(imap_next::imap_types::response::Tagged {
        tag,
        body: imap_next::imap_types::response::StatusBody {
            kind: imap_next::imap_types::response::StatusKind::No,
            code: None,
            text: text(t),
        },
    })
}

fn bad(tag: Option<Tag<'static>>, t: &'static str) -> Status<'static> {
    let body = imap_next::imap_types::response::StatusBody {
        kind: imap_next::imap_types::response::StatusKind::Bad,
        code: None,
        text: text(t),
    };
    match tag {
        Some(tag) => Status::Tagged(imap_next::imap_types::response::Tagged { tag, body }),
        None => Status::Untagged(body),
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn atom_cap(name: &'static str) -> Option<Capability<'static>> {
    imap_next::imap_types::core::Atom::try_from(name)
        .ok()
        .map(Capability::from)
}

impl Session {
    async fn run(&mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.server.next() {
                Ok(event) => {
                    self.unparsed = 0;
                    if self.event(event).await? {
                        return Ok(());
                    }
                }
                // Written together when the parser waits for input: one
                // write per answer, not per line (Nagle and delayed ACKs
                // would add 40 ms to each command).
                Err(Interrupt::Io(Io::Output(bytes))) => self.out.extend_from_slice(&bytes),
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    self.flush().await?;
                    let idling = self.idle.is_some();
                    tokio::select! {
                        read = tokio::time::timeout(AUTOLOGOUT, self.io.read(&mut buf)) => {
                            match read {
                                Ok(Ok(0)) | Err(_) => return Ok(()),
                                Ok(Ok(n)) => {
                                    self.unparsed += n;
                                    if self.login.is_none() && self.unparsed > PRE_LOGIN_INPUT {
                                        return Ok(());
                                    }
                                    self.server.enqueue_input(&buf[..n]);
                                }
                                Ok(Err(e)) => return Err(e),
                            }
                        }
                        changed = self.news.changed(), if idling => {
                            if changed.is_err() {
                                return Ok(());
                            }
                            if !self.password_reset().await {
                                self.announce().await;
                            }
                        }
                    }
                }
                Err(Interrupt::Error(e)) => {
                    // The parser's error names the fault, never the bytes.
                    tracing::debug!("imap: {e}");
                    if !matches!(e, imap_next::server::Error::LiteralTooLong { .. }) {
                        self.server.enqueue_status(bad(None, "malformed command"));
                    }
                }
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.io.write_all(&out).await?;
        }
        Ok(())
    }

    /// Handles one event; true when the session is over.
    async fn event(&mut self, event: Event) -> std::io::Result<bool> {
        match event {
            Event::GreetingSent { .. } => {}
            Event::ResponseSent { handle, .. } => {
                if self.logout == Some(handle) || self.starttls == Some(handle) {
                    self.flush().await?;
                }
                if self.logout == Some(handle) {
                    return Ok(true);
                }
                if self.starttls == Some(handle) {
                    self.starttls = None;
                    if let Some(acceptor) = self.ctx.tls.clone() {
                        self.io.upgrade(&acceptor).await?;
                        self.server = new_server(false);
                    }
                }
            }
            Event::CommandReceived { command } => self.command(command).await,
            Event::CommandAuthenticateReceived {
                command_authenticate,
            } => self.authenticate(command_authenticate).await,
            Event::AuthenticateDataReceived { authenticate_data } => {
                let tag = self.authenticating.take();
                let status = match (tag, authenticate_data) {
                    (Some(tag), AuthenticateData::Continue(data)) => {
                        self.check_plain(tag, data.declassify()).await
                    }
                    (Some(tag), AuthenticateData::Cancel) => bad(Some(tag), "cancelled"),
                    (None, _) => bad(None, "no authentication in progress"),
                };
                let _ = self.server.authenticate_finish(status);
            }
            Event::IdleCommandReceived { tag } => {
                if self.selected.is_some() {
                    if let Ok(cont) = CommandContinuationRequest::basic(None, "idling") {
                        let _ = self.server.idle_accept(cont);
                    }
                    self.idle = Some(tag);
                    // Letters that came since the last command come now.
                    if !self.password_reset().await {
                        self.announce().await;
                    }
                } else {
                    let _ = self.server.idle_reject(no(tag, "select a folder first"));
                }
            }
            Event::IdleDoneReceived => {
                if let Some(tag) = self.idle.take() {
                    self.server.enqueue_status(ok(tag, None, "IDLE terminated"));
                }
            }
        }
        Ok(false)
    }

    fn capabilities(&self) -> Vec<Capability<'static>> {
        let mut caps = vec![Capability::Imap4Rev1];
        let tls_pending = self.ctx.tls.is_some() && !self.io.is_tls();
        if tls_pending {
            caps.push(Capability::StartTls);
            caps.push(Capability::LoginDisabled);
        } else if self.login.is_none() {
            caps.push(Capability::Auth(AuthMechanism::Plain));
        }
        caps.extend([
            Capability::Idle,
            Capability::Unselect,
            Capability::Move,
            Capability::UidPlus,
            Capability::Id,
            Capability::LiteralPlus,
        ]);
        caps.extend(atom_cap("SPECIAL-USE"));
        caps
    }

    async fn command(&mut self, command: Command<'static>) {
        let tag = command.tag;
        let tls_pending = self.ctx.tls.is_some() && !self.io.is_tls();
        let status = match command.body {
            CommandBody::Capability => {
                if let Ok(caps) = Vec1::try_from(self.capabilities()) {
                    self.server.enqueue_data(Data::Capability(caps));
                }
                ok(tag, None, "CAPABILITY completed")
            }
            CommandBody::Noop | CommandBody::Check => {
                self.announce().await;
                ok(tag, None, "NOOP completed")
            }
            CommandBody::Logout => {
                if let Ok(bye) = Status::bye(None, "Valise mail bridge logging out") {
                    self.server.enqueue_status(bye);
                }
                self.logout = Some(
                    self.server
                        .enqueue_status(ok(tag, None, "LOGOUT completed")),
                );
                return;
            }
            CommandBody::StartTLS => {
                if tls_pending {
                    self.starttls =
                        Some(self.server.enqueue_status(ok(tag, None, "begin TLS now")));
                    return;
                }
                bad(Some(tag), "TLS is not available or already active")
            }
            CommandBody::Id { .. } => {
                let params = [("name", "valise-bridge"), ("vendor", "Valise")]
                    .into_iter()
                    .filter_map(|(k, v)| {
                        Some((
                            IString::try_from(k).ok()?,
                            NString(Some(IString::try_from(v).ok()?)),
                        ))
                    })
                    .collect();
                self.server.enqueue_data(Data::Id {
                    parameters: Some(params),
                });
                ok(tag, None, "ID completed")
            }
            CommandBody::Login { username, password } => {
                if tls_pending {
                    no(tag, "STARTTLS first")
                } else if self.login.is_some() {
                    bad(Some(tag), "already logged in")
                } else {
                    let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                    let pass = zeroize::Zeroizing::new(password.declassify().as_ref().to_vec());
                    self.login(tag, &user, &pass).await
                }
            }
            _ if self.login.is_none() => no(tag, "log in first"),
            _ if self.password_reset().await => return,
            body => self.authenticated(tag, body).await,
        };
        self.server.enqueue_status(status);
    }

    async fn authenticate(&mut self, command: CommandAuthenticate) {
        let tls_pending = self.ctx.tls.is_some() && !self.io.is_tls();
        let tag = command.tag;
        let status = if tls_pending {
            no(tag, "STARTTLS first")
        } else if self.login.is_some() {
            bad(Some(tag), "already logged in")
        } else if command.mechanism != AuthMechanism::Plain {
            no(tag, "only AUTHENTICATE PLAIN is offered")
        } else if let Some(initial) = command.initial_response {
            self.check_plain(tag, initial.declassify()).await
        } else {
            self.authenticating = Some(tag);
            let _ = self
                .server
                .authenticate_continue(CommandContinuationRequest::base64(Vec::new()));
            return;
        };
        let _ = self.server.authenticate_finish(status);
    }

    /// SASL PLAIN (RFC 4616): authzid NUL authcid NUL password.
    async fn check_plain(&mut self, tag: Tag<'static>, data: &[u8]) -> Status<'static> {
        let mut parts = data.split(|&b| b == 0);
        let (_, Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return bad(Some(tag), "PLAIN: authzid NUL user NUL password");
        };
        let user = String::from_utf8_lossy(user).into_owned();
        let pass = zeroize::Zeroizing::new(pass.to_vec());
        self.login(tag, &user, &pass).await
    }

    /// Whether the bridge password was reset since this session logged
    /// in: if so the session ends (BYE), unserved, before anything more of
    /// the home reaches it.
    async fn password_reset(&mut self) -> bool {
        let current = match &self.login {
            Some(login) => login.current(&*self.ctx.device.client().await),
            None => return false,
        };
        if current {
            return false;
        }
        self.login = None;
        if let Ok(bye) = Status::bye(None, "the bridge password was reset: log in again") {
            self.logout = Some(self.server.enqueue_status(bye));
        }
        true
    }

    async fn login(&mut self, tag: Tag<'static>, user: &str, pass: &[u8]) -> Status<'static> {
        if let Some(login) = crate::auth::check(&self.ctx.device, user, pass).await {
            self.login = Some(login);
            let caps = Vec1::try_from(self.capabilities())
                .ok()
                .map(Code::Capability);
            ok(tag, caps, "logged in")
        } else {
            tokio::time::sleep(password::FAILURE_PAUSE).await;
            no(
                tag,
                "[AUTHENTICATIONFAILED] wrong address or bridge password",
            )
        }
    }

    async fn authenticated(
        &mut self,
        tag: Tag<'static>,
        body: CommandBody<'static>,
    ) -> Status<'static> {
        match body {
            CommandBody::Select { mailbox, .. } => self.select(tag, &mailbox, false).await,
            CommandBody::Examine { mailbox, .. } => self.select(tag, &mailbox, true).await,
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(tag, &reference, &mailbox_wildcard, false).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(tag, &reference, &mailbox_wildcard, true).await,
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(tag, &mailbox, &item_names).await,
            CommandBody::Subscribe { .. } | CommandBody::Unsubscribe { .. } => {
                ok(tag, None, "subscriptions are fixed")
            }
            CommandBody::Create { .. }
            | CommandBody::Delete { .. }
            | CommandBody::Rename { .. } => no(
                tag,
                "folders follow conversations: make them with `valise conversation`",
            ),
            CommandBody::Unselect => {
                self.selected = None;
                ok(tag, None, "UNSELECT completed")
            }
            CommandBody::Close => {
                if let Some(sel) = self.selected.take()
                    && !sel.read_only
                {
                    let key = sel.folder.key();
                    // CLOSE succeeds whatever; a failure is for the log.
                    let gone = self
                        .ctx
                        .device
                        .client()
                        .await
                        .home()
                        .expunge_folder(&key, None);
                    if let Err(e) = gone {
                        tracing::warn!(code = e.code(), "imap close: {e}");
                    }
                }
                ok(tag, None, "CLOSE completed")
            }
            CommandBody::Append {
                mailbox,
                flags,
                message,
                ..
            } => {
                let bytes = match &message {
                    LiteralOrLiteral8::Literal(l) => l.data(),
                    LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
                };
                if mailbox_name(&mailbox) == Folder::Drafts.name() {
                    self.append_draft(tag, bytes, &flags).await
                } else {
                    self.append(tag, &mailbox, bytes).await
                }
            }
            _ if self.selected.is_none() => no(tag, "select a folder first"),
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                self.fetch(tag, &sequence_set, macro_or_item_names, uid)
                    .await
            }
            CommandBody::Search { criteria, uid, .. } => self.search(tag, &criteria, uid).await,
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => {
                self.store(tag, &sequence_set, kind, response, &flags, uid)
                    .await
            }
            CommandBody::Expunge => self.expunge(tag, None).await,
            CommandBody::ExpungeUid { sequence_set } => {
                self.expunge(tag, Some(&sequence_set)).await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, false).await,
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, true).await,
            _ => no(tag, "not supported by the Valise bridge yet"),
        }
    }

    async fn select(
        &mut self,
        tag: Tag<'static>,
        mailbox: &Mailbox<'_>,
        read_only: bool,
    ) -> Status<'static> {
        self.selected = None;
        let client = self.ctx.device.client().await;
        let opened = open_folder(&client, mailbox);
        drop(client);
        let (folder, state, entries) = match opened {
            Ok(Some(x)) => x,
            Ok(None) => return no(tag, "no such folder"),
            Err(e) => return self.failed(tag, &e),
        };
        let flags = vec![
            Flag::Seen,
            Flag::Flagged,
            Flag::Answered,
            Flag::Deleted,
            Flag::Draft,
        ];
        self.server.enqueue_data(Data::Flags(flags));
        self.server.enqueue_data(Data::Exists(entries.len() as u32));
        self.server.enqueue_data(Data::Recent(0));
        if let Some(first) = entries.iter().position(|e| !e.flags.seen) {
            self.untagged_ok(Code::Unseen(nz(first as u32 + 1)));
        }
        self.untagged_ok(Code::UidValidity(nz(state.uid_validity)));
        self.untagged_ok(Code::UidNext(nz(state.uid_next)));
        let perm = if read_only {
            Vec::new()
        } else {
            [Flag::Seen, Flag::Flagged, Flag::Answered, Flag::Deleted]
                .into_iter()
                .map(FlagPerm::Flag)
                .collect()
        };
        self.untagged_ok(Code::PermanentFlags(perm));
        self.selected = Some(Selected {
            folder,
            read_only,
            entries,
        });
        if read_only {
            ok(tag, Some(Code::ReadOnly), "EXAMINE completed")
        } else {
            ok(tag, Some(Code::ReadWrite), "SELECT completed")
        }
    }

    fn untagged_ok(&mut self, code: Code<'static>) {
        self.server.enqueue_status(Status::Untagged(
            imap_next::imap_types::response::StatusBody {
                kind: imap_next::imap_types::response::StatusKind::Ok,
                code: Some(code),
                text: text("."),
            },
        ));
    }

    /// A failure of the engine: its code, never content.
    fn failed(&self, tag: Tag<'static>, e: &valise_client::ClientError) -> Status<'static> {
        tracing::warn!(code = e.code(), "imap: {e}");
        no(tag, "the Valise engine failed; see the bridge's log")
    }

    async fn list(
        &mut self,
        tag: Tag<'static>,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        subscribed_only: bool,
    ) -> Status<'static> {
        let reference = mailbox_name(reference);
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let delimiter = QuotedChar::try_from(DELIMITER).ok();
        if pattern.is_empty() {
            // The hierarchy delimiter, and the root.
            if let Ok(root) = Mailbox::try_from("") {
                self.server.enqueue_data(Data::List {
                    items: vec![FlagNameAttribute::Noselect],
                    delimiter,
                    mailbox: root,
                });
            }
            return ok(tag, None, "LIST completed");
        }
        let full = format!("{reference}{pattern}");
        let all = match folders::all(&*self.ctx.device.client().await) {
            Ok(all) => all,
            Err(e) => return self.failed(tag, &e),
        };
        let mut rows: Vec<(String, Vec<FlagNameAttribute<'static>>)> = Vec::new();
        let has_conversations = all.iter().any(|f| matches!(f, Folder::Conversation { .. }));
        for folder in &all {
            if subscribed_only && !folder.subscribed() {
                continue;
            }
            let mut attrs = vec![FlagNameAttribute::from(atom("\\HasNoChildren"))];
            attrs.extend(
                folder
                    .special_use()
                    .map(|s| FlagNameAttribute::from(atom(s))),
            );
            rows.push((folder.name(), attrs));
        }
        if has_conversations && !subscribed_only {
            rows.push((
                CONVERSATIONS.to_owned(),
                vec![
                    FlagNameAttribute::Noselect,
                    FlagNameAttribute::from(atom("\\HasChildren")),
                ],
            ));
        }
        let lsub = subscribed_only;
        for (name, items) in rows {
            if !folders::matches(&full, &name) {
                continue;
            }
            let Ok(mailbox) = Mailbox::try_from(name) else {
                continue;
            };
            let items = if lsub {
                items.into_iter().filter(|a| a.is_selectability()).collect()
            } else {
                items
            };
            self.server.enqueue_data(if lsub {
                Data::Lsub {
                    items,
                    delimiter,
                    mailbox,
                }
            } else {
                Data::List {
                    items,
                    delimiter,
                    mailbox,
                }
            });
        }
        ok(
            tag,
            None,
            if lsub {
                "LSUB completed"
            } else {
                "LIST completed"
            },
        )
    }

    async fn status(
        &mut self,
        tag: Tag<'static>,
        mailbox: &Mailbox<'static>,
        names: &[StatusDataItemName],
    ) -> Status<'static> {
        let client = self.ctx.device.client().await;
        let opened = open_folder(&client, mailbox);
        drop(client);
        let (_, state, entries) = match opened {
            Ok(Some(x)) => x,
            Ok(None) => return no(tag, "no such folder"),
            Err(e) => return self.failed(tag, &e),
        };
        let items: Vec<StatusDataItem> = names
            .iter()
            .filter_map(|n| match n {
                StatusDataItemName::Messages => {
                    Some(StatusDataItem::Messages(entries.len() as u32))
                }
                StatusDataItemName::Recent => Some(StatusDataItem::Recent(0)),
                StatusDataItemName::UidNext => Some(StatusDataItem::UidNext(nz(state.uid_next))),
                StatusDataItemName::UidValidity => {
                    Some(StatusDataItem::UidValidity(nz(state.uid_validity)))
                }
                StatusDataItemName::Unseen => Some(StatusDataItem::Unseen(
                    entries.iter().filter(|e| !e.flags.seen).count() as u32,
                )),
                StatusDataItemName::Deleted => Some(StatusDataItem::Deleted(
                    entries.iter().filter(|e| e.flags.deleted).count() as u32,
                )),
                _ => None,
            })
            .collect();
        self.server.enqueue_data(Data::Status {
            mailbox: mailbox.clone(),
            items: items.into(),
        });
        ok(tag, None, "STATUS completed")
    }

    /// APPEND to Drafts: the draft is kept in the sealed home as it came
    /// (FETCH gives it back byte for byte), and never sent.
    async fn append_draft(
        &mut self,
        tag: Tag<'static>,
        mail: &[u8],
        flags: &[Flag<'_>],
    ) -> Status<'static> {
        let mut f = MailFlags::default();
        set_flags(&mut f, flags, true);
        let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let kept = self
            .ctx
            .device
            .client()
            .await
            .home()
            .append_draft(mail, f, now);
        match kept {
            Ok((validity, uid)) => {
                // A session with Drafts open hears of it at once.
                self.announce().await;
                ok(
                    tag,
                    Some(Code::AppendUid {
                        uid_validity: nz(validity),
                        uid: nz(uid),
                    }),
                    "APPEND completed: kept in this home's Drafts only",
                )
            }
            Err(e) => self.failed(tag, &e),
        }
    }

    /// APPEND: a mail client files its copy of what it sent in Sent. The
    /// letter is there already (sent through the bridge's SMTP), so this
    /// is a no-op that names its UID; anything else cannot be stored.
    async fn append(
        &mut self,
        tag: Tag<'static>,
        mailbox: &Mailbox<'_>,
        mail: &[u8],
    ) -> Status<'static> {
        if mailbox_name(mailbox) != Folder::Sent.name() {
            return no(
                tag,
                "[CANNOT] only copies of sent letters can be filed, in Sent",
            );
        }
        let Some(parsed) = mail_parser::MessageParser::default().parse(mail) else {
            return no(tag, "[CANNOT] not a mail message");
        };
        let Some(id) = crate::submission::message_id(&parsed) else {
            return no(tag, "[CANNOT] the copy has no Message-ID");
        };
        let client = self.ctx.device.client().await;
        let home = client.home();
        let key = Folder::Sent.key();
        let found = home.submitted_letter(&id).and_then(|letter| match letter {
            Some(l) => Ok(vec![l]),
            // A letter rendered by the bridge names itself (`<id@valise>`).
            None => match id.strip_suffix(&format!("@{}", crate::render::ID_HOST)) {
                Some(own) => home.letters_by_message_id(own),
                None => Ok(Vec::new()),
            },
        });
        let letters = match found {
            Ok(l) if !l.is_empty() => l,
            Ok(_) => {
                return no(
                    tag,
                    "[CANNOT] only letters sent through the bridge are kept in Sent",
                );
            }
            Err(e) => return self.failed(tag, &e),
        };
        // Of the letters with that id, the one in Sent (the others are
        // letters received that happen to carry it).
        let state = home
            .index_folder(&key, Folder::Sent.filter())
            .and_then(|s| {
                for letter in letters {
                    if let Some(uid) = home.folder_uid(&key, letter)? {
                        return Ok((s, Some(uid)));
                    }
                }
                Ok((s, None))
            });
        drop(client);
        match state {
            Ok((state, Some(uid))) => ok(
                tag,
                Some(Code::AppendUid {
                    uid_validity: nz(state.uid_validity),
                    uid: nz(uid),
                }),
                "APPEND completed: the letter is in Sent already",
            ),
            Ok((_, None)) => no(tag, "[CANNOT] that letter is not in Sent"),
            Err(e) => self.failed(tag, &e),
        }
    }

    /// Tells the client of letters that arrived in the selected folder
    /// since it last looked (EXISTS).
    async fn announce(&mut self) {
        let Some(sel) = &mut self.selected else {
            return;
        };
        // Only what came after the highest UID the session knows: an
        // IDLE session wakes at every sync that stored letters.
        let known = sel.entries.last().map_or(0, |e| e.uid);
        let client = self.ctx.device.client().await;
        let fresh = listing(&client, &sel.folder, known);
        drop(client);
        match fresh {
            Ok((_, new)) => {
                if !new.is_empty() {
                    sel.entries.extend(new);
                    let exists = sel.entries.len() as u32;
                    self.server.enqueue_data(Data::Exists(exists));
                }
            }
            Err(e) => tracing::warn!(code = e.code(), "imap: {e}"),
        }
    }

    async fn store(
        &mut self,
        tag: Tag<'static>,
        set: &imap_next::imap_types::sequence::SequenceSet,
        kind: imap_next::imap_types::flag::StoreType,
        response: imap_next::imap_types::flag::StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
    ) -> Status<'static> {
        use imap_next::imap_types::flag::{StoreResponse, StoreType};
        let Some(sel) = &mut self.selected else {
            return no(tag, "select a folder first");
        };
        if sel.read_only {
            return no(tag, "the folder is read-only (EXAMINE)");
        }
        let key = sel.folder.key();
        let chosen = fetch::resolve(&sel.entries, set, uid);
        let mut changed = Vec::new();
        for seq in chosen {
            let Some(entry) = sel.entries.get(seq - 1) else {
                continue;
            };
            let mut f = entry.flags;
            match kind {
                StoreType::Add => set_flags(&mut f, flags, true),
                StoreType::Remove => set_flags(&mut f, flags, false),
                StoreType::Replace => {
                    f = MailFlags::default();
                    set_flags(&mut f, flags, true);
                }
            }
            changed.push((seq, FolderEntry { flags: f, ..*entry }));
        }
        let writes: Vec<(u32, MailFlags)> = changed.iter().map(|(_, e)| (e.uid, e.flags)).collect();
        let written = self
            .ctx
            .device
            .client()
            .await
            .home()
            .set_mail_flags(&key, &writes);
        if let Err(e) = written {
            return self.failed(tag, &e);
        }
        for (seq, entry) in &changed {
            if let Some(known) = sel.entries.get_mut(seq - 1) {
                known.flags = entry.flags;
            }
        }
        if response == StoreResponse::Answer {
            for (seq, entry) in changed {
                let mut items = vec![fetch::flags_item(&entry.flags)];
                if uid {
                    items.push(imap_next::imap_types::fetch::MessageDataItem::Uid(nz(
                        entry.uid,
                    )));
                }
                if let Ok(items) = Vec1::try_from(items) {
                    self.server.enqueue_data(Data::Fetch {
                        seq: nz(seq as u32),
                        items,
                    });
                }
            }
        }
        ok(tag, None, "STORE completed")
    }

    /// COPY and MOVE, into Archive or Trash only: the other folders show
    /// what the letters are (received, sent, of a conversation).
    async fn copy(
        &mut self,
        tag: Tag<'static>,
        set: &imap_next::imap_types::sequence::SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        moving: bool,
    ) -> Status<'static> {
        let Some(sel) = &mut self.selected else {
            return no(tag, "select a folder first");
        };
        let dest = match mailbox_name(mailbox).as_str() {
            "Archive" => Folder::Archive,
            "Trash" => Folder::Trash,
            _ => {
                return no(
                    tag,
                    "[CANNOT] letters can be filed in Archive or Trash only",
                );
            }
        };
        if moving && sel.read_only {
            return no(tag, "the folder is read-only (EXAMINE)");
        }
        if sel.folder == Folder::Drafts {
            return no(tag, "[CANNOT] drafts stay in Drafts until they are sent");
        }
        let chosen = fetch::resolve(&sel.entries, set, uid);
        let letters: Vec<i64> = chosen
            .iter()
            .filter_map(|seq| sel.entries.get(seq - 1).map(|e| e.letter))
            .collect();
        let source = sel.folder.key();
        let moved: Vec<u32> = chosen
            .iter()
            .filter_map(|seq| sel.entries.get(seq - 1).map(|e| e.uid))
            .collect();
        let moving = moving && dest.key() != source;
        let client = self.ctx.device.client().await;
        let home = client.home();
        // Filed and taken out together, or neither.
        let done = home.transaction(|| {
            let copied = home.copy_to_folder(&dest.key(), &letters)?;
            if moving {
                home.remove_from_folder(&source, &moved)?;
            }
            Ok(copied)
        });
        drop(client);
        let (validity, uids) = match done {
            Ok(d) => d,
            Err(e) => return self.failed(tag, &e),
        };
        // RFC 4315: the UIDs the letters have in the destination, in the
        // order of their source UIDs.
        let code = match (uid_set(&moved), uid_set(&uids)) {
            (Some(source), Some(destination)) => Some(Code::CopyUid {
                uid_validity: nz(validity),
                source,
                destination,
            }),
            _ => None,
        };
        if moving {
            // RFC 6851: COPYUID comes in an untagged OK before the EXPUNGEs.
            if let Some(code) = code {
                self.server.enqueue_status(Status::Untagged(
                    imap_next::imap_types::response::StatusBody {
                        kind: imap_next::imap_types::response::StatusKind::Ok,
                        code: Some(code),
                        text: text("moved"),
                    },
                ));
            }
            self.forget(&moved);
            return ok(tag, None, "MOVE completed");
        }
        ok(tag, code, "COPY completed")
    }

    /// EXPUNGE, or with `set` UID EXPUNGE (RFC 4315): only the letters
    /// marked deleted among those UIDs go.
    async fn expunge(
        &mut self,
        tag: Tag<'static>,
        set: Option<&imap_next::imap_types::sequence::SequenceSet>,
    ) -> Status<'static> {
        let Some(sel) = &mut self.selected else {
            return no(tag, "select a folder first");
        };
        if sel.read_only {
            return no(tag, "the folder is read-only (EXAMINE)");
        }
        let within: Option<Vec<u32>> = set.map(|set| {
            fetch::resolve(&sel.entries, set, true)
                .into_iter()
                .filter_map(|seq| sel.entries.get(seq - 1).map(|e| e.uid))
                .collect()
        });
        let gone = self
            .ctx
            .device
            .client()
            .await
            .home()
            .expunge_folder(&sel.folder.key(), within.as_deref());
        match gone {
            Ok(gone) => {
                self.forget(&gone);
                ok(tag, None, "EXPUNGE completed")
            }
            Err(e) => self.failed(tag, &e),
        }
    }

    /// Takes the letters with these UIDs (ascending) out of the selected
    /// folder's view and tells the client, highest number first (each
    /// number is right when it is sent): one pass over the folder however
    /// many go, not one shift of the rest per letter.
    fn forget(&mut self, uids: &[u32]) {
        let Some(sel) = &mut self.selected else {
            return;
        };
        let gone = |e: &FolderEntry| uids.binary_search(&e.uid).is_ok();
        let seqs: Vec<usize> = sel
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| gone(e))
            .map(|(i, _)| i + 1)
            .collect();
        sel.entries.retain(|e| !gone(e));
        for seq in seqs.into_iter().rev() {
            self.server.enqueue_data(Data::Expunge(nz(seq as u32)));
        }
    }
}

fn atom(s: &'static str) -> imap_next::imap_types::core::Atom<'static> {
    // Our attribute names are constant atoms after the backslash.
    imap_next::imap_types::core::Atom::unvalidated(s.trim_start_matches('\\'))
}

/// The folder a client names, with its UIDs brought up to date: what
/// SELECT, EXAMINE and STATUS all start from. `None`: no such folder.
fn open_folder(
    client: &valise_client::Client,
    mailbox: &Mailbox<'_>,
) -> valise_client::Result<Option<(Folder, FolderState, Vec<FolderEntry>)>> {
    let Some(folder) = folders::find(client, &mailbox_name(mailbox))? else {
        return Ok(None);
    };
    let (state, entries) = listing(client, &folder, 0)?;
    Ok(Some((folder, state, entries)))
}

/// Indexes `folder`'s letters (new ones get the next UIDs), then lists
/// those with a UID above `after`; the index must come first or new
/// letters would be missed.
fn listing(
    client: &valise_client::Client,
    folder: &Folder,
    after: u32,
) -> valise_client::Result<(FolderState, Vec<FolderEntry>)> {
    let key = folder.key();
    let home = client.home();
    let state = home.index_folder(&key, folder.filter())?;
    Ok((state, home.folder_entries(&key, after)?))
}

/// UIDs (ascending, or in the order given) as a UIDPLUS set, runs of
/// consecutive UIDs as ranges; `None` for none.
fn uid_set(uids: &[u32]) -> Option<imap_next::imap_types::extensions::uidplus::UidSet> {
    use imap_next::imap_types::extensions::uidplus::{UidElement, UidSet};
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &uid in uids {
        match runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(uid) => *end = uid,
            _ => runs.push((uid, uid)),
        }
    }
    let elements: Vec<UidElement> = runs
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                UidElement::Single(nz(a))
            } else {
                UidElement::Range(nz(a), nz(b))
            }
        })
        .collect();
    Vec1::try_from(elements).ok().map(UidSet)
}

/// A mailbox's name as the client sent it (INBOX in any case is INBOX).
fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => "INBOX".to_owned(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref()).into_owned(),
    }
}
