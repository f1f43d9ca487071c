//! Attachments kept on the device: the references of stored letters, and
//! the drafts whose files are still uploading (see `crate::attachments`).

use super::{Home, parse_col};
use crate::error::{ClientError, Result};
use rusqlite::{OptionalExtension, Row, params};
use std::path::PathBuf;
use valise_proto::blob::{AttachmentRef, BlobDigest, BlobKey, NONCE_PREFIX_BYTES};
use valise_proto::{BlobId, ConversationId, MessageId};

/// A letter waiting for its attachments' uploads.
pub struct DraftRow {
    pub message_id: MessageId,
    pub conversation: Option<ConversationId>,
    pub exact_to: Option<String>,
    /// `Payload::Letter` as written, without attachments.
    pub plaintext: Vec<u8>,
}

/// One attachment's upload, as far as it went.
pub struct Upload {
    pub message_id: MessageId,
    pub idx: u32,
    /// The file on disk; empty for a file kept in the home
    /// (`upload_sources`), as a mail client's attachment is.
    pub path: PathBuf,
    pub name: String,
    pub media_type: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub key: BlobKey,
    pub nonce_prefix: [u8; NONCE_PREFIX_BYTES],
    pub blob: Option<BlobId>,
    pub durable: u64,
    pub sent_hash: Option<BlobDigest>,
    /// The end of the part being sent and the hash of the blob through it,
    /// noted before it goes: the server may keep it though the client
    /// never hears back.
    pub pending_end: u64,
    pub pending_hash: Option<BlobDigest>,
    pub digest: Option<BlobDigest>,
}

// Neither the key nor the file's name or path reach a log.
impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("message_id", &self.message_id)
            .field("idx", &self.idx)
            .field("blob", &self.blob)
            .field("durable", &self.durable)
            .field("pending_end", &self.pending_end)
            .finish_non_exhaustive()
    }
}

fn blob_col<const N: usize>(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<[u8; N]>> {
    r.get::<_, Option<Vec<u8>>>(i)?
        .map(|v| {
            <[u8; N]>::try_from(v.as_slice()).map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Blob,
                    format!("expected {N} bytes").into(),
                )
            })
        })
        .transpose()
}

fn required<T>(v: Option<T>, i: usize) -> rusqlite::Result<T> {
    v.ok_or(rusqlite::Error::InvalidColumnType(
        i,
        "NULL".into(),
        rusqlite::types::Type::Null,
    ))
}

fn upload(r: &Row<'_>) -> rusqlite::Result<Upload> {
    Ok(Upload {
        message_id: parse_col(r, 0, MessageId::parse)?,
        idx: r.get(1)?,
        path: PathBuf::from(r.get::<_, String>(2)?),
        name: r.get(3)?,
        media_type: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
        mtime_ns: r.get(6)?,
        key: BlobKey::from_bytes(required(blob_col::<32>(r, 7)?, 7)?),
        nonce_prefix: required(blob_col::<NONCE_PREFIX_BYTES>(r, 8)?, 8)?,
        blob: r
            .get::<_, Option<String>>(9)?
            .map(|s| BlobId::parse(&s))
            .transpose()
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, e.into())
            })?,
        durable: r.get::<_, i64>(10)? as u64,
        sent_hash: blob_col::<32>(r, 11)?,
        pending_end: r.get::<_, i64>(12)? as u64,
        pending_hash: blob_col::<32>(r, 13)?,
        digest: blob_col::<32>(r, 14)?,
    })
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| ClientError::Invalid(format!("{v} is out of range")))
}

impl Home {
    /// Keeps a letter until its attachments are uploaded.
    pub fn put_draft(&self, d: &DraftRow, now_ms: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO drafts (message_id, conversation, exact_to, plaintext, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                d.message_id.to_string(),
                d.conversation.map(|c| c.to_string()),
                d.exact_to,
                d.plaintext,
                now_ms
            ],
        )?;
        Ok(())
    }

    /// The letters waiting for uploads, oldest first.
    pub fn drafts(&self) -> Result<Vec<DraftRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT message_id, conversation, exact_to, plaintext FROM drafts ORDER BY created_at_ms",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DraftRow {
                message_id: parse_col(r, 0, MessageId::parse)?,
                conversation: r
                    .get::<_, Option<String>>(1)?
                    .map(|c| ConversationId::parse(&c))
                    .transpose()
                    .map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })?,
                exact_to: r.get(2)?,
                plaintext: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether letter `message_id` is still a draft: its files not all
    /// uploaded and kept by the server, nothing of it sent.
    pub fn is_draft(&self, message_id: &MessageId) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM drafts WHERE message_id = ?1",
                [message_id.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Forgets a draft and its uploads (it went to the outbox).
    pub fn drop_draft(&self, message_id: &MessageId) -> Result<()> {
        let id = message_id.to_string();
        self.conn
            .execute("DELETE FROM upload_sources WHERE message_id = ?1", [&id])?;
        self.conn
            .execute("DELETE FROM uploads WHERE message_id = ?1", [&id])?;
        self.conn
            .execute("DELETE FROM drafts WHERE message_id = ?1", [&id])?;
        Ok(())
    }

    /// Writes an upload's whole state (new, or restarted with a new key).
    /// Keeps a file handed over in memory until its upload is done.
    pub fn put_upload_source(&self, message_id: &MessageId, idx: u32, bytes: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO upload_sources (message_id, idx, bytes) VALUES (?1, ?2, ?3)",
            params![message_id.to_string(), idx, bytes],
        )?;
        Ok(())
    }

    /// The size of a file kept in the home.
    pub fn upload_source_size(&self, message_id: &MessageId, idx: u32) -> Result<Option<u64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT length(bytes) FROM upload_sources WHERE message_id = ?1 AND idx = ?2",
                params![message_id.to_string(), idx],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|n| n as u64))
    }

    /// `len` bytes from `at` of a file kept in the home (fewer at its end).
    pub fn upload_source_range(
        &self,
        message_id: &MessageId,
        idx: u32,
        at: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        Ok(self
            .conn
            .query_row(
                "SELECT substr(bytes, ?3, ?4) FROM upload_sources WHERE message_id = ?1 AND idx = ?2",
                params![message_id.to_string(), idx, to_i64(at)? + 1, len as i64],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?
            .unwrap_or_default())
    }

    pub fn put_upload(&self, u: &Upload) -> Result<()> {
        self.conn.execute(
            "INSERT INTO uploads (message_id, idx, path, name, media_type, size, mtime_ns, key,
                nonce_prefix, blob, durable, sent_hash, pending_end, pending_hash, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (message_id, idx) DO UPDATE SET size = excluded.size,
                mtime_ns = excluded.mtime_ns, key = excluded.key,
                nonce_prefix = excluded.nonce_prefix, blob = excluded.blob,
                durable = excluded.durable, sent_hash = excluded.sent_hash,
                pending_end = excluded.pending_end, pending_hash = excluded.pending_hash,
                digest = excluded.digest",
            params![
                u.message_id.to_string(),
                u.idx,
                u.path.to_string_lossy(),
                u.name,
                u.media_type,
                to_i64(u.size)?,
                u.mtime_ns,
                u.key.as_bytes().as_slice(),
                u.nonce_prefix.as_slice(),
                u.blob.map(|b| b.to_string()),
                to_i64(u.durable)?,
                u.sent_hash.as_ref().map(|h| h.as_slice()),
                to_i64(u.pending_end)?,
                u.pending_hash.as_ref().map(|h| h.as_slice()),
                u.digest.as_ref().map(|h| h.as_slice()),
            ],
        )?;
        Ok(())
    }

    /// A draft's uploads, in attachment order.
    pub fn uploads(&self, message_id: &MessageId) -> Result<Vec<Upload>> {
        let mut stmt = self.conn.prepare(
            "SELECT message_id, idx, path, name, media_type, size, mtime_ns, key, nonce_prefix,
                blob, durable, sent_hash, pending_end, pending_hash, digest
             FROM uploads WHERE message_id = ?1 ORDER BY idx",
        )?;
        let rows = stmt.query_map([message_id.to_string()], upload)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keeps a stored letter's attachment references.
    pub fn store_attachments(&self, letter: i64, refs: &[AttachmentRef]) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO letter_attachments (letter, idx, ref) VALUES (?1, ?2, ?3)",
        )?;
        for (i, a) in refs.iter().enumerate() {
            let mut cbor = Vec::new();
            ciborium::into_writer(a, &mut cbor)
                .map_err(|e| ClientError::Invalid(format!("attachment reference: {e}")))?;
            stmt.execute(params![letter, i as i64, cbor])?;
        }
        Ok(())
    }

    /// A stored letter's attachments, in order.
    pub fn attachments(&self, letter: i64) -> Result<Vec<AttachmentRef>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ref FROM letter_attachments WHERE letter = ?1 ORDER BY idx")?;
        let rows = stmt.query_map([letter], |r| r.get::<_, Vec<u8>>(0))?;
        rows.map(|cbor| {
            ciborium::from_reader(cbor?.as_slice()).map_err(|_| {
                ClientError::Home("a stored attachment reference does not decode".into())
            })
        })
        .collect()
    }
}
