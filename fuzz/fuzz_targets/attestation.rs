//! An accreditation attestation, as a server publishes it in a user's
//! directory entry: whatever bytes the server chooses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::attestation(data);
});
