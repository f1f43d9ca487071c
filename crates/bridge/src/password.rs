//! The bridge password: 128 random bits shown once, kept only as an
//! Argon2id hash in the sealed home. Mail clients store it (in their own
//! keychain); it opens this bridge and nothing else, so resetting it costs
//! the user nothing but typing it into the mail client again.

use crate::error::{BridgeError, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::time::Duration;
use zeroize::Zeroizing;

/// How long a wrong password keeps its session waiting: a guesser on this
/// machine gets a few tries a second per connection.
pub const FAILURE_PAUSE: Duration = Duration::from_secs(1);

/// A fresh password: 128 bits as 32 hex digits (no characters that mail
/// clients or shells mangle).
pub fn generate() -> Zeroizing<String> {
    Zeroizing::new(hex::encode(rand::random::<[u8; 16]>()))
}

/// Argon2id at a cost that answers a login in well under a second: the
/// password is random, so the cost guards a stolen hash against nothing a
/// 128-bit search would not already defeat, and a login must stay fast.
fn argon2() -> Result<Argon2<'static>> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|e| BridgeError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The PHC string of `password` under a fresh salt.
pub fn hash(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| BridgeError::Hash(e.to_string()))?;
    Ok(argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| BridgeError::Hash(e.to_string()))?
        .to_string())
}

/// True if `password` matches the stored hash; the digests are compared in
/// constant time (password-hash's `Output` equality).
pub fn verify(phc: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2().is_ok_and(|a| a.verify_password(password, &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_opens_and_any_other_does_not() {
        let password = generate();
        assert_eq!(password.len(), 32);
        let phc = hash(&password).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify(&phc, password.as_bytes()));
        assert!(!verify(&phc, b"0123456789abcdef0123456789abcdef"));
        assert!(!verify(&phc, b""));
        assert!(!verify("not a hash", password.as_bytes()));
        // A fresh salt each time: the same password never hashes alike.
        assert_ne!(hash(&password).unwrap(), phc);
    }
}
