//! An attachment blob's chunk stream, opened as a downloader opens what
//! the server serves: every chunk, the last-chunk flag, padding and sizes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::chunk_stream(data);
});
