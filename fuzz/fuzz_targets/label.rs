//! A handling label: inside a letter (a member controls it), inside an
//! attestation (the server publishes it), and as a user types it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::label(data);
});
