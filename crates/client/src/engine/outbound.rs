//! What this device writes: sealed with MLS into the outbox in the same
//! transaction as the ratchet step, or held there unsealed when sealing now
//! would be wrong.
//!
//! A letter is held, never lost, while its conversation is out of step
//! with the hub (sealing into an unverified group state is how a removed
//! member would read), while one of its members' identity changed and
//! nobody verified the new one, or — for a `send --to` letter — while the
//! conversation holds anyone but exactly the sender and its recipients, or
//! — for a marked letter — while a device of the conversation is not
//! accredited for its marking ([`super::accreditation`]).
//! Each sync tries the held letters again.

use super::Engine;
use crate::error::{ClientError, Result};
use crate::home::outbox::{Outbound, Sealed};
use crate::mls;
use valise_proto::{ConversationId, Letter, MessageId, Payload, RootBytes, UserId};

/// Where a letter goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Into this conversation, to whoever its members are.
    Conversation(ConversationId),
    /// To exactly these users and the sender (`send --to`): into this
    /// conversation if it still holds exactly them, or it waits for one.
    Exactly {
        users: Vec<UserId>,
        conversation: Option<ConversationId>,
    },
}

/// What happened to something written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Sealed,
    /// Held in the outbox, and why.
    Held(String),
}

impl Engine {
    /// Stores a new letter as sent and puts it in the outbox, unsealed:
    /// from here on nothing the person wrote is lost, whatever the network
    /// does. [`Engine::seal_or_hold`] seals it once its conversation is
    /// known and ready. Returns its local id.
    pub fn write_letter(&self, target: &Target, letter: &Letter) -> Result<i64> {
        let plaintext = Payload::Letter(letter.clone()).encode()?;
        self.transaction(|| {
            let conv = match target {
                Target::Conversation(c) => Some(*c),
                Target::Exactly { conversation, .. } => *conversation,
            };
            // A `send --to` letter not yet in a conversation is filed under
            // none; the conversation it lands in is set when sealed.
            let filed = conv.unwrap_or(UNFILED);
            let id = self
                .home
                .store_letter(&filed, &self.me, letter, true, self.now_ms())?
                .ok_or_else(|| ClientError::Invalid("duplicate message id".into()))?;
            let entry = Outbound {
                message_id: letter.message_id,
                conversation: conv,
                exact_to: exact_key(target, &self.me.user),
                plaintext,
                sealed: None,
                held: Some("not sealed yet".into()),
            };
            self.home.put_outbound(&entry, self.now_ms())?;
            Ok(id)
        })
    }

    /// Takes back a letter that could never be sent (nobody to send it
    /// to): out of the outbox and the letters.
    pub fn withdraw_letter(&self, message_id: &MessageId, id: i64) -> Result<()> {
        self.transaction(|| {
            self.home.drop_outbound(&[*message_id])?;
            self.home.delete_letter(id)
        })
    }

    /// Seals a non-letter payload (conversation settings) into the outbox.
    pub(crate) fn write_payload(
        &self,
        conv: &ConversationId,
        payload: &Payload,
    ) -> Result<MessageId> {
        let message_id = MessageId::from_bytes(rand::random());
        let entry = Outbound {
            message_id,
            conversation: Some(*conv),
            exact_to: None,
            plaintext: payload.encode()?,
            sealed: None,
            held: None,
        };
        self.transaction(|| self.seal_or_hold(entry))?;
        Ok(message_id)
    }

    /// Seals an outbox entry for its conversation's current epoch, or holds
    /// it with the reason (see the module doc). A sealed entry whose epoch
    /// is still current is left as it is.
    pub(crate) fn seal_or_hold(&self, mut entry: Outbound) -> Result<Written> {
        let hold = |mut entry: Outbound, why: String| -> Result<Written> {
            entry.sealed = None;
            entry.held = Some(why.clone());
            self.home.put_outbound(&entry, self.now_ms())?;
            Ok(Written::Held(why))
        };
        let Some(conv) = entry.conversation else {
            let users = entry
                .exact_to
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .filter(|u| !u.is_empty())
                .map(UserId::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let why = match self.identity_hold(&users)? {
                Some(why) => why,
                None => "waits for a conversation with exactly its recipients".into(),
            };
            return hold(entry, why);
        };
        let row = self
            .home
            .conversation(&conv)?
            .ok_or_else(|| ClientError::NotFound {
                kind: "conversation",
                id: conv.to_string(),
            })?;
        if !row.active {
            return Err(ClientError::Invalid(format!(
                "you are no longer a member of conversation {conv}"
            )));
        }
        if row.diverged {
            return hold(
                entry,
                format!(
                    "conversation {conv} is out of step with the server: the letter waits in \
                     the outbox until it is whole again (see `valise conversation show {conv}`)"
                ),
            );
        }
        if let Some(exact) = &entry.exact_to
            && exact != &row.members_key
        {
            entry.conversation = None;
            return hold(
                entry,
                "the conversation's members changed: the letter waits for a conversation with \
                 exactly its recipients"
                    .into(),
            );
        }
        let members = row
            .members_key
            .split(',')
            .filter(|u| !u.is_empty())
            .map(UserId::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(why) = self.identity_hold(&members)? {
            return hold(entry, why);
        }
        if let Payload::Letter(Letter {
            marking: Some(label),
            ..
        }) = Payload::decode(&entry.plaintext)?
        {
            match self.check_marked(&conv, &label) {
                Err(e @ ClientError::Unaccredited { .. }) => return hold(entry, e.to_string()),
                other => other?,
            }
        }
        let stamp = self.root_stamp()?;
        let (sealed, letter_id) = self.with_group(&conv, |group, p| {
            if group.pending_commit().is_some() {
                return Err(ClientError::Invalid(format!(
                    "a membership change in {conv} is not confirmed yet: run `valise sync` first"
                )));
            }
            let epoch = group.epoch().as_u64();
            if let Some(s) = entry.sealed.as_ref().filter(|s| s.epoch == epoch) {
                return Ok((s.clone(), None));
            }
            let (numbered, seq, letter_id) = self.number(&conv, epoch, &entry.plaintext, &stamp)?;
            let sealed = group
                .create_message(p, &self.signer, &numbered)
                .map_err(ClientError::mls)?;
            Ok((
                Sealed {
                    epoch,
                    ciphertext: mls::serialize(&sealed)?,
                    seq,
                },
                letter_id,
            ))
        })?;
        if let Some(letter_id) = letter_id.filter(|_| entry.exact_to.is_some()) {
            // A `send --to` letter is filed under the conversation it is sealed into.
            self.home.file_letter(&self.me, &letter_id, &conv)?;
        }
        entry.sealed = Some(sealed);
        entry.held = None;
        self.home.put_outbound(&entry, self.now_ms())?;
        Ok(Written::Sealed)
    }

    /// Why nothing may be written to these users now: one's identity
    /// changed and nobody verified the new one.
    fn identity_hold(&self, users: &[UserId]) -> Result<Option<String>> {
        if !self.home.any_contact_changed()? {
            return Ok(None);
        }
        for user in users {
            if !self.may_write_to(user)? {
                return Ok(Some(format!(
                    "{user}'s identity changed and nobody verified the new one: the letter \
                     waits in the outbox until you compare safety codes (`valise verify \
                     {user}`, then `valise verify {user} --code CODE`)"
                )));
            }
        }
        Ok(None)
    }

    /// Gives a letter (or an alert report) its number among this device's
    /// letters in the conversation's epoch, the count of its previous
    /// epoch, and the directory root it stands on (see `Letter`); other
    /// payloads pass unchanged (number 0). A letter sealed again is
    /// numbered anew. The id returned is a letter's (to file it).
    fn number(
        &self,
        conv: &ConversationId,
        epoch: u64,
        plaintext: &[u8],
        stamp: &[u8],
    ) -> Result<(Vec<u8>, u64, Option<MessageId>)> {
        let mut payload = Payload::decode(plaintext)?;
        let Some(n) = payload.numbers() else {
            return Ok((plaintext.to_vec(), 0, None));
        };
        *n.seq = self.home.count_letter(conv, epoch, &self.me.device, None)?;
        *n.prev = self
            .home
            .last_accepted_before(conv, &self.me.device, epoch)?;
        *n.root = (!stamp.is_empty()).then(|| RootBytes(stamp.to_vec()));
        let seq = *n.seq;
        if let Payload::Letter(l) = &mut payload
            && l.marking.is_some()
        {
            l.policy = self.policy_record(conv)?;
        }
        let letter_id = match &payload {
            Payload::Letter(l) => Some(l.message_id),
            _ => None,
        };
        Ok((payload.encode()?, seq, letter_id))
    }

    /// The server accepted an outbox entry: counted (see `Letter::prev`)
    /// and remembered with its epoch (see [`Engine::resend_after_fork`]);
    /// an alert report is kept as written for that too.
    pub(crate) fn note_accepted(&self, entry: &Outbound) -> Result<()> {
        let (Some(conv), Some(sealed)) = (&entry.conversation, &entry.sealed) else {
            return Ok(());
        };
        let mut payload = Payload::decode(&entry.plaintext)?;
        let report = matches!(payload, Payload::Alert(_));
        if let (true, Some(n)) = (sealed.seq > 0, payload.numbers()) {
            self.home
                .note_accepted(conv, &self.me, &n.message_id, sealed.epoch, sealed.seq)?;
            if report {
                self.home
                    .note_report_sent(conv, &n.message_id, &entry.plaintext, sealed.epoch)?;
            }
        }
        Ok(())
    }

    /// After rejoining from a fork (or a hub rolled back to an older
    /// epoch): this device's letters accepted after the forked epoch went
    /// to its side only; seals them again for the next delivery.
    pub(crate) fn resend_after_fork(&self, conv: &ConversationId) -> Result<usize> {
        let Some(fork) = self.home.divergence(conv)?.fork_epoch else {
            return Ok(0);
        };
        self.reseal_sent(conv, fork + 1)
    }

    /// Seals again (under new outbox ids, same letter and report ids)
    /// this device's letters and alert reports accepted in `conv` from
    /// `epoch` on.
    pub(crate) fn reseal_sent(&self, conv: &ConversationId, epoch: u64) -> Result<usize> {
        let mut plaintexts = Vec::new();
        for v in self.home.sent_since_epoch(conv, epoch)? {
            plaintexts.push(Payload::Letter(v.to_letter()).encode()?);
        }
        plaintexts.extend(self.home.reports_sent_since(conv, epoch)?);
        for plaintext in &plaintexts {
            let entry = Outbound {
                message_id: MessageId::from_bytes(rand::random()),
                conversation: Some(*conv),
                exact_to: None,
                plaintext: plaintext.clone(),
                sealed: None,
                held: None,
            };
            self.seal_or_hold(entry)?;
        }
        Ok(plaintexts.len())
    }
}

/// Where a `send --to` letter waiting for its conversation is filed.
const UNFILED: ConversationId = ConversationId::from_bytes([0; 16]);

/// The users a `send --to` letter may reach, as a conversation's
/// `members_key` would list them.
fn exact_key(target: &Target, me: &UserId) -> Option<String> {
    match target {
        Target::Conversation(_) => None,
        Target::Exactly { users, .. } => Some(mls::users_key(users.iter().chain([me]))),
    }
}
