//! What each fuzz target checks. The checks live in one file per crate
//! whose tests replay the seeds, since each test includes its file:
//! `proto.rs` (valise-proto's decoders, `crates/proto/tests/fuzz_seeds.rs`)
//! and `directory.rs` (the key directory's roots, proofs and device lists,
//! `crates/directory/tests/fuzz_seeds.rs`) and `bridge.rs` (mail a client
//! submits to the bridge, `crates/bridge/tests/fuzz_seeds.rs`). valise-proto cannot depend on
//! valise-directory, so one shared file would not build in its tests.
#![forbid(unsafe_code)]

pub mod bridge;
pub mod directory;
pub mod proto;

pub use bridge::bridge_submission;
pub use directory::{directory_entry, directory_proofs};
pub use proto::{
    api_requests, api_responses, attestation, blob_api, blob_header, checkpoint, chunk_stream, ids,
    inbox_page, label, letter_record, letters, policy_record,
};
