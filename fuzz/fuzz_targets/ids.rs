//! Identifiers: user ids, device addresses, MLS credential identities, hex ids.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::ids(data);
});
