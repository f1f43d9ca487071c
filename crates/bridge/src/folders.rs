//! The folders a mail client sees: INBOX, Sent, Drafts, Archive, Trash,
//! and `Conversations/<name>`, one per conversation (listed, not
//! subscribed, so a client's default view is not flooded).

use base64::Engine as _;
use base64::engine::{GeneralPurpose, general_purpose::NO_PAD};
use valise_client::Client;
use valise_client::home::mail::FolderFilter;

/// The hierarchy separator.
pub const DELIMITER: char = '/';
/// The parent of the conversation folders (not selectable itself).
pub const CONVERSATIONS: &str = "Conversations";

/// One folder.
#[derive(Clone, PartialEq, Eq)]
pub enum Folder {
    Inbox,
    Sent,
    Drafts,
    Archive,
    Trash,
    /// A conversation: its id (as the home stores it) and IMAP name
    /// (modified UTF-7).
    Conversation {
        id: String,
        name: String,
    },
}

impl Folder {
    /// The key its UIDs are stored under in the home (never its name,
    /// which is content and may change).
    pub fn key(&self) -> String {
        match self {
            Self::Conversation { id, .. } => format!("conv:{id}"),
            other => other.name(),
        }
    }

    /// Its IMAP name.
    pub fn name(&self) -> String {
        match self {
            Self::Inbox => "INBOX".into(),
            Self::Sent => "Sent".into(),
            Self::Drafts => "Drafts".into(),
            Self::Archive => "Archive".into(),
            Self::Trash => "Trash".into(),
            Self::Conversation { name, .. } => name.clone(),
        }
    }

    /// Its RFC 6154 special-use attribute.
    pub fn special_use(&self) -> Option<&'static str> {
        match self {
            Self::Sent => Some("\\Sent"),
            Self::Drafts => Some("\\Drafts"),
            Self::Archive => Some("\\Archive"),
            Self::Trash => Some("\\Trash"),
            Self::Inbox | Self::Conversation { .. } => None,
        }
    }

    /// Which letters it shows.
    pub fn filter(&self) -> FolderFilter<'_> {
        match self {
            Self::Inbox => FolderFilter::Received,
            Self::Sent => FolderFilter::Sent,
            Self::Drafts | Self::Archive | Self::Trash => FolderFilter::Empty,
            Self::Conversation { id, .. } => FolderFilter::Conversation(id),
        }
    }

    /// Subscribed by default (LSUB).
    pub fn subscribed(&self) -> bool {
        !matches!(self, Self::Conversation { .. })
    }
}

/// The folders every home has.
fn fixed() -> [Folder; 5] {
    [
        Folder::Inbox,
        Folder::Sent,
        Folder::Drafts,
        Folder::Archive,
        Folder::Trash,
    ]
}

/// Every folder, conversations by name (a duplicate name gets its id's
/// first 8 digits, so names are unique).
pub fn all(client: &Client) -> valise_client::Result<Vec<Folder>> {
    let mut folders = fixed().to_vec();
    let conversations = client.conversations()?;
    let me = &client.me().user;
    // An unnamed conversation (`valise send --to`) is named by the others in it.
    let plain = |c: &valise_client::ConversationView| {
        let name = if c.name.trim().is_empty() {
            let others: Vec<&str> = c
                .members
                .keys()
                .filter(|u| *u != me)
                .map(|u| u.as_str())
                .collect();
            others.join(", ")
        } else {
            c.name.clone()
        };
        let clean: String = name
            .chars()
            .map(|c| {
                if c == DELIMITER || c.is_control() {
                    '-'
                } else {
                    c
                }
            })
            .collect();
        if clean.trim().is_empty() {
            "(unnamed)".to_owned()
        } else {
            clean
        }
    };
    let mut names: Vec<String> = conversations.iter().map(plain).collect();
    let dup: Vec<bool> = names
        .iter()
        .map(|n| names.iter().filter(|m| *m == n).count() > 1)
        .collect();
    for ((conv, name), dup) in conversations.iter().zip(names.iter_mut()).zip(dup) {
        let id = conv.id.to_string();
        if dup {
            name.push_str(&format!(" ({})", id.get(..8).unwrap_or(&id)));
        }
        folders.push(Folder::Conversation {
            id,
            name: format!("{CONVERSATIONS}{DELIMITER}{}", mutf7(name)),
        });
    }
    Ok(folders)
}

/// The folder a client names (INBOX in any case). Only a conversation's
/// name costs a look at the conversations (every MLS group's roster): a
/// client polls STATUS of the fixed folders often.
pub fn find(client: &Client, name: &str) -> valise_client::Result<Option<Folder>> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(Some(Folder::Inbox));
    }
    if let Some(folder) = fixed().into_iter().find(|f| f.name() == name) {
        return Ok(Some(folder));
    }
    if !name.starts_with(&format!("{CONVERSATIONS}{DELIMITER}")) {
        return Ok(None);
    }
    Ok(all(client)?.into_iter().find(|f| f.name() == name))
}

/// IMAP's modified UTF-7 (RFC 3501 5.1.3): names are ASCII on the wire.
pub fn mutf7(s: &str) -> String {
    const B64: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::IMAP_MUTF7, NO_PAD);
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if !run.is_empty() {
            let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&B64.encode(bytes));
            out.push('-');
            run.clear();
        }
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            run.extend(c.encode_utf16(&mut [0; 2]).iter());
        }
    }
    flush(&mut run, &mut out);
    out
}

/// RFC 3501 LIST matching: `*` matches anything, `%` anything but the
/// delimiter. Dynamic programming over (pattern, name) prefixes: a client's
/// pattern of many wildcards costs O(pattern × name), never backtracking.
pub fn matches(pattern: &str, name: &str) -> bool {
    if name == "INBOX" && pattern.eq_ignore_ascii_case("inbox") {
        return true;
    }
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // row[j]: the pattern so far matches the first j bytes of the name.
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; n.len() + 1];
        match c {
            b'*' | b'%' => {
                for j in 0..=n.len() {
                    // Extend a match by one byte the wildcard may take.
                    let extend = j > 0 && next[j - 1] && (c == b'*' || n[j - 1] != DELIMITER as u8);
                    next[j] = row[j] || extend;
                }
            }
            _ => {
                for j in 1..=n.len() {
                    next[j] = row[j - 1] && n[j - 1] == c;
                }
            }
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_as_rfc3501_spells_it() {
        assert_eq!(mutf7("Budget"), "Budget");
        assert_eq!(mutf7("A&B"), "A&-B");
        assert_eq!(
            mutf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mutf7("Genève"), "Gen&AOg-ve");
    }

    #[test]
    fn list_wildcards() {
        assert!(matches("*", "Conversations/Visa"));
        assert!(!matches("%", "Conversations/Visa"));
        assert!(matches("%", "Sent"));
        assert!(matches("Conversations/%", "Conversations/Visa"));
        assert!(matches("inbox", "INBOX"));
        assert!(!matches("Sen", "Sent"));
        assert!(matches("S%t", "Sent") && !matches("C%a", "Conversations/Visa"));
        assert!(matches("*/V*a", "Conversations/Visa"));
    }

    #[test]
    fn many_wildcards_cost_no_more_than_their_length() {
        let pattern = "*a".repeat(2000) + "b";
        let name = "a".repeat(4000);
        let t = std::time::Instant::now();
        assert!(!matches(&pattern, &name));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}
