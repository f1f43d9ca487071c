//! The bridge's memory under glibc's malloc (docs/BENCHMARKS.md, "The
//! bridge's memory: glibc's thresholds").
//!
//! glibc raises its mmap threshold to the size of any block it gave back
//! to the kernel (up to 32 MiB), and then keeps up to twice that free at
//! the top of a heap before it trims. A login's Argon2id holds 19 MiB: after
//! the first one, every block under 19 MiB came from the heaps and up to
//! 38 MiB of freed memory stayed resident per heap, and it fragmented.
//! mbsync took the bridge to 101–140 MiB and whole-folder fetches to
//! 178–197 MiB; with the thresholds fixed it stays at 26 MiB, its peak
//! the home's Argon2id at start (73 MiB). glibc reads its tunables from
//! the environment when a program starts, and `mallopt` would need unsafe
//! code: so the bridge starts itself again, once, with the threshold set.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The mmap threshold at glibc's default (128 KiB), fixed: a tunable
/// that sets it turns the raising off.
const TUNABLE: &str = "glibc.malloc.mmap_threshold=131072";

/// Runs this program again (the same process, arguments and environment)
/// with [`TUNABLE`] added to `GLIBC_TUNABLES`, unless it is there. Returns
/// only when that cannot be done; the bridge then runs with glibc's
/// defaults.
pub fn fix_thresholds() -> std::io::Result<()> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Ok(());
    }
    let given = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if given.contains("glibc.malloc.mmap_threshold") {
        return Ok(());
    }
    let tunables = if given.is_empty() {
        TUNABLE.to_owned()
    } else {
        format!("{given}:{TUNABLE}")
    };
    let mut args = std::env::args_os();
    let mut again = Command::new("/proc/self/exe");
    if let Some(name) = args.next() {
        again.arg0(name);
    }
    Err(again.args(args).env("GLIBC_TUNABLES", tunables).exec())
}
