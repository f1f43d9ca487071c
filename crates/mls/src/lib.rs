//! How Valise uses MLS (RFC 9420), in one place for the client, the server
//! and the bench, so that what one side makes the other side accepts: the
//! ciphersuite and what every leaf declares, the group configuration, the
//! credential that names a device, the checks on MLS input from outside,
//! and a follower of a group's public state.
//!
//! It does no I/O and reads no clock: callers pass "now" in (seconds since
//! the Unix epoch). MLS input from outside goes through one check per kind
//! and is refused with a [`Refusal`]:
//!
//! ```text
//! key package ───────── key_package::check ─────────────▶ CheckedKeyPackage
//! GroupInfo + tree ──── PublicState::create (epoch 0) ──▶ PublicState ◀─┐
//!                       PublicState::follow (any epoch)                 │
//! commit ────────────── PublicState::apply_commit ──────────────────────┘ (+ who committed)
//! application message ─ application_epoch ──────────────▶ its epoch
//! Welcome ───────────── check_welcome
//! ```
#![forbid(unsafe_code)]

mod credential;
mod group;
pub mod key_package;
mod message;
mod public_state;
mod refusal;
mod suite;

pub use credential::{credential, device_of};
pub use group::{
    MAX_PAST_EPOCHS, WIRE_FORMAT_POLICY, create_config, group_extensions, group_id, join_config,
    policy_hash,
};
pub use key_package::CheckedKeyPackage;
pub use message::{application_epoch, check_welcome, parse_message, parse_tree, serialize};
pub use public_state::{Committer, Leaf, PublicState};
pub use refusal::Refusal;
pub use suite::{CIPHERSUITE, POLICY_EXTENSION, Policy, capabilities, leaf_parameters};
