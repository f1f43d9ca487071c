//! The letter record: what a device decodes after MLS decryption; a member
//! of the conversation controls these bytes completely.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::letter_record(data);
});
