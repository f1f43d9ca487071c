//! Key transparency on the device: every peer key it uses is proven by the
//! server's key directory, and every change to its own user's entry is seen.
//!
//! ```text
//! signed root ──verify(pinned key)──▶ ledger: same epoch+hash │ newer + append-only proof
//!                                       rollback / split view ─▶ REFUSE + ALERT (evidence)
//! lookup proof ──verify(root)──▶ proven_keys(user, device, key)
//!     used before adding anyone (claim) and before showing anything (sync)
//! history proof (own user, every sync) ──▶ a device or key not seen before ─▶ ALERT
//! ```

use crate::alert::AlertKind;
use crate::client::Client;
use crate::error::{ClientError, Result};
use reqwest::Method;
use rusqlite::{OptionalExtension, params};
use std::collections::BTreeSet;
use valise_directory::{
    DeviceList, DirectoryError, DirectoryKey, RootLedger, SignedRoot, VerifiedRoot, verify_history,
    verify_lookup, verify_root,
};
use valise_proto::api::{DirectoryAudit, DirectoryProof};
use valise_proto::{DeviceAddress, UserId};

impl From<DirectoryError> for ClientError {
    fn from(e: DirectoryError) -> Self {
        ClientError::Directory(format!("{} ({})", e, e.code()))
    }
}

impl Client {
    /// Pins the directory key and first root at enrolment.
    pub(crate) fn pin_directory(&self, key: &[u8], root: &[u8]) -> Result<()> {
        let key = directory_key(key)?;
        let verified = verify_root(&SignedRoot::from_bytes(root)?, &key)?;
        let mut ledger = RootLedger::new();
        ledger.accept(&verified)?;
        self.home.conn.execute(
            "INSERT INTO directory (id, key, ledger) VALUES (1, ?1, ?2)",
            params![&key.0[..], ledger_json(&ledger)?],
        )?;
        Ok(())
    }

    fn directory_state(&self) -> Result<(DirectoryKey, RootLedger)> {
        let (key, ledger): (Vec<u8>, String) = self
            .home
            .conn
            .query_row("SELECT key, ledger FROM directory WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?
            .ok_or_else(|| ClientError::Home("no pinned directory key".into()))?;
        let ledger = serde_json::from_str(&ledger)
            .map_err(|e| ClientError::Home(format!("directory ledger: {e}")))?;
        Ok((directory_key(&key)?, ledger))
    }

    /// Verifies a root and moves the ledger to it (with an append-only proof
    /// from the last accepted root). A rollback, split view or bad signature
    /// is refused and raises an alert carrying the signed roots.
    pub(crate) async fn accept_root(&mut self, root: &[u8]) -> Result<VerifiedRoot> {
        let (key, mut ledger) = self.directory_state()?;
        let signed = SignedRoot::from_bytes(root)?;
        let outcome = match verify_root(&signed, &key) {
            Err(e) => Err(e),
            Ok(verified) => match ledger.check(&verified) {
                Ok(valise_directory::Step::Forward { from_epoch }) => {
                    let path = format!(
                        "/v1/directory/audit?from={from_epoch}&to={}",
                        verified.epoch()
                    );
                    let audit: DirectoryAudit =
                        self.call::<(), _>(Method::GET, &path, None).await?;
                    ledger
                        .advance(&verified, Some(audit.proof.as_slice()))
                        .await
                        .map(|_| verified)
                }
                Ok(_) => ledger.accept(&verified).map(|_| verified),
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(verified) => {
                self.home.conn.execute(
                    "UPDATE directory SET ledger = ?1 WHERE id = 1",
                    [ledger_json(&ledger)?],
                )?;
                Ok(verified)
            }
            Err(e) => {
                let mut evidence = ledger.last().map(SignedRoot::to_bytes).unwrap_or_default();
                evidence.extend_from_slice(root);
                self.raise(
                    AlertKind::DirectoryConflict,
                    None,
                    &format!("the server showed a directory root this device refuses: {e}"),
                    Some(&evidence),
                )?;
                Err(e.into())
            }
        }
    }

    /// Looks `user` up in the directory, verifies the proof against an
    /// accepted root, and records the proven active device keys.
    pub(crate) async fn prove_user(&mut self, user: &UserId) -> Result<DeviceList> {
        let path = format!("/v1/directory/lookup/{user}");
        let found: DirectoryProof = self.call::<(), _>(Method::GET, &path, None).await?;
        let root = self.accept_root(found.root.as_slice()).await?;
        let proven = verify_lookup(&root, user, found.proof.as_slice())?;
        let mut stmt = self.home.conn.prepare_cached(
            "INSERT INTO proven_keys (user, device, signature_key, epoch) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET epoch = excluded.epoch",
        )?;
        for d in proven.devices.devices() {
            if let Some(key) = proven.devices.active_key(&d.device) {
                stmt.execute(params![
                    user.as_str(),
                    d.device.to_string(),
                    key,
                    proven.epoch as i64
                ])?;
            }
        }
        Ok(proven.devices)
    }

    /// True if a verified lookup proved this device key.
    pub(crate) fn is_proven(&self, device: &DeviceAddress, key: &[u8]) -> Result<bool> {
        Ok(self
            .home
            .conn
            .prepare_cached(
                "SELECT 1 FROM proven_keys WHERE user = ?1 AND device = ?2 AND signature_key = ?3",
            )?
            .query_row(
                params![device.user.as_str(), device.device.to_string(), key],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Checks the whole history of this user's directory entry: a device or
    /// key this device has not seen before raises an alert on it — also one
    /// that was added and removed again between two checks. With `quiet`
    /// (at enrolment) it only learns what exists.
    pub(crate) async fn check_own_history(&mut self, quiet: bool) -> Result<usize> {
        let me = self.me.user.clone();
        let path = format!("/v1/directory/history/{me}");
        let found: DirectoryProof = self.call::<(), _>(Method::GET, &path, None).await?;
        let root = self.accept_root(found.root.as_slice()).await?;
        let versions = verify_history(&root, &me, found.proof.as_slice())?;
        let mut seen = BTreeSet::new();
        for v in &versions {
            for d in v.devices.devices() {
                seen.insert((d.device, d.signature_key.as_bytes().to_vec(), v.epoch));
            }
        }
        let mut new = 0;
        for (device, key, epoch) in seen {
            let inserted = self.home.conn.execute(
                "INSERT OR IGNORE INTO known_devices (device, signature_key) VALUES (?1, ?2)",
                params![device.to_string(), key],
            )?;
            if inserted == 1 && !quiet && device != self.me.device {
                new += 1;
                self.raise(
                    AlertKind::NewDevice,
                    None,
                    &format!(
                        "a device {device} was published for your account {me} at directory \
                         epoch {epoch}: if you did not enrol it, report it now"
                    ),
                    Some(&key),
                )?;
            }
        }
        Ok(new)
    }
}

/// Digits of a safety code: 12 groups of 5.
const CODE_GROUPS: usize = 12;

impl Client {
    /// The safety code for this user and `peer`: derived from both users'
    /// proven directory entries, the same on both sides, so two people who
    /// read it to each other over a trusted channel know no key was swapped.
    pub async fn safety_code(&mut self, peer: &UserId) -> Result<String> {
        use sha2::{Digest, Sha512};
        let me = self.me.user.clone();
        let mut entries = [
            (me.clone(), self.prove_user(&me).await?.encode()?),
            (peer.clone(), self.prove_user(peer).await?.encode()?),
        ];
        entries.sort();
        let mut h = Sha512::new();
        h.update(b"valise-safety-code-v1");
        for (user, list) in &entries {
            h.update((user.as_str().len() as u64).to_be_bytes());
            h.update(user.as_str());
            h.update((list.len() as u64).to_be_bytes());
            h.update(list);
        }
        let digest = h.finalize();
        Ok(digest
            .chunks(5)
            .take(CODE_GROUPS)
            .map(|c| {
                let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", n % 100_000)
            })
            .collect::<Vec<_>>()
            .join(" "))
    }

    /// Records that the user compared `code` with `peer` out of band; false
    /// (and nothing recorded) if it is not the current safety code.
    pub async fn confirm_safety_code(&mut self, peer: &UserId, code: &str) -> Result<bool> {
        let expected = self.safety_code(peer).await?;
        let normalise = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        if normalise(code) != normalise(&expected) {
            return Ok(false);
        }
        self.home.conn.execute(
            "INSERT INTO verified_contacts (user, code, verified_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (user) DO UPDATE SET code = excluded.code, verified_at_ms = excluded.verified_at_ms",
            params![peer.as_str(), expected, crate::client::now_ms()],
        )?;
        Ok(true)
    }
}

fn directory_key(bytes: &[u8]) -> Result<DirectoryKey> {
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ClientError::Protocol("directory key is not 32 bytes".into()))?;
    Ok(DirectoryKey(key))
}

fn ledger_json(ledger: &RootLedger) -> Result<String> {
    serde_json::to_string(ledger).map_err(|e| ClientError::Home(format!("directory ledger: {e}")))
}
