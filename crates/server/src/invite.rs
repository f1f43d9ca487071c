//! Enrolment codes: short enough to read over the phone, long enough
//! (100 bits) not to be guessed; only their hash is stored.

use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Base32 without the look-alikes I, O, 0 and 1.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const GROUPS: usize = 4;
const GROUP_LEN: usize = 5;

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(String);

/// Fills `buf` from the operating system's random source.
pub fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| RandomError(e.to_string()))
}

/// A fresh code, `ABCDE-FGHJK-LMNPQ-RSTUV` (20 × 5 bits).
pub fn generate() -> Result<String, RandomError> {
    let mut raw = [0u8; GROUPS * GROUP_LEN];
    fill_random(&mut raw)?;
    let mut out = String::with_capacity(GROUPS * (GROUP_LEN + 1));
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % GROUP_LEN == 0 {
            out.push('-');
        }
        // 256 is a multiple of 32: the low five bits are uniform.
        out.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(out)
}

/// What is hashed: uppercase, without dashes or spaces, so that a user may
/// type the code loosely.
pub fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// SHA-256 of the normalised code.
pub fn hash(code: &str) -> [u8; 32] {
    Sha256::digest(normalise(code).as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_look_right_and_normalise() {
        let c = generate().unwrap();
        assert_eq!(c.len(), 23);
        assert_eq!(c.matches('-').count(), 3);
        assert!(normalise(&c).bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(hash(&c), hash(&c.to_lowercase().replace('-', " ")));
        assert_ne!(generate().unwrap(), c);
    }
}
