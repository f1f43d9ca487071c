//! The Valise client engine.
//!
//! A [`Client`] is one enrolled device on the network: its [`Engine`] (the
//! sealed home, its MLS groups and keys, and every decision about what it
//! believes, with no I/O) and its session with its server. The CLI, the
//! benchmark and every future front end are thin layers over it; it knows
//! nothing of them.
//!
//! ```text
//! send ─▶ engine: seal (MLS) or hold + outbox ─▶ POST message ─▶ hub fans out
//! sync ◀─ inbox page ─▶ engine: Welcome / Commit / Application ─▶ letters, alerts
//! ```
#![forbid(unsafe_code)]

pub mod accreditation;
mod admin_actions;
mod alert;
mod api;
pub mod attachments;
mod audit;
mod audit_log;
mod authority;
mod cache_holds;
mod client;
mod clock;
mod conversation;
mod desk;
mod devices;
mod draft_retry;
pub mod engine;
mod error;
pub mod export;
mod failpoint;
mod forward;
pub mod handling;
pub mod home;
mod key_packages;
mod mailbox;
pub mod mls;
mod provider;
mod resync;
#[cfg(feature = "failpoints")]
mod rogue;
mod send;
mod sync;
mod transparency;

pub use alert::{Alert, AlertKind};
pub use audit::{AuditReport, AuditState, audit_directory};
pub use audit_log::{AuditLogReport, AuditLogState, audit_log};
pub use cache_holds::Held;
pub use client::{Client, Enrollment};
pub use clock::Clock;
pub use devices::DeviceView;
pub use engine::Engine;
pub use engine::ceiling::Ceiling;
pub use engine::membership::ConversationView;
pub use error::{ClientError, Result};
pub use handling::Settings;
pub use home::desk::{DeskReport, DeskState};
pub use home::letters::{AttachmentInfo, LetterSummary, LetterView, attachment_infos};
pub use home::{Passphrase, Retake};
pub use mailbox::HeldLetter;
pub use resync::ConversationDetail;
pub use send::{Draft, SentLetter};
pub use sync::{SyncProgress, SyncReport};
