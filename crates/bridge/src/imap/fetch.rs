//! FETCH: what a client reads of a letter, from its rendered mail.

use super::{Session, Tag, nz, ok};
use crate::folders::Folder;
use crate::render::{self, Mail, Part, PartKind};
use crate::transport::Transport;
use imap_codec::ResponseCodec;
use imap_codec::encode::{Encoder, Fragment};
use imap_next::imap_types::ToStatic;
use imap_next::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_next::imap_types::core::{IString, NString, Vec1};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::envelope::{Address, Envelope};
use imap_next::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_next::imap_types::flag::{Flag, FlagFetch};
use imap_next::imap_types::response::{Data, Response, Status};
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use std::num::NonZeroU32;
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

/// BODYSTRUCTURE (with `extended`: disposition and boundary, which BODY
/// leaves out) of the mail as [`render::rfc5322`] lays it out.
pub fn body_structure(mail: &Mail, extended: bool) -> BodyStructure<'static> {
    let mut bodies: Vec<_> = mail
        .parts
        .iter()
        .map(|p| part_structure(p, extended))
        .collect();
    let Some(boundary) = &mail.boundary else {
        return bodies
            .pop()
            .unwrap_or_else(|| text_structure(0, 0, "7bit", extended));
    };
    match Vec1::try_from(bodies) {
        Ok(bodies) => BodyStructure::Multi {
            bodies,
            subtype: istring("mixed"),
            extension_data: extended.then(|| MultiPartExtensionData {
                parameter_list: vec![(istring("boundary"), istring_owned(boundary.clone()))],
                tail: Some(disposition_and_after(None)),
            }),
        },
        // A multipart mail has its text part at least.
        Err(_) => text_structure(0, 0, "7bit", extended),
    }
}

/// A part's disposition, then its language and location (NIL), as
/// dovecot answers BODYSTRUCTURE: clients find every field where RFC 3501
/// puts it.
fn disposition_and_after(
    disposition: Option<(IString<'static>, Vec<(IString<'static>, IString<'static>)>)>,
) -> Disposition<'static> {
    Disposition {
        disposition,
        tail: Some(Language {
            language: Vec::new(),
            tail: Some(Location {
                location: NString(None),
                extensions: Vec::new(),
            }),
        }),
    }
}

/// A single part's extension data: md5 (NIL), then [`disposition_and_after`].
fn single_extension(
    disposition: Option<(IString<'static>, Vec<(IString<'static>, IString<'static>)>)>,
) -> SinglePartExtensionData<'static> {
    SinglePartExtensionData {
        md5: NString(None),
        tail: Some(disposition_and_after(disposition)),
    }
}

/// IMAP's numbers are 32-bit: a larger size (an attachment over 4 GiB)
/// shows as the largest.
fn number(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One part: `text/*` with its line count, anything else as basic.
fn single(
    (t, s): (&str, &str),
    params: Vec<(IString<'static>, IString<'static>)>,
    encoding: &str,
    (size, lines): (u64, u64),
    extension_data: Option<SinglePartExtensionData<'static>>,
) -> BodyStructure<'static> {
    let subtype = istring_owned(s.to_owned());
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: params,
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring_owned(encoding.to_owned()),
                size: number(size),
            },
            specific: if t == "text" {
                SpecificFields::Text {
                    subtype,
                    number_of_lines: number(lines),
                }
            } else {
                SpecificFields::Basic {
                    r#type: istring_owned(t.to_owned()),
                    subtype,
                }
            },
        },
        extension_data,
    }
}

fn text_structure(size: u64, lines: u64, encoding: &str, extended: bool) -> BodyStructure<'static> {
    let charset = vec![(istring("charset"), istring("utf-8"))];
    let extension = extended.then(|| single_extension(None));
    single(
        ("text", "plain"),
        charset,
        encoding,
        (size, lines),
        extension,
    )
}

fn part_structure(part: &Part, extended: bool) -> BodyStructure<'static> {
    let counts = (part.content.1, part.lines);
    let (media_type, name) = match &part.kind {
        PartKind::Text { encoding } => {
            return text_structure(counts.0, counts.1, encoding, extended);
        }
        PartKind::Attachment { media_type, name } => (media_type, name),
        // A draft's part, as its own header says.
        PartKind::Other {
            media_type,
            params,
            encoding,
        } => {
            let params = params
                .iter()
                .map(|(k, v)| (istring_owned(k.clone()), istring_owned(v.clone())))
                .collect();
            return single(
                (&media_type.0, &media_type.1),
                params,
                encoding,
                counts,
                None,
            );
        }
    };
    let param = |base: &str| {
        if name.is_empty() {
            return Vec::new();
        }
        let (k, v) = render::file_name_param(name, base);
        vec![(istring_owned(k), istring_owned(v))]
    };
    let disposition =
        extended.then(|| single_extension(Some((istring("attachment"), param("filename")))));
    single(
        (&media_type.0, &media_type.1),
        param("name"),
        "base64",
        counts,
        disposition,
    )
}

/// ENVELOPE of a draft, from its own header.
pub fn draft_envelope(mail: &Mail) -> Envelope<'static> {
    let parsed = mail_parser::MessageParser::default().parse_headers(mail.header());
    let raw = |name: &str| {
        let fields = render::header_fields(mail.header(), &[name.as_bytes().to_vec()], false);
        let text = String::from_utf8_lossy(&fields).into_owned();
        let value = text
            .split_once(':')
            .map(|(_, v)| v.trim().replace("\r\n", ""))
            .filter(|v| !v.is_empty());
        value.map_or(NString(None), nstring)
    };
    let addresses = |list: Option<&mail_parser::Address<'_>>| -> Vec<Address<'static>> {
        list.map(|a| {
            a.iter()
                .map(|addr| {
                    let full = addr.address().unwrap_or_default();
                    let (local, host) = full.split_once('@').unwrap_or((full, ""));
                    Address {
                        name: addr.name().map_or(NString(None), nstring),
                        adl: NString(None),
                        mailbox: nstring(local),
                        host: nstring(host),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let Some(m) = parsed else {
        return Envelope {
            date: NString(None),
            subject: NString(None),
            from: Vec::new(),
            sender: Vec::new(),
            reply_to: Vec::new(),
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            in_reply_to: NString(None),
            message_id: NString(None),
        };
    };
    let from = addresses(m.from());
    Envelope {
        date: raw("Date"),
        subject: raw("Subject"),
        sender: addresses(m.sender())
            .into_iter()
            .next()
            .map_or(from.clone(), |s| vec![s]),
        reply_to: {
            let r = addresses(m.reply_to());
            if r.is_empty() { from.clone() } else { r }
        },
        from,
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        bcc: addresses(m.bcc()),
        in_reply_to: raw("In-Reply-To"),
        message_id: raw("Message-ID"),
    }
}

fn istring_owned(s: String) -> IString<'static> {
    IString::try_from(s)
        .unwrap_or_else(|_| IString::from(imap_next::imap_types::core::Quoted::unvalidated("")))
}

fn internal_date(ms: i64) -> Option<DateTime> {
    let utc = chrono::DateTime::from_timestamp(ms.div_euclid(1000), 0)?;
    DateTime::try_from(utc.fixed_offset()).ok()
}

/// What a FETCH item names of a mail: a byte range of the message (read
/// only when answered, attachments from the engine's checked copy), or
/// bytes made from its header.
enum Wanted {
    Range(u64, u64),
    Bytes(Vec<u8>),
}

impl Wanted {
    /// The `<start.len>` of a partial FETCH, within what was named.
    fn partial(self, range: Option<(u32, std::num::NonZeroU32)>) -> Self {
        let Some((start, len)) = range else {
            return self;
        };
        let (start, len) = (u64::from(start), u64::from(len.get()));
        match self {
            Self::Range(a, b) => {
                let from = a.saturating_add(start).min(b);
                Self::Range(from, from.saturating_add(len).min(b))
            }
            Self::Bytes(data) => {
                let from = (start as usize).min(data.len());
                let to = from.saturating_add(len as usize).min(data.len());
                Self::Bytes(data[from..to].to_vec())
            }
        }
    }
}

/// What a section names of the mail (an unknown part is empty, RFC 3501).
fn section(mail: &Mail, section: &Option<Section<'_>>) -> Wanted {
    let header = mail.header();
    let (hlen, len) = (header.len() as u64, mail.len());
    let part = |p: &imap_next::imap_types::fetch::Part| match p.0.as_ref() {
        [n] => mail.parts.get(n.get() as usize - 1),
        _ => None,
    };
    let names = |list: &Vec1<imap_next::imap_types::core::AString<'_>>| {
        list.as_ref()
            .iter()
            .map(|n| n.as_ref().to_vec())
            .collect::<Vec<_>>()
    };
    let range = |(at, n): (u64, u64)| Wanted::Range(at, at + n);
    match section {
        None => Wanted::Range(0, len),
        Some(Section::Header(None)) => Wanted::Bytes(header.to_vec()),
        Some(Section::Text(None)) => Wanted::Range(hlen, len),
        Some(Section::HeaderFields(None, list)) => {
            Wanted::Bytes(render::header_fields(header, &names(list), false))
        }
        Some(Section::HeaderFieldsNot(None, list)) => {
            Wanted::Bytes(render::header_fields(header, &names(list), true))
        }
        Some(Section::Part(p)) => part(p).map_or(Wanted::Bytes(Vec::new()), |p| range(p.content)),
        Some(Section::Mime(p)) => match part(p) {
            Some(p) if mail.boundary.is_some() => range(p.mime),
            // A mail of one part: that part's MIME header is the mail's
            // header (as dovecot answers; not fields picked out of it).
            Some(_) => Wanted::Bytes(header.to_vec()),
            None => Wanted::Bytes(Vec::new()),
        },
        Some(_) => Wanted::Bytes(Vec::new()),
    }
}

impl Wanted {
    /// The bytes, attachments' from `source`.
    fn bytes(self, mail: &Mail, source: &mut render::Source<'_>) -> valise_client::Result<Vec<u8>> {
        match self {
            Self::Bytes(b) => Ok(b),
            Self::Range(a, b) => mail.read(a, b, source),
        }
    }
}

/// Letters a FETCH makes and writes out at a time.
const FETCH_BATCH: usize = 64;

/// Makes sure the attachments that `names` cover of a letter's mail are
/// checked whole in the sealed home; why not, as a NO's text.
async fn cache_covered(
    client: &mut valise_client::Client,
    letter: i64,
    mail: &Mail,
    names: &[MessageDataItemName<'_>],
) -> Option<&'static str> {
    let mut needed: Vec<usize> = names
        .iter()
        .filter_map(|n| match wanted(mail, n)? {
            Wanted::Range(a, b) => Some(mail.attachments_within(a, b)),
            Wanted::Bytes(_) => None,
        })
        .flatten()
        .collect();
    needed.sort_unstable();
    needed.dedup();
    // A download waits for the network with the home released
    // (`Client::cache_attachment`): another process on the home (a second
    // bridge trimming to its budget) may meanwhile evict one cached before
    // it. So the answer is made only after a pass that downloaded nothing,
    // which finds them all there with the home held throughout.
    for _ in 0..COVER_PASSES {
        let mut downloaded = false;
        for &index in &needed {
            match client.cache_attachment(letter, index).await {
                Ok(now) => downloaded |= now,
                Err(e) => {
                    tracing::warn!(code = e.code(), "imap fetch: attachment {index}: {e}");
                    return Some(if matches!(e, valise_client::ClientError::Attachment(_)) {
                        "[ALERT] an attachment failed its checks and is not served (see valise alerts)"
                    } else {
                        UNAVAILABLE
                    });
                }
            }
        }
        if !downloaded {
            return None;
        }
    }
    tracing::warn!("imap fetch: attachments evicted by another process as fast as downloaded");
    Some(UNAVAILABLE)
}

/// Passes of [`cache_covered`] before it gives up: each evicted by
/// another process while the next downloaded.
const COVER_PASSES: usize = 3;

const UNAVAILABLE: &str = "[UNAVAILABLE] an attachment cannot be downloaded now; try again";

/// What an item names of the mail, if it names bytes.
fn wanted(mail: &Mail, name: &MessageDataItemName<'_>) -> Option<Wanted> {
    let hlen = mail.header().len() as u64;
    match name {
        MessageDataItemName::Rfc822 => Some(Wanted::Range(0, mail.len())),
        MessageDataItemName::Rfc822Text => Some(Wanted::Range(hlen, mail.len())),
        MessageDataItemName::BodyExt {
            section: s,
            partial: p,
            ..
        } => Some(section(mail, s).partial(*p)),
        _ => None,
    }
}

fn literal(data: Vec<u8>) -> NString<'static> {
    NString(IString::try_from(data).ok())
}

/// What a streamed literal's item holds until it is written: a literal
/// (a CRLF makes it one) that imap-codec encodes in its place.
const PLACEHOLDER: &[u8] = b"\r\n";

/// A literal of a FETCH answer written as it is read: bytes
/// `start..end` of the letter's mail, in its item's place.
struct Streamed {
    /// The item, by its place in the answer.
    item: usize,
    start: u64,
    end: u64,
}

/// One letter's FETCH answer, not yet written.
struct Answer {
    seq: NonZeroU32,
    items: Vec1<MessageDataItem<'static>>,
    streamed: Option<Streaming>,
}

/// The streamed literals of an answer, and the mail and letter they come
/// from, its cached attachments held until they are written.
struct Streaming {
    mail: Mail,
    letter: i64,
    literals: Vec<Streamed>,
    _held: valise_client::Held,
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
        let drafts = sel.folder == Folder::Drafts;
        let stream_over = self.ctx.stream_over as u64;
        let read_only = sel.read_only;
        let chosen = resolve(&sel.entries, set, uid);
        let mut refused = None;
        // The answers are written here, not queued in imap-next (which
        // holds an answer whole, encoded twice over); see the module doc
        // of `imap` for why nothing interleaves.
        // In batches, each written out before the next is made: a FETCH of
        // every body of a large folder is never whole in memory, and the
        // home is held one batch at a time.
        for batch in chosen.chunks(FETCH_BATCH) {
            let Some(sel) = &mut self.selected else {
                break;
            };
            let mut client = self.ctx.device.client().await;
            let mut out = Vec::with_capacity(batch.len());
            let mut seen = Vec::new();
            for &seq in batch {
                let Some(entry) = sel.entries.get_mut(seq - 1) else {
                    continue;
                };
                // A draft is served as it was filed (Drafts holds no letters).
                let mut draft_at = None;
                let draft = if drafts && needs_letter {
                    match client.home().draft_message(entry.uid) {
                        Ok(Some((bytes, at))) => {
                            draft_at = Some(at);
                            Some(bytes)
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(code = e.code(), "imap fetch: {e}");
                            continue;
                        }
                    }
                } else {
                    None
                };
                let letter = if needs_letter && !drafts {
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
                let mail = if let Some(bytes) = draft {
                    Some(render::Mail::raw(bytes))
                } else {
                    letter.as_ref().filter(|_| needs_mail).map(render::rfc5322)
                };
                // The attachments the items cover, downloaded and checked
                // whole into the sealed home first; one that fails is never
                // served (the FETCH ends with NO, the engine raised its alert).
                if let Some(m) = &mail {
                    refused = cache_covered(&mut client, entry.letter, m, &names).await;
                    if refused.is_some() {
                        break;
                    }
                }
                let home = client.home();
                let letter_id = entry.letter;
                let mut source = |index: usize, start: u64, len: usize| {
                    home.attachment_range(letter_id, index, start, len)
                };
                let mut items = Vec::with_capacity(names.len());
                let mut streamed = Vec::new();
                let mut seen_now = false;
                for name in &names {
                    let item = match (name, &letter, &mail) {
                        (MessageDataItemName::Uid, _, _) => MessageDataItem::Uid(nz(entry.uid)),
                        (MessageDataItemName::Flags, _, _) => continue,
                        (MessageDataItemName::Envelope, Some(l), _) => {
                            MessageDataItem::Envelope(envelope(l))
                        }
                        (MessageDataItemName::Envelope, None, Some(m)) => {
                            MessageDataItem::Envelope(draft_envelope(m))
                        }
                        (MessageDataItemName::InternalDate, l, _) => {
                            let at = l.as_ref().map(|l| l.received_at_ms).or(draft_at);
                            match at.and_then(internal_date) {
                                Some(d) => MessageDataItem::InternalDate(d),
                                None => continue,
                            }
                        }
                        (MessageDataItemName::Rfc822Size, _, Some(m)) => {
                            MessageDataItem::Rfc822Size(number(m.len()))
                        }
                        (MessageDataItemName::BodyStructure, _, Some(m)) => {
                            MessageDataItem::BodyStructure(body_structure(m, true))
                        }
                        (MessageDataItemName::Body, _, Some(m)) => {
                            MessageDataItem::Body(body_structure(m, false))
                        }
                        (MessageDataItemName::Rfc822Header, _, Some(m)) => {
                            MessageDataItem::Rfc822Header(literal(m.header().to_vec()))
                        }
                        (_, _, Some(m)) => {
                            let data = match wanted(m, name) {
                                // Too long to hold: written as read, after
                                // the batch (`Session::write_answer`).
                                Some(Wanted::Range(a, b))
                                    if b.saturating_sub(a) > stream_over && m.is_literal(a, b) =>
                                {
                                    streamed.push(Streamed {
                                        item: items.len(),
                                        start: a,
                                        end: b,
                                    });
                                    literal(PLACEHOLDER.to_vec())
                                }
                                Some(w) => match w.bytes(m, &mut source) {
                                    Ok(d) => literal(d),
                                    Err(e) => {
                                        tracing::warn!(code = e.code(), "imap fetch: {e}");
                                        continue;
                                    }
                                },
                                None => continue,
                            };
                            match name {
                                MessageDataItemName::Rfc822 => {
                                    seen_now = true;
                                    MessageDataItem::Rfc822(data)
                                }
                                MessageDataItemName::Rfc822Text => {
                                    seen_now = true;
                                    MessageDataItem::Rfc822Text(data)
                                }
                                MessageDataItemName::BodyExt {
                                    section: s,
                                    partial: p,
                                    peek,
                                } => {
                                    seen_now |= !peek;
                                    MessageDataItem::BodyExt {
                                        section: s.clone(),
                                        origin: p.map(|(start, _)| start),
                                        data,
                                    }
                                }
                                _ => continue,
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
                    out.push(Answer {
                        seq: nz(seq as u32),
                        items,
                        // Held from now: the next letters' attachments,
                        // cached before this is written, and other
                        // sessions' between its windows, evict none of it.
                        streamed: mail.filter(|_| !streamed.is_empty()).map(|m| Streaming {
                            mail: m,
                            letter: letter_id,
                            literals: streamed,
                            _held: client.hold_cached(letter_id),
                        }),
                    });
                }
            }
            // Letters read now are marked in one transaction a batch.
            if let Err(e) = client.home().set_mail_flags(&key, &seen) {
                tracing::warn!(code = e.code(), "imap fetch: {e}");
            }
            drop(client);
            let mut written = Ok(());
            for answer in out {
                written = self.write_answer(answer).await;
                if written.is_err() {
                    break;
                }
            }
            if refused.is_some() || written.is_err() || self.flush().await.is_err() {
                break;
            }
        }
        match refused {
            Some(why) => super::no(tag, why),
            None => ok(tag, None, "FETCH completed"),
        }
    }
}

impl Session {
    /// Writes one letter's answer as imap-codec encodes it (as imap-next
    /// would), but each streamed literal read from the sealed home
    /// [`Ctx::stream_over`](super::Ctx) bytes at a time: the home is held
    /// for each read, not while a slow client takes the bytes.
    async fn write_answer(&mut self, answer: Answer) -> std::io::Result<()> {
        let codec = ResponseCodec::default();
        let Answer {
            seq,
            items,
            streamed,
        } = answer;
        let Some(Streaming {
            mail,
            letter,
            literals: streamed,
            _held,
        }) = streamed
        else {
            let data = Data::Fetch { seq, items };
            self.out.extend(codec.encode(&Response::Data(data)).dump());
            return Ok(());
        };
        // Which literal of the answer each streamed one is: those of the
        // items before it, counted.
        let literals = |n: usize| {
            Vec1::try_from(items.as_ref()[..n].to_vec()).map_or(0, |items| {
                let data = Data::Fetch { seq, items };
                codec
                    .encode(&Response::Data(data))
                    .filter(|f| matches!(f, Fragment::Literal { .. }))
                    .count()
            })
        };
        let mut streamed = streamed
            .into_iter()
            .map(|s| (literals(s.item), s))
            .collect::<Vec<_>>()
            .into_iter()
            .peekable();
        let announced = format!("{{{}}}\r\n", PLACEHOLDER.len());
        let mut nth = 0;
        for fragment in codec.encode(&Response::Data(Data::Fetch { seq, items })) {
            let data = match fragment {
                Fragment::Line { data } => data,
                Fragment::Literal { data, .. } => {
                    nth += 1;
                    match streamed.next_if(|(n, _)| *n == nth - 1) {
                        None => data,
                        Some((_, s)) => {
                            // The line before announced the placeholder.
                            if !self.out.ends_with(announced.as_bytes()) {
                                return Err(std::io::Error::other("unexpected FETCH encoding"));
                            }
                            self.out.truncate(self.out.len() - announced.len());
                            let end = s.end.min(mail.len());
                            let len = end.saturating_sub(s.start);
                            self.out.extend(format!("{{{len}}}\r\n").as_bytes());
                            tracing::debug!(len, "imap fetch: a literal written as read");
                            self.flush().await?;
                            self.stream(&mail, letter, s.start, end).await?;
                            continue;
                        }
                    }
                }
            };
            self.out.extend(data);
        }
        Ok(())
    }

    /// Writes bytes `start..end` of a letter's mail, read a window at a
    /// time. Once the literal's length is written, a read that fails
    /// ends the connection: a client must not take what follows for the
    /// rest of the literal.
    async fn stream(
        &mut self,
        mail: &Mail,
        letter: i64,
        start: u64,
        end: u64,
    ) -> std::io::Result<()> {
        let window = self.ctx.stream_over.max(1) as u64;
        let mut at = start;
        while at < end {
            let to = at.saturating_add(window).min(end);
            let read = {
                let client = self.ctx.device.client().await;
                let home = client.home();
                mail.read(at, to, &mut |index: usize, from: u64, len: usize| {
                    home.attachment_range(letter, index, from, len)
                })
            };
            match read {
                Ok(bytes) if bytes.len() as u64 == to - at => self.io.write_all(&bytes).await?,
                Ok(_) => {
                    self.io = Transport::Closed;
                    return Err(std::io::Error::other("a streamed literal came short"));
                }
                Err(e) => {
                    tracing::warn!(code = e.code(), "imap fetch: {e}");
                    self.io = Transport::Closed;
                    return Err(std::io::Error::other("a streamed literal failed"));
                }
            }
            at = to;
        }
        Ok(())
    }
}
