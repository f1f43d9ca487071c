//! Valise's key directory: key transparency over WhatsApp's `akd`.
//!
//! # What is published
//! For each user, the label is the `UserId` string (akd hides it behind a
//! VRF: the tree shows neither who is in it nor how many devices they have)
//! and the value is the user's identity and whole device list
//! ([`DeviceList`]): the identity key, and each device's id, MLS signature
//! public key (Ed25519), enrolment number, the approval another device of
//! the user signed for it, its revocation, and reserved attributes, in a
//! canonical versioned CBOR encoding ([`entry`]). Which devices count is
//! decided by the user's signatures, not by the server ([`identity`]).
//! Every enrolment, approval, revocation or reset publishes the new whole
//! list as the user's next version, so the history of an entry is the
//! history of the user's devices.
//!
//! # Server ([`publisher`])
//! [`Directory`] wraps `akd::Directory` with Valise's configuration
//! ([`config`]: akd's experimental scheme, our domain label), a persistent
//! VRF key ([`vrf`]) and a root signing key ([`RootSigner`]). `publish`
//! makes one epoch for many changes and returns the new [`SignedRoot`];
//! `lookup`, `history` and `audit` return proofs as bytes ([`wire`]: akd's
//! protobuf messages). State lives behind [`DirectoryStorage`], a small
//! synchronous contract; [`SqliteDirectoryStorage`] implements it in the
//! server's SQLite file, and [`storage::AkdDatabase`] adapts any
//! implementation to akd's `Database`.
//!
//! # Client ([`verify`], [`ledger`])
//! [`verify_root`] checks a root's signature under the directory key the
//! client pinned; [`verify_lookup`] proves a user's current device list,
//! [`verify_history`] every version ever published (so a device added and
//! removed between two checks is still seen), [`verify_audit`] that one
//! root only appended to an earlier one. [`RootLedger`] remembers the newest
//! root and refuses rollbacks and split views, keeping both signed roots as
//! evidence.
//!
//! Errors carry stable codes ([`DirectoryError::code`]).
#![forbid(unsafe_code)]

pub mod config;
pub mod entry;
pub mod error;
pub mod identity;
pub mod ledger;
pub mod publisher;
pub mod root;
pub mod storage;
pub mod verify;
pub mod vrf;
pub mod wire;

pub use entry::{Approval, DeviceEntry, DeviceList, Identity, Revocation, SignatureKey};
pub use error::DirectoryError;
pub use identity::{
    DeviceStatus, Devices, approval_message, check_succession, link_code, revocation_message,
};
pub use ledger::{RootLedger, Step};
pub use publisher::{Directory, Proven};
pub use root::ROOT_SECRET_NAME;
pub use root::{DirectoryKey, RootSigner, SignedRoot, VerifiedRoot};
pub use storage::{DirectoryStorage, SqliteDirectoryStorage};
pub use verify::{
    ProvenList, audit_span, verify_audit, verify_history, verify_lookup, verify_root,
};
pub use vrf::VRF_SECRET_NAME;
