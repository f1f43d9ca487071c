//! Shared types and encodings of Valise, with no I/O.
//!
//! Everything that crosses a trust boundary is parsed here into its own type
//! ("parse, don't validate"): identities ([`id`]), the letter record carried
//! inside MLS application messages ([`letter`]) with its handling label
//! ([`marking`]) and the alert reports sent
//! to the security desk ([`report`]), the JSON bodies of the HTTP
//! API ([`api`]), the binary bodies of delivery ([`wire`]), attachment blobs ([`blob`]) and the problem details with stable error codes ([`problem`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod attestation;
pub mod audit;
pub mod blob;
pub mod bytes;
pub mod id;
pub mod letter;
pub mod marking;
pub mod policy;
pub mod problem;
pub mod report;
pub mod tlog;
pub mod wire;

pub use id::{
    BlobId, ConversationId, DeviceAddress, DeviceId, IdError, MessageId, ThreadId, UserId,
};
pub use letter::{ConversationMeta, EpochCount, Letter, LetterError, Payload, RootBytes};
pub use marking::{Label, Marking, MarkingError};
pub use policy::{PolicyError, PolicyRecord};
pub use problem::{ErrorCode, Problem};
pub use report::{AlertReport, Sha256Digest};

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
    /// An inbox page ends with the entry that takes its messages past
    /// this many bytes (a page holds at least one entry).
    pub const MAX_INBOX_PAGE_BYTES: usize = 1024 * 1024;
    /// Largest answer body a client reads (a hostile server cannot make
    /// it hold more): well above a full inbox page plus one largest entry,
    /// and an audit proof of [`MAX_AUDIT_SPAN`] epochs.
    pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
    /// Most directory epochs one append-only (audit) proof may span: the
    /// server refuses a wider one, whose proof work anyone could ask for,
    /// and a client asks for longer stretches in chunks.
    pub const MAX_AUDIT_SPAN: u64 = 1000;
    /// Most audit log leaves served in one page (`GET /v1/audit/leaves`).
    pub const MAX_AUDIT_LEAVES_PAGE: usize = 1000;
}
