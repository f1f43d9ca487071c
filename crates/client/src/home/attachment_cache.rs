//! Checked attachment plaintext kept in the sealed home, for front ends
//! that serve attachments in ranges (the mail bridge's MIME parts): read
//! piece by piece, so a 1 GiB attachment is never whole in memory. Written
//! only by [`crate::Client::cache_attachment`], which marks an attachment
//! cached once its whole blob passed every check.

use super::Home;
use crate::error::Result;
use rusqlite::{OptionalExtension, params};

/// Plaintext bytes per piece (one row).
pub const PIECE_BYTES: usize = 64 * 1024;

// Per FETCH of an attachment's bytes (`HOT_PATH`): by primary key.
pub(super) const IS_CACHED: &str = "SELECT 1 FROM attachment_cached WHERE letter = ?1 AND idx = ?2";
pub(super) const PIECES: &str = "SELECT piece, bytes FROM attachment_pieces
     WHERE letter = ?1 AND idx = ?2 AND piece BETWEEN ?3 AND ?4 ORDER BY piece";
const PUT_PIECE: &str =
    "INSERT OR REPLACE INTO attachment_pieces (letter, idx, piece, bytes) VALUES (?1, ?2, ?3, ?4)";

impl Home {
    /// Whether attachment `idx` (from 1) of `letter` was checked whole and
    /// kept.
    pub fn attachment_cached(&self, letter: i64, idx: usize) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(IS_CACHED)?
            .query_row(params![letter, idx as i64], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Forgets whatever is kept of an attachment (a download to start over).
    pub(crate) fn clear_attachment(&self, letter: i64, idx: usize) -> Result<()> {
        self.conn.execute(
            "DELETE FROM attachment_cached WHERE letter = ?1 AND idx = ?2",
            params![letter, idx as i64],
        )?;
        self.conn.execute(
            "DELETE FROM attachment_pieces WHERE letter = ?1 AND idx = ?2",
            params![letter, idx as i64],
        )?;
        Ok(())
    }

    pub(crate) fn put_attachment_piece(
        &self,
        letter: i64,
        idx: usize,
        piece: u64,
        bytes: &[u8],
    ) -> Result<()> {
        self.conn.prepare_cached(PUT_PIECE)?.execute(params![
            letter,
            idx as i64,
            piece as i64,
            bytes
        ])?;
        Ok(())
    }

    pub(crate) fn mark_attachment_cached(&self, letter: i64, idx: usize) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO attachment_cached (letter, idx) VALUES (?1, ?2)",
            params![letter, idx as i64],
        )?;
        Ok(())
    }

    /// `len` bytes from `start` of a cached attachment's plaintext (fewer
    /// at its end); reads only the pieces that hold them. Nothing of an
    /// attachment that is not cached (checked whole) is ever read.
    pub fn attachment_range(
        &self,
        letter: i64,
        idx: usize,
        start: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        if len == 0 || !self.attachment_cached(letter, idx)? {
            return Ok(Vec::new());
        }
        let piece = PIECE_BYTES as u64;
        let (first, last) = (start / piece, (start + len as u64 - 1) / piece);
        let mut out = Vec::with_capacity(len);
        let mut stmt = self.conn.prepare_cached(PIECES)?;
        let mut rows = stmt.query(params![letter, idx as i64, first as i64, last as i64])?;
        while let Some(row) = rows.next()? {
            let at = row.get::<_, i64>(0)? as u64 * piece;
            let bytes: Vec<u8> = row.get(1)?;
            let from = start.saturating_sub(at).min(bytes.len() as u64) as usize;
            let want = len - out.len();
            out.extend_from_slice(&bytes[from..(from + want).min(bytes.len())]);
        }
        Ok(out)
    }
}
