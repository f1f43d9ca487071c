//! A user's published device list (the key directory's value): the server
//! chooses every byte, and a client derives from it which devices count.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::directory_entry(data);
});
