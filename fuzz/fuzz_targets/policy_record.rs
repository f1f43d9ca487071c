//! A conversation's policy record (its ceiling): what a device decodes from
//! a member's conversation settings; any member controls these bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    valise_fuzz::policy_record(data);
});
