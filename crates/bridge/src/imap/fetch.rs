//! FETCH: what a client reads of a letter, from its rendered mail.

use super::{Session, Tag, nz, ok};
use crate::render::{self, Mail};
use imap_next::imap_types::ToStatic;
use imap_next::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, SinglePartExtensionData,
    SpecificFields,
};
use imap_next::imap_types::core::{IString, NString, Vec1};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::envelope::{Address, Envelope};
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_next::imap_types::flag::{Flag, FlagFetch};
use imap_next::imap_types::response::{Data, Status};
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use valise_client::LetterView;
use valise_client::home::mail::{FolderEntry, MailFlags};

/// The message sequence numbers (1-based) a set names, in order.
pub fn resolve(entries: &[FolderEntry], set: &SequenceSet, uid: bool) -> Vec<usize> {
    let largest = if uid {
        entries.last().map_or(0, |e| e.uid)
    } else {
        entries.len() as u32
    };
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    };
    let within = |n: u32| {
        set.0.as_ref().iter().any(|seq| match seq {
            Sequence::Single(s) => value(s) == n,
            Sequence::Range(a, b) => {
                let (a, b) = (value(a), value(b));
                (a.min(b)..=a.max(b)).contains(&n)
            }
        })
    };
    entries
        .iter()
        .enumerate()
        .filter(|(i, e)| within(if uid { e.uid } else { *i as u32 + 1 }))
        .map(|(i, _)| i + 1)
        .collect()
}

pub fn flags_item(f: &MailFlags) -> MessageDataItem<'static> {
    let mut flags = Vec::new();
    for (on, flag) in [
        (f.seen, Flag::Seen),
        (f.answered, Flag::Answered),
        (f.flagged, Flag::Flagged),
        (f.deleted, Flag::Deleted),
    ] {
        if on {
            flags.push(FlagFetch::Flag(flag));
        }
    }
    MessageDataItem::Flags(flags)
}

fn nstring(s: impl Into<String>) -> NString<'static> {
    NString(IString::try_from(s.into()).ok())
}

fn istring(s: &'static str) -> IString<'static> {
    IString::try_from(s)
        .unwrap_or_else(|_| IString::from(imap_next::imap_types::core::Quoted::unvalidated("")))
}

fn address(user: &valise_proto::UserId) -> Address<'static> {
    let s = user.as_str();
    let (local, host) = s.split_once('@').unwrap_or((s, ""));
    Address {
        name: NString(None),
        adl: NString(None),
        mailbox: nstring(local),
        host: nstring(host),
    }
}

/// RFC 3501 ENVELOPE, from the letter as [`render::rfc5322`] writes it.
pub fn envelope(letter: &LetterView) -> Envelope<'static> {
    let from = vec![address(&letter.from)];
    Envelope {
        date: nstring(render::date(letter.sent_at_ms)),
        // As the header has it (encoded words), as dovecot shows it: an
        // IMAP4rev1 string carries no 8-bit text.
        subject: nstring(render::header_text(&render::subject(letter))),
        sender: from.clone(),
        reply_to: from.clone(),
        from,
        to: letter.to.iter().map(address).collect(),
        cc: Vec::new(),
        bcc: Vec::new(),
        in_reply_to: letter
            .in_reply_to
            .map_or(NString(None), |p| nstring(render::message_id(&p))),
        message_id: nstring(render::message_id(&letter.message_id)),
    }
}

/// BODYSTRUCTURE of the single text part.
pub fn body_structure(mail: &Mail) -> BodyStructure<'static> {
    let body = mail.body();
    let lines = body.iter().filter(|&&b| b == b'\n').count() as u32;
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istring("charset"), istring("utf-8"))],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: IString::try_from(mail.encoding)
                    .unwrap_or_else(|_| istring("7bit")),
                size: body.len() as u32,
            },
            specific: SpecificFields::Text {
                subtype: istring("plain"),
                number_of_lines: lines,
            },
        },
        // md5, disposition, language and location, all NIL, as dovecot
        // answers: clients that read a part's disposition find it there.
        extension_data: Some(SinglePartExtensionData {
            md5: NString(None),
            tail: Some(Disposition {
                disposition: None,
                tail: Some(Language {
                    language: Vec::new(),
                    tail: Some(Location {
                        location: NString(None),
                        extensions: Vec::new(),
                    }),
                }),
            }),
        }),
    }
}

fn internal_date(ms: i64) -> Option<DateTime> {
    let utc = chrono::DateTime::from_timestamp(ms.div_euclid(1000), 0)?;
    DateTime::try_from(utc.fixed_offset()).ok()
}

/// What a section names of the mail (an unknown part is empty, RFC 3501).
fn section(mail: &Mail, section: &Option<Section<'_>>) -> Vec<u8> {
    let first = |part: &imap_next::imap_types::fetch::Part| {
        part.0.as_ref().iter().map(|n| n.get()).collect::<Vec<_>>() == [1]
    };
    let names = |list: &Vec1<imap_next::imap_types::core::AString<'_>>| {
        list.as_ref()
            .iter()
            .map(|n| n.as_ref().to_vec())
            .collect::<Vec<_>>()
    };
    match section {
        None => mail.bytes.clone(),
        Some(Section::Header(None)) => mail.header().to_vec(),
        Some(Section::Text(None)) => mail.body().to_vec(),
        Some(Section::HeaderFields(None, list)) => {
            render::header_fields(&mail.bytes, &names(list), false)
        }
        Some(Section::HeaderFieldsNot(None, list)) => {
            render::header_fields(&mail.bytes, &names(list), true)
        }
        Some(Section::Part(p)) if first(p) => mail.body().to_vec(),
        // A mail of one part: that part's MIME header is the mail's header
        // (as dovecot answers; not fields picked out of it).
        Some(Section::Mime(p)) if first(p) => mail.header().to_vec(),
        Some(_) => Vec::new(),
    }
}

fn partial(data: Vec<u8>, range: Option<(u32, std::num::NonZeroU32)>) -> Vec<u8> {
    match range {
        None => data,
        Some((start, len)) => {
            let start = (start as usize).min(data.len());
            let end = start.saturating_add(len.get() as usize).min(data.len());
            data[start..end].to_vec()
        }
    }
}

fn literal(data: Vec<u8>) -> NString<'static> {
    NString(IString::try_from(data).ok())
}

impl Session {
    pub(super) async fn fetch(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) -> Status<'static> {
        let Some(sel) = &mut self.selected else {
            return super::no(tag, "select a folder first");
        };
        let mut names = match names {
            MacroOrMessageDataItemNames::Macro(m) => {
                m.expand().into_iter().map(|n| n.to_static()).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(n) => n,
        };
        if uid && !names.contains(&MessageDataItemName::Uid) {
            names.insert(0, MessageDataItemName::Uid);
        }
        let needs_letter = names
            .iter()
            .any(|n| !matches!(n, MessageDataItemName::Uid | MessageDataItemName::Flags));
        // ENVELOPE and INTERNALDATE read the letter; only these need it
        // rendered (a client's listing often asks for no more than those).
        let needs_mail = names.iter().any(|n| {
            !matches!(
                n,
                MessageDataItemName::Uid
                    | MessageDataItemName::Flags
                    | MessageDataItemName::Envelope
                    | MessageDataItemName::InternalDate
            )
        });
        let key = sel.folder.key();
        let read_only = sel.read_only;
        let chosen = resolve(&sel.entries, set, uid);
        let client = self.ctx.device.client().await;
        let mut out = Vec::with_capacity(chosen.len());
        let mut seen = Vec::new();
        for seq in chosen {
            let Some(entry) = sel.entries.get_mut(seq - 1) else {
                continue;
            };
            let letter = if needs_letter {
                match client.letter(entry.letter) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::warn!(code = e.code(), "imap fetch: {e}");
                        continue;
                    }
                }
            } else {
                None
            };
            let mail = letter.as_ref().filter(|_| needs_mail).map(render::rfc5322);
            let mut items = Vec::with_capacity(names.len());
            let mut seen_now = false;
            for name in &names {
                let item = match (name, &letter, &mail) {
                    (MessageDataItemName::Uid, _, _) => MessageDataItem::Uid(nz(entry.uid)),
                    (MessageDataItemName::Flags, _, _) => continue,
                    (MessageDataItemName::Envelope, Some(l), _) => {
                        MessageDataItem::Envelope(envelope(l))
                    }
                    (MessageDataItemName::InternalDate, Some(l), _) => {
                        match internal_date(l.received_at_ms) {
                            Some(d) => MessageDataItem::InternalDate(d),
                            None => continue,
                        }
                    }
                    (MessageDataItemName::Rfc822Size, _, Some(m)) => {
                        MessageDataItem::Rfc822Size(m.bytes.len() as u32)
                    }
                    (MessageDataItemName::BodyStructure, _, Some(m)) => {
                        MessageDataItem::BodyStructure(body_structure(m))
                    }
                    (MessageDataItemName::Body, _, Some(m)) => {
                        MessageDataItem::Body(body_structure(m))
                    }
                    (MessageDataItemName::Rfc822, _, Some(m)) => {
                        seen_now = true;
                        MessageDataItem::Rfc822(literal(m.bytes.clone()))
                    }
                    (MessageDataItemName::Rfc822Header, _, Some(m)) => {
                        MessageDataItem::Rfc822Header(literal(m.header().to_vec()))
                    }
                    (MessageDataItemName::Rfc822Text, _, Some(m)) => {
                        seen_now = true;
                        MessageDataItem::Rfc822Text(literal(m.body().to_vec()))
                    }
                    (
                        MessageDataItemName::BodyExt {
                            section: s,
                            partial: p,
                            peek,
                        },
                        _,
                        Some(m),
                    ) => {
                        seen_now |= !peek;
                        MessageDataItem::BodyExt {
                            section: s.clone(),
                            origin: p.map(|(start, _)| start),
                            data: literal(partial(section(m, s), *p)),
                        }
                    }
                    _ => continue,
                };
                items.push(item);
            }
            if seen_now && !read_only && !entry.flags.seen {
                entry.flags.seen = true;
                seen.push((entry.uid, entry.flags));
                // A flag changed by this fetch is reported with it.
                if !names.contains(&MessageDataItemName::Flags) {
                    items.push(flags_item(&entry.flags));
                }
            }
            if names.contains(&MessageDataItemName::Flags) {
                items.push(flags_item(&entry.flags));
            }
            if let Ok(items) = Vec1::try_from(items) {
                out.push(Data::Fetch {
                    seq: nz(seq as u32),
                    items,
                });
            }
        }
        // Letters read now are marked in one transaction, not one each.
        if let Err(e) = client.home().set_mail_flags(&key, &seen) {
            tracing::warn!(code = e.code(), "imap fetch: {e}");
        }
        drop(client);
        for data in out {
            self.server.enqueue_data(data);
        }
        ok(tag, None, "FETCH completed")
    }
}
