//! `--blob-mib N`: attachments. Two real devices (alice, bob) on the
//! running server; measures, in one run:
//!
//! * sealing alone (STREAM + BLAKE3, in memory, one core), in MB/s;
//! * `send` of a letter with an N MiB file: seal, upload in fsynced 8 MiB
//!   parts over TLS, send the letter;
//! * `save` of it by bob: ranged download, every chunk and the digest
//!   checked, written and fsynced;
//! * the peak resident memory of this process (both clients) and, with
//!   `--server-pid`, of the server, before and after: memory stays flat;
//! * what a 100 KiB attachment adds to `send` (p50 over `--letters` sends
//!   with and without one, both ways).

use crate::{Args, PASSPHRASE, Site, enroll, probe, runtime};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};
use valise_client::{Draft, Passphrase};
use valise_proto::UserId;
use valise_proto::blob::{BlobKey, Sealer};

#[derive(Debug, Serialize)]
struct BlobReport {
    size_mib: u64,
    seal_only_mb_per_s: f64,
    upload_seconds: f64,
    upload_mb_per_s: f64,
    save_seconds: f64,
    save_mb_per_s: f64,
    client_rss_peak_before_mib: f64,
    client_rss_peak_after_mib: f64,
    /// RSS as the save started, and its peak during the save.
    client_rss_before_save_mib: f64,
    client_rss_peak_in_save_mib: f64,
    server_rss_peak_before_mib: Option<f64>,
    server_rss_peak_after_mib: Option<f64>,
    sends_measured: usize,
    send_p50_ms: f64,
    send_with_100k_p50_ms: f64,
}

const MB: f64 = 1e6;

pub fn run(args: &Args, size_mib: u64, work: &Path) -> Result<()> {
    let size = size_mib << 20;
    let seal_only = seal_only(size)?;
    eprintln!("sealing alone: {seal_only:.0} MB/s");
    let rt = runtime()?;
    let Site { ca_pem, domain } = Site::read(args)?;
    let passphrase = Passphrase::new(PASSPHRASE.into());
    let tag = std::process::id();
    let mut devices = Vec::new();
    for name in ["alice", "bob"] {
        let user = UserId::parse(&format!("blobs{tag}{name}@{domain}"))?;
        devices.push(enroll(
            &rt,
            args,
            &ca_pem,
            &user,
            &work.join(name),
            &passphrase,
        )?);
    }
    let (mut alice, mut bob) = (devices.remove(0), devices.remove(0));
    let bob_user = bob.me().user.clone();
    let server = args.server_pid.map(probe::Server::new);
    let server_before = server
        .as_ref()
        .map(probe::Server::rss_peak_mib)
        .transpose()?;
    let client_before = own_rss_peak_mib()?;

    let source = work.join("annex.bin");
    write_source(&source, size)?;
    let draft = |subject: &str, files: Vec<std::path::PathBuf>| Draft {
        message_id: None,
        subject: subject.into(),
        body: "bench".into(),
        marking: None,
        attachments: files
            .into_iter()
            .map(valise_client::attachments::AttachmentSource::File)
            .collect(),
    };
    let to = std::slice::from_ref(&bob_user);
    let start = Instant::now();
    rt.block_on(alice.send_to(to, draft("large", vec![source.clone()])))?;
    let upload = start.elapsed().as_secs_f64();
    eprintln!("send with {size_mib} MiB: {upload:.2} s");

    rt.block_on(bob.sync())?;
    let letter = bob.inbox()?.last().context("bob received nothing")?.id;
    let out = work.join("saved.bin");
    // The save's own peak: enrolment's Argon2id set a higher one before.
    let me = probe::Server::new(std::process::id());
    let client_through_upload = me.rss_peak_mib()?;
    me.restart_peak()?;
    let client_before_save = me.rss_peak_mib()?;
    let start = Instant::now();
    rt.block_on(bob.save_attachment(letter, 1, &out))?;
    let save = start.elapsed().as_secs_f64();
    let client_save_peak = me.rss_peak_mib()?;
    eprintln!("save: {save:.2} s");
    if std::fs::metadata(&out)?.len() != size {
        bail!("the saved file has the wrong size");
    }
    let client_after = own_rss_peak_mib()?.max(client_through_upload);
    let server_after = server
        .as_ref()
        .map(probe::Server::rss_peak_mib)
        .transpose()?;

    // What a 100 KiB attachment adds to send.
    let small = work.join("small.bin");
    write_source(&small, 100 << 10)?;
    let n = args.letters.clamp(5, 200);
    let (mut plain, mut with) = (Vec::new(), Vec::new());
    for i in 0..n {
        for (files, times) in [(vec![], &mut plain), (vec![small.clone()], &mut with)] {
            let start = Instant::now();
            rt.block_on(alice.send_to(to, draft(&format!("small {i}"), files)))?;
            times.push(start.elapsed());
        }
    }
    let report = BlobReport {
        size_mib,
        seal_only_mb_per_s: seal_only,
        upload_seconds: upload,
        upload_mb_per_s: size as f64 / MB / upload,
        save_seconds: save,
        save_mb_per_s: size as f64 / MB / save,
        client_rss_peak_before_mib: client_before,
        client_rss_peak_after_mib: client_after,
        client_rss_before_save_mib: client_before_save,
        client_rss_peak_in_save_mib: client_save_peak,
        server_rss_peak_before_mib: server_before,
        server_rss_peak_after_mib: server_after,
        sends_measured: n,
        send_p50_ms: p50_ms(&mut plain),
        send_with_100k_p50_ms: p50_ms(&mut with),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Seals `size` bytes in memory, one chunk at a time, on this thread.
fn seal_only(size: u64) -> Result<f64> {
    let key = BlobKey::from_bytes(rand::random());
    let mut sealer = Sealer::new(&key, &rand::random(), size)?;
    let chunk = vec![0x5a; valise_proto::blob::CHUNK_BYTES];
    let start = Instant::now();
    for _ in 0..sealer.layout().chunks {
        let n = sealer.next_file_bytes();
        std::hint::black_box(sealer.seal_next(&chunk[..n])?);
    }
    std::hint::black_box(sealer.finish()?);
    Ok(size as f64 / MB / start.elapsed().as_secs_f64())
}

/// A file of `size` bytes that does not compress, written 1 MiB at a time.
fn write_source(path: &Path, size: u64) -> Result<()> {
    use rand::RngCore;
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        rand::rng().fill_bytes(&mut block);
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.into_inner()?.sync_all()?;
    Ok(())
}

fn own_rss_peak_mib() -> Result<f64> {
    probe::Server::new(std::process::id()).rss_peak_mib()
}

fn p50_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}
