//! Checked attachment plaintext kept in the sealed home, for front ends
//! that serve attachments in ranges (the mail bridge's MIME parts): read
//! piece by piece, so a 1 GiB attachment is never whole in memory. Written
//! only by [`crate::Client::cache_attachment`], which marks an attachment
//! cached once its whole blob passed every check.
//!
//! The cache is bounded (`attachment_cache_mib`, [`Home::trim_attachment_cache`]):
//! past the budget, the least recently read whole attachments are
//! evicted, and one evicted is simply downloaded and checked again when
//! next asked for. Eviction happens only in the step that caches (or
//! trims) and never takes the letter being served, nor a letter a front
//! end holds ([`crate::Client::hold_cached`]) while it reads over several
//! steps, the home taken back for each (the bridge's streamed literals):
//! nothing it reads goes mid-read.

use super::Home;
use crate::error::{ClientError, Result};
use rusqlite::{OptionalExtension, params};

/// Plaintext bytes per piece (one row).
pub const PIECE_BYTES: usize = 64 * 1024;

// Per FETCH of an attachment's bytes (`HOT_PATH`): by primary key.
pub(super) const IS_CACHED: &str = "SELECT 1 FROM attachment_cached WHERE letter = ?1 AND idx = ?2";
pub(super) const PIECES: &str = "SELECT piece, bytes FROM attachment_pieces
     WHERE letter = ?1 AND idx = ?2 AND piece BETWEEN ?3 AND ?4 ORDER BY piece";
const PUT_PIECE: &str =
    "INSERT OR REPLACE INTO attachment_pieces (letter, idx, piece, bytes) VALUES (?1, ?2, ?3, ?4)";
pub(super) const TOUCH: &str =
    "UPDATE attachment_cached SET read_at_ms = ?3 WHERE letter = ?1 AND idx = ?2";
const CACHED_BYTES: &str = "SELECT COALESCE(SUM(bytes), 0) FROM attachment_cached";
/// Eviction order: least recently read first (then the oldest letters).
const EVICTABLE: &str =
    "SELECT letter, idx, bytes FROM attachment_cached ORDER BY read_at_ms, letter, idx";
/// Pieces of a download that never finished (cut off by a crash): no
/// cached row names them, and none ever will. Only while no other process
/// may be downloading: theirs, in progress, look the same.
const UNFINISHED: &str = "DELETE FROM attachment_pieces WHERE NOT EXISTS (
     SELECT 1 FROM attachment_cached c
     WHERE c.letter = attachment_pieces.letter AND c.idx = attachment_pieces.idx)";

/// What a trim of the cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Whole attachments evicted.
    pub evicted: usize,
    /// Plaintext bytes still kept.
    pub kept_bytes: u64,
}

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

    /// Marks an attachment checked whole and kept, `bytes` of plaintext,
    /// read at `now_ms`.
    ///
    /// Only once its pieces are all there: `bytes` of plaintext in whole
    /// pieces numbered from 0. The home is released while a download waits
    /// for the network ([`crate::Client::release_home`]), so another
    /// process may have cleared or written the pieces meanwhile: such a
    /// copy is refused, and downloaded again on the next request.
    pub(crate) fn mark_attachment_cached(
        &self,
        letter: i64,
        idx: usize,
        bytes: u64,
        now_ms: i64,
    ) -> Result<()> {
        let (count, sum, last): (i64, i64, i64) = self.conn.query_row(
            "SELECT count(*), coalesce(sum(length(bytes)), 0), coalesce(max(piece), -1)
             FROM attachment_pieces WHERE letter = ?1 AND idx = ?2",
            params![letter, idx as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let whole = u64::try_from(count).ok() == Some(bytes.div_ceil(PIECE_BYTES as u64))
            && u64::try_from(sum).ok() == Some(bytes)
            && last + 1 == count;
        if !whole {
            return Err(ClientError::Home(format!(
                "the copy of attachment {idx} of letter {letter} changed while it was written: \
                 it is downloaded again when next asked for"
            )));
        }
        self.conn.execute(
            "INSERT OR REPLACE INTO attachment_cached (letter, idx, bytes, read_at_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![letter, idx as i64, bytes as i64, now_ms],
        )?;
        Ok(())
    }

    /// Notes that a front end asks for a cached attachment now: the last
    /// to be evicted.
    pub(crate) fn touch_attachment(&self, letter: i64, idx: usize, now_ms: i64) -> Result<()> {
        self.conn
            .prepare_cached(TOUCH)?
            .execute(params![letter, idx as i64, now_ms])?;
        Ok(())
    }

    /// Forgets the pieces of downloads that never finished (a crash cut
    /// them off). Only as a front end starts: a download releases the home
    /// between its parts, and another process's trim would otherwise clear
    /// the pieces it has written so far.
    pub fn clear_unfinished_attachments(&self) -> Result<()> {
        self.conn.execute(UNFINISHED, [])?;
        Ok(())
    }

    /// Brings the cache within `budget` bytes of plaintext: evicts whole
    /// attachments, least recently read first, never one of the letters
    /// `keep` (those being served, whose attachments a request may need
    /// all at once, even past the budget).
    pub fn trim_attachment_cache(&self, budget: u64, keep: &[i64]) -> Result<Trimmed> {
        self.transaction(|| {
            let total: i64 = self.conn.query_row(CACHED_BYTES, [], |r| r.get(0))?;
            let mut trimmed = Trimmed {
                evicted: 0,
                kept_bytes: total.max(0) as u64,
            };
            if trimmed.kept_bytes <= budget {
                return Ok(trimmed);
            }
            let candidates = self
                .conn
                .prepare(EVICTABLE)?
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for (letter, idx, bytes) in candidates {
                if trimmed.kept_bytes <= budget {
                    break;
                }
                if keep.contains(&letter) {
                    continue;
                }
                self.clear_attachment(letter, idx as usize)?;
                trimmed.evicted += 1;
                trimmed.kept_bytes = trimmed.kept_bytes.saturating_sub(bytes.max(0) as u64);
            }
            Ok(trimmed)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const PIECE: u64 = PIECE_BYTES as u64;

    /// Keeps attachment `idx` of `letter` as `pieces` full pieces, as a
    /// finished download does, read at `at`.
    fn cache(home: &Home, letter: i64, idx: usize, pieces: u64, at: i64) {
        for p in 0..pieces {
            home.put_attachment_piece(letter, idx, p, &[letter as u8; PIECE_BYTES])
                .unwrap();
        }
        home.mark_attachment_cached(letter, idx, pieces * PIECE, at)
            .unwrap();
    }

    fn pieces(home: &Home) -> i64 {
        home.conn
            .query_row("SELECT COUNT(*) FROM attachment_pieces", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_budget_holds_evicting_the_least_recently_read_whole() {
        let home = Home::in_memory().unwrap();
        cache(&home, 1, 1, 2, 10);
        cache(&home, 2, 1, 2, 20);
        cache(&home, 3, 1, 2, 30);
        // Letter 1's is asked for again: letter 2's is now the least recent.
        home.touch_attachment(1, 1, 40).unwrap();
        assert_eq!(
            home.trim_attachment_cache(4 * PIECE, &[]).unwrap(),
            Trimmed {
                evicted: 1,
                kept_bytes: 4 * PIECE
            }
        );
        assert!(!home.attachment_cached(2, 1).unwrap());
        assert!(home.attachment_range(2, 1, 0, 10).unwrap().is_empty());
        assert!(home.attachment_cached(1, 1).unwrap() && home.attachment_cached(3, 1).unwrap());
        assert_eq!(
            pieces(&home),
            4,
            "an evicted attachment's pieces go with it"
        );
        assert_eq!(
            home.trim_attachment_cache(4 * PIECE, &[]).unwrap().evicted,
            0
        );
        assert_eq!(
            home.trim_attachment_cache(PIECE, &[]).unwrap(),
            Trimmed {
                evicted: 2,
                kept_bytes: 0
            },
            "whole attachments, never a part of one"
        );
        assert_eq!(pieces(&home), 0);
    }

    /// A request that covers several attachments of one letter (a FETCH of
    /// the whole mail) caches them one after the other, then reads them:
    /// caching the second never evicts the first, even past the budget.
    /// Caching the next letter's evicts them, once they were read.
    #[test]
    fn a_letter_being_served_is_never_evicted_mid_read() {
        let home = Home::in_memory().unwrap();
        cache(&home, 1, 1, 2, 10);
        assert_eq!(home.trim_attachment_cache(PIECE, &[1]).unwrap().evicted, 0);
        cache(&home, 1, 2, 2, 11);
        assert_eq!(
            home.trim_attachment_cache(PIECE, &[1]).unwrap(),
            Trimmed {
                evicted: 0,
                kept_bytes: 4 * PIECE
            }
        );
        for idx in [1, 2] {
            let read = home.attachment_range(1, idx, 0, 2 * PIECE_BYTES).unwrap();
            assert_eq!(read, vec![1; 2 * PIECE_BYTES], "attachment {idx}");
        }
        cache(&home, 2, 1, 1, 12);
        assert_eq!(
            home.trim_attachment_cache(PIECE, &[2]).unwrap(),
            Trimmed {
                evicted: 2,
                kept_bytes: PIECE
            }
        );
        assert!(home.attachment_cached(2, 1).unwrap());
    }

    /// The pieces of a download a crash cut off (never marked cached, never
    /// read) are forgotten when a front end starts, not by a trim (they
    /// may be another process's download in progress).
    #[test]
    fn pieces_of_an_unfinished_download_are_forgotten() {
        let home = Home::in_memory().unwrap();
        home.put_attachment_piece(5, 1, 0, &[5; PIECE_BYTES])
            .unwrap();
        cache(&home, 6, 1, 1, 1);
        assert_eq!(pieces(&home), 2);
        let kept = home.trim_attachment_cache(u64::MAX, &[]).unwrap();
        assert_eq!(kept.kept_bytes, PIECE);
        assert_eq!(pieces(&home), 2, "a trim leaves them");
        home.clear_unfinished_attachments().unwrap();
        assert_eq!(pieces(&home), 1);
        assert!(home.attachment_cached(6, 1).unwrap());
    }
}
