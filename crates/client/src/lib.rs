//! The Valise client engine.
//!
//! A [`Client`] is one enrolled device: its sealed home (SQLite under
//! SQLCipher, openmls state included), its MLS signature key, and its
//! session with its server. The CLI, the benchmark and every future front
//! end are thin layers over it; it knows nothing of them.
//!
//! ```text
//! send ─▶ seal (MLS) + outbox ─▶ POST message ─▶ hub fans out to devices
//! sync ◀─ inbox page ◀─ Welcome / Commit / Application ─▶ letters table
//! ```
#![forbid(unsafe_code)]

mod alert;
mod api;
mod audit;
mod client;
mod conversation;
mod error;
mod failpoint;
mod home;
mod mailbox;
pub mod mls;
mod provider;
mod resync;
mod send;
mod sync;
mod transparency;

pub use alert::{Alert, AlertKind};
pub use audit::{AuditReport, AuditState, audit_directory};
pub use client::{Client, Enrollment};
pub use conversation::ConversationView;
pub use error::{ClientError, Result};
pub use home::Passphrase;
pub use mailbox::{LetterSummary, LetterView};
pub use send::{Draft, SentLetter};
pub use sync::{DeviceView, SyncProgress, SyncReport};
