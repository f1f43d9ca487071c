//! Shared types and encodings of Valise, with no I/O.
//!
//! Everything that crosses a trust boundary is parsed here into its own type
//! ("parse, don't validate"): identities ([`id`]), the letter record carried
//! inside MLS application messages ([`letter`]), the JSON bodies of the HTTP
//! API ([`api`]) and the problem details with stable error codes ([`problem`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod bytes;
pub mod id;
pub mod letter;
pub mod problem;

pub use id::{ConversationId, DeviceAddress, DeviceId, IdError, MessageId, ThreadId, UserId};
pub use letter::{ConversationMeta, EpochCount, Letter, LetterError, Payload, RootBytes};
pub use problem::{ErrorCode, Problem};

/// Version of the client–server protocol, carried in every path (`/v1/...`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Size limits, checked before anything is parsed. Shared so that a client
/// refuses locally what the server would refuse.
pub mod limits {
    /// Largest request body the server reads at all (bytes on the wire).
    pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
    /// Largest MLS message (application or handshake) accepted.
    pub const MAX_MLS_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
    /// Largest letter body a client will seal (the rest goes to attachments).
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// Largest subject.
    pub const MAX_SUBJECT_BYTES: usize = 1024;
    /// Most recipients named on one letter.
    pub const MAX_RECIPIENTS: usize = 1000;
    /// Most key packages uploaded in one request.
    pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 200;
    /// Most inbox entries returned in one page.
    pub const MAX_INBOX_PAGE: usize = 1000;
    /// Most directory epochs one append-only proof spans: the server
    /// refuses more (a proof's cost grows with it), and a client further
    /// behind asks for several.
    pub const MAX_AUDIT_SPAN: u64 = 1000;
}
