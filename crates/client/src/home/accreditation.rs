//! The accreditation authority key this device pinned (issue 11).

use super::Home;
use crate::error::Result;
use rusqlite::params;

/// The pinned key (hex) and, when the server names another, that one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityPin {
    pub pinned: Option<String>,
    /// The server names `offered` instead (`None`: no key at all); alerted.
    pub changed: bool,
    pub offered: Option<String>,
}

impl Home {
    pub fn authority_pin(&self) -> Result<AuthorityPin> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT pinned, changed, offered FROM accreditation_authority WHERE id = 1",
            )?
            .query_row([], |r| {
                Ok(AuthorityPin {
                    pinned: r.get(0)?,
                    changed: r.get(1)?,
                    offered: r.get(2)?,
                })
            })?)
    }

    pub fn set_authority_pin(&self, pin: &AuthorityPin) -> Result<()> {
        self.conn.execute(
            "UPDATE accreditation_authority SET pinned = ?1, changed = ?2, offered = ?3
             WHERE id = 1",
            params![pin.pinned, pin.changed, pin.offered],
        )?;
        Ok(())
    }
}
