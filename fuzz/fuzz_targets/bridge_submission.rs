//! Mail a client submits to the bridge over SMTP (after DATA).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::bridge_submission(data);
});
