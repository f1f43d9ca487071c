//! The binary bodies of `POST /v1/letters`: a batch of letters from any
//! approved device, and the outcomes a client reads from its server.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::letters(data);
});
