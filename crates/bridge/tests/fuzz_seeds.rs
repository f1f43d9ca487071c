//! The bridge's fuzz seeds (`fuzz/seeds/bridge_submission/`) replayed on
//! every `cargo test` through the fuzz target's own checks
//! (`fuzz/src/bridge.rs`, included here): no panic, the properties, and a
//! valid seed accepted (a `bad-*` seed is there for a refusal).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../fuzz/src/bridge.rs"]
mod checks;

use std::path::Path;

#[test]
fn seeds_pass_the_fuzz_checks() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    for target in checks::TARGETS {
        assert!(manifest.contains(&format!("name = \"{target}\"")));
        let mut seeds: Vec<_> = std::fs::read_dir(fuzz.join("seeds").join(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 2, "{target}: seeds missing");
        for seed in seeds {
            let accepted = checks::bridge_submission(&std::fs::read(&seed).unwrap());
            let bad = seed
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("bad-");
            assert_eq!(accepted == 1, !bad, "{}", seed.display());
        }
    }
}
