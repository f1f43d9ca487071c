//! Crash points for tests: built with the `failpoints` feature (never in
//! release builds), `VALISE_FAILPOINT=<name>` ends the process abruptly at
//! the named point, as a crash would: no destructor runs, nothing is flushed
//! that was not already committed.

#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) {
    if std::env::var("VALISE_FAILPOINT").is_ok_and(|v| v == name) {
        std::process::exit(137);
    }
}

#[cfg(not(feature = "failpoints"))]
pub(crate) fn failpoint(_name: &str) {}

/// A modified client, for attack tests: built with the `failpoints`
/// feature, `VALISE_FAILPOINT=<name>` turns off the named check, as a
/// client changed by its user would (`skip_marking_check`: marked letters
/// are sealed without the accreditation and ceiling checks, and people
/// are added to a conversation whatever its ceiling).
#[cfg(feature = "failpoints")]
pub(crate) fn modified(name: &str) -> bool {
    std::env::var("VALISE_FAILPOINT").is_ok_and(|v| v == name)
}

#[cfg(not(feature = "failpoints"))]
pub(crate) fn modified(_name: &str) -> bool {
    false
}
