//! Publishing accreditation attestations (issue 11). The server only
//! carries them: the security officer signs each offline with the
//! authority key, clients verify each under the key they pinned. The
//! administrator's command still refuses what no client would accept (a
//! signature under another key than the one set, an expired or unknown
//! user's attestation), so that a mistake is seen at once, not by users.

use crate::store::{Store, StoreError};
use valise_directory::entry::MAX_ATTESTATIONS;
use valise_proto::attestation::{
    Accreditation, AttestationError, AuthorityKey, UnverifiedAttestation,
};

/// Why an attestation is not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no accreditation authority is set (valised admin set accreditation-authority KEY)")]
    NoAuthority,
    #[error(transparent)]
    Attestation(#[from] AttestationError),
    #[error("the attestation expired")]
    Expired,
    #[error("no user {0} on this server")]
    UnknownUser(valise_proto::UserId),
    #[error("{0} has {MAX_ATTESTATIONS} attestations in force, the most an entry carries")]
    TooMany(valise_proto::UserId),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

/// The authority key set on this server, if any.
pub fn authority(store: &dyn Store) -> Result<Option<AuthorityKey>, PublishError> {
    store
        .accreditation_authority()?
        .map(|k| AuthorityKey::parse(&k).map_err(PublishError::from))
        .transpose()
}

/// Checks `bytes` under the authority key and adds them to their user's
/// directory entry (published within the publisher's next epoch), where
/// they replace the user's expired ones: renewals over the years never
/// fill the entry past what the directory publishes. The claims, and
/// whether the attestation is new.
pub fn publish(
    store: &dyn Store,
    bytes: &[u8],
    now_ms: i64,
) -> Result<(Accreditation, bool), PublishError> {
    let key = authority(store)?.ok_or(PublishError::NoAuthority)?;
    let claims = UnverifiedAttestation::decode(bytes)?.verify(&key)?;
    let now_s = now_ms / 1000;
    if claims.not_after_s < now_s {
        return Err(PublishError::Expired);
    }
    // Clients refuse an expired attestation whoever signed it: dropping
    // one, verified or not, changes nobody's accreditation.
    let expired =
        |a: &[u8]| UnverifiedAttestation::decode(a).is_ok_and(|a| a.claimed().not_after_s < now_s);
    let added = store
        .add_attestation(&claims.user, bytes, &expired, MAX_ATTESTATIONS, now_ms)
        .map_err(|e| match e {
            StoreError::NotFound => PublishError::UnknownUser(claims.user.clone()),
            StoreError::QuotaExceeded => PublishError::TooMany(claims.user.clone()),
            e => e.into(),
        })?;
    Ok((claims, added))
}
