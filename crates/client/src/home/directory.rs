//! The key directory as this device knows it: the pinned key and newest
//! root, the roots of earlier epochs, every device a verified lookup showed
//! with its status, each peer's pinned identity, and this user's own devices
//! seen in the history of their entry.

use super::{Home, parse_col};
use crate::error::Result;
use rusqlite::{OptionalExtension, params};
use valise_proto::{DeviceAddress, DeviceId, UserId};

/// A peer's identity as pinned, and what the person did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub identity_key: Vec<u8>,
    pub generation: u32,
    pub state: ContactState,
}

/// Whether a peer's pinned identity is to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    /// Pinned the first time it was seen (trust on first use).
    Trusted,
    /// Safety codes compared out of band.
    Verified,
    /// The identity key changed since: nothing goes to the user until the
    /// person verifies the new one.
    Changed,
}

impl ContactState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trusted => "trusted",
            Self::Verified => "verified",
            Self::Changed => "changed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "verified" => Self::Verified,
            "trusted" => Self::Trusted,
            // Anything unknown is treated as the most careful state.
            _ => Self::Changed,
        }
    }
}

/// The pinned key and the ledger: one row.
pub(super) const DIRECTORY: &str = "SELECT key, ledger FROM directory WHERE id = 1";
pub(super) const ROOT_HASH: &str = "SELECT hash FROM directory_roots WHERE epoch = ?1";
pub(super) const DEVICE_STATUS: &str = "SELECT status FROM directory_devices
    WHERE user = ?1 AND device = ?2 AND signature_key = ?3";
pub(super) const DEVICE_STATUS_ANY_KEY: &str =
    "SELECT status FROM directory_devices WHERE user = ?1 AND device = ?2";
/// On the index of contacts by state (migration 0007).
pub(super) const ANY_CONTACT_CHANGED: &str =
    "SELECT EXISTS (SELECT 1 FROM contacts WHERE state = 'changed')";
pub(super) const PUT_MEMBER_ROOT: &str = "INSERT OR IGNORE INTO member_roots (root) VALUES (?1)";

impl Home {
    /// Pins the directory key and the first ledger at enrolment.
    pub fn pin_directory(&self, key: &[u8], ledger_json: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO directory (id, key, ledger) VALUES (1, ?1, ?2)",
            params![key, ledger_json],
        )?;
        Ok(())
    }

    /// The pinned key and the ledger (JSON), once enrolled.
    pub fn directory(&self) -> Result<Option<(Vec<u8>, String)>> {
        Ok(self
            .conn
            .prepare_cached(DIRECTORY)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    pub fn set_ledger(&self, ledger_json: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE directory SET ledger = ?1 WHERE id = 1")?
            .execute([ledger_json])?;
        Ok(())
    }

    /// Remembers the root hash of each of these epochs (a verified root, or
    /// the hashes an append-only proof spans).
    pub fn put_roots(&self, roots: &[(u64, [u8; 32])]) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO directory_roots (epoch, hash) VALUES (?1, ?2)",
        )?;
        for (epoch, hash) in roots {
            stmt.execute(params![*epoch as i64, hash.as_slice()])?;
        }
        Ok(())
    }

    /// The root hash this device holds for `epoch`, if any.
    pub fn root_hash(&self, epoch: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached(ROOT_HASH)?
            .query_row([epoch as i64], |r| r.get(0))
            .optional()?)
    }

    /// Replaces what this device knows of `user`'s devices with a list
    /// proven at `epoch`: (device, key, status).
    pub fn put_directory_devices(
        &self,
        user: &UserId,
        devices: &[(DeviceId, Vec<u8>, &str)],
        epoch: u64,
    ) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM directory_devices WHERE user = ?1")?
            .execute([user.as_str()])?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO directory_devices (user, device, signature_key, status, epoch)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (device, key, status) in devices {
            stmt.execute(params![
                user.as_str(),
                device.to_string(),
                key,
                status,
                epoch as i64
            ])?;
        }
        Ok(())
    }

    /// The status a verified lookup gave this device with exactly this key
    /// (`approved`, `pending`, `revoked`); `None` if never proven so.
    pub fn device_status(&self, device: &DeviceAddress, key: &[u8]) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(DEVICE_STATUS)?
            .query_row(
                params![device.user.as_str(), device.device.to_string(), key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The status a verified lookup gave this device, whatever its key.
    pub fn device_status_any_key(&self, device: &DeviceAddress) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(DEVICE_STATUS_ANY_KEY)?
            .query_row(
                params![device.user.as_str(), device.device.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The devices of `user` a verified lookup showed, with key and status.
    pub fn directory_devices(&self, user: &UserId) -> Result<Vec<(DeviceId, Vec<u8>, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT device, signature_key, status FROM directory_devices WHERE user = ?1 ORDER BY device",
        )?;
        Ok(stmt
            .query_map([user.as_str()], |r| {
                Ok((parse_col(r, 0, DeviceId::parse)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?)
    }

    pub fn contact(&self, user: &UserId) -> Result<Option<Contact>> {
        Ok(self
            .conn
            .prepare_cached("SELECT identity_key, generation, state FROM contacts WHERE user = ?1")?
            .query_row([user.as_str()], |r| {
                Ok(Contact {
                    identity_key: r.get(0)?,
                    generation: r.get::<_, i64>(1)? as u32,
                    state: ContactState::parse(&r.get::<_, String>(2)?),
                })
            })
            .optional()?)
    }

    /// Whether any correspondent's identity changed unverified (almost
    /// never: the common case skips the per-member checks).
    pub fn any_contact_changed(&self) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(ANY_CONTACT_CHANGED)?
            .query_row([], |r| r.get(0))?)
    }

    pub fn put_contact(&self, user: &UserId, c: &Contact, now_ms: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO contacts (user, identity_key, generation, state, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user) DO UPDATE SET identity_key = excluded.identity_key,
                     generation = excluded.generation, state = excluded.state,
                     updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![
                user.as_str(),
                c.identity_key,
                c.generation as i64,
                c.state.as_str(),
                now_ms
            ])?;
        Ok(())
    }

    /// The last list a verified lookup showed for `user` (encoded).
    pub fn directory_list(&self, user: &UserId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT list FROM directory_lists WHERE user = ?1")?
            .query_row([user.as_str()], |r| r.get(0))
            .optional()?)
    }

    pub fn put_directory_list(&self, user: &UserId, list: &[u8], epoch: u64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO directory_lists (user, list, epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user) DO UPDATE SET list = excluded.list, epoch = excluded.epoch",
            )?
            .execute(params![user.as_str(), list, epoch as i64])?;
        Ok(())
    }

    /// Keeps a root a member sent until it is proven (or refused).
    pub fn put_member_root(&self, root: &[u8]) -> Result<()> {
        self.conn.prepare_cached(PUT_MEMBER_ROOT)?.execute([root])?;
        Ok(())
    }

    pub fn member_roots(&self) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self.conn.prepare_cached("SELECT root FROM member_roots")?;
        Ok(stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    pub fn drop_member_root(&self, root: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM member_roots WHERE root = ?1")?
            .execute([root])?;
        Ok(())
    }

    /// Whether this device already told its user that `device` (with
    /// `key`) was revoked; marks it told.
    pub fn tell_revocation_once(&self, device: &DeviceId, key: &[u8]) -> Result<bool> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE known_devices SET revocation_told = 1
                 WHERE device = ?1 AND signature_key = ?2 AND revocation_told = 0",
            )?
            .execute(params![device.to_string(), key])?;
        Ok(changed == 1)
    }

    /// Records a device (and key) of this user seen in their entry's
    /// history; true if it was not known before.
    pub fn learn_own_device(&self, device: &DeviceId, key: &[u8]) -> Result<bool> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO known_devices (device, signature_key) VALUES (?1, ?2)",
            )?
            .execute(params![device.to_string(), key])?;
        Ok(inserted == 1)
    }
}
