//! Split views caught in band: every letter and commit carries its
//! sender's newest verified directory root, and the receiver compares it
//! with the roots it holds. A server that shows two members different
//! directories is seen within one letter.
//!
//! ```text
//! root in a letter ─ signature (pinned key) ─┬─ epoch held here: same hash? else directory_conflict
//!                                            ├─ newer than the ledger: checked with an append-only
//!                                            │    proof by the client (network) ─▶ conflict if none
//!                                            └─ older than anything held: nothing to compare
//! ```

use super::{Engine, MAX_CACHED_ROOTS};
use crate::alert::AlertKind;
use crate::error::{ClientError, Result};
use valise_directory::{DirectoryKey, RootLedger, SignedRoot, VerifiedRoot, verify_root};
use valise_proto::ConversationId;

impl Engine {
    /// The pinned directory key and the ledger of accepted roots.
    pub(crate) fn directory_state(&self) -> Result<(DirectoryKey, RootLedger)> {
        let (key, ledger) = self
            .home
            .directory()?
            .ok_or_else(|| ClientError::Home("no pinned directory key".into()))?;
        let ledger = serde_json::from_str(&ledger)
            .map_err(|e| ClientError::Home(format!("directory ledger: {e}")))?;
        Ok((directory_key(&key)?, ledger))
    }

    /// Keeps the ledger after it accepted `root`, and the root hashes of
    /// `spanned` epochs (an append-only proof's), for later comparisons.
    pub(crate) fn keep_ledger(
        &self,
        ledger: &RootLedger,
        root: &VerifiedRoot,
        spanned: &[(u64, [u8; 32])],
    ) -> Result<()> {
        let json = serde_json::to_string(ledger)
            .map_err(|e| ClientError::Home(format!("directory ledger: {e}")))?;
        self.cache.borrow_mut().stamp = None;
        self.home.set_ledger(&json)?;
        self.home.put_roots(spanned)?;
        self.home.put_roots(&[(root.epoch(), *root.root_hash())])
    }

    /// The root this device stamps into what it sends (`Letter::root`,
    /// a commit's authenticated data).
    pub(crate) fn root_stamp(&self) -> Result<Vec<u8>> {
        if let Some(stamp) = &self.cache.borrow().stamp {
            return Ok(stamp.clone());
        }
        let (_, ledger) = self.directory_state()?;
        let stamp = ledger.last().map(SignedRoot::to_bytes).unwrap_or_default();
        self.cache.borrow_mut().stamp = Some(stamp.clone());
        Ok(stamp)
    }

    /// Compares a root a member sent (`bytes`, empty: none) with the roots
    /// this device holds; a different hash for one epoch raises
    /// `directory_conflict` with both as evidence. A newer root is kept in
    /// the home until the client proves it (that needs the network).
    pub(crate) fn check_root(&self, conv: Option<&ConversationId>, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() || self.cache.borrow().consistent.contains(bytes) {
            return Ok(());
        }
        let (key, ledger) = self.directory_state()?;
        // Not a root of this directory: the member's word about nothing
        // the server did (another directory, or a bad member); not evidence.
        let Some(theirs) = SignedRoot::from_bytes(bytes)
            .ok()
            .and_then(|r| verify_root(&r, &key).ok())
        else {
            tracing::warn!(conversation = ?conv, "a member sent a root this directory did not sign");
            return Ok(());
        };
        match self.home.root_hash(theirs.epoch())? {
            Some(ours) if ours.as_slice() == theirs.root_hash().as_slice() => {
                let mut cache = self.cache.borrow_mut();
                if cache.consistent.len() >= MAX_CACHED_ROOTS {
                    cache.consistent.clear();
                }
                cache.consistent.insert(bytes.to_vec());
                Ok(())
            }
            Some(ours) => {
                let mut evidence = match ledger.last() {
                    Some(last) if last.epoch() == theirs.epoch() => last.to_bytes(),
                    _ => ours,
                };
                evidence.extend_from_slice(bytes);
                let detail = format!(
                    "a member's letter or commit carries the directory root of epoch {}, \
                     signed by the server, and this device holds another root for that epoch: \
                     the server shows members different key directories (split view)",
                    theirs.epoch()
                );
                self.raise(AlertKind::DirectoryConflict, conv, &detail, Some(&evidence))
            }
            None if ledger.last().is_some_and(|l| theirs.epoch() > l.epoch()) => {
                self.home.put_member_root(bytes)
            }
            None => Ok(()),
        }
    }
}

pub(crate) fn directory_key(bytes: &[u8]) -> Result<DirectoryKey> {
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ClientError::Protocol("directory key is not 32 bytes".into()))?;
    Ok(DirectoryKey(key))
}
