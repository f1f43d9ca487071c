//! The blob API's `Upload-Length`/`Upload-Offset`/`Range` headers and its
//! `POST` answer, parsed on both sides of the trust boundary.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::blob_api(data);
});
