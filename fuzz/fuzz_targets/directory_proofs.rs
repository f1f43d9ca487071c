//! The key directory's signed roots and lookup, history and append-only
//! proofs, through the checks a client makes on what its server sends.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::directory_proofs(data);
});
