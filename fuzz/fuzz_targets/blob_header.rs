//! An attachment blob's header: the first bytes a downloader parses of
//! what the server serves.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::blob_header(data);
});
