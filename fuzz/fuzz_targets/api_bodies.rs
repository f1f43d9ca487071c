//! JSON bodies the server parses from any client, and the client parses
//! from its server.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valise_proto::api::*;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<EnrollRequest>(data);
    let _ = serde_json::from_slice::<ChallengeRequest>(data);
    let _ = serde_json::from_slice::<TokenRequest>(data);
    let _ = serde_json::from_slice::<KeyPackageUpload>(data);
    let _ = serde_json::from_slice::<ClaimRequest>(data);
    let _ = serde_json::from_slice::<CreateConversation>(data);
    let _ = serde_json::from_slice::<SubmitCommit>(data);
    let _ = serde_json::from_slice::<SendMessage>(data);
    let _ = serde_json::from_slice::<Ack>(data);
    let _ = serde_json::from_slice::<InboxPage>(data);
    let _ = serde_json::from_slice::<ClaimResponse>(data);
    let _ = serde_json::from_slice::<valise_proto::Problem>(data);
});
