//! The server's own costs, read from /proc while it runs: CPU time of all
//! its threads, and its peak resident memory.
//!
//! CPU time comes from `/proc/PID/stat` (user + system time of the whole
//! process, threads that already exited included) rather than summing
//! each thread's `schedstat`: the runtime's blocking threads come and go,
//! and a thread that exits takes its `schedstat` with it, which would
//! undercount. The price is the clock tick's resolution (10 ms), small
//! against the seconds a measurement lasts.

use anyhow::{Context, Result, bail};
use std::time::Duration;

/// A running server process.
pub struct Server {
    pid: u32,
}

impl Server {
    pub fn new(pid: u32) -> Self {
        Self { pid }
    }

    /// CPU time used so far, all threads.
    pub fn cpu(&self) -> Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .with_context(|| format!("no process {} (--server-pid)", self.pid))?;
        // The command name may hold spaces: fields are counted after its ')'.
        let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
        let ticks: u64 = [11, 12]
            .iter()
            .map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum::<Option<u64>>()
            .context("malformed /proc stat")?;
        Ok(Duration::from_secs_f64(
            ticks as f64 / clock_ticks()? as f64,
        ))
    }

    /// Starts the peak (VmHWM) over from the present RSS (Linux
    /// `clear_refs` 5): a phase's own peak, not an earlier one's.
    pub fn restart_peak(&self) -> Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
            .with_context(|| format!("cannot restart the peak RSS of {}", self.pid))
    }

    /// Peak resident memory (VmHWM) in MiB.
    pub fn rss_peak_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        for line in status.lines() {
            if let Some(kib) = line.strip_prefix("VmHWM:") {
                let kib: f64 = kib.trim().trim_end_matches("kB").trim().parse()?;
                return Ok(kib / 1024.0);
            }
        }
        bail!("no VmHWM in /proc/{}/status", self.pid)
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> Result<u64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output();
    Ok(match out {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout)?.trim().parse()?,
        _ => 100,
    })
}
