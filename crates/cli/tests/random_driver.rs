//! E2 (THREATS.md): a seeded, stateful random driver. A real `valised` (the
//! test-only `adversary` build) and 3 to 8 real devices, one per user,
//! driven in-process through the `valise_client` library, in one or two
//! conversations. Each step picks, from a seeded RNG, one of: send a letter
//! (random subject and body), add a member, remove a member, sync one device
//! or all, drop a letter's entry from one device's inbox, reorder entries,
//! delay a commit behind letters of the epoch it starts, drop a commit
//! for one device for good, replay an entry (commit, Welcome or letter)
//! into inboxes, restart a
//! device (drop its `Client`, open its home again), `kill -9` and restart
//! the server, or take the server down while a device writes a letter (it
//! waits sealed in the outbox; the device's next sync sends it, in the
//! epoch and to the members of that moment, or, if the device was removed
//! meanwhile, that sync fails once saying so and the letter goes nowhere)
//! or syncs. The driver keeps a model: who is a member of what, every
//! letter sent (by whom, where, in which epoch, to which members), and
//! every tampering. Drops, reorders and delays only touch entries the
//! device has not read yet (it has not acted since they were queued).
//!
//! Commits (issue 9): a **delayed** commit is moved behind the letters of
//! the epoch it starts (one or two are sent first) and the device syncs at
//! once: those letters are held and open right after it. A **dropped**
//! commit never reaches that device: it is *cut off* from that
//! conversation from the epoch the commit starts (it must not adopt a
//! state it cannot derive, I5). The driver keeps it a member that never
//! acts there again, is never removed (it would not learn of it) and is
//! exempt from NO-FORK and NO-LOSS for that conversation from that epoch;
//! it must have said so (`letters_withheld` when letters of the missing
//! epoch wait, `refused_message` for later commits).
//!
//! The seed is printed; `VALISE_SEED=N` replays it (in
//! `random_driver_seed_a`; the other seeds' tests then skip) and
//! `VALISE_STEPS=N` makes a run longer.
//!
//! At the end the server turns honest (`reset`), every device syncs until
//! nothing more arrives, and the driver checks:
//!
//! - **NO-FORK**: every current member of a conversation is in it, not
//!   diverged, at the model's epoch, with the same epoch authenticator and
//!   the model's members; every device removed from it sees itself
//!   inactive. No `fork`, `rejoined` or `roster_mismatch` alert anywhere.
//! - **Exactly what was sent**: every letter a device shows matches a letter
//!   the driver sent (subject, body, sender user and device, conversation),
//!   was addressed to that device (it was a member when the letter was
//!   sent: a removed device gets no later letters), and is shown once.
//! - **NO-LOSS**: every letter reaches every device that was a member when
//!   it was sent, unless the driver dropped that device's entry of it.
//!   Reordered letters must arrive too: the driver only delays a letter by
//!   at most `MAX_PAST_EPOCHS` epochs (receivers keep that many past
//!   epochs' secrets, PROTOCOL.md "Ordering"), and syncs the device at once,
//!   so it is still a member of the same stint when it reads it. A letter
//!   delayed past its sender's removal must arrive too (this driver found
//!   that it did not: the receiver looked the sender up in the current
//!   tree; fixed in `Client::process`).
//! - **Drops are seen**: a letter L of sender device S, epoch e, dropped for
//!   device D and missing there, must have raised on D a `letters_withheld`
//!   alert naming S and epoch e, if D later showed a letter L' of S in the
//!   same conversation, addressed to D in the same membership stint, that
//!   was sent in epoch e after L (its number jumps) or in the first later
//!   epoch in which S had letters accepted (its `prev` says how many S had
//!   accepted in e). Otherwise L was among S's last letters before it went
//!   silent (towards D) and the gap is undetectable by design (PROTOCOL.md
//!   "Withheld letters"), so no alert is required.
//! - **No false alarms**: `letters_withheld` only on devices whose entries
//!   were dropped or reordered in that conversation (a reordered letter
//!   read late opens a gap for a while) or that were cut off from it,
//!   `refused_message` only on devices that were sent replays or cut off,
//!   `rollback` only on devices cut off (the hub's state is ahead of every
//!   commit it delivered); `key_packages_exhausted` is allowed anywhere.
//! - **Cut off, and said**: a device cut off from a conversation to which
//!   letters of the missing epoch (or later) were sent has a
//!   `letters_withheld` or `refused_message` alert there.
//!
//! What the driver does not do: drop Welcomes, or delay a commit behind a
//! later commit (a device does not hold commits: the later one is refused
//! and the conversation falls out of step, as for a dropped commit).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{DOMAIN, PASSPHRASE, Server};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;
use valise_client::mls::MAX_PAST_EPOCHS;
use valise_client::{Client, ConversationView, Draft, Enrollment, Passphrase, SyncReport};
use valise_proto::{ConversationId, UserId};

/// Steps per run unless `VALISE_STEPS` says otherwise.
const STEPS: usize = 200;

#[tokio::test]
async fn random_driver_seed_a() {
    match env_u64("VALISE_SEED") {
        Some(seed) => drive(seed).await,
        None => drive(0x5eed_0001).await,
    }
}

#[tokio::test]
async fn random_driver_seed_b() {
    if env_u64("VALISE_SEED").is_none() {
        drive(0x5eed_0002).await;
    }
}

#[tokio::test]
async fn random_driver_seed_c() {
    if env_u64("VALISE_SEED").is_none() {
        drive(0x5eed_0003).await;
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    Some(match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => v.parse().unwrap(),
    })
}

/// One run: set up, `steps` random operations, then the checks.
async fn drive(seed: u64) {
    let steps = env_u64("VALISE_STEPS").map_or(STEPS, |n| n as usize);
    println!(
        "random driver: seed {seed} ({steps} steps); replay with \
         VALISE_SEED={seed} cargo test --workspace --features valise-server/adversary \
         --test random_driver random_driver_seed_a -- --nocapture"
    );
    let started = Instant::now();
    let mut w = World::new(seed).await;
    for step in 1..=steps {
        w.step = step;
        w.random_op().await;
    }
    w.settle().await;
    let failures = w.check();
    println!(
        "seed {seed}: {} devices, {} conversations, {} letters, {} drops, {} reorders, \
         {} delayed commits, {} dropped commits, {} replays, {} client restarts, \
         {} server restarts, {} outages, {:.1} s; \
         dropped letters: {} shown anyway (replayed), {} missing and alerted, \
         {} missing undetectably (sender's last)",
        w.actors.len(),
        w.convs.len(),
        w.sent.len(),
        w.dropped.len(),
        w.reordered.len(),
        w.counts.delayed_commits,
        w.cut.len(),
        w.counts.replays,
        w.counts.client_restarts,
        w.counts.server_restarts,
        w.counts.outages,
        started.elapsed().as_secs_f64(),
        w.drop_outcomes[0],
        w.drop_outcomes[1],
        w.drop_outcomes[2],
    );
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The test-only adversary hooks, called over one kept connection.
struct Hooks {
    http: reqwest::Client,
    base: String,
}

/// An inbox entry as the `inbox` hook lists it.
#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    kind: String,
    conversation: String,
    sender: String,
}

impl Hooks {
    fn new(server: &Server) -> Self {
        let pem = std::fs::read(server.ca()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        Self {
            http,
            base: server.url.clone(),
        }
    }

    async fn call(&self, name: &str, body: Value) -> Value {
        let url = format!("{}/adversary/{name}", self.base);
        let resp = self.http.post(&url).json(&body).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "hook {name} {body}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// What waits in a device's inbox (read or not: acks lag), oldest first.
    async fn inbox(&self, device: &str) -> Vec<Entry> {
        let listing = self.call("inbox", json!({ "device": device })).await;
        listing["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Entry {
                seq: e["seq"].as_u64().unwrap(),
                kind: e["kind"].as_str().unwrap().to_owned(),
                conversation: e["conversation"].as_str().unwrap().to_owned(),
                sender: e["sender"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    /// The newest entry of `kind` from `sender` in conversation `conv`
    /// waiting in `device`'s inbox: its sequence number.
    async fn newest(&self, device: &str, kind: &str, sender: &str, conv: &str) -> Option<u64> {
        self.inbox(device)
            .await
            .iter()
            .rev()
            .find(|e| e.kind == kind && e.sender == sender && e.conversation == conv)
            .map(|e| e.seq)
    }
}

/// One device (its user has no other).
struct Actor {
    user: UserId,
    /// `user/device`, as the hooks and alerts name it.
    address: String,
    device: String,
    home: PathBuf,
    /// `None` only while restarting.
    client: Option<Client>,
    /// The last step at which it may have read its inbox: entries queued
    /// after it are unread for sure.
    last_read_step: usize,
    /// Replays were appended to its inbox.
    replayed_to: bool,
}

impl Actor {
    fn client(&mut self) -> &mut Client {
        self.client.as_mut().unwrap()
    }

    fn view(&mut self, conv: &ConversationId) -> Option<ConversationView> {
        self.client()
            .conversations()
            .unwrap()
            .into_iter()
            .find(|v| &v.id == conv)
    }
}

/// A conversation as the driver knows it (the hub's truth).
struct Conv {
    id: ConversationId,
    members: BTreeSet<usize>,
    /// Everyone who was ever a member.
    ever: BTreeSet<usize>,
    epoch: u64,
}

/// A letter the driver sent.
struct Sent {
    conv: usize,
    sender: usize,
    subject: String,
    body: String,
    /// The epoch it was accepted in (the sender's, right after sending).
    epoch: u64,
    step: usize,
    /// The members it was sent to, each with its membership stint.
    to: BTreeMap<usize, u32>,
    /// The sender's membership stint.
    sender_stint: u32,
    /// Each recipient's inbox entry (seq) for it.
    entry: BTreeMap<usize, u64>,
}

/// A commit the driver made, and each member's inbox entry for it.
struct Committed {
    conv: usize,
    step: usize,
    /// The epoch it starts.
    epoch: u64,
    /// Each member that stays (not its committer): its stint and entry (seq).
    entry: BTreeMap<usize, (u32, u64)>,
}

/// A letter written while the server was down.
struct Queued {
    conv: usize,
    sender: usize,
    subject: String,
    body: String,
}

#[derive(Default)]
struct Counts {
    outages: usize,
    replays: usize,
    delayed_commits: usize,
    client_restarts: usize,
    server_restarts: usize,
}

struct World {
    rng: StdRng,
    server: Server,
    hooks: Hooks,
    passphrase: Passphrase,
    actors: Vec<Actor>,
    convs: Vec<Conv>,
    sent: Vec<Sent>,
    /// Letters written while the server was down, in the sender's outbox
    /// until its next sync.
    queued: Vec<Queued>,
    /// How many times each actor was added to each conversation.
    stints: HashMap<(usize, usize), u32>,
    /// (letter, actor) whose inbox entry was dropped / reordered.
    dropped: HashSet<(usize, usize)>,
    reordered: HashSet<(usize, usize)>,
    commits: Vec<Committed>,
    /// (conversation, actor) cut off by a dropped commit: from this epoch on.
    cut: HashMap<(usize, usize), u64>,
    step: usize,
    counts: Counts,
    /// Dropped letters: shown anyway (replayed), missing with the alert
    /// required, missing undetectably (the sender's last).
    drop_outcomes: [usize; 3],
}

impl World {
    async fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let server = Server::start_with(&[
            "--max-sends-per-second",
            "100000",
            "--max-claims-per-minute",
            "100000",
            "--max-commits-per-minute",
            "100000",
        ]);
        let hooks = Hooks::new(&server);
        let passphrase = Passphrase::new(PASSPHRASE.into());
        let ca_pem = std::fs::read_to_string(server.ca()).unwrap();
        let n = rng.random_range(3..=8);
        let mut actors = Vec::new();
        for i in 0..n {
            let name = format!("u{i}");
            let user = UserId::parse(&format!("{name}@{DOMAIN}")).unwrap();
            let code = server.invite(&name);
            let home = server.dir.path().join(format!("home-{name}"));
            let e = Enrollment {
                server: &server.url,
                ca_pem: &ca_pem,
                user: &user,
                code: &code,
                directory_key: None,
                authority_fingerprint: None,
            };
            let client = Client::enroll(&home, &passphrase, e).await.unwrap();
            actors.push(Actor {
                address: client.me().to_string(),
                device: client.me().device.to_string(),
                user,
                home,
                client: Some(client),
                last_read_step: 0,
                replayed_to: false,
            });
        }
        let mut w = Self {
            rng,
            server,
            hooks,
            passphrase,
            actors,
            convs: Vec::new(),
            sent: Vec::new(),
            queued: Vec::new(),
            stints: HashMap::new(),
            dropped: HashSet::new(),
            reordered: HashSet::new(),
            commits: Vec::new(),
            cut: HashMap::new(),
            step: 0,
            counts: Counts::default(),
            drop_outcomes: [0; 3],
        };
        let convs = w.rng.random_range(1..=2);
        for c in 0..convs {
            w.create(c).await;
        }
        w
    }

    fn log(&self, what: impl std::fmt::Display) {
        println!("[{:>3}] {what}", self.step);
    }

    /// Conversation `c`, created by actor `c` with one to three others.
    async fn create(&mut self, c: usize) {
        let mut others: Vec<usize> = (0..self.actors.len()).filter(|&a| a != c).collect();
        others.shuffle(&mut self.rng);
        let k = self.rng.random_range(1..=others.len().min(3));
        let invited: Vec<usize> = others[..k].to_vec();
        let users: Vec<UserId> = invited
            .iter()
            .map(|&a| self.actors[a].user.clone())
            .collect();
        let id = self.actors[c]
            .client()
            .create_conversation(&format!("conversation {c}"), &users, None)
            .await
            .unwrap();
        let epoch = self.actors[c].view(&id).unwrap().epoch;
        let members: BTreeSet<usize> = invited.iter().copied().chain([c]).collect();
        for &a in &members {
            self.stints.insert((c, a), 1);
        }
        self.log(format!("u{c} creates conversation {c} with {invited:?}"));
        self.convs.push(Conv {
            id,
            ever: members.clone(),
            members,
            epoch,
        });
    }

    async fn random_op(&mut self) {
        match self.rng.random_range(0..100) {
            0..35 => self.send().await,
            35..50 => {
                let a = self.rng.random_range(0..self.actors.len());
                self.sync(a).await;
            }
            50..58 => self.add().await,
            58..64 => self.remove().await,
            64..71 => self.drop_entry().await,
            71..76 => self.reorder().await,
            76..80 => self.delay_commit().await,
            80..82 => self.drop_commit().await,
            82..87 => self.replay().await,
            87..90 => self.restart_client().await,
            90..92 => self.restart_server().await,
            92..94 => self.outage().await,
            _ => {
                self.log("everyone syncs");
                for a in 0..self.actors.len() {
                    self.sync(a).await;
                }
            }
        }
    }

    async fn sync(&mut self, a: usize) -> SyncReport {
        let step = self.step;
        // Letters written during an outage to a conversation `a` has been
        // removed from since: each fails one sync, then is gone.
        let mut doomed = self
            .queued
            .iter()
            .filter(|q| q.sender == a && !self.convs[q.conv].members.contains(&a))
            .count();
        let actor = &mut self.actors[a];
        actor.last_read_step = step;
        let report = loop {
            match actor.client().sync().await {
                Ok(r) => break r,
                Err(e) if doomed > 0 && e.to_string().contains("no longer a member") => {
                    println!("[{step:>3}] u{a}: {e}");
                    doomed -= 1;
                }
                Err(e) => panic!("step {step}: sync of u{a} failed: {e}"),
            }
        };
        self.queued_delivered(a);
        // A sync may renew the device's leaf (after a join, or daily): a
        // commit the driver did not make, which moves the hub on.
        for conv in &mut self.convs {
            if let Some(v) = self.actors[a]
                .view(&conv.id)
                .filter(|v| v.active && !v.diverged)
            {
                conv.epoch = conv.epoch.max(v.epoch);
            }
        }
        report
    }

    /// After a sync of `a`, its letters written during an outage went out,
    /// in the epoch the conversation is in now, to its members now; if `a`
    /// is no longer a member, to nobody.
    fn queued_delivered(&mut self, a: usize) {
        let (mine, others) = std::mem::take(&mut self.queued)
            .into_iter()
            .partition(|q| q.sender == a);
        self.queued = others;
        for q in mine {
            let Queued {
                conv: c,
                subject,
                body,
                ..
            } = q;
            let conv = &self.convs[c];
            let to: BTreeMap<usize, u32> = if conv.members.contains(&a) {
                conv.members
                    .iter()
                    .filter(|&&m| m != a)
                    .map(|&m| (m, self.stints[&(c, m)]))
                    .collect()
            } else {
                BTreeMap::new()
            };
            self.log(format!(
                "u{a}'s letter {} goes out in conversation {c} (epoch {}) to {:?}",
                self.sent.len(),
                conv.epoch,
                to.keys().collect::<Vec<_>>()
            ));
            let sender_stint = self.stints.get(&(c, a)).copied().unwrap_or(0);
            self.sent.push(Sent {
                conv: c,
                sender: a,
                subject,
                body,
                epoch: conv.epoch,
                step: self.step,
                to,
                sender_stint,
                // Not mapped: never a target of drops or reorders.
                entry: BTreeMap::new(),
            });
        }
    }

    /// Makes sure a member's device has read its Welcome.
    async fn ensure_joined(&mut self, a: usize, c: usize) {
        let id = self.convs[c].id;
        if !self.actors[a].view(&id).is_some_and(|v| v.active) {
            self.sync(a).await;
        }
    }

    /// The members of `c` that may act there (not cut off from it).
    fn actors_of(&self, c: usize) -> Vec<usize> {
        self.convs[c]
            .members
            .iter()
            .copied()
            .filter(|&a| !self.cut.contains_key(&(c, a)))
            .collect()
    }

    fn random_member(&mut self, c: usize) -> usize {
        *self.actors_of(c).choose(&mut self.rng).unwrap()
    }

    async fn send(&mut self) {
        let open: Vec<usize> = (0..self.convs.len())
            .filter(|&c| self.convs[c].members.len() >= 2)
            .collect();
        let Some(&c) = open.choose(&mut self.rng) else {
            return;
        };
        let s = self.random_member(c);
        self.send_from(c, s).await;
    }

    /// Actor `s` sends a letter in conversation `c`.
    async fn send_from(&mut self, c: usize, s: usize) {
        self.ensure_joined(s, c).await;
        // Its letters from an outage go first (see `outage`).
        if self.queued.iter().any(|q| q.sender == s) {
            self.sync(s).await;
        }
        let n = self.sent.len();
        let (subject, body) = self.letter_text();
        let id = self.convs[c].id;
        let draft = plain_letter(&subject, &body);
        let step = self.step;
        self.actors[s].last_read_step = step;
        if let Err(e) = self.actors[s].client().send_in(&id, draft).await {
            panic!("step {step}: u{s} could not send in conversation {c}: {e}");
        }
        let epoch = self.actors[s].view(&id).unwrap().epoch;
        assert_eq!(
            epoch, self.convs[c].epoch,
            "step {step}: u{s} sent letter {n} in epoch {epoch}, the hub is at {}",
            self.convs[c].epoch
        );
        let to: BTreeMap<usize, u32> = self.convs[c]
            .members
            .iter()
            .filter(|&&a| a != s)
            .map(|&a| (a, self.stints[&(c, a)]))
            .collect();
        // Which entry of each recipient's inbox is this letter: the newest
        // application from the sender in this conversation.
        let mut entry = BTreeMap::new();
        for &a in to.keys() {
            let (to, from) = (&self.actors[a].address, &self.actors[s].address);
            let seq = self
                .hooks
                .newest(to, "application", from, &id.to_string())
                .await
                .unwrap_or_else(|| panic!("step {step}: letter {n} is not queued for u{a}"));
            entry.insert(a, seq);
        }
        self.log(format!(
            "u{s} sends letter {n} in conversation {c} (epoch {epoch}) to {:?}",
            to.keys().collect::<Vec<_>>()
        ));
        let sender_stint = self.stints[&(c, s)];
        self.sent.push(Sent {
            conv: c,
            sender: s,
            subject,
            body,
            epoch,
            step,
            to,
            sender_stint,
            entry,
        });
    }

    /// A unique subject (it names the letter) and a random body.
    fn letter_text(&mut self) -> (String, String) {
        let n = self.sent.len() + self.queued.len();
        let subject = format!("L{n} {}", words(&mut self.rng, 1..4));
        (subject, words(&mut self.rng, 0..40))
    }

    async fn add(&mut self) {
        let c = self.rng.random_range(0..self.convs.len());
        let outside: Vec<usize> = (0..self.actors.len())
            .filter(|a| !self.convs[c].members.contains(a))
            .collect();
        let Some(&v) = outside.choose(&mut self.rng) else {
            return;
        };
        let a = self.random_member(c);
        self.ensure_joined(a, c).await;
        let (id, user, step) = (self.convs[c].id, self.actors[v].user.clone(), self.step);
        self.actors[a].last_read_step = step;
        if let Err(e) = self.actors[a].client().add_member(&id, &user).await {
            panic!("step {step}: u{a} could not add u{v} to conversation {c}: {e}");
        }
        let epoch = self.actors[a].view(&id).unwrap().epoch;
        self.log(format!("u{a} adds u{v} to conversation {c}: epoch {epoch}"));
        self.record_commit(c, a, epoch).await;
        let conv = &mut self.convs[c];
        conv.members.insert(v);
        conv.ever.insert(v);
        conv.epoch = epoch;
        *self.stints.entry((c, v)).or_default() += 1;
    }

    /// Remembers the commit `committer` just made in `c` (starting
    /// `epoch`): each other member's inbox entry for it.
    async fn record_commit(&mut self, c: usize, committer: usize, epoch: u64) {
        let id = self.convs[c].id.to_string();
        let mut entry = BTreeMap::new();
        for m in self.convs[c].members.clone() {
            if m == committer {
                continue;
            }
            let (to, from) = (&self.actors[m].address, &self.actors[committer].address);
            let seq = self
                .hooks
                .newest(to, "commit", from, &id)
                .await
                .unwrap_or_else(|| panic!("step {}: no commit queued for u{m}", self.step));
            entry.insert(m, (self.stints[&(c, m)], seq));
        }
        self.commits.push(Committed {
            conv: c,
            step: self.step,
            epoch,
            entry,
        });
    }

    async fn remove(&mut self) {
        let c = self.rng.random_range(0..self.convs.len());
        if self.convs[c].members.len() < 3 {
            return;
        }
        let a = self.random_member(c);
        // A device cut off from `c` would never learn of its removal.
        let others: Vec<usize> = self.actors_of(c).into_iter().filter(|&m| m != a).collect();
        let Some(&v) = others.choose(&mut self.rng) else {
            return;
        };
        self.ensure_joined(a, c).await;
        let (id, user, step) = (self.convs[c].id, self.actors[v].user.clone(), self.step);
        self.actors[a].last_read_step = step;
        if let Err(e) = self.actors[a].client().remove_member(&id, &user).await {
            panic!("step {step}: u{a} could not remove u{v} from conversation {c}: {e}");
        }
        let epoch = self.actors[a].view(&id).unwrap().epoch;
        self.log(format!(
            "u{a} removes u{v} from conversation {c}: epoch {epoch}"
        ));
        self.convs[c].members.remove(&v);
        self.convs[c].epoch = epoch;
        self.record_commit(c, a, epoch).await;
    }

    /// Letters (index, seq) queued for `a` that it has not read and that
    /// were not tampered with yet.
    fn unread_letters(&self, a: usize) -> Vec<(usize, u64)> {
        self.sent
            .iter()
            .enumerate()
            .filter(|(l, s)| {
                s.step > self.actors[a].last_read_step
                    && !self.dropped.contains(&(*l, a))
                    && !self.reordered.contains(&(*l, a))
            })
            .filter_map(|(l, s)| s.entry.get(&a).map(|&seq| (l, seq)))
            .collect()
    }

    /// A7: one letter's entry deleted from one device's inbox for good.
    async fn drop_entry(&mut self) {
        let Some(a) = self.some_actor_with(|w, a| !w.unread_letters(a).is_empty()) else {
            return;
        };
        let &(l, seq) = self.unread_letters(a).choose(&mut self.rng).unwrap();
        let device = self.actors[a].address.clone();
        self.hooks
            .call("drop", json!({ "device": device, "seqs": [seq] }))
            .await;
        self.log(format!("drop: u{a} will not get letter {l}"));
        self.dropped.insert((l, a));
    }

    /// A7: one to three letters moved to the end of a device's inbox, in a
    /// random order, behind at most `MAX_PAST_EPOCHS` commits; the device
    /// syncs at once (see the module doc).
    async fn reorder(&mut self) {
        let Some(a) = self.some_actor_with(|w, a| !w.reorderable(a).is_empty()) else {
            return;
        };
        let mut candidates = self.reorderable(a);
        candidates.shuffle(&mut self.rng);
        let k = self.rng.random_range(1..=candidates.len().min(3));
        let moved = &candidates[..k];
        let seqs: Vec<u64> = moved.iter().map(|&(_, seq)| seq).collect();
        let device = self.actors[a].address.clone();
        self.hooks
            .call("reorder", json!({ "device": device, "seqs": seqs }))
            .await;
        let letters: Vec<usize> = moved.iter().map(|&(l, _)| l).collect();
        self.log(format!("reorder: u{a} gets letters {letters:?} last"));
        for l in letters {
            self.reordered.insert((l, a));
        }
        self.sync(a).await;
    }

    /// Unread commits (actor, index in `commits`, entry seq) that `fit`:
    /// to a member still in the same stint, not cut off from it, with no
    /// letter of its own waiting there from an outage.
    fn unread_commits(
        &self,
        fit: impl Fn(&Self, usize, usize) -> bool,
    ) -> Vec<(usize, usize, u64)> {
        let mut found = Vec::new();
        for (k, commit) in self.commits.iter().enumerate() {
            let c = commit.conv;
            for (&a, &(stint, seq)) in &commit.entry {
                let fits = commit.step > self.actors[a].last_read_step
                    && self.convs[c].members.contains(&a)
                    && self.stints[&(c, a)] == stint
                    && !self.cut.contains_key(&(c, a))
                    && !self.queued.iter().any(|q| q.sender == a && q.conv == c)
                    && fit(self, a, k);
                if fits {
                    found.push((a, k, seq));
                }
            }
        }
        found
    }

    /// Issue 9: the newest commit of a conversation moved behind one or
    /// two letters of the epoch it starts; the device syncs at once and
    /// must open them.
    async fn delay_commit(&mut self) {
        let candidates =
            self.unread_commits(|w, _, k| w.commits[k].epoch == w.convs[w.commits[k].conv].epoch);
        let Some(&(a, k, seq)) = candidates.choose(&mut self.rng) else {
            return;
        };
        let c = self.commits[k].conv;
        // Only the newest commit of `c` for `a`: a later one would come first.
        let id = self.convs[c].id.to_string();
        let inbox = self.hooks.inbox(&self.actors[a].address).await;
        if inbox
            .iter()
            .any(|e| e.kind == "commit" && e.conversation == id && e.seq > seq)
        {
            return;
        }
        let senders: Vec<usize> = self.actors_of(c).into_iter().filter(|&s| s != a).collect();
        let mut early = 0;
        for _ in 0..self.rng.random_range(1..=2) {
            if let Some(&s) = senders.choose(&mut self.rng) {
                self.send_from(c, s).await;
                early += 1;
            }
        }
        let device = self.actors[a].address.clone();
        self.hooks
            .call("reorder", json!({ "device": device, "seqs": [seq] }))
            .await;
        self.log(format!(
            "delay: u{a} gets the commit to epoch {} of conversation {c} last",
            self.commits[k].epoch
        ));
        self.counts.delayed_commits += 1;
        let report = self.sync(a).await;
        assert!(
            report.commits >= 1 && report.new_letters >= early,
            "step {}: u{a} held {early} letters for the delayed commit, then: {report:?}",
            self.step
        );
    }

    /// Issue 9: a commit dropped from one device's inbox for good: the
    /// device is cut off from the conversation from that epoch (see the
    /// module doc). At least two members are left to act there.
    async fn drop_commit(&mut self) {
        let candidates = self.unread_commits(|w, _, k| w.actors_of(w.commits[k].conv).len() > 2);
        let Some(&(a, k, seq)) = candidates.choose(&mut self.rng) else {
            return;
        };
        let (c, epoch) = (self.commits[k].conv, self.commits[k].epoch);
        let device = self.actors[a].address.clone();
        self.hooks
            .call("drop", json!({ "device": device, "seqs": [seq] }))
            .await;
        self.log(format!(
            "drop: u{a} will not get the commit to epoch {epoch} of conversation {c}"
        ));
        self.cut.insert((c, a), epoch);
    }

    /// Unread letters of `a` that may come late and must still open: `a`
    /// is in the same stint of their conversation, at most
    /// `MAX_PAST_EPOCHS` commits after them.
    fn reorderable(&self, a: usize) -> Vec<(usize, u64)> {
        self.unread_letters(a)
            .into_iter()
            .filter(|&(l, _)| {
                let s = &self.sent[l];
                let conv = &self.convs[s.conv];
                conv.members.contains(&a)
                    && self.stints[&(s.conv, a)] == s.to[&a]
                    && conv.epoch - s.epoch <= MAX_PAST_EPOCHS as u64
            })
            .collect()
    }

    /// Whether a letter's sender is still in the conversation (the same stint).
    fn sender_still_there(&self, l: usize) -> bool {
        let s = &self.sent[l];
        self.convs[s.conv].members.contains(&s.sender)
            && self.stints[&(s.conv, s.sender)] == s.sender_stint
    }

    /// A random actor among those for which `pred` holds.
    fn some_actor_with(&mut self, pred: impl Fn(&Self, usize) -> bool) -> Option<usize> {
        let fit: Vec<usize> = (0..self.actors.len()).filter(|&a| pred(self, a)).collect();
        fit.choose(&mut self.rng).copied()
    }

    /// A8: a copy of any entry of one device's inbox appended to one or
    /// two inboxes (the same device's, another member's, the sender's own).
    async fn replay(&mut self) {
        let a = self.rng.random_range(0..self.actors.len());
        let entries = self.hooks.inbox(&self.actors[a].address).await;
        let Some(entry) = entries.choose(&mut self.rng).cloned() else {
            return;
        };
        let k = self.rng.random_range(1..=2);
        let mut all: Vec<usize> = (0..self.actors.len()).collect();
        all.shuffle(&mut self.rng);
        let targets = &all[..k];
        let to: Vec<&str> = targets
            .iter()
            .map(|&t| self.actors[t].address.as_str())
            .collect();
        self.hooks
            .call(
                "replay",
                json!({ "from": self.actors[a].address, "seq": entry.seq, "to": to }),
            )
            .await;
        self.log(format!(
            "replay: u{a}'s {} from {} to {targets:?}",
            entry.kind, entry.sender
        ));
        for &t in targets {
            self.actors[t].replayed_to = true;
        }
        self.counts.replays += 1;
    }

    /// The device's process ends; its home is opened again.
    async fn restart_client(&mut self) {
        let a = self.rng.random_range(0..self.actors.len());
        self.log(format!("restart u{a}"));
        let actor = &mut self.actors[a];
        drop(actor.client.take());
        actor.client = Some(Client::open(&actor.home, &self.passphrase).unwrap());
        self.counts.client_restarts += 1;
    }

    /// F2: `kill -9` of the server between two operations.
    async fn restart_server(&mut self) {
        self.log("kill -9 and restart the server");
        self.server.kill9();
        // The clients' connection tasks run on this thread: let them see
        // the connections close, as they would while a client waits.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.server.restart();
        self.counts.server_restarts += 1;
    }

    /// The server is down while a device writes a letter (it stays sealed
    /// in the outbox; the device's next sync delivers it) or syncs.
    async fn outage(&mut self) {
        let c = self.rng.random_range(0..self.convs.len());
        let a = self.random_member(c);
        self.ensure_joined(a, c).await;
        let write = self.rng.random_bool(0.7);
        self.log(format!(
            "outage: the server is down while u{a} {}",
            if write { "writes" } else { "syncs" }
        ));
        self.server.kill9();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let step = self.step;
        let outcome = if write {
            let (subject, body) = self.letter_text();
            let id = self.convs[c].id;
            let draft = plain_letter(&subject, &body);
            let client = self.actors[a].client.as_mut().unwrap();
            let outcome = client.send_in(&id, draft).await.map(|_| ());
            self.queued.push(Queued {
                conv: c,
                sender: a,
                subject,
                body,
            });
            outcome
        } else {
            let client = self.actors[a].client.as_mut().unwrap();
            client.sync().await.map(|_| ())
        };
        match outcome {
            Err(e) if e.code() == "queued" || e.is_transient() => {}
            other => panic!("step {step}: u{a} with the server down: {other:?}"),
        }
        self.server.restart();
        self.counts.outages += 1;
    }

    /// The server turns honest; everyone syncs until nothing arrives.
    async fn settle(&mut self) {
        self.hooks.call("reset", json!({})).await;
        self.step += 1;
        for round in 1..=10 {
            let mut busy = false;
            for a in 0..self.actors.len() {
                let r = self.sync(a).await;
                busy |= r.new_letters
                    + r.joined
                    + r.commits
                    + r.rejected
                    + r.delivered
                    + r.rejoined
                    + r.devices_added
                    + r.devices_removed
                    + r.updated
                    > 0;
            }
            if !busy {
                self.log(format!("quiet after {round} rounds"));
                return;
            }
        }
        panic!("still busy after 10 rounds of syncs");
    }

    /// Every check of the module doc; returns what failed.
    fn check(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        self.check_no_fork(&mut failures);
        let received = self.check_letters(&mut failures);
        self.check_delivery(&received, &mut failures);
        self.check_alerts(&mut failures);
        failures
    }

    fn check_no_fork(&mut self, failures: &mut Vec<String>) {
        for c in 0..self.convs.len() {
            let (id, epoch) = (self.convs[c].id, self.convs[c].epoch);
            let members: BTreeSet<UserId> = self.convs[c]
                .members
                .iter()
                .map(|&a| self.actors[a].user.clone())
                .collect();
            let mut authenticators = BTreeMap::new();
            for a in self.convs[c].ever.clone() {
                let Some(v) = self.actors[a].view(&id) else {
                    failures.push(format!("u{a} does not know conversation {c}"));
                    continue;
                };
                if !self.convs[c].members.contains(&a) {
                    if v.active {
                        failures.push(format!("u{a} was removed from {c} but is active"));
                    }
                    continue;
                }
                if self.cut.contains_key(&(c, a)) {
                    continue;
                }
                let roster: BTreeSet<UserId> = v.members.keys().cloned().collect();
                if !v.active || v.diverged || v.epoch != epoch || roster != members {
                    failures.push(format!(
                        "NO-FORK: u{a} in conversation {c}: active {}, diverged {}, epoch {} \
                         (hub {epoch}), members {roster:?} (model {members:?})",
                        v.active, v.diverged, v.epoch
                    ));
                }
                authenticators.insert(a, v.authenticator);
            }
            let distinct: BTreeSet<&String> = authenticators.values().collect();
            if distinct.len() > 1 {
                failures.push(format!(
                    "NO-FORK: conversation {c} has {} authenticators: {authenticators:?}",
                    distinct.len()
                ));
            }
        }
    }

    /// Checks what each device shows; returns the letters each received.
    fn check_letters(&mut self, failures: &mut Vec<String>) -> Vec<HashSet<usize>> {
        let by_subject: HashMap<String, usize> = self
            .sent
            .iter()
            .enumerate()
            .map(|(l, s)| (s.subject.clone(), l))
            .collect();
        let mut received = Vec::new();
        for a in 0..self.actors.len() {
            let mut got = HashSet::new();
            let client = self.actors[a].client.as_ref().unwrap();
            for summary in client.inbox().unwrap() {
                let v = client.letter(summary.id).unwrap();
                let Some(&l) = by_subject.get(&v.subject) else {
                    failures.push(format!("u{a} shows a letter never sent: {v:?}"));
                    continue;
                };
                let s = &self.sent[l];
                let sender = &self.actors[s.sender];
                if v.body != s.body
                    || v.from != sender.user
                    || v.from_device != sender.device
                    || v.conversation != self.convs[s.conv].id
                    || v.outgoing
                {
                    failures.push(format!("u{a} shows letter {l} altered: {v:?}"));
                }
                if !s.to.contains_key(&a) {
                    failures.push(format!(
                        "u{a} shows letter {l}, sent to {:?} only",
                        s.to.keys().collect::<Vec<_>>()
                    ));
                }
                if !got.insert(l) {
                    failures.push(format!("u{a} shows letter {l} twice"));
                }
            }
            received.push(got);
        }
        received
    }

    fn check_delivery(&mut self, received: &[HashSet<usize>], failures: &mut Vec<String>) {
        for l in 0..self.sent.len() {
            let s = &self.sent[l];
            for &d in s.to.keys() {
                if received[d].contains(&l) {
                    if self.dropped.contains(&(l, d)) {
                        self.drop_outcomes[0] += 1;
                    }
                    continue;
                }
                if self.cut_off(s.conv, d, s.epoch) {
                    continue;
                }
                if !self.dropped.contains(&(l, d)) {
                    let how = match (self.reordered.contains(&(l, d)), self.sender_still_there(l)) {
                        (true, true) => "reordered",
                        (true, false) => "reordered; its sender was removed since",
                        (false, _) => "untouched",
                    };
                    failures.push(format!(
                        "NO-LOSS: letter {l} (u{} in conversation {}, epoch {}) never reached \
                         u{d} ({how})",
                        s.sender, s.conv, s.epoch
                    ));
                    continue;
                }
                let Some(later) = self.follower(l, d, &received[d]) else {
                    self.drop_outcomes[2] += 1;
                    continue;
                };
                self.drop_outcomes[1] += 1;
                {
                    let sender = &self.actors[s.sender].address;
                    let alerted = self.actors[d]
                        .client
                        .as_ref()
                        .unwrap()
                        .alerts()
                        .unwrap()
                        .iter()
                        .any(|x| {
                            x.kind == "letters_withheld"
                                && x.conversation == Some(self.convs[s.conv].id.to_string())
                                && x.detail.contains(sender.as_str())
                                && (x.detail.contains(&format!("of epoch {})", s.epoch))
                                    || x.detail.contains(&format!("of epoch {},", s.epoch)))
                        });
                    if !alerted {
                        failures.push(format!(
                            "letter {l} (u{}, epoch {}) was dropped for u{d}, which then got \
                             letter {later}, but no letters_withheld alert names it",
                            s.sender, s.epoch
                        ));
                    }
                }
            }
        }
    }

    /// Whether `a` was cut off from conversation `c` by epoch `epoch`.
    fn cut_off(&self, c: usize, a: usize, epoch: u64) -> bool {
        self.cut.get(&(c, a)).is_some_and(|&from| epoch >= from)
    }

    /// A letter `d` received that reveals the drop of letter `l` (see the
    /// module doc), if any.
    fn follower(&self, l: usize, d: usize, got: &HashSet<usize>) -> Option<usize> {
        let s = &self.sent[l];
        let same_chain = |x: &Sent| x.sender == s.sender && x.conv == s.conv;
        let next_epoch = self
            .sent
            .iter()
            .filter(|x| same_chain(x) && x.epoch > s.epoch)
            .map(|x| x.epoch)
            .min();
        (l + 1..self.sent.len()).find(|&i| {
            let x = &self.sent[i];
            same_chain(x)
                && x.to.get(&d) == s.to.get(&d)
                && got.contains(&i)
                && (x.epoch == s.epoch || Some(x.epoch) == next_epoch)
        })
    }

    fn check_alerts(&mut self, failures: &mut Vec<String>) {
        for a in 0..self.actors.len() {
            let tampered: HashSet<String> = self
                .dropped
                .iter()
                .chain(&self.reordered)
                .filter(|&&(_, d)| d == a)
                .map(|&(l, _)| self.convs[self.sent[l].conv].id.to_string())
                .collect();
            let replayed = self.actors[a].replayed_to;
            let cut: HashSet<String> = self
                .cut
                .keys()
                .filter(|&&(_, d)| d == a)
                .map(|&(c, _)| self.convs[c].id.to_string())
                .collect();
            let alerts = self.actors[a].client.as_ref().unwrap().alerts().unwrap();
            let in_cut = |alert: &valise_client::Alert| {
                alert.conversation.as_ref().is_some_and(|c| cut.contains(c))
            };
            for alert in &alerts {
                let ok = match alert.kind.as_str() {
                    "letters_withheld" => {
                        in_cut(alert)
                            || alert
                                .conversation
                                .as_ref()
                                .is_some_and(|c| tampered.contains(c))
                    }
                    "refused_message" => replayed || in_cut(alert),
                    "rollback" => in_cut(alert),
                    "key_packages_exhausted" => true,
                    _ => false,
                };
                if !ok {
                    failures.push(format!(
                        "u{a}: unexpected {} alert: {}",
                        alert.kind, alert.detail
                    ));
                }
            }
            for (&(c, d), &from) in &self.cut {
                let missed = self
                    .sent
                    .iter()
                    .any(|s| s.conv == c && s.to.contains_key(&d) && s.epoch >= from);
                let id = self.convs[c].id.to_string();
                let said = alerts.iter().any(|x| {
                    x.conversation.as_deref() == Some(id.as_str())
                        && matches!(x.kind.as_str(), "letters_withheld" | "refused_message")
                });
                if d == a && missed && !said {
                    failures.push(format!(
                        "u{a} was cut off from conversation {c} at epoch {from}, missed letters \
                         there, and no alert says so"
                    ));
                }
            }
        }
    }
}

/// Some random words (a letter's text).
/// A letter with no marking and no attachment, as the driver writes them.
fn plain_letter(subject: &str, body: &str) -> Draft {
    Draft {
        message_id: None,
        subject: subject.to_owned(),
        body: body.to_owned(),
        marking: None,
        attachments: Vec::new(),
    }
}

fn words(rng: &mut StdRng, count: std::ops::Range<usize>) -> String {
    const WORDS: &[&str] = &[
        "valise",
        "lettre",
        "épée",
        "nord",
        "sud",
        "κλειδί",
        "ключ",
        "鍵",
        "🗝",
        "rendez-vous",
        "minuit",
        "quai",
        "12",
        "\"quoted\"",
        "tab\there",
        "new\nline",
    ];
    let n = rng.random_range(count);
    (0..n)
        .map(|_| *WORDS.choose(rng).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}
