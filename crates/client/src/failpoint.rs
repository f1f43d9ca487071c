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
