//! The auditor's side: anyone holding the directory key can check, from
//! outside the server, that the directory's epochs only ever append.

use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::transparency::CatchUp;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use valise_directory::{DirectoryKey, RootLedger, SignedRoot, verify_root};
use valise_proto::api::{DirectoryAudit, DirectoryRoot};

/// What an auditor keeps between runs (`valise audit --state FILE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditState {
    /// The directory key, hex.
    pub directory_key: String,
    pub ledger: RootLedger,
}

/// What one audit run checked.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub from_epoch: Option<u64>,
    pub to_epoch: u64,
    pub proofs_checked: u64,
}

/// Verifies the append-only proofs from the last epoch in `state` to the
/// server's newest, and moves `state` there. Any inconsistency is an error.
pub async fn audit_directory(
    server: &str,
    ca_pem: &str,
    state: &mut AuditState,
) -> Result<AuditReport> {
    let api = Api::new(server, ca_pem)?;
    let key: [u8; 32] = hex::decode(state.directory_key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| ClientError::Invalid("the directory key is not 64 hex digits".into()))?;
    let key = DirectoryKey(key);
    let newest: DirectoryRoot = api
        .call::<(), _>(Method::GET, "/v1/directory/root", None, false)
        .await?;
    let newest = verify_root(&SignedRoot::from_bytes(newest.root.as_slice())?, &key)?;
    let from_epoch = state.ledger.last().map(SignedRoot::epoch);
    let mut proofs = 0;
    if from_epoch.is_none() {
        state.ledger.accept(&newest)?;
    }
    let mut steps = CatchUp::new(from_epoch.unwrap_or(newest.epoch()), newest);
    while let Some(path) = steps.next_request() {
        let audit: DirectoryAudit = api.call::<(), _>(Method::GET, &path, None, false).await?;
        steps.advance(&mut state.ledger, &key, &audit).await?;
        proofs += 1;
    }
    let (newest, _) = steps.finish();
    // The newest root itself must be the one the chain arrived at.
    state.ledger.accept(&newest)?;
    Ok(AuditReport {
        from_epoch,
        to_epoch: newest.epoch(),
        proofs_checked: proofs,
    })
}
