//! Forwarding a letter into another conversation (issue 11): a new letter
//! carrying the original (its sender, time, subject, body, marking and
//! attachments),
//! after the target is checked against the marking's forwarding rules
//! ([`crate::handling::check_forward`]); the target's ceiling applies as
//! for any letter.

use crate::client::Client;
use crate::engine::outbound::Target;
use crate::error::{ClientError, Result};
use crate::handling::check_forward;
use crate::send::{Draft, SentLetter};
use valise_proto::{ConversationId, ThreadId, UserId};

impl Client {
    /// Forwards letter `letter_id` (as `inbox` numbers it) into `conv`, as
    /// a new thread addressed to all its members.
    pub async fn forward(&mut self, letter_id: i64, conv: &ConversationId) -> Result<SentLetter> {
        let original = self.engine.home.letter(letter_id)?;
        if original.withheld.is_some() {
            return Err(ClientError::Invalid(format!(
                "letter {letter_id} is withheld from this device: there is nothing to forward"
            )));
        }
        // The target brought up to date first: sending does it otherwise,
        // after the rules were checked, and a member it adds meanwhile
        // (a commit pulled then) would read what the rules kept from them.
        self.check_members(conv).await?;
        let mut members: Vec<UserId> = self.engine.other_members(conv)?;
        members.push(self.engine.me.user.clone());
        check_forward(
            original.marking.as_ref(),
            self.engine.me.user.domain(),
            &members,
            &self.settings,
        )?;
        let draft = Draft {
            message_id: None,
            subject: format!("Fwd: {}", original.subject),
            body: format!(
                "---------- Forwarded letter ----------\nFrom: {}\nSent: {} ms since 1970\n\
                 Subject: {}\n\n{}",
                original.from, original.sent_at_ms, original.subject, original.body
            ),
            marking: original.marking,
            attachments: Vec::new(),
        };
        members.pop();
        let mut letter =
            self.new_letter(members, draft, ThreadId::from_bytes(rand::random()), None);
        // The annexes go with it: their blobs stay where they are, and the
        // keys travel inside the new letter's encryption.
        letter.attachments = original.attachments;
        self.post_letter(Target::Conversation(*conv), letter).await
    }
}
