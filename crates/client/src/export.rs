//! Saving a marked letter (or an attachment of it) out of the home
//! (issue 11). Letters marked EU RESTRICTED or a national equivalent
//! (NATO RESTRICTED, VYHRAZENÉ, DIFFUSION RESTREINTE, VS-NfD) or TLP:RED
//! are written only into a directory of the `approved_export_dirs` setting
//! ([`crate::handling::Settings`]), with `FILE.label.json` beside the file,
//! and every such export is reported: an `export` alert on the device,
//! which goes to the security desk like every alert. Neither the label file
//! nor the report names the file; the report does not carry the marking.
//!
//! `save` calls [`Client::check_export`] before writing anything and
//! [`Client::record_export`] once the file is whole.

use crate::alert::AlertKind;
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::handling::Settings;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use valise_proto::{ConversationId, Label, Marking, MessageId};

/// Whether a letter with this label may only be saved into an approved
/// export directory.
pub fn restricted(label: Option<&Label>) -> bool {
    label.is_some_and(|l| {
        matches!(
            l.marking(),
            Marking::EuRestricted
                | Marking::NatoRestricted
                | Marking::Vyhrazene
                | Marking::DiffusionRestreinte
                | Marking::VsNfd
                | Marking::TlpRed
        )
    })
}

/// Refuses to write `out` for a letter labelled `label` unless the label
/// allows it anywhere or `out` lies inside an approved export directory
/// (both resolved, symbolic links included; `out` itself must not be a
/// link). Returns the path to write: for a restricted label, `out`
/// resolved as it was checked, so that a link on the way swapped during
/// the download does not carry the file elsewhere.
pub fn check(label: Option<&Label>, out: &Path, settings: &Settings) -> Result<PathBuf> {
    let Some(label) = label.filter(|l| restricted(Some(l))) else {
        return Ok(out.to_owned());
    };
    let refuse = |why: &str| {
        Err(ClientError::Handling {
            code: "export_refused",
            detail: format!(
                "a letter marked {label} is saved only into an approved export directory \
                 (approved_export_dirs in the home's settings.json): {why}"
            ),
        })
    };
    if out
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return refuse("the output is a symbolic link");
    }
    // The label file is written beside it: one already there (a link
    // planted in a shared directory, say) would be followed or overwritten.
    if label_path(out).symlink_metadata().is_ok() {
        return refuse("its label file exists already");
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(parent) = parent.canonicalize() else {
        return refuse("the output's directory does not exist");
    };
    let Some(name) = out.file_name() else {
        return refuse("the output names no file");
    };
    let approved = settings
        .approved_export_dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|d| parent.starts_with(d));
    if approved {
        Ok(parent.join(name))
    } else {
        refuse("the output is outside them")
    }
}

/// What `FILE.label.json` holds. No Debug: the label never reaches a log.
#[derive(Clone, Serialize)]
pub struct LabelFile {
    /// The label as users write it (`Label`'s text form).
    pub label: String,
    pub letter: MessageId,
    pub conversation: ConversationId,
    /// When it was exported, milliseconds since the Unix epoch.
    pub exported_at_ms: i64,
}

/// Where the label file of `out` goes: `out` with `.label.json` appended.
pub fn label_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".label.json");
    PathBuf::from(name)
}

/// Writes the label file beside `out` and returns its path. It must be
/// new: an existing file or link there is refused, never followed.
pub fn write_label(out: &Path, file: &LabelFile) -> Result<PathBuf> {
    let path = label_path(out);
    let text = serde_json::to_string_pretty(file)
        .map_err(|e| ClientError::Invalid(format!("label file: {e}")))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| ClientError::Home(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

impl Client {
    /// Refuses to save letter `letter_id` (or its attachment) at `out` where
    /// its marking forbids it; else the path to write (see [`check`]). Call
    /// before writing anything.
    pub fn check_export(&self, letter_id: i64, out: &Path) -> Result<PathBuf> {
        let letter = self.engine.home.letter(letter_id)?;
        check(letter.marking.as_ref(), out, &self.settings)
    }

    /// After letter `letter_id` (or its attachment) was saved at `out`: for
    /// a restricted marking, writes `out.label.json` and reports the export.
    /// Returns the label file's path, if one was written.
    pub fn record_export(&self, letter_id: i64, out: &Path) -> Result<Option<PathBuf>> {
        let letter = self.engine.home.letter(letter_id)?;
        let Some(label) = letter.marking.filter(|l| restricted(Some(l))) else {
            return Ok(None);
        };
        let path = write_label(
            out,
            &LabelFile {
                label: label.to_string(),
                letter: letter.message_id,
                conversation: letter.conversation,
                exported_at_ms: self.engine.now_ms(),
            },
        )?;
        self.engine.raise(
            AlertKind::Export,
            Some(&letter.conversation),
            &format!(
                "letter {} was saved out of the home, into an approved export directory",
                letter.message_id
            ),
            None,
        )?;
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(text: &str) -> Label {
        Label::parse(text).unwrap()
    }

    #[test]
    fn restricted_letters_go_only_into_approved_directories() {
        let root = tempfile::tempdir().unwrap();
        let approved = root.path().join("approved");
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir_all(approved.join("sub")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let settings = Settings {
            approved_export_dirs: vec![approved.clone()],
            ..Settings::default()
        };
        let eur = l("EU RESTRICTED");
        // Inside (and below) an approved directory: allowed.
        assert!(check(Some(&eur), &approved.join("a.pdf"), &settings).is_ok());
        assert!(check(Some(&eur), &approved.join("sub/a.pdf"), &settings).is_ok());
        // Elsewhere, through `..`, or with no setting: refused.
        let e = check(Some(&eur), &elsewhere.join("a.pdf"), &settings).unwrap_err();
        assert_eq!(e.code(), "export_refused");
        let sneaky = approved.join("../elsewhere/a.pdf");
        assert!(check(Some(&eur), &sneaky, &settings).is_err());
        assert!(check(Some(&eur), &approved.join("a.pdf"), &Settings::default()).is_err());
        assert!(check(Some(&l("TLP:RED")), &elsewhere.join("a"), &settings).is_err());
        assert!(check(Some(&l("VS-NfD")), &elsewhere.join("a"), &settings).is_err());
        // A link inside that points outside: refused.
        #[cfg(unix)]
        {
            let link = approved.join("link.pdf");
            std::os::unix::fs::symlink(elsewhere.join("x.pdf"), &link).unwrap();
            assert!(check(Some(&eur), &link, &settings).is_err());
        }
        // Through a link to a directory inside: allowed, and the path to
        // write is the one checked, whatever the link names afterwards.
        #[cfg(unix)]
        {
            let via = root.path().join("via");
            std::os::unix::fs::symlink(approved.join("sub"), &via).unwrap();
            let target = check(Some(&eur), &via.join("a.pdf"), &settings).unwrap();
            std::fs::remove_file(&via).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &via).unwrap();
            assert_eq!(
                target,
                approved.canonicalize().unwrap().join("sub/a.pdf"),
                "the checked path, not the link"
            );
        }
        // A label file (or a link) already beside the output: refused.
        std::fs::write(approved.join("b.pdf.label.json"), "{}").unwrap();
        assert!(check(Some(&eur), &approved.join("b.pdf"), &settings).is_err());
        // Lower markings and unmarked letters go anywhere.
        for ok in [None, Some(l("TLP:AMBER+STRICT")), Some(l("LIMITE"))] {
            assert!(check(ok.as_ref(), &elsewhere.join("a"), &settings).is_ok());
        }
    }

    #[test]
    fn the_label_file_sits_beside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("annex.pdf");
        let path = write_label(
            &out,
            &LabelFile {
                label: l("EU RESTRICTED//REL TO CZE").to_string(),
                letter: MessageId::from_bytes([1; 16]),
                conversation: ConversationId::from_bytes([2; 16]),
                exported_at_ms: 1_700_000_000_000,
            },
        )
        .unwrap();
        assert_eq!(path, dir.path().join("annex.pdf.label.json"));
        // Never over an existing one.
        let again = LabelFile {
            label: "x".into(),
            letter: MessageId::from_bytes([1; 16]),
            conversation: ConversationId::from_bytes([2; 16]),
            exported_at_ms: 0,
        };
        assert!(write_label(&out, &again).is_err());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["label"], "EU RESTRICTED//REL TO CZE");
        assert_eq!(json["letter"], MessageId::from_bytes([1; 16]).to_string());
        assert_eq!(json["exported_at_ms"], 1_700_000_000_000_i64);
    }
}
