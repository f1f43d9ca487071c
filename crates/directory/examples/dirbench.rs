//! Key directory figures for docs/BENCHMARKS.md: epoch publish time, proof
//! generation and verification time, proof sizes, on SQLite in a temporary
//! file (full sync, as the server runs it).
//!
//! ```text
//! cargo run --release -p valise-directory --example dirbench -- [--users N] [--samples K]
//! ```

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};
use valise_directory::*;
use valise_proto::{DeviceId, UserId};

fn user(i: u64) -> Result<UserId, Box<dyn Error>> {
    Ok(UserId::parse(&format!("user{i}@mfa.example"))?)
}

/// A user's list at version `version`: two or three devices (a phone, a
/// laptop, sometimes a tablet), keys changing with each version.
fn list(i: u64, version: u64) -> Result<DeviceList, Box<dyn Error>> {
    let devices = (0..2 + version % 2)
        .map(|d| {
            let mut id = [0u8; 8];
            id[..6].copy_from_slice(&i.to_be_bytes()[2..]);
            id[6] = d as u8;
            id[7] = version as u8;
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&i.to_be_bytes());
            key[8] = d as u8;
            key[9] = version as u8;
            DeviceEntry::new(DeviceId::from_bytes(id), key.to_vec(), d, 1)
        })
        .collect::<Vec<_>>();
    let identity = Identity {
        key: devices[0].signature_key.clone(),
        generation: 1,
    };
    Ok(DeviceList::new(identity, devices)?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn arg(name: &str, default: u64) -> Result<u64, Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).ok_or("missing value")?.parse()?),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let users = arg("--users", 100_000)?;
    let samples = arg("--samples", 200)?;
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("dir.db");
    let storage = Arc::new(SqliteDirectoryStorage::open(&path)?);
    let dir = Directory::open(storage, RootSigner::generate()?).await?;
    let key = dir.directory_key();
    println!("directory of {users} users, SQLite at {}", path.display());

    // Fill the directory, 10,000 users per epoch.
    let t = Instant::now();
    let mut next = 0;
    while next < users {
        let end = (next + 10_000).min(users);
        let batch = (next..end)
            .map(|i| Ok((user(i)?, list(i, 0)?)))
            .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
        dir.publish(batch).await?;
        next = end;
    }
    println!(
        "initial fill: {:.1} s ({} epochs)",
        t.elapsed().as_secs_f64(),
        dir.root().await?.epoch()
    );
    let db_size = std::fs::metadata(&path)?.len()
        + std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!("database size: {:.1} MB", db_size as f64 / 1e6);

    // Epoch publish with 1, 1,000 and 10,000 changed entries.
    let mut version = 1;
    let mut roots = vec![verify_root(&dir.root().await?, &key)?];
    for changed in [1u64, 1_000, 10_000] {
        let changed = changed.min(users);
        let stride = (users / changed).max(1);
        let batch = (0..changed)
            .map(|k| {
                let i = k * stride;
                Ok((user(i)?, list(i, version)?))
            })
            .collect::<Result<Vec<_>, Box<dyn Error>>>()?;
        version += 1;
        let t = Instant::now();
        let root = dir.publish(batch).await?;
        println!("publish epoch with {changed} changes: {}", ms(t.elapsed()));
        let new = verify_root(&root, &key)?;
        // The append-only proof of this epoch, asked for at once (as an
        // auditor following the directory does; akd's proof for an older
        // epoch grows with every epoch published since).
        if let Some(old) = roots.last() {
            let t = Instant::now();
            let proof = dir.audit(old.epoch(), new.epoch()).await?;
            let g = t.elapsed();
            let t = Instant::now();
            verify_audit(old, &new, &proof).await?;
            println!(
                "  audit epoch {} -> {}: generate {} / verify {}; proof {:.1} KB",
                old.epoch(),
                new.epoch(),
                ms(g),
                ms(t.elapsed()),
                proof.len() as f64 / 1e3
            );
        }
        roots.push(new);
    }

    // Lookup: generation and verification, over users spread through the tree.
    let (mut gen_t, mut ver_t, mut size) = (Vec::new(), Vec::new(), 0);
    for k in 0..samples {
        let u = user((k * 7919) % users)?;
        let t = Instant::now();
        let p = dir.lookup(&u).await?;
        gen_t.push(t.elapsed());
        let t = Instant::now();
        let root = verify_root(&p.root, &key)?;
        verify_lookup(&root, &u, &p.proof)?;
        ver_t.push(t.elapsed());
        size = size.max(p.proof.len());
    }
    println!(
        "lookup: generate {} / verify (root + proof) {} median; proof ≤ {size} B",
        ms(median(gen_t)),
        ms(median(ver_t))
    );

    // History of user 0, who changed in every measured epoch (4 versions).
    let (mut gen_t, mut ver_t, mut size, mut versions) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..samples.min(50) {
        let u = user(0)?;
        let t = Instant::now();
        let p = dir.history(&u).await?;
        gen_t.push(t.elapsed());
        let t = Instant::now();
        let root = verify_root(&p.root, &key)?;
        versions = verify_history(&root, &u, &p.proof)?.len();
        ver_t.push(t.elapsed());
        size = p.proof.len();
    }
    println!(
        "history ({versions} versions): generate {} / verify {} median; proof {size} B",
        ms(median(gen_t)),
        ms(median(ver_t))
    );

    let root = dir.root().await?;
    println!("signed root: {} B (binary)", root.to_bytes().len());
    Ok(())
}
