//! The delivery log on SQLite (schema: `migrations/0005_log.sql`).
//!
//! One writer (the connection behind [`SqliteStore`]'s mutex) appends rows
//! and keeps each conversation's hot state in memory (number, epoch,
//! roster), so that a letter costs a duplicate check and two inserts
//! whatever the conversation's size. Readers find a device's rows through
//! its memberships, in two steps: positions first (index only, one range
//! per conversation with anything new), then the rows of the page.

use super::*;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

const KIND_COMMIT: i64 = 1;
const KIND_WELCOME: i64 = 2;
const KIND_APPLICATION: i64 = 3;

// The statements of the hot paths (a letter written, an inbox read), by
// name, so that `tests.rs` can read each one's query plan and fail on a
// full scan (HOT_PATH).
const APPEND_ROW: &str = "INSERT INTO log (seq, conv, kind, sender, targeted, bytes, \
     ratchet_tree, at_ms, chain) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const SENT_ID: &str = "SELECT 1 FROM sent_ids WHERE sender = ?1 AND msg_id = ?2";
const NOTE_SENT_ID: &str =
    "INSERT INTO sent_ids (sender, msg_id, seq, at_ms) VALUES (?1, ?2, ?3, ?4)";
const USAGE_OF: &str = "SELECT bytes FROM usage WHERE user = ?1";
const CONVERSATION_BY_ID: &str = "SELECT num, epoch FROM conversations WHERE id = ?1";
const DEVICE_NUM: &str = "SELECT num FROM device_nums WHERE user = ?1 AND device = ?2";
const CURSOR_OF: &str = "SELECT seq, chain FROM cursors WHERE device = ?1";
const CHAIN_AT: &str = "SELECT chain FROM log WHERE seq = ?1";
const MEMBERSHIPS_OF: &str = "SELECT conv, from_seq, to_seq FROM memberships WHERE device = ?1";
const CONV_RANGE: &str = "SELECT seq FROM log WHERE conv = ?1 AND targeted = 0 \
     AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4";
const TARGETED_RANGE: &str = "SELECT seq FROM targets WHERE device = ?1 AND seq > ?2 \
     AND seq <= ?3 ORDER BY seq LIMIT ?4";
const ROW_AT: &str =
    "SELECT kind, conv, sender, bytes, ratchet_tree, chain, targeted FROM log WHERE seq = ?1";

/// Every hot statement, by name.
#[cfg(test)]
pub(super) const HOT_PATH: &[(&str, &str)] = &[
    ("APPEND_ROW", APPEND_ROW),
    ("SENT_ID", SENT_ID),
    ("NOTE_SENT_ID", NOTE_SENT_ID),
    ("USAGE_OF", USAGE_OF),
    ("CONVERSATION_BY_ID", CONVERSATION_BY_ID),
    ("DEVICE_NUM", DEVICE_NUM),
    ("CURSOR_OF", CURSOR_OF),
    ("CHAIN_AT", CHAIN_AT),
    ("MEMBERSHIPS_OF", MEMBERSHIPS_OF),
    ("CONV_RANGE", CONV_RANGE),
    ("TARGETED_RANGE", TARGETED_RANGE),
    ("ROW_AT", ROW_AT),
];

/// What the writer keeps between batches. Dropped (reloaded from the
/// database) whenever a batch fails, so it never outlives a rollback.
#[derive(Default)]
pub(super) struct LogState {
    loaded: bool,
    head: Position,
    next_conv: i64,
    convs: HashMap<ConversationId, Hot>,
    usage: HashMap<UserId, u64>,
}

/// A conversation as the writer needs it for every letter.
#[derive(Clone)]
struct Hot {
    num: i64,
    epoch: u64,
    roster: Vec<(DeviceAddress, i64)>,
}

/// A device's memberships and the generation they were read at.
type KnownMemberships = (u64, Arc<Vec<Membership>>);

/// Ids both ways and each conversation's newest row, shared by the writer
/// (which publishes after each commit) and the readers.
#[derive(Default)]
pub(super) struct Shared {
    nums: RwLock<HashMap<DeviceAddress, i64>>,
    devices: RwLock<HashMap<i64, DeviceAddress>>,
    convs: RwLock<HashMap<i64, ConversationId>>,
    /// Conversation number → its newest untargeted row (absent: unknown,
    /// so read it).
    heads: RwLock<HashMap<i64, u64>>,
    /// Device number → its newest targeted row (absent: none). Loaded at
    /// open, then published by the writer, which writes every target.
    targeted: RwLock<HashMap<i64, u64>>,
    /// Moves after every committed batch that changed memberships: a
    /// device's memberships read at one generation hold until it moves.
    membership_gen: AtomicU64,
    /// Device number → (generation, all its memberships).
    memberships: RwLock<HashMap<i64, KnownMemberships>>,
    /// Device number → the position its last read handed out: a cursor
    /// this process gave needs no look into the log to be believed.
    handed: RwLock<HashMap<i64, Position>>,
    /// The newest row readers may see: every row up to it is committed and
    /// its conversation's head published. Reads are bounded by it, so a
    /// batch committing during a read (rows of one conversation seen, of
    /// another not yet) never moves a device's cursor past a row it did
    /// not get.
    committed: AtomicU64,
    quota: AtomicU64,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(super) fn new() -> Self {
        let s = Self::default();
        s.quota.store(
            crate::store::DEFAULT_ACCOUNT_QUOTA_MIB << 20,
            Ordering::Relaxed,
        );
        s
    }

    pub(super) fn set_quota(&self, bytes: u64) {
        self.quota.store(bytes, Ordering::Relaxed);
    }

    /// Loads every conversation's newest row, and the log's (at open).
    pub(super) fn load_heads(&self, conn: &Connection) -> Result<(), StoreError> {
        let head: i64 = conn.query_row(
            "SELECT max(coalesce((SELECT seq FROM log_head), 0), \
                        coalesce((SELECT max(seq) FROM log), 0))",
            [],
            |r| r.get(0),
        )?;
        self.committed.store(to_u64(head)?, Ordering::Release);
        let mut stmt = conn.prepare("SELECT conv, max(seq) FROM log GROUP BY conv")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        let mut heads = write(&self.heads);
        for row in rows {
            let (conv, seq) = row?;
            heads.insert(conv, to_u64(seq)?);
        }
        let mut stmt = conn.prepare("SELECT device, max(seq) FROM targets GROUP BY device")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        let mut targeted = write(&self.targeted);
        for row in rows {
            let (device, seq) = row?;
            targeted.insert(device, to_u64(seq)?);
        }
        Ok(())
    }

    /// A device's memberships, from memory while no batch changed any.
    /// `committed` must be read before: a batch publishes its memberships'
    /// generation before its head.
    fn memberships(&self, conn: &Connection, me: i64) -> Result<Arc<Vec<Membership>>, StoreError> {
        let gen_now = self.membership_gen.load(Ordering::Acquire);
        if let Some((g, m)) = read(&self.memberships).get(&me)
            && *g == gen_now
        {
            return Ok(m.clone());
        }
        let m = Arc::new(memberships(conn, me)?);
        write(&self.memberships).insert(me, (gen_now, m.clone()));
        Ok(m)
    }

    pub(super) fn device_num(
        &self,
        conn: &Connection,
        d: &DeviceAddress,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(n) = read(&self.nums).get(d) {
            return Ok(Some(*n));
        }
        let n: Option<i64> = conn
            .prepare_cached(DEVICE_NUM)?
            .query_row(params![d.user.as_str(), d.device.to_string()], |r| r.get(0))
            .optional()?;
        if let Some(n) = n {
            self.remember_device(d.clone(), n);
        }
        Ok(n)
    }

    fn remember_device(&self, d: DeviceAddress, n: i64) {
        write(&self.devices).insert(n, d.clone());
        write(&self.nums).insert(d, n);
    }

    fn device(&self, conn: &Connection, n: i64) -> Result<DeviceAddress, StoreError> {
        if let Some(d) = read(&self.devices).get(&n) {
            return Ok(d.clone());
        }
        let (u, d): (String, String) = conn
            .prepare_cached("SELECT user, device FROM device_nums WHERE num = ?1")?
            .query_row([n], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt(format!("no device number {n}")))?;
        let d = parse_addr(&u, &d)?;
        self.remember_device(d.clone(), n);
        Ok(d)
    }

    fn conversation(&self, conn: &Connection, n: i64) -> Result<ConversationId, StoreError> {
        if let Some(c) = read(&self.convs).get(&n) {
            return Ok(*c);
        }
        let id: Vec<u8> = conn
            .prepare_cached("SELECT id FROM conversations WHERE num = ?1")?
            .query_row([n], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt(format!("no conversation number {n}")))?;
        let id = ConversationId::from_slice(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        write(&self.convs).insert(n, id);
        Ok(id)
    }
}

/// One batch in the making: what becomes visible to readers only once it
/// is committed.
struct Batch<'a> {
    tx: &'a Transaction<'a>,
    shared: &'a Shared,
    nums: HashMap<DeviceAddress, i64>,
    convs: Vec<(i64, ConversationId)>,
    heads: HashMap<i64, u64>,
    targeted: HashMap<i64, u64>,
    memberships_changed: bool,
    usage: HashSet<UserId>,
    wake: HashSet<DeviceAddress>,
}

impl<'a> Batch<'a> {
    fn new(tx: &'a Transaction<'a>, shared: &'a Shared) -> Self {
        Self {
            tx,
            shared,
            nums: HashMap::new(),
            convs: Vec::new(),
            heads: HashMap::new(),
            targeted: HashMap::new(),
            memberships_changed: false,
            usage: HashSet::new(),
            wake: HashSet::new(),
        }
    }

    /// What readers may see once the batch is committed, up to `head`.
    fn published(&mut self, head: u64) -> Published {
        Published {
            nums: std::mem::take(&mut self.nums),
            convs: std::mem::take(&mut self.convs),
            heads: std::mem::take(&mut self.heads),
            targeted: std::mem::take(&mut self.targeted),
            memberships_changed: std::mem::take(&mut self.memberships_changed),
            head,
        }
    }

    /// The device's number, given one on first use.
    fn num(&mut self, d: &DeviceAddress) -> Result<i64, StoreError> {
        if let Some(n) = self.nums.get(d) {
            return Ok(*n);
        }
        let n = match self.shared.device_num(self.tx, d)? {
            Some(n) => n,
            None => {
                self.tx
                    .prepare_cached("INSERT INTO device_nums (user, device) VALUES (?1, ?2)")?
                    .execute(params![d.user.as_str(), d.device.to_string()])?;
                self.tx.last_insert_rowid()
            }
        };
        self.nums.insert(d.clone(), n);
        Ok(n)
    }
}

/// The chain value of a row: it commits to every row before it.
fn chain(prev: &[u8; 16], row: &Row<'_>) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(row.seq.to_be_bytes());
    h.update(row.conv.to_be_bytes());
    h.update(row.kind.to_be_bytes());
    h.update(row.sender.to_be_bytes());
    h.update([u8::from(row.targeted)]);
    h.update((row.bytes.len() as u64).to_be_bytes());
    h.update(row.bytes);
    let digest = h.finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

struct Row<'a> {
    seq: u64,
    conv: i64,
    kind: i64,
    sender: i64,
    targeted: bool,
    bytes: &'a [u8],
}

fn chain_of(blob: &[u8]) -> [u8; 16] {
    // Rows carried over from the per-recipient inbox have no chain.
    blob.try_into().unwrap_or([0; 16])
}

impl LogState {
    fn load(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.loaded {
            return Ok(());
        }
        let (seq, chain): (i64, Vec<u8>) = tx
            .query_row("SELECT seq, chain FROM log_head", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?
            .unwrap_or((0, Vec::new()));
        self.head = Position {
            seq: to_u64(seq)?,
            chain: chain_of(&chain),
        };
        self.next_conv = tx.query_row(
            "SELECT coalesce(max(num), 0) + 1 FROM conversations",
            [],
            |r| r.get(0),
        )?;
        self.loaded = true;
        Ok(())
    }

    /// Forgets everything (after a failed batch, or a write outside the
    /// writer's knowledge).
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }

    fn hot(&mut self, b: &mut Batch<'_>, id: &ConversationId) -> Result<Option<Hot>, StoreError> {
        if let Some(h) = self.convs.get(id) {
            return Ok(Some(h.clone()));
        }
        let row: Option<(i64, i64)> =
            b.tx.prepare_cached(CONVERSATION_BY_ID)?
                .query_row(params![id.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
        let Some((num, epoch)) = row else {
            return Ok(None);
        };
        let mut roster = Vec::new();
        for d in roster_of(b.tx, id)? {
            let n = b.num(&d)?;
            roster.push((d, n));
        }
        let hot = Hot {
            num,
            epoch: to_u64(epoch)?,
            roster,
        };
        self.convs.insert(*id, hot.clone());
        Ok(Some(hot))
    }

    fn used(&mut self, b: &Batch<'_>, user: &UserId) -> Result<u64, StoreError> {
        if let Some(u) = self.usage.get(user) {
            return Ok(*u);
        }
        let used: i64 =
            b.tx.prepare_cached(USAGE_OF)?
                .query_row([user.as_str()], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
        let used = to_u64(used)?;
        self.usage.insert(user.clone(), used);
        Ok(used)
    }

    /// Appends a row; returns its position.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        b: &mut Batch<'_>,
        conv: i64,
        kind: i64,
        sender: i64,
        targeted: bool,
        bytes: &[u8],
        ratchet_tree: Option<&[u8]>,
        at_ms: i64,
    ) -> Result<u64, StoreError> {
        let seq = self.head.seq + 1;
        let row = Row {
            seq,
            conv,
            kind,
            sender,
            targeted,
            bytes,
        };
        let chain = chain(&self.head.chain, &row);
        b.tx.prepare_cached(APPEND_ROW)?.execute(params![
            to_i64(seq)?,
            conv,
            kind,
            sender,
            targeted,
            bytes,
            ratchet_tree,
            at_ms,
            &chain[..]
        ])?;
        self.head = Position { seq, chain };
        if !targeted {
            b.heads.insert(conv, seq);
        }
        Ok(seq)
    }

    fn create(&mut self, b: &mut Batch<'_>, c: &NewConversation) -> Result<(), StoreError> {
        let r = &c.record;
        if self.hot(b, &r.id)?.is_some() {
            return Err(StoreError::AlreadyExists);
        }
        let num = self.next_conv;
        b.tx.prepare_cached(
            "INSERT INTO conversations (id, epoch, ciphersuite, state, created_by_user, \
             created_by_device, created_at_ms, group_info, num) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            r.id.as_bytes(),
            to_i64(r.epoch)?,
            r.ciphersuite,
            r.state,
            c.created_by.user.as_str(),
            c.created_by.device.to_string(),
            c.now_ms,
            r.group_info,
            num
        ])?;
        self.next_conv += 1;
        insert_roster(b.tx, &r.id, &r.roster)?;
        let mut roster = Vec::new();
        for d in &r.roster {
            let n = b.num(d)?;
            open_membership(b, n, num, self.head.seq)?;
            roster.push((d.clone(), n));
        }
        b.convs.push((num, r.id));
        self.convs.insert(
            r.id,
            Hot {
                num,
                epoch: r.epoch,
                roster,
            },
        );
        Ok(())
    }

    fn commit(&mut self, b: &mut Batch<'_>, c: &AppliedCommit) -> Result<(), StoreError> {
        let mut hot = self.hot(b, &c.conversation)?.ok_or(StoreError::NotFound)?;
        if hot.epoch != c.expected_epoch {
            return Err(StoreError::StaleEpoch { current: hot.epoch });
        }
        let Some(&(_, sender)) = hot.roster.iter().find(|(d, _)| *d == c.sender) else {
            return Err(StoreError::NotMember);
        };
        b.tx.prepare_cached(
            "UPDATE conversations SET epoch = ?1, state = ?2, group_info = ?3 WHERE id = ?4",
        )?
        .execute(params![
            to_i64(c.new_epoch)?,
            c.new_state,
            c.new_group_info,
            c.conversation.as_bytes()
        ])?;
        // The committer gets its own commit too: a device that crashed
        // between the hub's acceptance and its merge learns it happened.
        let seq = self.append(
            b,
            hot.num,
            KIND_COMMIT,
            sender,
            false,
            &c.commit,
            None,
            c.now_ms,
        )?;
        let new: HashSet<&DeviceAddress> = c.new_roster.iter().collect();
        let old: HashSet<&DeviceAddress> = hot.roster.iter().map(|(d, _)| d).collect();
        for (d, n) in &hot.roster {
            b.wake.insert(d.clone());
            if !new.contains(d) {
                b.tx.prepare_cached(
                    "DELETE FROM members WHERE conversation = ?1 AND user = ?2 AND device = ?3",
                )?
                .execute(params![
                    c.conversation.as_bytes(),
                    d.user.as_str(),
                    d.device.to_string()
                ])?;
                b.tx.prepare_cached(
                    "UPDATE memberships SET to_seq = ?1 \
                     WHERE device = ?2 AND conv = ?3 AND to_seq IS NULL",
                )?
                .execute(params![to_i64(seq)?, n, hot.num])?;
                b.memberships_changed = true;
            }
        }
        let added: Vec<DeviceAddress> = c
            .new_roster
            .iter()
            .filter(|d| !old.contains(d))
            .cloned()
            .collect();
        insert_roster(b.tx, &c.conversation, &added)?;
        let mut roster = Vec::with_capacity(c.new_roster.len());
        for d in &c.new_roster {
            let n = b.num(d)?;
            if !old.contains(d) {
                open_membership(b, n, hot.num, seq)?;
            }
            roster.push((d.clone(), n));
        }
        if let Some(w) = &c.welcome {
            let at = self.append(
                b,
                hot.num,
                KIND_WELCOME,
                sender,
                true,
                &w.message,
                Some(&w.ratchet_tree),
                c.now_ms,
            )?;
            for j in &w.joiners {
                let n = b.num(j)?;
                target(b, n, at)?;
                b.wake.insert(j.clone());
            }
        }
        hot.epoch = c.new_epoch;
        hot.roster = roster;
        self.convs.insert(c.conversation, hot);
        Ok(())
    }

    fn letters(
        &mut self,
        b: &mut Batch<'_>,
        letters: &[NewMessage],
    ) -> Result<Vec<LetterOutcome>, StoreError> {
        let mut blocked: HashSet<ConversationId> = HashSet::new();
        let mut out = Vec::with_capacity(letters.len());
        for m in letters {
            if blocked.contains(&m.conversation) {
                out.push(LetterOutcome::Skipped);
                continue;
            }
            let outcome = self.letter(b, m)?;
            if matches!(outcome, LetterOutcome::Refused(_)) {
                blocked.insert(m.conversation);
            }
            out.push(outcome);
        }
        Ok(out)
    }

    fn letter(&mut self, b: &mut Batch<'_>, m: &NewMessage) -> Result<LetterOutcome, StoreError> {
        let Some(hot) = self.hot(b, &m.conversation)? else {
            return Ok(LetterOutcome::Refused(StoreError::NotFound));
        };
        let Some(&(_, sender)) = hot.roster.iter().find(|(d, _)| *d == m.sender) else {
            return Ok(LetterOutcome::Refused(StoreError::NotMember));
        };
        let seen: Option<i64> =
            b.tx.prepare_cached(SENT_ID)?
                .query_row(params![sender, &m.client_msg_id.as_bytes()[..]], |r| {
                    r.get(0)
                })
                .optional()?;
        if seen.is_some() {
            return Ok(LetterOutcome::Duplicate {
                recipients: u32::try_from(hot.roster.len() - 1).unwrap_or(u32::MAX),
                epoch: hot.epoch,
            });
        }
        if hot.epoch != m.epoch {
            return Ok(LetterOutcome::Refused(StoreError::StaleEpoch {
                current: hot.epoch,
            }));
        }
        let used = self.used(b, &m.sender.user)?;
        let size = m.bytes.len() as u64;
        if used + size > b.shared.quota.load(Ordering::Relaxed) {
            return Ok(LetterOutcome::Refused(StoreError::QuotaExceeded));
        }
        let seq = self.append(
            b,
            hot.num,
            KIND_APPLICATION,
            sender,
            false,
            &m.bytes,
            None,
            m.now_ms,
        )?;
        b.tx.prepare_cached(NOTE_SENT_ID)?.execute(params![
            sender,
            &m.client_msg_id.as_bytes()[..],
            to_i64(seq)?,
            m.now_ms
        ])?;
        self.usage.insert(m.sender.user.clone(), used + size);
        b.usage.insert(m.sender.user.clone());
        let mut recipients = 0;
        for (d, _) in &hot.roster {
            if *d != m.sender {
                recipients += 1;
                b.wake.insert(d.clone());
            }
        }
        Ok(LetterOutcome::Accepted { seq, recipients })
    }

    fn ack(
        &mut self,
        b: &mut Batch<'_>,
        device: &DeviceAddress,
        at: Position,
    ) -> Result<(), StoreError> {
        let n = b.num(device)?;
        b.tx.prepare_cached(
            "INSERT INTO cursors (device, seq, chain) VALUES (?1, ?2, ?3) \
             ON CONFLICT (device) DO UPDATE SET seq = excluded.seq, chain = excluded.chain \
             WHERE excluded.seq > cursors.seq",
        )?
        .execute(params![n, to_i64(at.seq)?, &at.chain[..]])?;
        Ok(())
    }
}

fn open_membership(b: &mut Batch<'_>, device: i64, conv: i64, from: u64) -> Result<(), StoreError> {
    b.tx.prepare_cached(
        "INSERT INTO memberships (device, conv, from_seq, to_seq) VALUES (?1, ?2, ?3, NULL)",
    )?
    .execute(params![device, conv, to_i64(from)?])?;
    b.memberships_changed = true;
    Ok(())
}

fn target(b: &mut Batch<'_>, device: i64, seq: u64) -> Result<(), StoreError> {
    b.tx.prepare_cached("INSERT OR IGNORE INTO targets (device, seq) VALUES (?1, ?2)")?
        .execute(params![device, to_i64(seq)?])?;
    let newest = b.targeted.entry(device).or_default();
    *newest = (*newest).max(seq);
    Ok(())
}

/// Applies a batch inside `tx` (the caller commits, then calls
/// [`publish`]). Each write's own refusals are outcomes; an `Err` aborts
/// the batch (the caller rolls back and resets `state`).
pub(super) fn write_batch(
    tx: &Transaction<'_>,
    state: &mut LogState,
    shared: &Shared,
    batch: Vec<LogWrite>,
) -> Result<(LogBatch, Published), StoreError> {
    state.load(tx)?;
    let mut b = Batch::new(tx, shared);
    let start = state.head.seq;
    let mut written = Vec::with_capacity(batch.len());
    for w in batch {
        written.push(match w {
            LogWrite::Create(c) => LogWritten::Created(refusal(state.create(&mut b, &c))?),
            LogWrite::Commit(c) => LogWritten::Committed(refusal(state.commit(&mut b, &c))?),
            LogWrite::Letters(l) => LogWritten::Letters(state.letters(&mut b, &l)?),
            LogWrite::Ack { device, at } => {
                LogWritten::Acked(refusal(state.ack(&mut b, &device, at))?)
            }
        });
    }
    if state.head.seq != start {
        tx.prepare_cached(
            "INSERT INTO log_head (only, seq, chain) VALUES (1, ?1, ?2) \
             ON CONFLICT (only) DO UPDATE SET seq = excluded.seq, chain = excluded.chain",
        )?
        .execute(params![to_i64(state.head.seq)?, &state.head.chain[..]])?;
    }
    for user in &b.usage {
        let used = state.usage.get(user).copied().unwrap_or(0);
        tx.prepare_cached(
            "INSERT INTO usage (user, bytes) VALUES (?1, ?2) \
             ON CONFLICT (user) DO UPDATE SET bytes = excluded.bytes",
        )?
        .execute(params![user.as_str(), to_i64(used)?])?;
    }
    let published = b.published(state.head.seq);
    Ok((
        LogBatch {
            written,
            wake: b.wake.into_iter().collect(),
        },
        published,
    ))
}

/// A write's own refusal is its outcome; a database error is the batch's.
fn refusal(r: Result<(), StoreError>) -> Result<Result<(), StoreError>, StoreError> {
    match r {
        Err(e @ (StoreError::Sqlite(_) | StoreError::Full | StoreError::Corrupt(_))) => Err(e),
        other => Ok(other),
    }
}

/// What a committed batch makes visible to readers.
pub(super) struct Published {
    nums: HashMap<DeviceAddress, i64>,
    convs: Vec<(i64, ConversationId)>,
    heads: HashMap<i64, u64>,
    targeted: HashMap<i64, u64>,
    memberships_changed: bool,
    /// The log's head after the batch.
    head: u64,
}

/// Makes a committed batch visible: ids and heads first, then the
/// committed head that bounds reads.
pub(super) fn publish(shared: &Shared, p: Published) {
    for (d, n) in p.nums {
        shared.remember_device(d, n);
    }
    write(&shared.convs).extend(p.convs);
    write(&shared.heads).extend(p.heads);
    {
        let mut targeted = write(&shared.targeted);
        for (device, seq) in p.targeted {
            let newest = targeted.entry(device).or_default();
            *newest = (*newest).max(seq);
        }
    }
    if p.memberships_changed {
        shared.membership_gen.fetch_add(1, Ordering::Release);
    }
    shared.committed.fetch_max(p.head, Ordering::Release);
}

/// Where a read starts: `after` if this log handed it out, else refused.
fn start(
    conn: &Connection,
    shared: &Shared,
    me: Option<i64>,
    after: Option<Position>,
) -> Result<Position, StoreError> {
    if let (Some(n), Some(after)) = (me, after)
        && read(&shared.handed).get(&n) == Some(&after)
    {
        return Ok(after);
    }
    let acked = match me {
        Some(n) => conn
            .prepare_cached(CURSOR_OF)?
            .query_row([n], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .optional()?
            .map(|(seq, chain)| {
                Ok::<_, StoreError>(Position {
                    seq: to_u64(seq)?,
                    chain: chain_of(&chain),
                })
            })
            .transpose()?,
        None => None,
    };
    let Some(after) = after else {
        return Ok(acked.unwrap_or(Position::ORIGIN));
    };
    if after == Position::ORIGIN || Some(after) == acked {
        return Ok(after);
    }
    let chain: Option<Vec<u8>> = conn
        .prepare_cached(CHAIN_AT)?
        .query_row([to_i64(after.seq)?], |r| r.get(0))
        .optional()?;
    match (chain, acked) {
        (Some(c), _) if chain_of(&c) == after.chain => Ok(after),
        // Behind what it acknowledged (its own home went back): the rows
        // between are gone; it goes on from its acknowledged position.
        (None, Some(acked)) if after.seq < acked.seq => Ok(acked),
        _ => Err(StoreError::UnknownPosition),
    }
}

/// A device's stretch in a conversation: (conversation, from, to), the
/// rows it reads being those with from < seq <= to (to: `u64::MAX` while
/// it is a member).
type Membership = (i64, u64, u64);

/// All of a device's memberships.
fn memberships(conn: &Connection, me: i64) -> Result<Vec<Membership>, StoreError> {
    let mut stmt = conn.prepare_cached(MEMBERSHIPS_OF)?;
    let rows = stmt.query_map(params![me], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (conv, lo, hi) = row?;
        out.push((
            conv,
            to_u64(lo)?,
            hi.map(to_u64).transpose()?.unwrap_or(u64::MAX),
        ));
    }
    Ok(out)
}

pub(super) fn inbox(
    conn: &Connection,
    shared: &Shared,
    device: &DeviceAddress,
    after: Option<Position>,
    limit: usize,
    max_bytes: usize,
    #[cfg(feature = "adversary")] hidden: &HashSet<u64>,
) -> Result<InboxRead, StoreError> {
    let me = shared.device_num(conn, device)?;
    let from = start(conn, shared, me, after)?;
    let empty = InboxRead {
        entries: Vec::new(),
        more: false,
        next: from,
    };
    let (Some(me), true) = (me, limit > 0) else {
        return Ok(empty);
    };
    // Positions first: a range per conversation with anything new, and
    // the device's targeted rows; the `limit` lowest of them, none past
    // what is published.
    let upto = shared.committed.load(Ordering::Acquire);
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let mut seqs: Vec<u64> = Vec::new();
    for &(conv, lo, hi) in shared.memberships(conn, me)?.iter() {
        let lo = lo.max(from.seq);
        let hi = hi.min(upto);
        if hi <= lo || read(&shared.heads).get(&conv).is_some_and(|h| *h <= lo) {
            continue;
        }
        let mut stmt = conn.prepare_cached(CONV_RANGE)?;
        let rows = stmt.query_map(
            params![
                conv,
                to_i64(lo)?,
                i64::try_from(hi).unwrap_or(i64::MAX),
                fetch
            ],
            |r| r.get::<_, i64>(0),
        )?;
        for row in rows {
            seqs.push(to_u64(row?)?);
        }
    }
    if read(&shared.targeted)
        .get(&me)
        .is_some_and(|newest| *newest > from.seq)
    {
        let mut stmt = conn.prepare_cached(TARGETED_RANGE)?;
        let rows = stmt.query_map(params![me, to_i64(from.seq)?, to_i64(upto)?, fetch], |r| {
            r.get::<_, i64>(0)
        })?;
        for row in rows {
            seqs.push(to_u64(row?)?);
        }
    }
    seqs.sort_unstable();
    seqs.dedup();
    let mut more = seqs.len() > limit;
    seqs.truncate(limit);

    // Then the rows of the page.
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut next = from;
    let mut stmt = conn.prepare_cached(ROW_AT)?;
    for seq in seqs {
        let row = stmt
            .query_row([to_i64(seq)?], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    r.get::<_, bool>(6)?,
                ))
            })
            .optional()?;
        // Collected between the two steps: nothing to deliver.
        let Some((kind, conv, sender, message, ratchet_tree, chain, targeted)) = row else {
            continue;
        };
        let size = message.len() + ratchet_tree.as_ref().map_or(0, Vec::len);
        if !entries.is_empty() && bytes + size > max_bytes {
            more = true;
            break;
        }
        next = Position {
            seq,
            chain: chain_of(&chain),
        };
        // A device does not read its own letters back (unless one is
        // addressed to it alone: the device must see that, and refuse it).
        if kind == KIND_APPLICATION && sender == me && !targeted {
            continue;
        }
        #[cfg(feature = "adversary")]
        if hidden.contains(&seq) {
            continue;
        }
        bytes += size;
        entries.push(StoredEntry {
            seq,
            kind: match kind {
                KIND_COMMIT => EntryKind::Commit,
                KIND_WELCOME => EntryKind::Welcome,
                KIND_APPLICATION => EntryKind::Application,
                other => return Err(StoreError::Corrupt(format!("log row kind {other}"))),
            },
            conversation: shared.conversation(conn, conv)?,
            sender: shared.device(conn, sender)?,
            message,
            ratchet_tree,
        });
    }
    if next != from {
        write(&shared.handed).insert(me, next);
    }
    Ok(InboxRead {
        entries,
        more,
        next,
    })
}

/// A revoked device never reads again: its memberships, targeted rows and
/// cursor go, so that it holds back no collection (a device that never
/// reads would otherwise keep every row after its last read, and count
/// against its correspondents' quotas, for ever). Every device of `user`
/// when `device` is `None` (an identity reset).
pub(super) fn forget_readers(
    tx: &Transaction<'_>,
    user: &str,
    device: Option<&str>,
) -> Result<(), StoreError> {
    for table in ["memberships", "targets", "cursors"] {
        tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE device IN (SELECT num FROM device_nums \
             WHERE user = ?1 AND (?2 IS NULL OR device = ?2))"
        ))?
        .execute(params![user, device])?;
    }
    Ok(())
}

/// Most entries [`inbox_count`] counts.
const MAX_COUNT: i64 = 1_000_000;

pub(super) fn inbox_count(
    conn: &Connection,
    shared: &Shared,
    device: &DeviceAddress,
    after: Option<Position>,
) -> Result<u64, StoreError> {
    let me = shared.device_num(conn, device)?;
    let from = start(conn, shared, me, after)?;
    let Some(me) = me else {
        return Ok(0);
    };
    // Counted up to a cap: a progress bar needs no more, and a device with
    // a long history must not make every count walk all of it.
    let upto = to_i64(shared.committed.load(Ordering::Acquire))?;
    let mut n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM targets \
             WHERE device = ?1 AND seq > ?2 AND seq <= ?3 LIMIT ?4)",
        )?
        .query_row(params![me, to_i64(from.seq)?, upto, MAX_COUNT], |r| {
            r.get(0)
        })?;
    for &(conv, lo, hi) in shared.memberships(conn, me)?.iter() {
        if n >= MAX_COUNT {
            break;
        }
        let lo = lo.max(from.seq);
        if hi <= lo {
            continue;
        }
        n += conn
            .prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM log WHERE conv = ?1 AND targeted = 0 \
                 AND seq > ?2 AND seq <= ?3 AND NOT (kind = ?4 AND sender = ?5) LIMIT ?6)",
            )?
            .query_row(
                params![
                    conv,
                    to_i64(lo)?,
                    i64::try_from(hi).unwrap_or(i64::MAX).min(upto),
                    KIND_APPLICATION,
                    me,
                    MAX_COUNT - n
                ],
                |r| r.get::<_, i64>(0),
            )?;
    }
    to_u64(n)
}

/// Deletes what every reader acknowledged, at most `max_rows` rows; the
/// bytes of the letters freed leave their senders' usage (only letters are
/// counted in it: a collected commit must not make room).
pub(super) fn collect(
    tx: &Transaction<'_>,
    state: &mut LogState,
    max_rows: usize,
) -> Result<u64, StoreError> {
    state.load(tx)?;
    let mut freed: HashMap<i64, u64> = HashMap::new();
    let mut deleted = 0usize;
    let mut free = |rows: &mut rusqlite::Rows<'_>, deleted: &mut usize| -> Result<(), StoreError> {
        while let Some(r) = rows.next()? {
            *freed.entry(r.get::<_, i64>(0)?).or_default() += to_u64(r.get::<_, i64>(1)?)?;
            *deleted += 1;
        }
        Ok(())
    };
    // Targets read, then targeted rows nobody is left to read.
    tx.prepare_cached(
        "DELETE FROM targets WHERE seq <= \
         coalesce((SELECT seq FROM cursors c WHERE c.device = targets.device), 0)",
    )?
    .execute([])?;
    {
        let mut stmt = tx.prepare_cached(
            "DELETE FROM log WHERE targeted = 1 AND seq <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM targets t WHERE t.seq = log.seq) \
             RETURNING sender, CASE kind WHEN 3 THEN length(bytes) ELSE 0 END",
        )?;
        free(&mut stmt.query([to_i64(state.head.seq)?])?, &mut deleted)?;
    }
    // Per conversation, below the lowest acknowledged position of the
    // devices that still read it (a removed one until it read its removal).
    let convs: Vec<(i64, Option<i64>)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT c.num, (SELECT min(coalesce(k.seq, 0)) FROM memberships m \
                            LEFT JOIN cursors k ON k.device = m.device \
                            WHERE m.conv = c.num \
                              AND (m.to_seq IS NULL OR coalesce(k.seq, 0) < m.to_seq)) \
             FROM conversations c",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (conv, needed) in convs {
        if deleted >= max_rows {
            break;
        }
        let below = match needed {
            Some(seq) => seq,
            None => to_i64(state.head.seq)?,
        };
        let budget = i64::try_from(max_rows - deleted).unwrap_or(i64::MAX);
        let last: Option<i64> = tx
            .prepare_cached(
                "SELECT max(seq) FROM (SELECT seq FROM log WHERE conv = ?1 AND targeted = 0 \
                 AND seq <= ?2 ORDER BY seq LIMIT ?3)",
            )?
            .query_row(params![conv, below, budget], |r| r.get(0))?;
        let Some(last) = last else {
            continue;
        };
        let mut stmt = tx.prepare_cached(
            "DELETE FROM log WHERE conv = ?1 AND targeted = 0 AND seq <= ?2 \
             RETURNING sender, CASE kind WHEN 3 THEN length(bytes) ELSE 0 END",
        )?;
        free(&mut stmt.query(params![conv, last])?, &mut deleted)?;
    }
    // Memberships of removed devices that read their removal.
    tx.prepare_cached(
        "DELETE FROM memberships WHERE to_seq IS NOT NULL AND to_seq <= \
         coalesce((SELECT seq FROM cursors c WHERE c.device = memberships.device), 0)",
    )?
    .execute([])?;
    let mut users: HashMap<String, u64> = HashMap::new();
    for (sender, bytes) in freed {
        let user: String = tx
            .prepare_cached("SELECT user FROM device_nums WHERE num = ?1")?
            .query_row([sender], |r| r.get(0))?;
        *users.entry(user).or_default() += bytes;
    }
    for (user, bytes) in users {
        tx.prepare_cached("UPDATE usage SET bytes = max(bytes - ?1, 0) WHERE user = ?2")?
            .execute(params![to_i64(bytes)?, user])?;
        state.usage.remove(&parse_user(&user)?);
    }
    Ok(deleted as u64)
}

#[cfg(feature = "adversary")]
pub(super) mod tamper {
    //! The log side of [`Tamper`]: copies and hidden rows.
    use super::*;

    /// Appends a copy of `row` delivered to `devices` only; returns its seq.
    pub(in super::super) fn copy_row(
        tx: &Transaction<'_>,
        state: &mut LogState,
        shared: &Shared,
        row: u64,
        devices: &[DeviceAddress],
    ) -> Result<u64, StoreError> {
        state.load(tx)?;
        let (conv, kind, sender, bytes, tree, at): (i64, i64, i64, Vec<u8>, Option<Vec<u8>>, i64) =
            tx.query_row(
                "SELECT conv, kind, sender, bytes, ratchet_tree, at_ms FROM log WHERE seq = ?1",
                [to_i64(row)?],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )?;
        stored_row(
            tx,
            state,
            shared,
            conv,
            kind,
            sender,
            &bytes,
            tree.as_deref(),
            at,
            devices,
        )
    }

    /// Appends a targeted row for `devices` (none: nobody reads it).
    #[allow(clippy::too_many_arguments)]
    pub(in super::super) fn stored_row(
        tx: &Transaction<'_>,
        state: &mut LogState,
        shared: &Shared,
        conv: i64,
        kind: i64,
        sender: i64,
        bytes: &[u8],
        tree: Option<&[u8]>,
        at_ms: i64,
        devices: &[DeviceAddress],
    ) -> Result<u64, StoreError> {
        state.load(tx)?;
        let mut b = Batch::new(tx, shared);
        let seq = state.append(&mut b, conv, kind, sender, true, bytes, tree, at_ms)?;
        for d in devices {
            let n = b.num(d)?;
            target(&mut b, n, seq)?;
        }
        tx.execute(
            "UPDATE log_head SET seq = ?1, chain = ?2",
            params![to_i64(state.head.seq)?, &state.head.chain[..]],
        )?;
        publish(shared, b.published(state.head.seq));
        Ok(seq)
    }

    pub(in super::super) fn commit_kind() -> i64 {
        KIND_COMMIT
    }
}
