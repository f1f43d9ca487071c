//! SEARCH: the letters of the selected folder that match the criteria,
//! judged on the letter as stored (and its rendered header for HEADER).

use super::{Session, Tag, nz, ok};
use crate::render::{self, Mail};
use chrono::NaiveDate;
use imap_next::imap_types::core::{AString, Vec1};
use imap_next::imap_types::response::{Data, Status};
use imap_next::imap_types::search::SearchKey;
use valise_client::home::mail::FolderEntry;
use valise_client::{Client, LetterView};

/// One letter under judgement; read from the home only if a key needs it.
struct Candidate<'a> {
    seq: usize,
    entry: &'a FolderEntry,
    /// Sequence numbers and UIDs `*` stands for.
    largest: (u32, u32),
    letter: Option<LetterView>,
    /// Rendered once, for HEADER, LARGER and SMALLER alike.
    mail: Option<Mail>,
    client: &'a Client,
    drafts: bool,
}

impl Candidate<'_> {
    fn letter(&mut self) -> Option<&LetterView> {
        // Drafts hold drafts, not letters: only flags and numbers match.
        if self.letter.is_none() && !self.drafts {
            self.letter = self.client.letter(self.entry.letter).ok();
        }
        self.letter.as_ref()
    }

    fn mail(&mut self) -> Option<&Mail> {
        if self.mail.is_none() {
            self.mail = self.letter().map(render::rfc5322);
        }
        self.mail.as_ref()
    }

    /// The (UTC) day the letter arrived: SINCE, BEFORE and ON compare it.
    fn received_day(&mut self) -> Option<NaiveDate> {
        self.letter().and_then(|l| day(l.received_at_ms))
    }

    /// The day it was sent: SENTSINCE, SENTBEFORE and SENTON compare it.
    fn sent_day(&mut self) -> Option<NaiveDate> {
        self.letter().and_then(|l| day(l.sent_at_ms))
    }
}

fn text(s: &AString<'_>) -> String {
    String::from_utf8_lossy(s.as_ref()).to_lowercase()
}

fn day(ms: i64) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp(ms.div_euclid(1000), 0).map(|d| d.date_naive())
}

fn in_set(set: &imap_next::imap_types::sequence::SequenceSet, n: u32, largest: u32) -> bool {
    use imap_next::imap_types::sequence::{SeqOrUid, Sequence};
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(a) => value(a) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

fn judge(key: &SearchKey<'_>, c: &mut Candidate<'_>) -> bool {
    let f = c.entry.flags;
    let contains = |hay: &str, needle: &AString<'_>| hay.to_lowercase().contains(&text(needle));
    match key {
        SearchKey::All | SearchKey::Old | SearchKey::Undraft => true,
        SearchKey::New | SearchKey::Recent | SearchKey::Draft => false,
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| judge(k, c)),
        SearchKey::Or(a, b) => judge(a, c) || judge(b, c),
        SearchKey::Not(k) => !judge(k, c),
        SearchKey::SequenceSet(set) => in_set(set, c.seq as u32, c.largest.0),
        SearchKey::Uid(set) => in_set(set, c.entry.uid, c.largest.1),
        SearchKey::Seen => f.seen,
        SearchKey::Unseen => !f.seen,
        SearchKey::Flagged => f.flagged,
        SearchKey::Unflagged => !f.flagged,
        SearchKey::Answered => f.answered,
        SearchKey::Unanswered => !f.answered,
        SearchKey::Deleted => f.deleted,
        SearchKey::Undeleted => !f.deleted,
        SearchKey::Keyword(_) => false,
        SearchKey::Unkeyword(_) => true,
        SearchKey::Since(d) => c.received_day().is_some_and(|x| x >= *d.as_ref()),
        SearchKey::Before(d) => c.received_day().is_some_and(|x| x < *d.as_ref()),
        SearchKey::On(d) => c.received_day().is_some_and(|x| x == *d.as_ref()),
        SearchKey::SentSince(d) => c.sent_day().is_some_and(|x| x >= *d.as_ref()),
        SearchKey::SentBefore(d) => c.sent_day().is_some_and(|x| x < *d.as_ref()),
        SearchKey::SentOn(d) => c.sent_day().is_some_and(|x| x == *d.as_ref()),
        SearchKey::From(s) => c.letter().is_some_and(|l| contains(l.from.as_str(), s)),
        SearchKey::To(s) => c
            .letter()
            .is_some_and(|l| l.to.iter().any(|t| contains(t.as_str(), s))),
        SearchKey::Cc(_) | SearchKey::Bcc(_) => false,
        SearchKey::Subject(s) => c.letter().is_some_and(|l| contains(&render::subject(l), s)),
        SearchKey::Body(s) => c.letter().is_some_and(|l| contains(&l.body, s)),
        // The whole mail: its header as rendered (every field, as dovecot
        // searches it), the subject decoded, and the body.
        SearchKey::Text(s) => {
            c.letter()
                .is_some_and(|l| contains(&l.body, s) || contains(&render::subject(l), s))
                || c.mail()
                    .is_some_and(|m| contains(&String::from_utf8_lossy(m.header()), s))
        }
        SearchKey::Header(name, value) => c.mail().is_some_and(|mail| {
            let field = render::header_fields(mail.header(), &[name.as_ref().to_vec()], false);
            let field = String::from_utf8_lossy(&field);
            let value = text(value);
            field.len() > 2 && field.to_lowercase().contains(&value)
        }),
        SearchKey::Larger(n) => c.mail().is_some_and(|m| m.len() > u64::from(*n)),
        SearchKey::Smaller(n) => c.mail().is_some_and(|m| m.len() < u64::from(*n)),
    }
}

impl Session {
    pub(super) async fn search(
        &mut self,
        tag: Tag<'static>,
        criteria: &Vec1<SearchKey<'static>>,
        uid: bool,
    ) -> Status<'static> {
        let Some(sel) = &self.selected else {
            return super::no(tag, "select a folder first");
        };
        let largest = (
            sel.entries.len() as u32,
            sel.entries.last().map_or(0, |e| e.uid),
        );
        let drafts = sel.folder == crate::folders::Folder::Drafts;
        let client = self.ctx.device.client().await;
        let mut found = Vec::new();
        for (i, entry) in sel.entries.iter().enumerate() {
            let mut c = Candidate {
                seq: i + 1,
                entry,
                largest,
                letter: None,
                mail: None,
                client: &client,
                drafts,
            };
            if criteria.as_ref().iter().all(|k| judge(k, &mut c)) {
                found.push(nz(if uid { entry.uid } else { i as u32 + 1 }));
            }
        }
        drop(client);
        self.server.enqueue_data(Data::Search(found));
        ok(tag, None, "SEARCH completed")
    }
}
