//! The one error for MLS input from outside that Valise does not accept.

/// Why MLS input from outside was refused: what was wrong, in words, with
/// no key material and no content. Its meaning is stable (the server
/// answers every refusal as `invalid_mls`); its wording is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}
