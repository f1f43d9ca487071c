//! What front ends read from the home: letters, conversations, and what
//! waits in the outbox.

use crate::client::Client;
use crate::engine::membership::ConversationView;
use crate::error::Result;
use crate::home::Home;
use crate::home::letters::{LetterSummary, LetterView};
use serde::Serialize;

/// A letter waiting unsealed in the outbox, and why.
#[derive(Debug, Clone, Serialize)]
pub struct HeldLetter {
    pub message_id: String,
    pub conversation: Option<String>,
    pub reason: String,
}

impl Client {
    /// Letters received, oldest first.
    pub fn inbox(&self) -> Result<Vec<LetterSummary>> {
        self.engine.home.inbox_after(0)
    }

    /// Letters received with a local id above `after`, oldest first: what
    /// arrived since a front end last looked.
    pub fn inbox_after(&self, after: i64) -> Result<Vec<LetterSummary>> {
        self.engine.home.inbox_after(after)
    }

    /// One letter, received or sent.
    pub fn letter(&self, id: i64) -> Result<LetterView> {
        self.engine.home.letter(id)
    }

    /// Conversations this device is (or was) a member of.
    pub fn conversations(&self) -> Result<Vec<ConversationView>> {
        self.engine.conversations()
    }

    /// The home, for front ends that keep their own view of it in its
    /// sealed database (the mail bridge's folders, UIDs and password hash:
    /// [`crate::home::mail`]).
    pub fn home(&self) -> &Home {
        &self.engine.home
    }

    /// What waits unsealed in the outbox (sealed entries go on the next
    /// sync), then the letters still drafts: their attachments not all
    /// uploaded and kept by the server (the sync's `held` counts both).
    pub fn held(&self) -> Result<Vec<HeldLetter>> {
        let outbox = self.engine.home.outbox()?.into_iter().filter_map(|o| {
            o.held.map(|reason| HeldLetter {
                message_id: o.message_id.to_string(),
                conversation: o.conversation.map(|c| c.to_string()),
                reason,
            })
        });
        let drafts = self.engine.home.drafts()?.into_iter().map(|d| HeldLetter {
            message_id: d.message_id.to_string(),
            conversation: d.conversation.map(|c| c.to_string()),
            reason: "its attachments are not all uploaded and kept by the server yet \
                     (tried again on each sync; --log-level warn says why)"
                .into(),
        });
        Ok(outbox.chain(drafts).collect())
    }
}
