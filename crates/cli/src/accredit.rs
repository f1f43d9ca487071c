//! The security officer's offline commands (issue 11), which need no home:
//! `authority-key` makes the authority's signing key, `accredit` signs an
//! attestation with it. Neither talks to any server: the key never leaves
//! the officer's machine; the attestation is carried to the administrator
//! (`valised admin publish-attestation`).

use anyhow::{Context, Result, bail};
use std::io::Write as _;
use std::path::Path;
use valise_proto::attestation::{Accreditation, AuthoritySecret};
use valise_proto::{DeviceId, Label, UserId};

/// Writes a new authority key to `out` (mode 0600, never over a file).
pub fn new_key(out: &Path) -> Result<AuthoritySecret> {
    let key = AuthoritySecret::generate();
    let mut file = create_new(out, true)?;
    file.write_all(key.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(key)
}

/// Signs an attestation that `user` (on `device` only, if given) is
/// cleared for `label` until the end of day `until` (UTC), and writes it.
pub fn accredit(
    key_file: &Path,
    user: &UserId,
    label: &Label,
    until: &str,
    device: Option<DeviceId>,
    out: &Path,
) -> Result<Accreditation> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(key_file)
            .with_context(|| format!("cannot read {}", key_file.display()))?,
    );
    let key = AuthoritySecret::from_file_text(&text)
        .with_context(|| format!("{} is not an authority key file", key_file.display()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Accreditation {
        device,
        issued_at_s: now,
        label: label.clone(),
        not_after_s: end_of_day(until)?,
        user: user.clone(),
    };
    if claims.not_after_s < now {
        bail!("--until {until} is in the past");
    }
    let bytes = claims.sign(&key)?;
    let mut file = create_new(out, false)?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(claims)
}

/// The last second (UTC) of a `YYYY-MM-DD` day.
fn end_of_day(date: &str) -> Result<i64> {
    let bad = || anyhow::anyhow!("--until {date} is not a date YYYY-MM-DD");
    let mut parts = date.trim().splitn(3, '-').map(str::parse::<i32>);
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d))) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let month = u8::try_from(m)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = u8::try_from(d).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, day).map_err(|_| bad())?;
    Ok(date.with_hms(23, 59, 59)?.assume_utc().unix_timestamp())
}

fn create_new(path: &Path, secret: bool) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))
}
