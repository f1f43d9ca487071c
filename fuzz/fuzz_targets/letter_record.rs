//! The letter record: what a device decodes after MLS decryption. A member
//! of a conversation controls these bytes completely.
#![no_main]

use libfuzzer_sys::fuzz_target;
use valise_proto::Payload;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Payload::decode(data) {
        // What decodes must re-encode and decode to the same value.
        let again = p.encode().expect("a decoded record re-encodes");
        assert_eq!(Payload::decode(&again).expect("round trip"), p);
    }
});
