//! `valise-bench`: end-to-end load against a running `valised`.
//!
//! It starts no server. It enrols K users (invite codes minted with
//! `valised admin` on the server's data directory), puts them all in one
//! conversation, and has S of them send N letters concurrently while the
//! others receive. It reports letters/s accepted by the server and the
//! send → decrypted-at-receiver latency (p50/p99), from real clients over
//! real TLS with real MLS. `--light` receivers (see [`light`]) make
//! fan-outs to a hundred devices measurable in one process;
//! `--light-senders` seal every letter first and send them in batches;
//! `--rate` paces the senders to measure latency below saturation;
//! `--server-pid` measures the server's own CPU time and memory (see
//! [`probe`]), so that figures are the server's, not the pair's.
//! `--blob-mib` measures attachments instead (see [`blobs`]).
#![forbid(unsafe_code)]

mod blobs;
mod light;
mod probe;

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use light::LightDevice;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use valise_client::{Client, Draft, Enrollment, Passphrase};
use valise_proto::{ConversationId, UserId};

/// End-to-end load generator for Valise.
#[derive(Debug, Clone, Parser)]
#[command(name = "valise-bench", version)]
struct Args {
    /// The running server, e.g. https://127.0.0.1:8443
    #[arg(long)]
    server: String,
    /// The server's data directory (for its CA and to mint invite codes).
    #[arg(long)]
    data: PathBuf,
    /// The `valised` binary used for `admin invite` [default: beside this one].
    #[arg(long)]
    valised: Option<PathBuf>,
    /// Users, one device each, all in one conversation.
    #[arg(long, short = 'k', default_value_t = 10)]
    users: usize,
    /// Letters to send in all.
    #[arg(long, short = 'n', default_value_t = 5000)]
    letters: usize,
    /// Concurrent senders (the first S users).
    #[arg(long, short = 's', default_value_t = 10)]
    senders: usize,
    /// Size of each letter's body in bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Light senders: every letter is sealed first (real MLS ciphertexts in
    /// the senders' outboxes), then each sender delivers its outbox in
    /// batches of up to 256 letters, one request in flight: measures the
    /// server without the senders' MLS work (latency is then not measured).
    #[arg(long, conflicts_with = "rate")]
    light_senders: bool,
    /// Send at this many letters/s in all (spread evenly over the senders,
    /// on a fixed schedule) instead of as fast as possible: latency below
    /// saturation. A sender that falls behind sends at once to catch up;
    /// compare the accepted rate with this one.
    #[arg(long, value_name = "LETTERS_PER_SEC")]
    rate: Option<f64>,
    /// Finds the knee: paced runs (as `--rate`) from this rate up, ×1.25
    /// each step, each with fresh users, until the accepted rate falls
    /// below 95 % of the asked one or p99 passes 50 ms; reports the last
    /// rate that held.
    #[arg(long, value_name = "LETTERS_PER_SEC", conflicts_with_all = ["rate", "light_senders"])]
    ramp: Option<f64>,
    /// The last L users are light receivers: real devices to the server
    /// (enrolled, in the conversation, long-polling and acknowledging their
    /// inbox) that never decrypt, so that a fan-out to 100 devices measures
    /// the server rather than 100 clients' MLS work on the same cores.
    #[arg(long, default_value_t = 0)]
    light: usize,
    /// The last N full receive-only devices stay offline until every letter
    /// was accepted, then catch up: measures catch-up of a queued inbox.
    #[arg(long, default_value_t = 0)]
    offline: usize,
    /// Where the devices' homes go [default: a temporary directory]; a
    /// tmpfs (e.g. /dev/shm/bench) spares the measurement the devices' fsyncs.
    #[arg(long)]
    work: Option<PathBuf>,
    /// The server's process id: reports its CPU time per accepted letter
    /// and per delivery over the send window and the drain, and its peak
    /// resident memory (from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Measure attachments instead: seal, upload and save a file of this
    /// many MiB between two devices, and what a 100 KiB attachment adds
    /// to `send` (over `--letters` sends, at most 200); prints JSON.
    #[arg(long, value_name = "MIB")]
    blob_mib: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Report {
    users: usize,
    devices_per_letter: usize,
    letters: usize,
    senders: usize,
    body_bytes: usize,
    send_seconds: f64,
    accepted_per_s: f64,
    /// Deliveries (letters times receiving devices) per second of sending.
    deliveries_per_s: f64,
    deliveries_decrypted: u64,
    /// Light receivers, and the letters they drained (not decrypted).
    light_devices: usize,
    deliveries_drained: u64,
    light_senders: bool,
    /// The paced aggregate rate asked for with `--rate`.
    target_letters_per_s: Option<f64>,
    /// Devices that only receive, where latency is measured.
    latency_devices: usize,
    p50_ms: Option<u64>,
    p99_ms: Option<u64>,
    max_ms: Option<u64>,
    drain_seconds: f64,
    /// Devices that caught up after the sends, and their slowest catch-up.
    offline_devices: usize,
    catchup_seconds: Option<f64>,
    /// With `--server-pid`: the server's CPU time (all threads) from the
    /// start of sending to the end of the drain, per accepted letter and
    /// per delivery, and its peak resident memory.
    server_cpu_us_per_letter: Option<f64>,
    server_cpu_us_per_delivery: Option<f64>,
    server_rss_peak_mib: Option<f64>,
}

const PASSPHRASE: &str = "valise-bench passphrase";

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(mib) = args.blob_mib {
        return blobs::run(&args, mib, &tempfile_dir(&args)?);
    }
    if args.senders == 0 || args.senders + args.offline + args.light >= args.users {
        bail!(
            "need 1 to users-1 senders and, beside them and the offline and light devices, \
             a full receive-only device"
        );
    }
    if args
        .rate
        .or(args.ramp)
        .is_some_and(|r| r.is_nan() || r <= 0.0)
    {
        bail!("--rate and --ramp must be positive");
    }
    let tmp = tempfile_dir(&args)?;
    if let Some(from) = args.ramp {
        return ramp(&args, from, &tmp);
    }
    let report = run(&args, &tmp, &std::process::id().to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} letters from {} senders to {} devices each ({} B bodies)\n\
             accepted: {:.0} letters/s ({:.0} deliveries/s) over {:.2} s\n\
             latency send→decrypted at {} receive-only devices: p50 {} ms, p99 {} ms, max {} ms\n\
             {} deliveries decrypted, {} drained by {} light receivers, the last {:.2} s after the last send{}{}",
            report.letters,
            report.senders,
            report.devices_per_letter,
            report.body_bytes,
            report.accepted_per_s,
            report.deliveries_per_s,
            report.send_seconds,
            report.latency_devices,
            ms(report.p50_ms),
            ms(report.p99_ms),
            ms(report.max_ms),
            report.deliveries_decrypted,
            report.deliveries_drained,
            report.light_devices,
            report.drain_seconds,
            if report.light_senders {
                " (letters sealed before the clock started)"
            } else {
                ""
            },
            report
                .target_letters_per_s
                .map_or_else(String::new, |r| format!(" (paced at {r:.0} letters/s)")),
        );
        if let (Some(l), Some(d), Some(m)) = (
            report.server_cpu_us_per_letter,
            report.server_cpu_us_per_delivery,
            report.server_rss_peak_mib,
        ) {
            println!(
                "server: {l:.0} µs of CPU per accepted letter, {d:.1} µs per delivery; \
                 peak RSS {m:.1} MiB"
            );
        }
        if let Some(c) = report.catchup_seconds {
            println!(
                "catch-up: {} offline device(s) read {} letters each in {c:.2} s ({:.0} letters/s)",
                report.offline_devices,
                report.letters,
                report.letters as f64 / c
            );
        }
    }
    Ok(())
}

/// Latency target at which the knee is read (issue 9).
const KNEE_P99_MS: u64 = 50;

/// `--ramp`: paced steps up to the knee.
fn ramp(args: &Args, from: f64, work: &Path) -> Result<()> {
    #[derive(Serialize)]
    struct Ramp {
        knee_letters_per_s: Option<f64>,
        steps: Vec<Report>,
    }
    let mut out = Ramp {
        knee_letters_per_s: None,
        steps: Vec::new(),
    };
    let mut rate = from;
    for step in 0..30 {
        let step_args = Args {
            rate: Some(rate),
            ..args.clone()
        };
        let tag = format!("{}s{step}", std::process::id());
        let report = run(&step_args, &work.join(format!("step{step}")), &tag)?;
        let held =
            report.accepted_per_s >= 0.95 * rate && report.p99_ms.is_some_and(|p| p <= KNEE_P99_MS);
        eprintln!(
            "ramp: asked {rate:.0} letters/s, accepted {:.0}, p99 {} ms{}",
            report.accepted_per_s,
            ms(report.p99_ms),
            if held { "" } else { ": past the knee" }
        );
        out.steps.push(report);
        if !held {
            break;
        }
        out.knee_letters_per_s = Some(rate);
        rate *= 1.25;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        match out.knee_letters_per_s {
            Some(k) => println!("knee: {k:.0} letters/s (p99 ≤ {KNEE_P99_MS} ms, accepted ≥ 95 %)"),
            None => println!("no knee: the first step ({from:.0} letters/s) did not hold"),
        }
    }
    Ok(())
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn tempfile_dir(args: &Args) -> Result<PathBuf> {
    let dir = match &args.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("valise-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// One measurement; `tag` makes its users' names unique on the server.
fn run(args: &Args, work: &Path, tag: &str) -> Result<Report> {
    let rt = runtime()?;
    let Site { ca_pem, domain } = Site::read(args)?;
    let passphrase = Passphrase::new(PASSPHRASE.into());

    eprintln!("enrolling {} users…", args.users);
    let full = args.users - args.light;
    let mut lights = tokio::task::JoinSet::new();
    for i in full..args.users {
        let user = UserId::parse(&format!("bench{tag}u{i}@{domain}"))?;
        let code = invite(args, &user)?;
        let (server, ca) = (args.server.clone(), ca_pem.clone());
        lights.spawn_on(
            async move { LightDevice::enroll(&server, &ca, user, &code).await },
            rt.handle(),
        );
    }
    let mut lights: Vec<LightDevice> = rt
        .block_on(lights.join_all())
        .into_iter()
        .collect::<Result<_>>()?;
    let mut clients = Vec::new();
    for i in 0..full {
        let user = UserId::parse(&format!("bench{tag}u{i}@{domain}"))?;
        let home = work.join(format!("u{i}"));
        clients.push(enroll(&rt, args, &ca_pem, &user, &home, &passphrase)?);
    }
    let members: Vec<UserId> = clients[1..]
        .iter()
        .map(|c| c.me().user.clone())
        .chain(lights.iter().map(|l| l.user.clone()))
        .collect();
    let conv = rt.block_on(clients[0].create_conversation("bench", &members, None))?;
    settle(&rt, &mut clients)?;
    for l in &mut lights {
        rt.block_on(l.skip_queued())?;
    }
    drop(rt);
    if args.light_senders {
        eprintln!("sealing {} letters…", args.letters);
    }
    let probe = args.server_pid.map(probe::Server::new);

    let body = "x".repeat(args.body_bytes);
    // Each full device decrypts every letter but its own; each light one
    // drains them all.
    let total_decrypted = (args.letters * (full - 1)) as u64;
    let total_drained = (args.letters * args.light) as u64;
    let decrypted = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(full + 1 + usize::from(!lights.is_empty())));
    let bar = ProgressBar::new(args.letters as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} letters accepted {per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut threads = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let sends = if i < args.senders {
            args.letters / args.senders + usize::from(i < args.letters % args.senders)
        } else {
            0
        };
        // Each device receives every letter except its own.
        let expect = args.letters - sends;
        let offline = i >= full - args.offline;
        let ctx = DeviceRun {
            offline,
            total: args.letters as u64,
            conv,
            sends,
            // Sender i sends letters i, i+S, i+2S… of one global schedule.
            pace: args.rate.map(|rate| Pace {
                first: i as f64 / rate,
                every: args.senders as f64 / rate,
            }),
            light_sender: args.light_senders,
            expect,
            body: body.clone(),
            decrypted: decrypted.clone(),
            accepted: accepted.clone(),
            start: start.clone(),
            bar: bar.clone(),
        };
        threads.push(std::thread::spawn(move || ctx.run(client)));
    }
    let drainer = (!lights.is_empty()).then(|| {
        let (start, letters) = (start.clone(), args.letters as u64);
        std::thread::spawn(move || drain_all(lights, letters, &start))
    });
    start.wait();
    eprintln!("sending {} letters…", args.letters);
    let cpu0 = probe.as_ref().map(probe::Server::cpu).transpose()?;
    let t0 = Instant::now();
    let mut send_end = t0;
    while accepted.load(Ordering::Relaxed) < args.letters as u64 {
        if threads.iter().all(|t| t.is_finished()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        send_end = Instant::now();
    }
    let send_seconds = (send_end - t0).as_secs_f64();
    bar.finish_and_clear();
    let mut hist = Histogram::<u64>::new(3)?;
    let mut catchup: Option<f64> = None;
    for t in threads {
        let (h, c) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a device thread panicked"))??;
        hist.add(h)?;
        if let Some(c) = c {
            catchup = Some(catchup.map_or(c, |m| m.max(c)));
        }
    }
    let drained = match drainer {
        Some(t) => t
            .join()
            .map_err(|_| anyhow::anyhow!("the light receivers' thread panicked"))??,
        None => 0,
    };
    let drain_seconds = (Instant::now() - send_end).as_secs_f64();
    let server_cpu = match (&probe, cpu0) {
        (Some(p), Some(c0)) => Some(p.cpu()?.saturating_sub(c0)),
        _ => None,
    };
    let got = decrypted.load(Ordering::Relaxed);
    if got != total_decrypted {
        bail!("only {got} of {total_decrypted} deliveries decrypted");
    }
    if drained != total_drained {
        bail!("light receivers drained {drained} of {total_drained} deliveries");
    }
    let total_deliveries = total_decrypted + total_drained;
    Ok(Report {
        users: args.users,
        devices_per_letter: args.users - 1,
        letters: args.letters,
        senders: args.senders,
        body_bytes: args.body_bytes,
        send_seconds,
        accepted_per_s: args.letters as f64 / send_seconds,
        deliveries_per_s: total_deliveries as f64 / send_seconds,
        deliveries_decrypted: got,
        light_devices: args.light,
        deliveries_drained: drained,
        light_senders: args.light_senders,
        target_letters_per_s: args.rate,
        latency_devices: full - args.senders - args.offline,
        p50_ms: (!hist.is_empty()).then(|| hist.value_at_quantile(0.5)),
        p99_ms: (!hist.is_empty()).then(|| hist.value_at_quantile(0.99)),
        max_ms: (!hist.is_empty()).then(|| hist.max()),
        drain_seconds,
        offline_devices: args.offline,
        catchup_seconds: catchup,
        server_cpu_us_per_letter: server_cpu.map(|c| c.as_secs_f64() * 1e6 / args.letters as f64),
        server_cpu_us_per_delivery: server_cpu
            .map(|c| c.as_secs_f64() * 1e6 / total_deliveries.max(1) as f64),
        server_rss_peak_mib: probe
            .as_ref()
            .map(probe::Server::rss_peak_mib)
            .transpose()?,
    })
}

/// Syncs every device until a round changes nothing: joiners renew their
/// leaf keys at once (each a commit), and letters sealed before everyone
/// is at the last epoch would be sealed again inside the measurement.
fn settle(rt: &tokio::runtime::Runtime, clients: &mut [Client]) -> Result<()> {
    for _ in 0..clients.len() + 2 {
        let mut changed = false;
        for c in clients.iter_mut() {
            let r = rt.block_on(c.sync())?;
            changed |= r.joined + r.commits + r.updated > 0;
        }
        if !changed {
            return Ok(());
        }
    }
    bail!("the bench conversation did not settle")
}

/// All light receivers on one thread: each drains `letters` letters.
fn drain_all(lights: Vec<LightDevice>, letters: u64, start: &Barrier) -> Result<u64> {
    let rt = runtime()?;
    start.wait();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut set = tokio::task::JoinSet::new();
    for l in lights {
        set.spawn_on(async move { l.drain(letters, deadline).await }, rt.handle());
    }
    let mut total = 0;
    for n in rt.block_on(set.join_all()) {
        total += n?;
    }
    Ok(total)
}

/// A sender's place in the paced schedule, in seconds after the start.
#[derive(Clone, Copy)]
struct Pace {
    first: f64,
    every: f64,
}

/// One device's part: send its share, and receive everything else.
struct DeviceRun {
    /// Stays offline until all `total` letters were accepted.
    offline: bool,
    total: u64,
    conv: ConversationId,
    sends: usize,
    pace: Option<Pace>,
    light_sender: bool,
    expect: usize,
    body: String,
    decrypted: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    start: Arc<Barrier>,
    bar: ProgressBar,
}

impl DeviceRun {
    fn run(self, mut client: Client) -> Result<(Histogram<u64>, Option<f64>)> {
        let rt = runtime()?;
        let mut hist = Histogram::<u64>::new(3)?;
        let draft = |i| Draft {
            message_id: None,
            subject: format!("bench {i}"),
            body: self.body.clone(),
            marking: None,
            attachments: Vec::new(),
        };
        if self.light_sender {
            for i in 0..self.sends {
                client.seal_in(&self.conv, draft(i))?;
            }
        }
        self.start.wait();
        if self.light_sender {
            let (n, _) = rt.block_on(client.deliver_outbox())?;
            self.accepted.fetch_add(n as u64, Ordering::Relaxed);
            self.bar.inc(n as u64);
        } else {
            let t0 = Instant::now();
            for i in 0..self.sends {
                if let Some(p) = self.pace {
                    let at = t0 + Duration::from_secs_f64(p.first + i as f64 * p.every);
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                }
                rt.block_on(client.send_in(&self.conv, draft(i)))?;
                self.accepted.fetch_add(1, Ordering::Relaxed);
                self.bar.inc(1);
            }
        }
        // Latency counts at devices that only receive (a sender reads its
        // inbox only after its last send), and only when the clock started
        // before the letters were sealed.
        let measure = self.sends == 0 && !self.light_sender && !self.offline;
        if self.offline {
            while self.accepted.load(Ordering::Relaxed) < self.total {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let catchup_start = Instant::now();
        let mut seen = 0;
        let mut last_id = 0;
        let deadline = Instant::now() + Duration::from_secs(600);
        while seen < self.expect {
            if Instant::now() > deadline {
                bail!(
                    "{} timed out with {seen}/{} letters",
                    client.me(),
                    self.expect
                );
            }
            rt.block_on(client.sync_wait(1000))?;
            let now = now_ms();
            for l in client.inbox_after(last_id)? {
                if measure {
                    hist.record(u64::try_from(now - l.sent_at_ms).unwrap_or(0))?;
                }
                last_id = l.id;
                seen += 1;
            }
        }
        self.decrypted.fetch_add(seen as u64, Ordering::Relaxed);
        let catchup = self.offline.then(|| catchup_start.elapsed().as_secs_f64());
        Ok((hist, catchup))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a measurement needs from the server's data folder: the CA that
/// signed its TLS certificate and its mail domain (users' names end in it).
struct Site {
    ca_pem: String,
    domain: String,
}

impl Site {
    fn read(args: &Args) -> Result<Self> {
        let ca_pem = std::fs::read_to_string(args.data.join("tls").join("ca.pem"))
            .context("reading the server's tls/ca.pem")?;
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(args.data.join("config.json"))
                .context("reading config.json")?,
        )?;
        let domain = config["domain"]
            .as_str()
            .context("config.json has no domain")?
            .to_owned();
        Ok(Self { ca_pem, domain })
    }
}

/// Invites `user` and enrols a real device for it at `home`, as every
/// measurement that drives full clients does.
fn enroll(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    ca_pem: &str,
    user: &UserId,
    home: &Path,
    passphrase: &Passphrase,
) -> Result<Client> {
    let code = invite(args, user)?;
    let e = Enrollment {
        server: &args.server,
        ca_pem,
        user,
        code: &code,
        directory_key: None,
        authority_fingerprint: None,
    };
    Ok(rt.block_on(Client::enroll(home, passphrase, e))?)
}

/// Mints an invite code with the server's own admin command.
fn invite(args: &Args, user: &UserId) -> Result<String> {
    let valised = match &args.valised {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("valised"),
    };
    let out = std::process::Command::new(&valised)
        .arg("admin")
        .arg("--data")
        .arg(&args.data)
        .arg("invite")
        .arg(user.as_str())
        .output()
        .with_context(|| format!("running {}", valised.display()))?;
    if !out.status.success() {
        bail!(
            "valised admin invite: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
