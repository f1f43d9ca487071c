//! JSON bodies (and problem details) a client parses from its server.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::api_responses(data);
});
