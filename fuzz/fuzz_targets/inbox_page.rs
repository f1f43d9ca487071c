//! The binary inbox page a client reads from its server: every entry is
//! outside bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::inbox_page(data);
});
