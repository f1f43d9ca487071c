//! SMTP submission: a mail client hands over a letter, the engine seals
//! and sends it, and only the server's acceptance earns a 250.
//!
//! ```text
//! EHLO ─ STARTTLS ─ AUTH PLAIN|LOGIN ─ MAIL FROM:<me> ─ RCPT TO:<valise user>… ─ DATA
//!   DATA ─▶ mail-parser ─▶ In-Reply-To names a letter of exactly the RCPT set?
//!                            reply in its thread : write to exactly the RCPT set
//! ```
//! smtp-proto parses commands and writes replies; this module owns the
//! connection (STARTTLS swaps it for TLS).

use crate::auth::Login;
use crate::imap::Ctx;
use crate::password;
use crate::render;
use crate::submission::{self, Refusal};
use crate::transport::Transport;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{EhloResponse, Request, Response};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::net::TcpStream;
use valise_client::attachments::AttachmentSource;
use valise_client::{Client, ClientError, Draft};
use valise_proto::{ErrorCode, Label, MessageId, UserId};
use zeroize::Zeroizing;

/// Largest message accepted (SIZE): the engine's letters live in memory.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Recipients per letter.
const MAX_RECIPIENTS: usize = 100;
/// The longest line answering an AUTH challenge (RFC 4954: 12288 octets);
/// smtp-proto bounds command lines, this bounds what is kept of these.
const MAX_AUTH_LINE: usize = 12288;

/// Where the session is.
#[derive(PartialEq)]
enum Step {
    Command,
    Data,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword(String),
}

struct Session {
    ctx: Arc<Ctx>,
    io: Transport,
    step: Step,
    greeted: bool,
    /// The login mail is taken under (`None` before it).
    login: Option<Login>,
    me: String,
    from: Option<String>,
    to: Vec<UserId>,
    data: Vec<u8>,
    /// Bytes read and not yet consumed.
    pending: Vec<u8>,
    /// Replies not yet written (several when a client pipelines).
    out: Vec<u8>,
}

/// A reply line; `esc` [0, 0, 0] for replies that carry no enhanced
/// status code (220, 334, 354: RFC 2034 gives them none).
fn reply(code: u16, esc: [u8; 3], message: &str) -> Vec<u8> {
    if esc == [0, 0, 0] {
        return format!("{code} {message}\r\n").into_bytes();
    }
    let mut out = Vec::new();
    let _ = Response::new(code, esc[0], esc[1], esc[2], message).write(&mut out);
    out
}

/// Serves one connection until QUIT or the client leaves.
pub async fn serve(tcp: TcpStream, ctx: Arc<Ctx>) -> std::io::Result<()> {
    let me = ctx.device.client().await.me().user.to_string();
    let mut s = Session {
        ctx,
        io: Transport::Plain(tcp),
        step: Step::Command,
        greeted: false,
        login: None,
        me,
        from: None,
        to: Vec::new(),
        data: Vec::new(),
        pending: Vec::new(),
        out: reply(220, [0, 0, 0], "localhost Valise mail bridge ESMTP ready"),
    };
    s.run().await
}

impl Session {
    fn tls_pending(&self) -> bool {
        self.ctx.tls.is_some() && !self.io.is_tls()
    }

    async fn run(&mut self) -> std::io::Result<()> {
        let mut receiver = RequestReceiver::default();
        let mut data = DataReceiver::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Consume what was read: one command, one line, or data.
            let progressed = match self.step {
                Step::Command => {
                    let mut it = self.pending.iter();
                    let parsed = receiver.ingest(&mut it).map(|r| r.into_owned());
                    let rest = it.as_slice().to_vec();
                    self.pending = rest;
                    match parsed {
                        Ok(request) => {
                            if !self.command(request).await? {
                                self.flush().await?;
                                return Ok(());
                            }
                            true
                        }
                        Err(smtp_proto::Error::NeedsMoreData { .. }) => false,
                        Err(e) => {
                            self.out.extend(refusal(&e));
                            true
                        }
                    }
                }
                Step::Data => {
                    let mut it = self.pending.iter();
                    let done = data.ingest(&mut it, &mut self.data);
                    self.pending = it.as_slice().to_vec();
                    if done {
                        data = DataReceiver::new();
                        self.step = Step::Command;
                        let answer = self.deliver().await;
                        self.out.extend(answer);
                    } else if self.data.len() > MAX_MESSAGE {
                        // Read on to the end, keeping nothing.
                        self.data.clear();
                        self.from = None;
                    }
                    done
                }
                _ => match self.pending.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        let line: Zeroizing<Vec<u8>> =
                            Zeroizing::new(self.pending.drain(..=end).collect());
                        let line = line.strip_suffix(b"\r\n").unwrap_or(&line);
                        self.auth_line(line).await;
                        true
                    }
                    // No end in sight: a session before its login must not
                    // make the bridge keep all it sends.
                    None if self.pending.len() > MAX_AUTH_LINE => {
                        self.pending.clear();
                        self.out.extend(reply(500, [5, 5, 6], "line too long"));
                        self.flush().await?;
                        return Ok(());
                    }
                    None => false,
                },
            };
            if progressed {
                continue;
            }
            // Nothing more to consume: answer, then read.
            self.flush().await?;
            let n = self.io.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.io.write_all(&out).await?;
        }
        Ok(())
    }

    /// One command; false after QUIT.
    async fn command(&mut self, request: Request<String>) -> std::io::Result<bool> {
        let answer = match request {
            Request::Ehlo { .. } => {
                self.greeted = true;
                self.reset();
                let mut ehlo = EhloResponse::new("localhost");
                ehlo.capabilities = smtp_proto::EXT_SIZE
                    | smtp_proto::EXT_PIPELINING
                    | smtp_proto::EXT_8BIT_MIME
                    | smtp_proto::EXT_ENHANCED_STATUS_CODES;
                if self.tls_pending() {
                    ehlo.capabilities |= smtp_proto::EXT_START_TLS;
                } else {
                    ehlo.capabilities |= smtp_proto::EXT_AUTH;
                    ehlo.auth_mechanisms = smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN;
                }
                ehlo.size = MAX_MESSAGE;
                let mut out = Vec::new();
                let _ = ehlo.write(&mut out);
                out
            }
            Request::Helo { .. } | Request::Lhlo { .. } => {
                self.greeted = true;
                self.reset();
                reply(250, [0, 0, 0], "localhost")
            }
            Request::StartTls => {
                if !self.tls_pending() {
                    reply(503, [5, 5, 1], "TLS is not available or already active")
                } else if let Some(acceptor) = self.ctx.tls.clone() {
                    self.out.extend(reply(220, [2, 0, 0], "ready to start TLS"));
                    self.flush().await?;
                    // Nothing sent before the handshake is kept.
                    self.pending.clear();
                    self.io.upgrade(&acceptor).await?;
                    self.greeted = false;
                    self.reset();
                    Vec::new()
                } else {
                    reply(503, [5, 5, 1], "TLS is not available")
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response).await,
            Request::Mail { from } => self.mail_from(&from).await,
            Request::Rcpt { to } => self.rcpt_to(&to.address),
            Request::Data => {
                if self.from.is_none() || self.to.is_empty() {
                    reply(503, [5, 5, 1], "MAIL FROM and RCPT TO first")
                } else {
                    self.step = Step::Data;
                    self.data.clear();
                    reply(354, [0, 0, 0], "end the letter with <CRLF>.<CRLF>")
                }
            }
            Request::Bdat { .. } => reply(502, [5, 5, 1], "BDAT is not offered; use DATA"),
            Request::Rset => {
                self.reset();
                reply(250, [2, 0, 0], "reset")
            }
            Request::Noop { .. } => reply(250, [2, 0, 0], "OK"),
            Request::Vrfy { .. } => reply(252, [2, 5, 0], "cannot verify; send and see"),
            Request::Quit => {
                self.out.extend(reply(221, [2, 0, 0], "bye"));
                return Ok(false);
            }
            _ => reply(502, [5, 5, 1], "command not implemented"),
        };
        self.out.extend(answer);
        Ok(true)
    }

    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
        self.data.clear();
    }

    async fn auth(&mut self, mechanism: u64, initial: &str) -> Vec<u8> {
        if self.tls_pending() {
            return reply(530, [5, 7, 0], "STARTTLS first");
        }
        if self.login.is_some() {
            return reply(503, [5, 5, 1], "already authenticated");
        }
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial.is_empty() || initial == "=" => {
                if initial == "=" {
                    return self.check_plain(b"").await;
                }
                self.step = Step::AuthPlain;
                reply(334, [0, 0, 0], "")
            }
            smtp_proto::AUTH_PLAIN => match B64.decode(initial) {
                Ok(data) => self.check_plain(&Zeroizing::new(data)).await,
                Err(_) => reply(501, [5, 5, 2], "PLAIN: not base64"),
            },
            smtp_proto::AUTH_LOGIN => {
                self.step = Step::AuthLoginUser;
                reply(334, [0, 0, 0], &B64.encode("Username:"))
            }
            _ => reply(504, [5, 5, 4], "only AUTH PLAIN and LOGIN are offered"),
        }
    }

    /// A line answering a 334 challenge.
    async fn auth_line(&mut self, line: &[u8]) {
        let step = std::mem::replace(&mut self.step, Step::Command);
        if line == b"*" {
            self.out
                .extend(reply(501, [5, 7, 0], "authentication cancelled"));
            return;
        }
        let Ok(data) = B64.decode(line).map(Zeroizing::new) else {
            self.out.extend(reply(501, [5, 5, 2], "not base64"));
            return;
        };
        let answer = match step {
            Step::AuthPlain => self.check_plain(&data).await,
            Step::AuthLoginUser => {
                self.step = Step::AuthLoginPassword(String::from_utf8_lossy(&data).into_owned());
                reply(334, [0, 0, 0], &B64.encode("Password:"))
            }
            Step::AuthLoginPassword(user) => self.login(&user, &data).await,
            Step::Command | Step::Data => Vec::new(),
        };
        self.out.extend(answer);
    }

    async fn check_plain(&mut self, data: &[u8]) -> Vec<u8> {
        let mut parts = data.split(|&b| b == 0);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(user), Some(pass), None) => {
                let user = String::from_utf8_lossy(user).into_owned();
                self.login(&user, pass).await
            }
            _ => reply(501, [5, 5, 2], "PLAIN: authzid NUL user NUL password"),
        }
    }

    async fn login(&mut self, user: &str, pass: &[u8]) -> Vec<u8> {
        if let Some(login) = crate::auth::check(&self.ctx.device, user, pass).await {
            self.login = Some(login);
            reply(235, [2, 7, 0], "authenticated")
        } else {
            tokio::time::sleep(password::FAILURE_PAUSE).await;
            reply(535, [5, 7, 8], "wrong address or bridge password")
        }
    }

    async fn mail_from(&mut self, from: &smtp_proto::MailFrom<String>) -> Vec<u8> {
        let current = match &self.login {
            Some(login) => login.current(&*self.ctx.device.client().await),
            None => false,
        };
        if !current {
            // Never logged in, or the bridge password was reset since.
            self.login = None;
            return reply(530, [5, 7, 0], "authentication required");
        }
        if self.from.is_some() {
            return reply(503, [5, 5, 1], "MAIL FROM already given");
        }
        if !from.address.eq_ignore_ascii_case(&self.me) {
            return reply(553, [5, 7, 1], "the sender must be this home's own address");
        }
        if from.size > MAX_MESSAGE {
            return reply(552, [5, 3, 4], "letter too large");
        }
        self.from = Some(from.address.clone());
        reply(250, [2, 1, 0], "sender OK")
    }

    fn rcpt_to(&mut self, address: &str) -> Vec<u8> {
        if self.from.is_none() {
            return reply(503, [5, 5, 1], "MAIL FROM first");
        }
        if self.to.len() >= MAX_RECIPIENTS {
            return reply(452, [4, 5, 3], "too many recipients");
        }
        match UserId::parse(address) {
            Ok(user) if user.as_str().eq_ignore_ascii_case(&self.me) => {
                reply(550, [5, 1, 1], "you cannot write a letter to yourself")
            }
            Ok(user) => {
                if !self.to.contains(&user) {
                    self.to.push(user);
                }
                reply(250, [2, 1, 5], "recipient OK")
            }
            Err(_) => reply(550, [5, 1, 3], "not a Valise address (local@domain)"),
        }
    }

    /// The letter after DATA: parsed, checked, sent; the answer is 250
    /// only once the server accepted it.
    async fn deliver(&mut self) -> Vec<u8> {
        let data = std::mem::take(&mut self.data);
        let to = std::mem::take(&mut self.to);
        if self.from.take().is_none() {
            return reply(552, [5, 3, 4], "letter too large");
        }
        let recipients: Vec<String> = to.iter().map(|u| u.as_str().to_lowercase()).collect();
        let submission = match submission::read(&data, &recipients) {
            Ok(s) => s,
            Err(e @ Refusal::NotMail) => return reply(550, [5, 6, 0], &e.to_string()),
            Err(e @ Refusal::Blind) => return reply(550, [5, 7, 1], &e.to_string()),
        };
        let submission_id = submission.message_id;
        // Marked at least as high as the letters it was made from (a
        // client's Forward keeps the `[LABEL]` subject prefix); a reply
        // also takes its thread's highest marking (`reply_with`).
        let named: Vec<Option<Label>> = submission.markings.into_iter().map(Some).collect();
        let marking = match valise_client::handling::inherited(&named, None) {
            Ok(m) => m,
            Err(e) => return engine_failure(&e),
        };
        let mut draft = Draft {
            subject: submission.subject,
            body: submission.body,
            marking,
            // Uploaded by the engine's one path (`send --attach`), from the
            // sealed home, before the letter goes.
            attachments: submission
                .attachments
                .into_iter()
                .map(|(name, bytes)| AttachmentSource::Held { name, bytes })
                .collect(),
            message_id: None,
        };
        let parent = submission.in_reply_to;
        let mut client = self.ctx.device.client().await;
        // The password may have been reset during DATA.
        if !self.login.as_ref().is_some_and(|l| l.current(&client)) {
            self.login = None;
            return reply(530, [5, 7, 0], "authentication required");
        }
        // A mail the client sends again (after our 451) is the letter it
        // became then, never a second one: noted under the letter's id
        // before anything is written (a draft waiting for its files' upload
        // has no letter yet, and the bridge may be killed half-way).
        if let Some(mid) = &submission_id {
            match retried(&mut client, mid).await {
                Ok(None) => {}
                Ok(Some(answer)) => return answer,
                Err(e) => return engine_failure(&e),
            }
            let noted = client.home().submitted(mid).and_then(|known| {
                let id = known.unwrap_or_else(|| MessageId::from_bytes(rand::random()));
                client.home().note_submitted(mid, &id).map(|()| id)
            });
            match noted {
                Ok(id) => draft.message_id = Some(id),
                Err(e) => return engine_failure(&e),
            }
        }
        let parent = match parent.map(|id| answered(&client, &id, &to)) {
            Some(Ok(found)) => found,
            Some(Err(e)) => return engine_failure(&e),
            None => None,
        };
        let sent = match parent {
            Some(letter) => client.reply_with(letter, draft).await,
            None => client.send_to(&to, draft).await,
        };
        drop(client);
        match sent {
            Ok(letter) => {
                self.ctx.device.tell();
                let id = render::message_id(&letter.message_id);
                reply(250, [2, 0, 0], &format!("sent {id}"))
            }
            Err(e) => engine_failure(&e),
        }
    }
}

/// The letter a mail answers in its thread: one with the In-Reply-To's
/// message id whose conversation is exactly the recipients and this user,
/// by the device's own MLS roster. Otherwise the mail is a new letter to
/// exactly the recipients: a reply in the thread would reach members the
/// client did not address (a Reply to one sender of a group), miss some it
/// did, or go to another conversation whose sender chose the same id.
fn answered(
    client: &Client,
    message_id: &str,
    to: &[UserId],
) -> valise_client::Result<Option<i64>> {
    let addressed: BTreeSet<&UserId> = to.iter().collect();
    for id in client.home().letters_by_message_id(message_id)? {
        let conversation = client.letter(id)?.conversation;
        let members = client.engine().other_members(&conversation)?;
        if members.iter().collect::<BTreeSet<_>>() == addressed {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The answer to a mail submitted before under the same Message-ID (a
/// client retrying after a 451): 250 once the letter it became left (tried
/// again now if it waits, as a draft or in the outbox), 451 while it waits;
/// `None` for a new mail, or one that became no letter (it is tried anew,
/// under the id noted for it).
async fn retried(client: &mut Client, mid: &str) -> valise_client::Result<Option<Vec<u8>>> {
    let Some(id) = client.home().submitted(mid)? else {
        return Ok(None);
    };
    if client.home().waiting_to_go(&id)? {
        client.retry_draft_now(&id);
        if let Err(e) = client.sync().await {
            tracing::warn!(code = e.code(), "smtp: {e}");
        }
        if client.home().waiting_to_go(&id)? {
            return Ok(Some(reply(
                451,
                [4, 4, 1],
                "kept in the Valise outbox, not yet accepted; it is sent on the next sync",
            )));
        }
    }
    if client.home().submitted_letter(mid)?.is_none() {
        return Ok(None);
    }
    let id = render::message_id(&id);
    Ok(Some(reply(250, [2, 0, 0], &format!("sent {id}"))))
}

/// A parse failure of a command, in SMTP's words.
fn refusal(e: &smtp_proto::Error) -> Vec<u8> {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => reply(500, [5, 5, 1], "unknown command"),
        E::InvalidSenderAddress => reply(501, [5, 1, 7], "bad sender address"),
        E::InvalidRecipientAddress => reply(501, [5, 1, 3], "bad recipient address"),
        E::ResponseTooLong => reply(500, [5, 5, 6], "line too long"),
        E::UnsupportedParameter { .. } | E::InvalidParameter { .. } => {
            reply(504, [5, 5, 4], "parameter not supported")
        }
        _ => reply(501, [5, 5, 2], "syntax error"),
    }
}

/// Why the engine did not send, as SMTP codes; never content.
fn engine_failure(e: &ClientError) -> Vec<u8> {
    tracing::warn!(code = e.code(), "smtp: {e}");
    match e {
        ClientError::NotInDirectory(_) | ClientError::NoDevices(_) => {
            reply(550, [5, 1, 1], "a recipient is not a Valise user")
        }
        e if e.is_server(ErrorCode::NotFound) => {
            reply(550, [5, 1, 1], "a recipient is not a Valise user")
        }
        ClientError::Queued(_) | ClientError::Held(_) => reply(
            451,
            [4, 4, 1],
            "kept in the Valise outbox, not yet accepted; it is sent on the next sync",
        ),
        e if e.is_transient() => reply(451, [4, 4, 1], "the Valise server is not reachable"),
        ClientError::Invalid(_) => reply(554, [5, 6, 0], "the letter was refused"),
        // The handling rules (marking, accreditation, ceiling): our words,
        // naming devices and markings, never content.
        ClientError::Handling { .. } | ClientError::Unaccredited { .. } => {
            reply(550, [5, 7, 1], &e.to_string())
        }
        _ => reply(
            554,
            [5, 0, 0],
            "the Valise engine refused the letter; see the bridge's log",
        ),
    }
}
