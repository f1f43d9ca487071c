//! The audit log's signed checkpoints, checkpoint bodies and entries.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::checkpoint(data);
});
