//! Attachments: files sealed into blobs ([`valise_proto::blob`]), uploaded
//! resumably before their letter goes, and saved only once every check
//! passed.
//!
//! ```text
//! send --attach ─▶ draft + one upload row per file (key, nonce prefix, source size+mtime)
//!   per file: seal from the start (own thread, a part ahead of the upload)
//!             no blob yet: new key, POST with the first part (creation-with-upload)
//!             a blob: HEAD (durable offset), check the bytes already sent again
//!             PATCH 8 MiB parts (each noted, end and hash, before it goes)
//!   all complete ─▶ references into the letter ─▶ outbox (one transaction) ─▶ sent
//! save ─▶ 4 MiB ranges, two ahead ─▶ Opener (a blocking thread), part by part
//!      in order: every chunk, the last-chunk flag, sizes, digest
//!      ─▶ temp file beside the target (the part before, while the next is
//!         opened) ─▶ fsync ─▶ rename (only if all passed)
//! ```
//!
//! A killed upload resumes from the server's durable offset on the next
//! `send`-tending command (`sync`). Sealing again with the same key gives
//! the same bytes, so a resumed upload never puts two plaintexts under one
//! key and position; a source whose size, mtime or already-sent bytes
//! changed starts over with a new key and a new blob.

use crate::alert::AlertKind;
use crate::api::{Answer, Api, Body};
use crate::client::Client;
use crate::engine::outbound::Target;
use crate::error::{ClientError, Result};
use crate::home::Home;
use crate::home::attachment_cache::{PIECE_BYTES, Trimmed};
use crate::home::letters::LetterView;
use crate::home::uploads::{DraftRow, Upload};
use crate::send::SentLetter;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::sync::mpsc::Sender;
use tokio::task::{JoinError, JoinHandle};
use valise_proto::api::blobs::{
    self, BlobCreated, BlobsLinked, LinkBlobs, MAX_PART_BYTES, PART_TYPE, UPLOAD_LENGTH,
    UPLOAD_OFFSET, parse_count,
};
use valise_proto::blob::{
    AttachmentRef, BlobDigest, BlobError, BlobKey, Layout, MAX_ATTACHMENTS, MAX_NAME_BYTES, Opener,
    Sealer,
};
use valise_proto::{BlobId, ConversationId, ErrorCode, Letter, MessageId, Payload};

/// How far one attachment's transfer went.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// The attachment, from 1.
    pub index: usize,
    /// Blob bytes durable on the server (upload) or received (download;
    /// each chunk is checked before it is written).
    pub done: u64,
    pub total: u64,
}

/// Told of every part transferred.
pub type Progress = Box<dyn FnMut(Transfer) + Send>;

/// An attachment written out by [`Client::save_attachment`].
#[derive(Clone, Serialize)]
pub struct Saved {
    pub path: PathBuf,
    pub size: u64,
    pub media_type: String,
    /// `PATH.label.json`, written beside an export of a restricted letter
    /// (see [`crate::export`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_file: Option<PathBuf>,
}

// Neither the file's path nor its media type reach a log.
impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("size", &self.size)
            .field("label_file", &self.label_file.is_some())
            .finish_non_exhaustive()
    }
}

/// Times a changed source is started over within one run.
const RESTARTS: usize = 3;

impl Client {
    /// Who is told how transfers advance (`None`: nobody).
    pub fn set_progress(&mut self, progress: Option<Progress>) {
        self.progress = progress;
    }

    fn report(&mut self, t: Transfer) {
        if let Some(p) = self.progress.as_mut() {
            p(t);
        }
    }

    /// Keeps the letter and its files' uploads (nothing is lost if the
    /// device stops), uploads them, then posts the letter.
    pub(crate) async fn post_with_attachments(
        &mut self,
        target: Target,
        letter: Letter,
        files: &[AttachmentSource],
    ) -> Result<SentLetter> {
        if files.len() > MAX_ATTACHMENTS {
            return Err(ClientError::Invalid(format!(
                "a letter takes at most {MAX_ATTACHMENTS} attachments"
            )));
        }
        let message_id = letter.message_id;
        let uploads = files
            .iter()
            .zip(0u32..)
            .map(|(f, i)| new_upload(message_id, i, f))
            .collect::<Result<Vec<_>>>()?;
        let (conversation, exact_to) = match &target {
            Target::Conversation(c) => (Some(*c), None),
            Target::Exactly { users, .. } => (None, Some(users_key(users))),
        };
        let draft = DraftRow {
            message_id,
            conversation,
            exact_to,
            plaintext: Payload::Letter(letter).encode()?,
        };
        let now = self.engine.now_ms();
        self.engine.transaction(|| {
            self.engine.home.put_draft(&draft, now)?;
            for (u, f) in uploads.iter().zip(files) {
                self.engine.home.put_upload(u)?;
                if let AttachmentSource::Held { bytes, .. } = f {
                    self.engine
                        .home
                        .put_upload_source(&message_id, u.idx, bytes)?;
                }
            }
            Ok(())
        })?;
        match self.finish_draft(draft).await {
            // Still a draft, whatever stopped it: nothing went, and the next
            // sync tries again, so that is what the sender is told. An error
            // that reads as a refusal would be belied when the letter goes.
            Err(e) if self.engine.home.is_draft(&message_id)? => {
                self.draft_retries.waited(message_id, Instant::now());
                Err(ClientError::Queued(format!(
                    "{e}; the attachments' upload resumes on a later sync"
                )))
            }
            other => other,
        }
    }

    /// The sender asks again for letter `id` (a mail client retrying after
    /// a 451): if it waits as a draft, the next sync tries it at once,
    /// whatever its wait.
    pub fn retry_draft_now(&mut self, id: &MessageId) {
        self.draft_retries.done(id);
    }

    /// Finishes the letters whose uploads were interrupted; returns how
    /// many still wait as drafts. One that cannot go now (the network, the
    /// server's storage, a server that answers what it should not) waits
    /// for a later sync, longer each time ([`crate::draft_retry`]), and
    /// holds up neither the other drafts nor the outbox; one refused for
    /// good (dropped) ends the sync with why.
    pub async fn finish_drafts(&mut self) -> Result<usize> {
        let mut waiting = 0;
        for draft in self.engine.home.drafts()? {
            let message_id = draft.message_id;
            if !self.draft_retries.due(&message_id, Instant::now()) {
                waiting += 1;
                continue;
            }
            match self.finish_draft(draft).await {
                // In the outbox: it goes with the rest.
                Ok(_) | Err(ClientError::Queued(_) | ClientError::Held(_)) => {
                    self.draft_retries.done(&message_id);
                }
                Err(e) if self.engine.home.is_draft(&message_id)? => {
                    tracing::warn!(code = e.code(), "attachments wait to be uploaded: {e}");
                    self.draft_retries.waited(message_id, Instant::now());
                    waiting += 1;
                }
                Err(e) => {
                    self.draft_retries.done(&message_id);
                    self.dropped_unsent(&message_id, &e)?;
                    return Err(e);
                }
            }
        }
        Ok(waiting)
    }

    /// Raises `letter_not_sent` if draft `id`, tried again and stopped by
    /// `e`, neither waits nor became a letter: dropped for a refusal for
    /// good. Its sender was told it would go on a later sync (a mail
    /// client's 451, `valise send`'s "queued"), and the error of a
    /// background sync reaches no one but a log. The alert names the
    /// letter and the error's code, never its content or the server's
    /// words.
    fn dropped_unsent(&self, id: &MessageId, e: &ClientError) -> Result<()> {
        let home = &self.engine.home;
        if home.waiting_to_go(id)? || !home.letters_by_message_id(&id.to_string())?.is_empty() {
            return Ok(());
        }
        self.engine.raise(
            AlertKind::LetterNotSent,
            None,
            &format!(
                "letter {id} waited for its attachments' upload and was refused for good ({}): it was not sent",
                e.code()
            ),
            None,
        )
    }

    /// Uploads what is left of a draft's files, then moves the letter,
    /// with their references, to the outbox and posts it. A refusal that
    /// will not change (a file gone or unreadable, a blob over the
    /// server's limit) drops the draft: the letter is not sent, and the
    /// error says why. Anything else leaves it for the next try.
    async fn finish_draft(&mut self, draft: DraftRow) -> Result<SentLetter> {
        let mut uploads = self.engine.home.uploads(&draft.message_id)?;
        let refs = self
            .upload_and_link(&draft.message_id, &mut uploads)
            .await?;
        let Payload::Letter(mut letter) = Payload::decode(&draft.plaintext)? else {
            return Err(ClientError::Home("a draft is not a letter".into()));
        };
        letter.attachments = refs;
        let target = match (draft.conversation, draft.exact_to.as_deref()) {
            (Some(c), _) => Target::Conversation(c),
            (None, Some(users)) => Target::Exactly {
                users: crate::send::recipients(users)?,
                conversation: None,
            },
            (None, None) => return Err(ClientError::Home("a draft has no recipient".into())),
        };
        let id = self.engine.transaction(|| {
            let id = self.engine.write_letter(&target, &letter)?;
            self.engine.home.drop_draft(&letter.message_id)?;
            Ok(id)
        })?;
        self.post_written(target, letter.message_id, letter.marking.as_ref(), id)
            .await
    }

    /// Uploads a draft's files, then links their blobs to the letter about
    /// to go: the server sweeps a blob no letter named within its window
    /// (a day). One it no longer keeps (the upload finished long ago, the
    /// device was off) is uploaded again from scratch, under a new key and
    /// as a new blob: the old key never seals anything again. A refusal
    /// that will not change (a file gone or unreadable, a blob over the
    /// server's limit) drops the draft.
    ///
    /// That happens once per call: a link names every blob, so an honest
    /// server keeps all but those it swept, and keeps those uploaded again
    /// just now. One still `missing` is a server that does not keep what
    /// it takes; uploading again would not change it, so the letter waits
    /// for the next sync ([`ClientError::BlobsNotKept`], as for a full
    /// server): never reported refused while its draft still goes later,
    /// and never holding up the rest of the outbox.
    async fn upload_and_link(
        &mut self,
        message_id: &MessageId,
        uploads: &mut [Upload],
    ) -> Result<Vec<AttachmentRef>> {
        let mut uploaded_again = false;
        loop {
            let mut refs = Vec::with_capacity(uploads.len());
            for u in uploads.iter_mut() {
                match self.upload(u).await {
                    Ok(r) => refs.push(r),
                    Err(e)
                        if matches!(e, ClientError::Invalid(_))
                            || e.is_server(ErrorCode::PayloadTooLarge) =>
                    {
                        self.engine.home.drop_draft(message_id)?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            // A crash here: the blobs are complete, and no letter names them.
            crate::failpoint::failpoint("before_blobs_linked");
            let ids: Vec<BlobId> = refs.iter().map(|r| r.blob).collect();
            let missing = self.link_blobs(&ids).await?;
            if missing.is_empty() {
                return Ok(refs);
            }
            if uploaded_again {
                return Err(ClientError::BlobsNotKept(missing.len()));
            }
            uploaded_again = true;
            for u in uploads
                .iter_mut()
                .filter(|u| u.blob.is_some_and(|b| missing.contains(&b)))
            {
                tracing::info!(
                    attachment = u.idx,
                    "the server no longer keeps the blob: it is uploaded again under a new key"
                );
                self.restart(u)?;
            }
        }
    }

    /// Links blobs to the letter about to go; returns those the server
    /// says it does not keep.
    pub(crate) async fn link_blobs(&mut self, ids: &[BlobId]) -> Result<Vec<BlobId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let req = LinkBlobs {
            blobs: ids.to_vec(),
        };
        let linked: BlobsLinked = self
            .call(Method::POST, blobs::LINKS_ROUTE, Some(&req))
            .await?;
        Ok(linked.missing)
    }

    /// Uploads one file, resuming where the server's durable offset is;
    /// starts over (new key, new blob) if the source changed.
    async fn upload(&mut self, u: &mut Upload) -> Result<AttachmentRef> {
        for _ in 0..RESTARTS {
            if let Some(r) = self.upload_once(u).await? {
                return Ok(r);
            }
            tracing::info!(attachment = u.idx, "source changed: the upload starts over");
            self.restart(u)?;
        }
        Err(ClientError::Invalid(format!(
            "{} keeps changing while it is uploaded",
            u.path.display()
        )))
    }

    /// One pass; `None` if the source changed.
    async fn upload_once(&mut self, u: &mut Upload) -> Result<Option<AttachmentRef>> {
        if let (Some(digest), Some(blob)) = (u.digest, u.blob) {
            return reference(u, blob, digest).map(Some);
        }
        let (size, mtime_ns) = self.stamp(u)?;
        if (size, mtime_ns) != (u.size, u.mtime_ns) {
            return Ok(None);
        }
        let total = Layout::for_plain(u.size).map_err(invalid)?.blob;
        let (mut blob, resume_at) = match u.blob {
            Some(b) => (Some(b), self.durable_offset(&b).await?),
            // No blob noted: nothing went under the key to a blob this
            // device knows of, but a first part whose answer never came may
            // have gone to one it does not: a new key, never that one again.
            None => {
                rekey(u);
                // A blob of one part is created with it; a larger one now,
                // and noted before any part goes (a blob a resumed pass
                // knows keeps what was sent).
                let blob = if total > MAX_PART_BYTES as u64 {
                    Some(self.create_empty_blob(u, total).await?)
                } else {
                    None
                };
                (blob, Some(0))
            }
        };
        // Expired (unfinished for a day) or lost: a new blob, a new key.
        let Some(resume_at) = resume_at else {
            return Ok(None);
        };
        let sealer = Sealer::new(&u.key, &u.nonce_prefix, u.size).map_err(invalid)?;
        if resume_at > total {
            return Err(ClientError::Protocol(format!(
                "the server says {resume_at} bytes of a {total}-byte blob are stored"
            )));
        }
        // Sealing runs on its own thread, a part ahead of the upload: part
        // k+1 is sealed while part k is in flight and fsynced.
        let file = self.source(u)?;
        let outgoing = Outgoing {
            part: Vec::with_capacity(MAX_PART_BYTES),
            hashed: 0,
            sent: blake3::Hasher::new(),
            check: resume_check(u),
            resume_at,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        std::thread::Builder::new()
            .name("valise-seal".into())
            .spawn(move || outgoing.seal(sealer, file, &tx))
            .map_err(|e| ClientError::Invalid(format!("cannot start sealing: {e}")))?;
        let mut at = resume_at;
        while let Some(sealed) = rx.recv().await {
            match sealed {
                Sealed::Part { bytes, hash } => {
                    at = match blob {
                        Some(b) => self.send_part(u, b, at, bytes, hash, total).await?,
                        None => {
                            let b = self.create_blob(u, total, bytes, hash).await?;
                            blob = Some(b);
                            u.durable
                        }
                    };
                }
                Sealed::Done { digest, hash } => {
                    let Some(blob) = blob.filter(|_| at == total && hash == digest) else {
                        return Err(ClientError::Protocol(format!(
                            "the blob's upload ended at {at} of {total} bytes"
                        )));
                    };
                    u.digest = Some(digest);
                    self.engine.home.put_upload(u)?;
                    return reference(u, blob, digest).map(Some);
                }
                Sealed::Changed => return Ok(None),
                Sealed::Failed(e) => return Err(invalid(e)),
            }
        }
        Err(ClientError::Invalid("sealing stopped unexpectedly".into()))
    }

    /// An upload's source, for the sealing thread: the file, or the bytes
    /// kept in the home (a mail client's part, bounded by the bridge's
    /// SMTP size limit), read out first since the home stays here.
    fn source(&self, u: &Upload) -> Result<Source> {
        if !u.path.as_os_str().is_empty() {
            let file = File::open(&u.path).map_err(|e| file_error(&u.path, &e))?;
            return Ok(Box::new(file));
        }
        let size = usize::try_from(u.size)
            .map_err(|_| ClientError::Invalid(format!("attachment {} is too large", u.idx + 1)))?;
        let bytes = self.engine.home.upload_source_range(
            &u.message_id,
            u.idx,
            0,
            size.saturating_add(1),
        )?;
        Ok(Box::new(std::io::Cursor::new(bytes)))
    }

    /// A source's size and modification time (a file kept in the home
    /// never changes).
    fn stamp(&self, u: &Upload) -> Result<(u64, i64)> {
        if !u.path.as_os_str().is_empty() {
            return source_stamp(&u.path);
        }
        match self.engine.home.upload_source_size(&u.message_id, u.idx)? {
            Some(size) => Ok((size, 0)),
            None => Err(ClientError::Invalid(format!(
                "attachment {} kept in the home is gone",
                u.idx + 1
            ))),
        }
    }

    /// How much of a blob the server holds durably; `None` if it has none.
    async fn durable_offset(&mut self, blob: &BlobId) -> Result<Option<u64>> {
        match self
            .call_with_headers(Method::HEAD, &blobs::path(blob), None, &[])
            .await
        {
            Ok((headers, _)) => offset(&headers).map(Some),
            Err(e) if e.is_server(ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends the part at `at` (the server's durable offset), whose blob
    /// bytes through its end hash to `hash`; returns the new offset. The
    /// part's end and hash are noted before it goes, since the server may
    /// keep it though no answer arrives; that one commit also notes the
    /// parts acknowledged before it (the last part's acknowledgement is
    /// noted with the digest, by the caller).
    async fn send_part(
        &mut self,
        u: &mut Upload,
        blob: BlobId,
        at: u64,
        bytes: Vec<u8>,
        hash: BlobDigest,
        total: u64,
    ) -> Result<u64> {
        let len = bytes.len() as u64;
        u.pending_end = at + len;
        u.pending_hash = Some(hash);
        self.engine.home.put_upload(u)?;
        let body = Body::new(PART_TYPE, bytes).header(UPLOAD_OFFSET, at.to_string());
        let (headers, _) = self
            .call_with_headers(Method::PATCH, &blobs::path(&blob), Some(body), &[])
            .await?;
        // A crash here: the server holds the part, the home does not say so.
        crate::failpoint::failpoint("after_part_sent");
        let now_at = offset(&headers)?;
        if now_at != at + len {
            return Err(ClientError::Protocol(format!(
                "the server took a part at {at} of {len} bytes and says it is at {now_at}"
            )));
        }
        let hash = u.pending_hash.take();
        u.pending_end = 0;
        self.acknowledged(u, now_at, hash, total);
        Ok(now_at)
    }

    /// Creates an empty blob of `total` bytes and notes it.
    async fn create_empty_blob(&mut self, u: &mut Upload, total: u64) -> Result<BlobId> {
        let (_, body) = self
            .call_with_headers(
                Method::POST,
                blobs::ROUTE,
                None,
                &[(UPLOAD_LENGTH, total.to_string())],
            )
            .await?;
        let created = created(&body)?;
        u.blob = Some(created);
        self.engine.home.put_upload(u)?;
        Ok(created)
    }

    /// Creates the blob with its only part in the same request (tus
    /// "creation-with-upload"): a small attachment goes in one round
    /// trip. Nothing is noted before it goes: the key is new to this pass
    /// ([`rekey`]), and a blob whose answer never came is never used.
    async fn create_blob(
        &mut self,
        u: &mut Upload,
        total: u64,
        bytes: Vec<u8>,
        hash: BlobDigest,
    ) -> Result<BlobId> {
        let len = bytes.len() as u64;
        let (headers, body) = self
            .call_with_headers(
                Method::POST,
                blobs::ROUTE,
                Some(Body::new(PART_TYPE, bytes)),
                &[(UPLOAD_LENGTH, total.to_string())],
            )
            .await?;
        // A crash here: the server holds a blob the home never heard of.
        crate::failpoint::failpoint("after_blob_created");
        let created = created(&body)?;
        let now_at = offset(&headers)?;
        if now_at != len {
            return Err(ClientError::Protocol(format!(
                "the server took a first part of {len} bytes and says it is at {now_at}"
            )));
        }
        u.blob = Some(created);
        self.acknowledged(u, now_at, Some(hash), total);
        Ok(created)
    }

    /// The server holds the blob through `now_at`, whose bytes hash to
    /// `hash`: noted with the next part, or with the digest.
    fn acknowledged(&mut self, u: &mut Upload, now_at: u64, hash: Option<BlobDigest>, total: u64) {
        u.durable = now_at;
        u.sent_hash = hash;
        self.report(Transfer {
            index: u.idx as usize + 1,
            done: now_at,
            total,
        });
    }

    /// A changed source: a new key, nonce prefix and blob, from scratch.
    fn restart(&self, u: &mut Upload) -> Result<()> {
        let stamp = self.stamp(u)?;
        *u = fresh_upload(
            u.message_id,
            u.idx,
            std::mem::take(&mut u.path),
            std::mem::take(&mut u.name),
            std::mem::take(&mut u.media_type),
            stamp,
        );
        self.engine.home.put_upload(u)
    }

    /// Downloads attachment `index` (from 1) of letter `letter_id`, checks
    /// all of it, and only then writes `out`. On any failure nothing is
    /// written; a blob that fails its checks raises an alert.
    pub async fn save_attachment(
        &mut self,
        letter_id: i64,
        index: usize,
        out: &Path,
    ) -> Result<Saved> {
        let (letter, attachment) = self.attachment_of(letter_id, index)?;
        if out.exists() {
            return Err(ClientError::Invalid(format!(
                "{} exists already: nothing was written",
                out.display()
            )));
        }
        // A restricted letter goes only into an approved directory, by the
        // path that was checked.
        let target = self.check_export(letter_id, out)?;
        let mut partial = Partial::create(&target)?;
        let mut write = |_: &Home, plain: &[u8]| partial.write(plain);
        let outcome = self.download(&attachment, index, &mut write).await?;
        match outcome.and_then(|()| export(partial, &target)) {
            Ok(()) => {
                // A restricted file never stays out without its label and
                // its report.
                let label_file = self.record_export(letter_id, &target).inspect_err(|_| {
                    let _ = std::fs::remove_file(&target);
                })?;
                Ok(Saved {
                    path: out.to_owned(),
                    size: attachment.size,
                    media_type: attachment.media_type,
                    label_file,
                })
            }
            Err(e) => Err(self.refusal_alert(e, &letter.conversation, letter_id, index)?),
        }
    }

    /// Letter `letter_id` and its attachment `index` (from 1).
    fn attachment_of(&self, letter_id: i64, index: usize) -> Result<(LetterView, AttachmentRef)> {
        let letter = self.engine.home.letter(letter_id)?;
        let attachment = index
            .checked_sub(1)
            .and_then(|i| letter.attachments.get(i))
            .cloned()
            .ok_or_else(|| ClientError::NotFound {
                kind: "attachment",
                id: format!("{index} of letter {letter_id}"),
            })?;
        Ok((letter, attachment))
    }

    /// Raises `attachment_refused` for a blob that failed its checks; the
    /// error is handed back as it was.
    fn refusal_alert(
        &self,
        e: ClientError,
        conversation: &ConversationId,
        letter_id: i64,
        index: usize,
    ) -> Result<ClientError> {
        if let ClientError::Attachment(why) = &e {
            self.engine.raise(
                AlertKind::AttachmentRefused,
                Some(conversation),
                &format!("letter {letter_id}, attachment {index}: {why}"),
                None,
            )?;
        }
        Ok(e)
    }

    /// Makes sure attachment `index` (from 1) of letter `letter_id` is kept
    /// in the sealed home, checked whole, for a front end that serves it in
    /// ranges ([`Home::attachment_range`]): downloaded once, in parts, each
    /// chunk checked as it comes and written as 64 KiB pieces; only a blob
    /// whose end and digest also passed is marked cached, so nothing of one
    /// that fails is ever read (and `attachment_refused` is raised, as for
    /// `save`). Memory stays at five ranges (20 MiB, see [`AHEAD`]) whatever
    /// the size.
    ///
    /// The cache stays within the `attachment_cache_mib` setting: caching
    /// one evicts the least recently asked for of other letters
    /// ([`Home::trim_attachment_cache`]); one evicted is downloaded and
    /// checked again when next asked for. The attachments of `letter_id`
    /// are never evicted here, so a request that covers several of them
    /// reads them all in the same step, nor those of a letter
    /// [held](Self::hold_cached) by a read that spans several steps.
    ///
    /// True if it was downloaded now, false if it was cached already.
    pub async fn cache_attachment(&mut self, letter_id: i64, index: usize) -> Result<bool> {
        if let Some((letter, idx)) = self.downloading.take()
            && !self.engine.home.attachment_cached(letter, idx)?
        {
            self.engine.home.clear_attachment(letter, idx)?;
        }
        let now = self.engine.now_ms();
        if self.engine.home.attachment_cached(letter_id, index)? {
            self.engine.home.touch_attachment(letter_id, index, now)?;
            return Ok(false);
        }
        let (letter, attachment) = self.attachment_of(letter_id, index)?;
        self.engine.home.clear_attachment(letter_id, index)?;
        let mut pieces = Pieces::new(letter_id, index);
        let mut write = |home: &Home, plain: &[u8]| pieces.push(home, plain);
        self.downloading = Some((letter_id, index));
        let outcome = self.download(&attachment, index, &mut write).await?;
        self.downloading = None;
        let home = &self.engine.home;
        match outcome.and_then(|()| pieces.finish(home)) {
            Ok(()) => {
                home.mark_attachment_cached(letter_id, index, pieces.bytes, now)?;
                self.trim_cache(Some(letter_id))?;
                Ok(true)
            }
            Err(e) => {
                home.clear_attachment(letter_id, index)?;
                Err(self.refusal_alert(e, &letter.conversation, letter_id, index)?)
            }
        }
    }

    /// Keeps the cached attachments of letter `letter_id` from eviction
    /// until the hold is dropped: for a front end that reads them over
    /// several steps (the bridge's streamed literals, a window per step),
    /// between which other letters are cached.
    pub fn hold_cached(&self, letter_id: i64) -> crate::Held {
        self.cache_holds.hold(letter_id)
    }

    /// Brings the attachment cache within its budget (the budget may have
    /// been lowered, a download cut off by a crash left pieces): for a
    /// front end to run when it starts.
    pub fn trim_attachment_cache(&self) -> Result<Trimmed> {
        self.engine.home.clear_unfinished_attachments()?;
        self.trim_cache(None)
    }

    fn trim_cache(&self, serving: Option<i64>) -> Result<Trimmed> {
        let budget = self.settings.attachment_cache_bytes();
        let mut keep = self.cache_holds.letters();
        keep.extend(serving);
        let trimmed = self.engine.home.trim_attachment_cache(budget, &keep)?;
        if trimmed.evicted > 0 {
            tracing::info!(
                evicted = trimmed.evicted,
                kept_bytes = trimmed.kept_bytes,
                "attachment cache over its budget: the least recently read evicted"
            );
        }
        Ok(trimmed)
    }

    /// Fetches the blob in ranges and hands `write` its bytes in order,
    /// each chunk checked as it comes, the end and the digest at the end.
    ///
    /// Three things overlap: the next ranges are on the way (tasks of
    /// their own, [`AHEAD`] at a time), a part is opened on a blocking
    /// thread (ChaCha20-Poly1305 and BLAKE3), and the part before it is
    /// written. The opener still sees every part once, in order, and the
    /// first range that fails, short or long or refused, fails the whole.
    ///
    /// The home is released while ranges come and are opened, and taken
    /// back for each part's write ([`Client::release_home`]): a large blob
    /// or a slow server does not keep other processes on the home (`valise`
    /// beside the bridge, the bridge beside `valise save`) waiting for the
    /// whole download. It is held again when this returns `Ok`, whatever
    /// the download's own outcome (the inner result); an outer error says
    /// the home could not be taken back, so the caller must not touch it
    /// (not even to raise an alert or clear a partial copy).
    async fn download(
        &mut self,
        a: &AttachmentRef,
        index: usize,
        write: &mut dyn FnMut(&Home, &[u8]) -> Result<()>,
    ) -> Result<Result<()>> {
        self.engine.release()?;
        let outcome = match self.session().await {
            Ok(()) => self.download_released(a, index, write).await,
            Err(e) => Err(e),
        };
        self.retake_within().await?;
        Ok(outcome)
    }

    /// [`Client::download`] from the home released.
    async fn download_released(
        &mut self,
        a: &AttachmentRef,
        index: usize,
        write: &mut dyn FnMut(&Home, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut opener = Opener::new(a).map_err(refused)?;
        let mut ranges = Ranges::new(blobs::path(&a.blob), a.blob_size);
        ranges.ask(&self.api)?;
        // A part opened and not written yet, and where it ends.
        let mut checked: Option<(Vec<u8>, u64)> = None;
        while let Some((at, len, task)) = ranges.next() {
            ranges.ask(&self.api)?;
            let bytes = self.fetched(&ranges.path, at, len, task).await?;
            let open = tokio::task::spawn_blocking(move || {
                let plain = opener.push(&bytes);
                (opener, plain)
            });
            if let Some((plain, end)) = checked.take() {
                self.write_part(write, &plain, index, end, a.blob_size)
                    .await?;
            }
            let (back, plain) = joined(open.await)?;
            opener = back;
            checked = Some((plain.map_err(refused)?, at + len));
        }
        if let Some((plain, end)) = checked {
            self.write_part(write, &plain, index, end, a.blob_size)
                .await?;
        }
        opener.finish(&a.digest).map_err(refused)
    }

    /// The `len` bytes at `at` once their request ended: exactly those (a
    /// shorter or longer answer is the blob's fault: refused). Asked again
    /// after a new login if the server had forgotten the token.
    async fn fetched(
        &mut self,
        path: &str,
        at: u64,
        len: u64,
        task: JoinHandle<Result<Answer>>,
    ) -> Result<Vec<u8>> {
        let (_, bytes) = match joined(task.await).and_then(|r| r?.success()) {
            Err(e) if e.is_server(ErrorCode::Unauthorized) => {
                self.relogin().await?;
                get_range(&self.api, path, at, len)?.await?.success()
            }
            other => other,
        }?;
        let got = bytes.len() as u64;
        if got < len {
            return Err(ClientError::Attachment(format!(
                "the server sent {got} bytes for a range of {len} at {at}: the blob is cut short"
            )));
        }
        if got > len {
            return Err(ClientError::Attachment(format!(
                "the server sent more than {len} bytes for a range of {len} at {at}"
            )));
        }
        Ok(bytes)
    }

    /// Writes a checked part with the home taken back for it (all of it in
    /// one home transaction: a cache's pieces are not committed one by
    /// one), and tells who follows.
    async fn write_part(
        &mut self,
        write: &mut dyn FnMut(&Home, &[u8]) -> Result<()>,
        plain: &[u8],
        index: usize,
        done: u64,
        total: u64,
    ) -> Result<()> {
        self.retake_within().await?;
        self.engine
            .home
            .transaction(|| write(&self.engine.home, plain))?;
        self.engine.release()?;
        self.report(Transfer { index, done, total });
        Ok(())
    }
}

/// Ranges on the way besides the one taken. Each is held whole until its
/// turn, so a download holds at most these, the range being opened (its
/// blob and file bytes) and the one being written: five ranges, 20 MiB,
/// whatever the blob's size.
const AHEAD: usize = 2;

/// Bytes asked for in one range: half of what a server gives at most
/// ([`MAX_PART_BYTES`]). With 8 MiB ranges the bridge's engine grew by
/// 58 MiB while it cached a 64 MiB attachment (five ranges and the
/// allocator's keeping of freed ones); a range is a request of its own,
/// but with two ahead their round trips overlap.
const RANGE_BYTES: u64 = 4 << 20;

/// A blob's ranges, asked for in order, a few ahead of the one taken.
/// Those still running when it is dropped are stopped: a failed download
/// asks for nothing more.
struct Ranges {
    path: String,
    size: u64,
    /// Where the next range to ask for starts.
    next: u64,
    asked: VecDeque<(u64, u64, JoinHandle<Result<Answer>>)>,
}

impl Ranges {
    fn new(path: String, size: u64) -> Self {
        Self {
            path,
            size,
            next: 0,
            asked: VecDeque::with_capacity(AHEAD),
        }
    }

    /// Asks for ranges until [`AHEAD`] are on the way (or none is left).
    fn ask(&mut self, api: &Api) -> Result<()> {
        while self.asked.len() < AHEAD && self.next < self.size {
            let len = (self.size - self.next).min(RANGE_BYTES);
            let get = get_range(api, &self.path, self.next, len)?;
            self.asked.push_back((self.next, len, tokio::spawn(get)));
            self.next += len;
        }
        Ok(())
    }

    /// The first range asked for and not taken: where, how long, its task.
    fn next(&mut self) -> Option<(u64, u64, JoinHandle<Result<Answer>>)> {
        self.asked.pop_front()
    }
}

impl Drop for Ranges {
    fn drop(&mut self) {
        for (_, _, task) in &self.asked {
            task.abort();
        }
    }
}

/// `GET` of the `len` bytes at `at`, read no further than the first
/// chunk of the answer past them (a hostile server cannot make the device
/// hold more).
fn get_range(
    api: &Api,
    path: &str,
    at: u64,
    len: u64,
) -> Result<impl Future<Output = Result<Answer>> + Send + 'static + use<>> {
    let range = [("range", blobs::range(at, len))];
    api.start(Method::GET, path, None, &range, true, len as usize)
}

/// What a task gave back; its panic goes on.
fn joined<T>(r: std::result::Result<T, JoinError>) -> Result<T> {
    r.map_err(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => ClientError::Network(format!("a download task stopped: {e}")),
    })
}

/// A download cut into the sealed home's 64 KiB pieces as it comes.
struct Pieces {
    letter: i64,
    index: usize,
    next: u64,
    carry: Vec<u8>,
    /// Plaintext bytes written.
    bytes: u64,
}

impl Pieces {
    fn new(letter: i64, index: usize) -> Self {
        Self {
            letter,
            index,
            next: 0,
            carry: Vec::with_capacity(PIECE_BYTES),
            bytes: 0,
        }
    }

    fn push(&mut self, home: &Home, mut plain: &[u8]) -> Result<()> {
        while !plain.is_empty() {
            let take = (PIECE_BYTES - self.carry.len()).min(plain.len());
            self.carry.extend_from_slice(&plain[..take]);
            plain = &plain[take..];
            if self.carry.len() == PIECE_BYTES {
                self.flush(home)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, home: &Home) -> Result<()> {
        home.put_attachment_piece(self.letter, self.index, self.next, &self.carry)?;
        self.next += 1;
        self.bytes += self.carry.len() as u64;
        self.carry.clear();
        Ok(())
    }

    /// The last, short piece.
    fn finish(&mut self, home: &Home) -> Result<()> {
        if self.carry.is_empty() {
            return Ok(());
        }
        self.flush(home)
    }
}

/// What the sealing thread reads a file from.
type Source = Box<dyn Read + Send>;

/// What the sealing thread hands the upload, in order.
enum Sealed {
    /// The next part, and the hash of the blob's bytes through its end.
    Part {
        bytes: Vec<u8>,
        hash: BlobDigest,
    },
    /// Every chunk sealed and sent on: the sealer's digest, and the hash
    /// of the bytes taken (the two must agree).
    Done {
        digest: BlobDigest,
        hash: BlobDigest,
    },
    /// The source changed (or a part would go before the bytes an earlier
    /// pass sent are checked): start over.
    Changed,
    Failed(BlobError),
}

/// The bytes of one upload pass: what is already on the server is only
/// hashed (and checked against what was sent before); the rest gathers
/// into parts.
struct Outgoing {
    part: Vec<u8>,
    /// Blob bytes hashed so far.
    hashed: u64,
    /// BLAKE3 of the blob's bytes so far.
    sent: blake3::Hasher,
    /// The hash of the first bytes sent in an earlier pass, still to check.
    check: Option<(u64, BlobDigest)>,
    /// The server's durable offset when the pass began.
    resume_at: u64,
}

impl Outgoing {
    /// Seals `file` from the start and hands over its parts past the
    /// resume offset; stops when the upload stops listening. Holds at most
    /// the part it gathers (the channel holds one more, the upload the one
    /// in flight): memory stays flat.
    fn seal(mut self, mut sealer: Sealer, mut file: Source, tx: &Sender<Sealed>) {
        let last = match self.seal_all(&mut sealer, &mut file, tx) {
            Ok(true) => match sealer.finish() {
                Ok(digest) => Sealed::Done {
                    digest,
                    hash: *self.sent.finalize().as_bytes(),
                },
                Err(e) => Sealed::Failed(e),
            },
            Ok(false) => Sealed::Changed,
            Err(e) => Sealed::Failed(e),
        };
        // The upload may have stopped listening: then nobody needs it.
        let _ = tx.blocking_send(last);
    }

    /// True once every part went; false if the source changed or the
    /// upload stopped listening.
    fn seal_all(
        &mut self,
        sealer: &mut Sealer,
        file: &mut Source,
        tx: &Sender<Sealed>,
    ) -> std::result::Result<bool, BlobError> {
        if !self.take(sealer.header()) {
            return Ok(false);
        }
        let mut plain = vec![0u8; valise_proto::blob::CHUNK_BYTES];
        for _ in 0..sealer.layout().chunks {
            let n = sealer.next_file_bytes();
            if file.read_exact(&mut plain[..n]).is_err() {
                return Ok(false);
            }
            let sealed = sealer.seal_next(&plain[..n])?;
            let mut rest = sealed.as_slice();
            while !rest.is_empty() {
                let take = (MAX_PART_BYTES - self.part.len()).min(rest.len());
                if !self.take(&rest[..take]) {
                    return Ok(false);
                }
                rest = &rest[take..];
                if self.part.len() == MAX_PART_BYTES && !self.hand_over(tx) {
                    return Ok(false);
                }
            }
        }
        // A source longer than it was is a changed one.
        if !matches!(file.read(&mut plain[..1]), Ok(0)) {
            return Ok(false);
        }
        Ok(self.part.is_empty() || self.hand_over(tx))
    }

    /// Hands the gathered part over; false, and nothing sent, if the bytes
    /// an earlier pass sent or may have sent are not all checked yet (a
    /// server far behind them): they may differ, and would go under the
    /// same key and positions. False too if the upload stopped listening.
    fn hand_over(&mut self, tx: &Sender<Sealed>) -> bool {
        if self.check.is_some() {
            return false;
        }
        let bytes = std::mem::replace(&mut self.part, Vec::with_capacity(MAX_PART_BYTES));
        let hash = *self.sent.finalize().as_bytes();
        tx.blocking_send(Sealed::Part { bytes, hash }).is_ok()
    }

    /// Takes the next blob bytes; false if they differ from what an
    /// earlier pass sent (the source changed).
    fn take(&mut self, mut bytes: &[u8]) -> bool {
        if let Some((at, hash)) = self.check
            && self.hashed + bytes.len() as u64 >= at
        {
            // Within `bytes` (the cast holds: at most bytes.len()).
            let k = (at - self.hashed) as usize;
            self.absorb(&bytes[..k]);
            if *self.sent.finalize().as_bytes() != hash {
                return false;
            }
            self.check = None;
            bytes = &bytes[k..];
        }
        self.absorb(bytes);
        true
    }

    fn absorb(&mut self, bytes: &[u8]) {
        self.sent.update(bytes);
        let start = self.hashed;
        self.hashed += bytes.len() as u64;
        // Only what lies past the server's durable offset is sent.
        let skip = self.resume_at.saturating_sub(start).min(bytes.len() as u64) as usize;
        self.part.extend_from_slice(&bytes[skip..]);
    }
}

/// What a resumed pass must seal again identically before it sends: the
/// bytes through the larger of the acknowledged offset and the end of the
/// part last sent without an answer, with their hash.
fn resume_check(u: &Upload) -> Option<(u64, BlobDigest)> {
    let durable = u
        .sent_hash
        .filter(|_| u.durable > 0)
        .map(|h| (u.durable, h));
    let pending = u
        .pending_hash
        .filter(|_| u.pending_end > 0)
        .map(|h| (u.pending_end, h));
    durable.into_iter().chain(pending).max_by_key(|(at, _)| *at)
}

/// The reference a letter carries for a finished upload.
fn reference(u: &Upload, blob: BlobId, digest: BlobDigest) -> Result<AttachmentRef> {
    Ok(AttachmentRef {
        blob,
        key: u.key.clone(),
        digest,
        size: u.size,
        blob_size: Layout::for_plain(u.size).map_err(invalid)?.blob,
        name: u.name.clone(),
        media_type: u.media_type.clone(),
    })
}

/// The blob id in the answer to `POST /v1/blobs`.
fn created(body: &[u8]) -> Result<BlobId> {
    serde_json::from_slice::<BlobCreated>(body)
        .map(|c| c.blob)
        .map_err(|e| ClientError::Protocol(format!("{}: {e}", blobs::ROUTE)))
}

/// A new key and nonce prefix for an upload that has no blob yet.
fn rekey(u: &mut Upload) {
    u.key = BlobKey::from_bytes(rand::random());
    u.nonce_prefix = rand::random();
    (u.durable, u.sent_hash, u.pending_end, u.pending_hash) = (0, None, 0, None);
}

/// A file to attach: on disk (`send --attach`), or handed over in memory
/// by a front end (a mail client's MIME part) and kept in the sealed home
/// until it is uploaded, so that no plaintext is written outside it.
#[derive(Clone)]
pub enum AttachmentSource {
    File(PathBuf),
    Held { name: String, bytes: Vec<u8> },
}

// A held file's name and bytes are content: never in a log.
impl std::fmt::Debug for AttachmentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(_) => f.write_str("AttachmentSource::File(..)"),
            Self::Held { bytes, .. } => write!(f, "AttachmentSource::Held({} bytes)", bytes.len()),
        }
    }
}

/// A new upload of a source as attachment `idx`, with a fresh key.
fn new_upload(message_id: MessageId, idx: u32, source: &AttachmentSource) -> Result<Upload> {
    let path = match source {
        AttachmentSource::File(path) => path,
        AttachmentSource::Held { name, bytes } => {
            check_name(name)?;
            let size = bytes.len() as u64;
            Layout::for_plain(size).map_err(invalid)?;
            let media_type = media_type(name).to_owned();
            return Ok(fresh_upload(
                message_id,
                idx,
                PathBuf::new(),
                name.clone(),
                media_type,
                (size, 0),
            ));
        }
    };
    let path = std::fs::canonicalize(path).map_err(|e| file_error(path, &e))?;
    if !path.is_file() {
        return Err(ClientError::Invalid(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_name(&name)?;
    let stamp = source_stamp(&path)?;
    Layout::for_plain(stamp.0).map_err(invalid)?;
    let media_type = media_type(&name).to_owned();
    Ok(fresh_upload(message_id, idx, path, name, media_type, stamp))
}

fn check_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ClientError::Invalid(format!(
            "attachment names have at most {MAX_NAME_BYTES} bytes and no control characters"
        )));
    }
    Ok(())
}

/// An upload that has sent nothing yet, under a new random key and nonce
/// prefix: a new file and a changed source both start here, since a key
/// must never seal two different plaintexts.
fn fresh_upload(
    message_id: MessageId,
    idx: u32,
    path: PathBuf,
    name: String,
    media_type: String,
    (size, mtime_ns): (u64, i64),
) -> Upload {
    Upload {
        message_id,
        idx,
        path,
        name,
        media_type,
        size,
        mtime_ns,
        key: BlobKey::from_bytes(rand::random()),
        nonce_prefix: rand::random(),
        blob: None,
        durable: 0,
        sent_hash: None,
        pending_end: 0,
        pending_hash: None,
        digest: None,
    }
}

/// Size and modification time, which say whether a source changed.
fn source_stamp(path: &Path) -> Result<(u64, i64)> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, &e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Ok((meta.len(), mtime))
}

/// The media type for a file name's extension (what the receiver is told).
fn media_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        Some("doc") => "application/msword",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("pptx") => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        Some("odt") => "application/vnd.oasis.opendocument.text",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

fn users_key(users: &[valise_proto::UserId]) -> String {
    users
        .iter()
        .map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn offset(headers: &HeaderMap) -> Result<u64> {
    headers
        .get(UPLOAD_OFFSET)
        .ok_or_else(|| ClientError::Protocol(format!("the server's answer has no {UPLOAD_OFFSET}")))
        .and_then(|v| {
            parse_count(UPLOAD_OFFSET, v.as_bytes())
                .map_err(|e| ClientError::Protocol(e.to_string()))
        })
}

fn file_error(path: &Path, e: &std::io::Error) -> ClientError {
    ClientError::Invalid(format!("{}: {e}", path.display()))
}

fn invalid(e: BlobError) -> ClientError {
    ClientError::Invalid(e.to_string())
}

fn refused(e: BlobError) -> ClientError {
    ClientError::Attachment(format!("the attachment failed its checks: {e}"))
}

/// The file a download is written to, beside its target; removed unless
/// [`export`] renames it.
struct Partial {
    file: File,
    path: PathBuf,
    kept: bool,
    /// Bytes written, and how many of them the disk was asked to take.
    written: u64,
    started: u64,
}

/// Bytes written before the disk is asked to start on them.
const WRITEBACK_BYTES: u64 = 32 << 20;

impl Partial {
    fn create(out: &Path) -> Result<Self> {
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
        let name = format!(".valise-partial-{}", hex::encode(rand::random::<[u8; 8]>()));
        let path = dir.map_or_else(|| PathBuf::from(&name), |d| d.join(&name));
        let file = File::create_new(&path).map_err(|e| file_error(&path, &e))?;
        Ok(Self {
            file,
            path,
            kept: false,
            written: 0,
            started: 0,
        })
    }

    /// Writes the next bytes. Every [`WRITEBACK_BYTES`] the disk is asked
    /// to start writing them, without waiting: the fsync before the rename
    /// then finds little left (a GiB of dirty pages would all wait for it,
    /// after the last byte came). Background fsyncs were tried and were
    /// slower: each commits the journal.
    fn write(&mut self, plain: &[u8]) -> Result<()> {
        self.file
            .write_all(plain)
            .map_err(|e| ClientError::Invalid(format!("cannot write: {e}")))?;
        self.written += plain.len() as u64;
        if self.written - self.started >= WRITEBACK_BYTES {
            start_writeback(&self.file, self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(())
    }
}

/// Asks the kernel to start writing `len` bytes at `at` to disk and not
/// to wait: Linux starts writeback of dirty pages given
/// `POSIX_FADV_DONTNEED` (and would drop them once clean; nobody reads
/// them here). Advice only: the fsync before the rename is what makes the
/// file durable, so a failure changes nothing.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, at: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        at,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The one place a checked attachment becomes a file the user sees:
/// durable first, then renamed into place (and the rename made durable).
fn export(mut partial: Partial, out: &Path) -> Result<()> {
    let io = |e: std::io::Error| file_error(out, &e);
    partial.file.sync_all().map_err(io)?;
    std::fs::rename(&partial.path, out).map_err(io)?;
    partial.kept = true;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}
