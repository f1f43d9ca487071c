//! The remote auditor of a server's audit log (`valise audit-log`, issue
//! 10): anyone, with no account, checks from outside that the server's log
//! only ever grew since the last run.
//!
//! ```text
//! GET /v1/audit/key         pin (origin, key): --key, else the state file, else first use
//! GET /v1/audit/checkpoint  SignedCheckpoint ──verify(pinned key)──▶ VerifiedCheckpoint
//! GET /v1/audit/consistency old checkpoint (state) ──verify_extends──▶ new one
//! GET /v1/audit/leaves      (--entries) the new entries' leaves make the new root
//! POST /v1/audit/reports    on a fork or rollback: both checkpoints, best effort
//! ```
//! The state is the caller's to write back, and only after success, so a
//! failed run leaves the last good checkpoint as the reference.

use crate::api::Api;
use crate::error::{ClientError, Result};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use valise_proto::api::{AuditKeyInfo, AuditLeaves, AuditProof, AuditReport, AuditReportReceipt};
use valise_proto::limits::MAX_AUDIT_LEAVES_PAGE;
use valise_proto::tlog::{
    AuditKey, Frontier, Hash, SignedCheckpoint, TlogError, VerifiedCheckpoint,
};

/// What the auditor keeps between runs (`valise audit-log --state FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLogState {
    /// The log's origin (its key name).
    pub origin: String,
    /// The pinned audit key, hex.
    pub key: String,
    /// The newest checkpoint verified, as the signed note.
    pub checkpoint: String,
    /// How many entries were walked and hashed (`--entries`), and the
    /// tree's frontier over them (hex), to go on from there next time.
    #[serde(default)]
    pub walked: u64,
    #[serde(default)]
    pub frontier: Vec<String>,
}

/// What one run checked.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLogReport {
    pub origin: String,
    /// The size verified before this run (none on the first run).
    pub from_size: Option<u64>,
    pub to_size: u64,
    /// Entries fetched and hashed in this run.
    pub entries_checked: u64,
}

impl From<TlogError> for ClientError {
    fn from(e: TlogError) -> Self {
        ClientError::AuditLog {
            code: e.code(),
            detail: e.to_string(),
        }
    }
}

fn audit_error(code: &'static str, detail: impl Into<String>) -> ClientError {
    ClientError::AuditLog {
        code,
        detail: detail.into(),
    }
}

fn parse_key(origin: &str, hex_key: &str) -> Result<AuditKey> {
    let public: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| ClientError::Invalid("the audit key is not 64 hex digits".into()))?;
    Ok(AuditKey::new(origin, &public)?)
}

fn proof_hashes(p: AuditProof) -> Result<Vec<Hash>> {
    p.proof
        .into_iter()
        .map(|h| {
            h.as_slice()
                .try_into()
                .map_err(|_| ClientError::Protocol("an audit proof hash is not 32 bytes".into()))
        })
        .collect()
}

/// Audits the log at `server` against `state` (none on a first run) and
/// returns the new state with the report. `key` (hex) pins the audit key;
/// without it the state's key, or on a first run the server's, is used.
/// With `walk`, every entry since the last walk is fetched and must hash
/// to the new checkpoint's root.
pub async fn audit_log(
    server: &str,
    ca_pem: &str,
    state: Option<&AuditLogState>,
    key: Option<&str>,
    walk: bool,
) -> Result<(AuditLogState, AuditLogReport)> {
    let api = Api::new(server, ca_pem)?;
    let served: AuditKeyInfo = api
        .call::<(), _>(Method::GET, "/v1/audit/key", None, false)
        .await?;
    let pinned = match (state, key) {
        (Some(s), Some(k)) if !s.key.eq_ignore_ascii_case(k.trim()) => {
            return Err(audit_error(
                "audit_key_changed",
                format!(
                    "--key {k} is not the key {} pinned in the state file",
                    s.key
                ),
            ));
        }
        (Some(s), _) => parse_key(&s.origin, &s.key)?,
        (None, Some(k)) => parse_key(&served.origin, k)?,
        (None, None) => parse_key(&served.origin, &served.key)?,
    };
    if served.origin != pinned.name() || !served.key.eq_ignore_ascii_case(&pinned.hex()) {
        return Err(audit_error(
            "audit_key_changed",
            format!(
                "the server now names audit key {} {}; pinned is {} {}",
                served.origin,
                served.key,
                pinned.name(),
                pinned.hex()
            ),
        ));
    }
    let note = api
        .request(Method::GET, "/v1/audit/checkpoint", None, false)
        .await?;
    let note = String::from_utf8(note)
        .map_err(|_| ClientError::Protocol("the audit checkpoint is not UTF-8".into()))?;
    let newest = SignedCheckpoint::parse(&note)?.verify(&pinned)?;
    let old = match state {
        Some(s) => Some(SignedCheckpoint::parse(&s.checkpoint)?.verify(&pinned)?),
        None => None,
    };
    if let Some(old) = &old
        && let Err(e) = extends(&api, old, &newest).await
    {
        if let ClientError::AuditLog { code, .. } = &e {
            report(&api, old, &newest, code).await;
        }
        return Err(e);
    }
    let (mut walked, mut frontier) = match state {
        Some(s) => (s.walked, s.frontier.clone()),
        None => (0, Vec::new()),
    };
    let mut entries_checked = 0;
    if walk {
        let tree = walk_entries(&api, &newest, walked, &frontier).await?;
        entries_checked = tree.size() - walked;
        walked = tree.size();
        frontier = tree.hashes().iter().map(hex::encode).collect();
    }
    let report = AuditLogReport {
        origin: pinned.name().to_owned(),
        from_size: old.as_ref().map(VerifiedCheckpoint::size),
        to_size: newest.size(),
        entries_checked,
    };
    let state = AuditLogState {
        origin: pinned.name().to_owned(),
        key: pinned.hex(),
        checkpoint: newest.note().to_owned(),
        walked,
        frontier,
    };
    Ok((state, report))
}

/// Checks that `newest` extends `old`: not smaller, and consistent by the
/// server's proof.
async fn extends(api: &Api, old: &VerifiedCheckpoint, newest: &VerifiedCheckpoint) -> Result<()> {
    if newest.size() < old.size() {
        return Err(TlogError::Shrunk {
            old: old.size(),
            new: newest.size(),
        }
        .into());
    }
    let proof: AuditProof = api
        .call::<(), _>(
            Method::GET,
            &format!(
                "/v1/audit/consistency?old={}&new={}",
                old.size(),
                newest.size()
            ),
            None,
            false,
        )
        .await?;
    newest.verify_extends(old.checkpoint(), &proof_hashes(proof)?)?;
    Ok(())
}

/// Tells the server (`POST /v1/audit/reports`) that two checkpoints it
/// signed do not make one log, so that its operators get a critical alert
/// even if nobody reads this auditor's output. Best effort: the audit
/// fails whether or not the report gets through, and a server that lies
/// may drop it (the auditor's own exit status is what counts).
async fn report(api: &Api, old: &VerifiedCheckpoint, newest: &VerifiedCheckpoint, code: &str) {
    let body = AuditReport {
        checkpoints: vec![old.note().to_owned(), newest.note().to_owned()],
        code: code.to_owned(),
    };
    let sent = api
        .call::<_, AuditReportReceipt>(Method::POST, "/v1/audit/reports", Some(&body), false)
        .await;
    match sent {
        Ok(r) => tracing::info!(
            verified = r.verified,
            "audit failure reported to the server"
        ),
        Err(e) => tracing::warn!(error = %e, "audit failure not reported to the server"),
    }
}

/// Fetches the entries from `from` to the checkpoint's size onto the
/// frontier walked before, and checks they make the checkpoint's root.
async fn walk_entries(
    api: &Api,
    checkpoint: &VerifiedCheckpoint,
    from: u64,
    frontier: &[String],
) -> Result<Frontier> {
    let hashes = frontier
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| {
                    ClientError::Invalid("the state's frontier is not hex hashes".into())
                })
        })
        .collect::<Result<Vec<Hash>>>()?;
    let mut tree = Frontier::from_parts(from, hashes)?;
    while tree.size() < checkpoint.size() {
        let count = (checkpoint.size() - tree.size()).min(MAX_AUDIT_LEAVES_PAGE as u64);
        let page: AuditLeaves = api
            .call::<(), _>(
                Method::GET,
                &format!("/v1/audit/leaves?start={}&count={count}", tree.size()),
                None,
                false,
            )
            .await?;
        if page.start != tree.size() || page.leaves.is_empty() {
            return Err(audit_error(
                "audit_entries_missing",
                format!(
                    "the server serves no entry {} although its checkpoint signs {}: deleted or truncated",
                    tree.size(),
                    checkpoint.size()
                ),
            ));
        }
        for leaf in page.leaves.iter().take(count as usize) {
            let at = tree.size();
            let leaf = Hash::try_from(leaf.as_slice()).map_err(|_| {
                audit_error(
                    "audit_leaf_malformed",
                    format!("leaf {at} is not a 32-byte hash"),
                )
            })?;
            tree.push_leaf(leaf);
        }
    }
    if &tree.root() != checkpoint.root() {
        return Err(audit_error(
            "audit_root_mismatch",
            format!(
                "the entries up to {} do not hash to the signed root: an entry was edited, deleted or reordered",
                checkpoint.size()
            ),
        ));
    }
    Ok(tree)
}
