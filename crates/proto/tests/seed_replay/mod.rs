//! What the fuzz-seed replays share: valise-proto's (`fuzz_seeds.rs` here)
//! and valise-directory's, which includes this file by path as it includes
//! the fuzz checks. Where the seeds are, which are meant to be refused, and
//! the rules every target's seeds and fuzz target follow.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// The fuzz crate: `fuzz/seeds/<target>/`, `fuzz/corpus/<target>/`.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Files of a directory, sorted; none if it does not exist.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// A seed named `bad-*`: there for an error path, to be refused.
pub fn is_bad(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("bad-"))
}

/// Asserts each of `targets` has a valid seed, a `fuzz_targets/<target>.rs`
/// that runs its check, and a `[[bin]]` in fuzz/Cargo.toml.
pub fn assert_every_target_is_fuzzed(targets: &[&str]) {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for target in targets {
        let seeds = files(&fuzz_dir().join("seeds").join(target));
        assert!(
            seeds.iter().any(|p| !is_bad(p)),
            "{target}: no valid seed in fuzz/seeds/{target}/"
        );
        let source = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        let source = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            source.contains(&format!("valise_fuzz::{target}(data)")),
            "fuzz_targets/{target}.rs does not run its check"
        );
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] for {target}"
        );
    }
}

/// Replays every seed of `targets` through `run` (a fuzz check: how many
/// decoders accepted the input, `None` for an unknown target): a valid seed
/// must be accepted, a `bad-*` one refused; two seeds a target at least.
pub fn replay_seeds(targets: &[&str], run: fn(&str, &[u8]) -> Option<usize>) {
    let mut replayed = 0;
    for target in targets {
        for seed in files(&fuzz_dir().join("seeds").join(target)) {
            let data = std::fs::read(&seed).unwrap();
            let accepted = run(target, &data).unwrap();
            if is_bad(&seed) {
                assert_eq!(accepted, 0, "{} is accepted", seed.display());
            } else {
                assert!(accepted > 0, "{} is refused", seed.display());
            }
            replayed += 1;
        }
    }
    assert!(replayed >= 2 * targets.len());
}
