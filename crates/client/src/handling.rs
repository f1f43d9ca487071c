//! Where a marked letter may go once written (issue 11): forwarding into
//! another conversation, the marking a reply carries, and the client
//! settings (these rules read most of them). The conversation's ceiling
//! ([`crate::engine::ceiling`]) and the readers' accreditations apply on
//! top, as for any letter.
//!
//! Forwarding rules, decided here and documented in README ("Markings"):
//! - TLP:RED is never forwarded (its audience is the people it was given to).
//! - TLP:AMBER+STRICT only into a conversation whose members are all of the
//!   forwarder's own organisation (its domain).
//! - EU markings (LIMITE, SENSITIVE, RESTREINT UE/EU RESTRICTED) only into a
//!   conversation whose members' domains are all EU institutions or member
//!   states' organisations: the forwarder's own domain and the domains of
//!   the `eu_domains` setting. No setting: the own domain only.

use crate::error::{ClientError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use valise_proto::{Label, Marking, UserId};

/// The file in a home that holds its settings (JSON; absent: defaults).
pub const SETTINGS_FILE: &str = "settings.json";

/// What a device's owner (or their security officer) configures: where
/// marked letters may go, and how much the home keeps of attachments.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Domains of EU institutions and member states' organisations that
    /// EU-marked letters may be forwarded to, besides one's own.
    #[serde(default)]
    pub eu_domains: Vec<String>,
    /// Directories that letters marked EU RESTRICTED (or a national
    /// equivalent) or TLP:RED may be saved into ([`crate::export`]).
    #[serde(default)]
    pub approved_export_dirs: Vec<PathBuf>,
    /// MiB of checked attachment plaintext the home keeps for front ends
    /// that serve attachments in ranges (the mail bridge); past it the
    /// least recently read are evicted. Default [`DEFAULT_ATTACHMENT_CACHE_MIB`].
    #[serde(default)]
    pub attachment_cache_mib: Option<u64>,
}

/// The attachment cache's budget when the settings name none, in MiB.
pub const DEFAULT_ATTACHMENT_CACHE_MIB: u64 = 512;

impl Settings {
    /// The attachment cache's budget, in bytes.
    pub fn attachment_cache_bytes(&self) -> u64 {
        self.attachment_cache_mib
            .unwrap_or(DEFAULT_ATTACHMENT_CACHE_MIB)
            .saturating_mul(1 << 20)
    }

    /// The settings of the home at `home` (defaults if it has none).
    pub fn load(home: &Path) -> Result<Self> {
        let path = home.join(SETTINGS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| ClientError::Home(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ClientError::Home(format!("{}: {e}", path.display()))),
        }
    }
}

/// Refuses to forward a letter labelled `label` to `members` (every member
/// of the target conversation, the forwarder included) when a rule above
/// forbids it.
pub fn check_forward(
    label: Option<&Label>,
    own_domain: &str,
    members: &[UserId],
    settings: &Settings,
) -> Result<()> {
    let Some(label) = label else { return Ok(()) };
    let refuse = |detail: String| {
        Err(ClientError::Handling {
            code: "forward_refused",
            detail,
        })
    };
    let outside = |allowed: &dyn Fn(&str) -> bool| -> Vec<String> {
        members
            .iter()
            .filter(|u| !allowed(u.domain()))
            .map(ToString::to_string)
            .collect()
    };
    let marking = label.marking();
    if marking == Marking::TlpRed {
        return refuse("a TLP:RED letter is never forwarded".into());
    }
    if marking == Marking::TlpAmberStrict {
        let out = outside(&|d| d.eq_ignore_ascii_case(own_domain));
        if !out.is_empty() {
            return refuse(format!(
                "a TLP:AMBER+STRICT letter stays within {own_domain}: not forwarded to {}",
                out.join(", ")
            ));
        }
    }
    if marking.entry().policy == "EU" {
        let out = outside(&|d| {
            d.eq_ignore_ascii_case(own_domain)
                || settings
                    .eu_domains
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(d))
        });
        if !out.is_empty() {
            return refuse(format!(
                "an EU-marked letter goes only to EU institutions and member states' \
                 organisations (eu_domains in {SETTINGS_FILE}): not forwarded to {}",
                out.join(", ")
            ));
        }
    }
    Ok(())
}

/// The marking of a reply in a thread whose letters carry `thread`: the
/// one `given` (which must dominate every marking of the thread), or the
/// thread's highest. Markings no single one dominates (say NATO RESTRICTED
/// and VS-NfD) need one given.
pub fn inherited(thread: &[Option<Label>], given: Option<Label>) -> Result<Option<Label>> {
    let marked: Vec<&Label> = thread.iter().flatten().collect();
    if let Some(given) = given {
        return match marked.iter().find(|m| !given.dominates(m)) {
            None => Ok(Some(given)),
            Some(m) => Err(ClientError::Handling {
                code: "marking_lowered",
                detail: format!(
                    "a reply may raise its thread's marking, never lower it: {given} does not \
                     cover {m}"
                ),
            }),
        };
    }
    match marked
        .iter()
        .find(|top| marked.iter().all(|m| top.dominates(m)))
    {
        Some(top) => Ok(Some((*top).clone())),
        None if marked.is_empty() => Ok(None),
        None => Err(ClientError::Handling {
            code: "marking_needed",
            detail: "this thread's markings have no highest one: give the reply's with --marking"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(text: &str) -> Label {
        Label::parse(text).unwrap()
    }

    fn users(list: &[&str]) -> Vec<UserId> {
        list.iter().map(|u| UserId::parse(u).unwrap()).collect()
    }

    #[test]
    fn forwarding_rules() {
        let eu = Settings {
            eu_domains: vec!["mzv.cz".into()],
            ..Settings::default()
        };
        let home = users(&["a@mfa.example", "b@mfa.example"]);
        let cz = users(&["a@mfa.example", "c@mzv.cz"]);
        let us = users(&["a@mfa.example", "d@state.example"]);
        let none = Settings::default();
        // Unmarked and TLP:AMBER go anywhere.
        assert!(check_forward(None, "mfa.example", &us, &none).is_ok());
        assert!(check_forward(Some(&l("TLP:AMBER")), "mfa.example", &us, &none).is_ok());
        // TLP:RED never, not even at home.
        let red = check_forward(Some(&l("TLP:RED")), "mfa.example", &home, &none).unwrap_err();
        assert_eq!(red.code(), "forward_refused");
        // AMBER+STRICT within the domain only.
        let strict = l("TLP:AMBER+STRICT");
        assert!(check_forward(Some(&strict), "mfa.example", &home, &eu).is_ok());
        let e = check_forward(Some(&strict), "mfa.example", &cz, &eu).unwrap_err();
        assert!(e.to_string().contains("c@mzv.cz"), "{e}");
        // LIMITE to the EU domains configured, not elsewhere.
        let limite = l("LIMITE");
        assert!(check_forward(Some(&limite), "mfa.example", &cz, &eu).is_ok());
        assert!(check_forward(Some(&limite), "mfa.example", &cz, &none).is_err());
        assert!(check_forward(Some(&limite), "mfa.example", &us, &eu).is_err());
        assert!(check_forward(Some(&l("EU RESTRICTED")), "mfa.example", &us, &eu).is_err());
    }

    #[test]
    fn replies_inherit_the_highest_marking_and_never_lower_it() {
        let thread = vec![None, Some(l("TLP:GREEN")), Some(l("TLP:AMBER"))];
        assert_eq!(inherited(&thread, None).unwrap(), Some(l("TLP:AMBER")));
        assert_eq!(inherited(&[None], None).unwrap(), None);
        // Raising is allowed, lowering is not.
        assert_eq!(
            inherited(&thread, Some(l("TLP:RED"))).unwrap(),
            Some(l("TLP:RED"))
        );
        let e = inherited(&thread, Some(l("TLP:GREEN"))).unwrap_err();
        assert_eq!(e.code(), "marking_lowered");
        // No highest marking: one must be given.
        let apart = vec![Some(l("NATO RESTRICTED")), Some(l("VS-NfD"))];
        assert_eq!(
            inherited(&apart, None).unwrap_err().code(),
            "marking_needed"
        );
    }

    #[test]
    fn settings_refuse_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Settings::load(dir.path()).unwrap().eu_domains.is_empty());
        std::fs::write(dir.path().join(SETTINGS_FILE), r#"{"eu_domain": ["x"]}"#).unwrap();
        assert!(Settings::load(dir.path()).is_err());
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            r#"{"eu_domains": ["mzv.cz"], "approved_export_dirs": ["/srv/x"]}"#,
        )
        .unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s.eu_domains, ["mzv.cz"]);
        assert_eq!(s.approved_export_dirs, [PathBuf::from("/srv/x")]);
    }
}
