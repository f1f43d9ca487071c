//! JSON bodies the server parses from any client.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::api_requests(data);
});
