//! Mail folders for the bridge: UIDVALIDITY, UIDs and IMAP flags of the
//! letters each folder shows, kept so that a mail client's cache stays
//! valid across restarts (UIDs are given once, never recomputed), and the
//! bridge's password hash.

use super::Home;
use crate::error::Result;
use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

/// Which letters a folder shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderFilter<'a> {
    /// Letters received.
    Received,
    /// Letters this user sent.
    Sent,
    /// Every letter of one conversation.
    Conversation(&'a str),
    /// Nothing yet (Drafts, Archive, Trash until letters can be moved).
    Empty,
}

/// A folder as IMAP's SELECT and STATUS show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderState {
    pub uid_validity: u32,
    pub uid_next: u32,
}

/// A letter in a folder: its UID, local id and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderEntry {
    pub uid: u32,
    pub letter: i64,
    pub flags: MailFlags,
}

/// The IMAP system flags kept per letter and folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailFlags {
    pub seen: bool,
    pub flagged: bool,
    pub answered: bool,
    pub deleted: bool,
}

/// Letters given a UID per indexing step (bounded memory on a first look
/// at a folder of 100,000 letters).
const INDEX_BATCH: i64 = 5_000;

// Statements run per SELECT, STATUS, NOOP, IDLE wake, FETCH or STORE
// (`HOT_PATH`, `home::tests::hot_statements_never_scan`).
pub(super) const BY_MESSAGE_ID: &str =
    "SELECT id FROM letters WHERE message_id = ?1 ORDER BY id DESC";
pub(super) const INDEX_RECEIVED: &str =
    "SELECT id FROM letters WHERE outgoing = 0 AND id > ?1 ORDER BY id LIMIT ?2";
pub(super) const INDEX_SENT: &str =
    "SELECT id FROM letters WHERE outgoing = 1 AND id > ?1 ORDER BY id LIMIT ?2";
pub(super) const INDEX_CONVERSATION: &str =
    "SELECT id FROM letters WHERE conversation = ?3 AND id > ?1 ORDER BY id LIMIT ?2";
pub(super) const ADD_UID: &str = "INSERT INTO mail_uids (folder, uid, letter) VALUES (?1, ?2, ?3)
     ON CONFLICT DO NOTHING";
pub(super) const ENTRIES_AFTER: &str =
    "SELECT uid, letter, seen, flagged, answered, deleted FROM mail_uids
     WHERE folder = ?1 AND uid > ?2 ORDER BY uid";
pub(super) const SET_FLAGS: &str =
    "UPDATE mail_uids SET seen = ?3, flagged = ?4, answered = ?5, deleted = ?6
     WHERE folder = ?1 AND uid = ?2";
pub(super) const NEWEST_OUTGOING: &str = "SELECT max(id) FROM letters WHERE outgoing = 1";
/// The Drafts folder's key: its entries are drafts (`mail_drafts`), not
/// letters, and a [`FolderEntry`]'s `letter` there is the draft's UID.
pub const DRAFTS: &str = "Drafts";
pub(super) const DRAFTS_AFTER: &str =
    "SELECT uid, uid, seen, flagged, answered, deleted FROM mail_drafts
     WHERE uid > ?2 ORDER BY uid";
pub(super) const SET_DRAFT_FLAGS: &str =
    "UPDATE mail_drafts SET seen = ?3, flagged = ?4, answered = ?5, deleted = ?6
     WHERE uid = ?2";
pub(super) const DRAFT: &str = "SELECT message, appended_at_ms FROM mail_drafts WHERE uid = ?1";
pub(super) const UID_OF: &str = "SELECT uid FROM mail_uids WHERE folder = ?1 AND letter = ?2";

impl Home {
    /// The bridge's password hash (a PHC string) and TLS key (PEM), if
    /// `valise-bridge init` has run.
    pub fn bridge_account(&self) -> Result<Option<(String, Zeroizing<String>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT password_hash, tls_key_pem FROM bridge_account WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, Zeroizing::new(r.get(1)?))),
            )
            .optional()?)
    }

    /// The bridge's password hash alone: what every login reads, without
    /// taking the TLS key out of the sealed home each time.
    pub fn bridge_password_hash(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT password_hash FROM bridge_account WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Sets up the bridge once: its password hash and TLS key.
    pub fn init_bridge_account(&self, phc: &str, tls_key_pem: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO bridge_account (id, password_hash, tls_key_pem) VALUES (1, ?1, ?2)",
            [phc, tls_key_pem],
        )?;
        Ok(())
    }

    /// Replaces the bridge's password hash: the old password stops working.
    pub fn set_bridge_password_hash(&self, phc: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE bridge_account SET password_hash = ?1 WHERE id = 1",
            [phc],
        )? == 1)
    }

    /// The local ids of the letters with this message id (a mail client's
    /// In-Reply-To), newest first: a sender picks its message ids, so
    /// letters of other conversations may carry the same one.
    pub fn letters_by_message_id(&self, message_id: &str) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached(BY_MESSAGE_ID)?;
        let ids = stmt.query_map([message_id], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Remembers that the mail a client gave `client_message_id` became
    /// `letter`.
    pub fn note_submitted(&self, client_message_id: &str, letter: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO mail_submitted (client_message_id, letter) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
            params![client_message_id, letter],
        )?;
        Ok(())
    }

    /// The newest letter this device wrote (by local id), if any.
    pub fn newest_outgoing_letter(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(NEWEST_OUTGOING)?
            .query_row([], |r| r.get(0))?)
    }

    /// The letter a client's mail became, by the client's Message-ID.
    pub fn submitted_letter(&self, client_message_id: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT letter FROM mail_submitted WHERE client_message_id = ?1",
                [client_message_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A letter's UID in a folder, if it has one.
    pub fn folder_uid(&self, key: &str, letter: i64) -> Result<Option<u32>> {
        Ok(self
            .conn
            .prepare_cached(UID_OF)?
            .query_row(params![key, letter], |r| {
                r.get::<_, i64>(0).map(|u| u as u32)
            })
            .optional()?)
    }

    /// Gives UIDs to the letters `filter` shows that arrived since the
    /// folder was last indexed (creating the folder with a fresh
    /// UIDVALIDITY on first use), and returns its state.
    pub fn index_folder(&self, key: &str, filter: FolderFilter<'_>) -> Result<FolderState> {
        self.transaction(|| {
            self.conn.execute(
                "INSERT INTO mail_folders (key, uid_validity) VALUES (?1, ?2)
                 ON CONFLICT (key) DO NOTHING",
                params![key, i64::from(rand::random_range(1..=u32::MAX))],
            )?;
            let (validity, mut next, mut through): (i64, i64, i64) = self.conn.query_row(
                "SELECT uid_validity, uid_next, indexed_through FROM mail_folders WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let sql = match filter {
                FolderFilter::Received => INDEX_RECEIVED,
                FolderFilter::Sent => INDEX_SENT,
                FolderFilter::Conversation(_) => INDEX_CONVERSATION,
                FolderFilter::Empty => "SELECT id FROM letters WHERE 0 AND ?1 AND ?2",
            };
            let mut stmt = self.conn.prepare_cached(sql)?;
            let mut insert = self.conn.prepare_cached(ADD_UID)?;
            loop {
                let ids: Vec<i64> = match filter {
                    FolderFilter::Conversation(conv) => stmt
                        .query_map(params![through, INDEX_BATCH, conv], |r| r.get(0))?
                        .collect::<Result<_, _>>()?,
                    _ => stmt
                        .query_map(params![through, INDEX_BATCH], |r| r.get(0))?
                        .collect::<Result<_, _>>()?,
                };
                for id in &ids {
                    next += insert.execute(params![key, next, id])? as i64;
                }
                match ids.last() {
                    Some(last) => through = *last,
                    None => break,
                }
            }
            self.conn.execute(
                "UPDATE mail_folders SET uid_next = ?2, indexed_through = ?3 WHERE key = ?1",
                params![key, next, through],
            )?;
            Ok(FolderState {
                uid_validity: validity as u32,
                uid_next: next as u32,
            })
        })
    }

    /// The letters of a folder with a UID above `after`, by UID (as
    /// indexed so far): 0 for all of them, the highest a session knows for
    /// those that arrived since.
    pub fn folder_entries(&self, key: &str, after: u32) -> Result<Vec<FolderEntry>> {
        let sql = if key == DRAFTS {
            DRAFTS_AFTER
        } else {
            ENTRIES_AFTER
        };
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![key, i64::from(after)], |r| {
            Ok(FolderEntry {
                uid: r.get::<_, i64>(0)? as u32,
                letter: r.get(1)?,
                flags: MailFlags {
                    seen: r.get(2)?,
                    flagged: r.get(3)?,
                    answered: r.get(4)?,
                    deleted: r.get(5)?,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets the flags of letters in a folder, by UID, in one transaction:
    /// the home syncs every commit to disk, and a client's `STORE 1:*` or
    /// `FETCH 1:* BODY[]` changes a whole folder.
    pub fn set_mail_flags(&self, key: &str, changes: &[(u32, MailFlags)]) -> Result<()> {
        self.transaction(|| {
            let sql = if key == DRAFTS {
                SET_DRAFT_FLAGS
            } else {
                SET_FLAGS
            };
            let mut stmt = self.conn.prepare_cached(sql)?;
            for (uid, f) in changes {
                stmt.execute(params![
                    key,
                    i64::from(*uid),
                    f.seen,
                    f.flagged,
                    f.answered,
                    f.deleted
                ])?;
            }
            Ok(())
        })
    }

    /// Files letters in a folder that holds what it is given (Archive,
    /// Trash): each gets the folder's next UID, or keeps the one it has
    /// there. Returns the folder's UIDVALIDITY and the letters' UIDs.
    pub fn copy_to_folder(&self, key: &str, letters: &[i64]) -> Result<(u32, Vec<u32>)> {
        self.transaction(|| {
            let state = self.index_folder(key, FolderFilter::Empty)?;
            let mut next = i64::from(state.uid_next);
            let mut uids = Vec::with_capacity(letters.len());
            for letter in letters {
                let added = self
                    .conn
                    .prepare_cached(ADD_UID)?
                    .execute(params![key, next, letter])?;
                next += added as i64;
                uids.extend(self.folder_uid(key, *letter)?);
            }
            self.conn.execute(
                "UPDATE mail_folders SET uid_next = ?2 WHERE key = ?1",
                params![key, next],
            )?;
            Ok((state.uid_validity, uids))
        })
    }

    /// Takes letters out of a folder by UID (they stay in the home); from
    /// Drafts, deletes the drafts.
    pub fn remove_from_folder(&self, key: &str, uids: &[u32]) -> Result<()> {
        self.transaction(|| {
            let mut stmt = if key == DRAFTS {
                self.conn
                    .prepare_cached("DELETE FROM mail_drafts WHERE uid = ?2")?
            } else {
                self.conn
                    .prepare_cached("DELETE FROM mail_uids WHERE folder = ?1 AND uid = ?2")?
            };
            for uid in uids {
                stmt.execute(params![key, i64::from(*uid)])?;
            }
            Ok(())
        })
    }

    /// Keeps a draft a mail client filed in Drafts, byte for byte, under
    /// the folder's next UID; returns its UIDVALIDITY and UID. Nothing of
    /// it leaves the home.
    pub fn append_draft(
        &self,
        message: &[u8],
        flags: MailFlags,
        now_ms: i64,
    ) -> Result<(u32, u32)> {
        self.transaction(|| {
            let state = self.index_folder(DRAFTS, FolderFilter::Empty)?;
            self.conn.execute(
                "INSERT INTO mail_drafts (uid, message, appended_at_ms, seen, flagged, answered,
                 deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    i64::from(state.uid_next),
                    message,
                    now_ms,
                    flags.seen,
                    flags.flagged,
                    flags.answered,
                    flags.deleted
                ],
            )?;
            self.conn.execute(
                "UPDATE mail_folders SET uid_next = uid_next + 1 WHERE key = ?1",
                [DRAFTS],
            )?;
            Ok((state.uid_validity, state.uid_next))
        })
    }

    /// A draft as it was filed, and when (ms).
    pub fn draft_message(&self, uid: u32) -> Result<Option<(Vec<u8>, i64)>> {
        Ok(self
            .conn
            .prepare_cached(DRAFT)?
            .query_row([i64::from(uid)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Removes the letters marked deleted from a folder (the letters stay
    /// in the home and in their other folders), or with `within` only
    /// those of these UIDs (UID EXPUNGE, ascending); returns their UIDs, ascending.
    pub fn expunge_folder(&self, key: &str, within: Option<&[u32]>) -> Result<Vec<u32>> {
        self.transaction(|| {
            let uids: Vec<u32> = self
                .folder_entries(key, 0)?
                .into_iter()
                .filter(|e| e.flags.deleted)
                .map(|e| e.uid)
                .filter(|u| within.is_none_or(|w| w.binary_search(u).is_ok()))
                .collect();
            self.remove_from_folder(key, &uids)?;
            Ok(uids)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A conversation's folder is indexed from its last letter on, not by
    /// reading and sorting every letter of the conversation at each look
    /// (SELECT, STATUS, NOOP, IDLE wake): no full scan alone says so.
    #[test]
    fn a_conversation_folder_reads_a_range_of_its_index() {
        let home = Home::in_memory().unwrap();
        let plan: Vec<String> = home
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {INDEX_CONVERSATION}"))
            .unwrap()
            .query_map(rusqlite::params![0, 1, "c"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            plan,
            [
                "SEARCH letters USING COVERING INDEX letters_by_conversation (conversation=? AND id>?)"
            ]
        );
    }
}
