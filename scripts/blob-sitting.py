#!/usr/bin/env python3
"""One attachments sitting (docs/BENCHMARKS.md, "Issue 11: attachments"):
builds run alternately, each run with a fresh server data directory on
disk (not tmpfs: the store must be durable), a same-run
`dd bs=1M count=N conv=fsync` on that disk as the baseline, then
`valise-bench --blob-mib N --letters L` with the server's peak RSS.

    scripts/blob-sitting.py --build before=/dev/shm/base --build after=target/release \\
        --runs 2 --mib 1024 --letters 50 --work target/benchrun

Prints one JSON line per run and a Markdown table at the end; figures of
one run compare as ratios (the machine is shared and noisy).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import time


def dd_mb_per_s(work, mib):
    out = subprocess.run(
        ["dd", "if=/dev/zero", f"of={work}/dd.bin", "bs=1M", f"count={mib}", "conv=fsync"],
        capture_output=True, text=True, check=True,
    ).stderr
    os.remove(f"{work}/dd.bin")
    secs = float(re.search(r"copied, ([0-9.]+) s", out).group(1))
    return mib * 1048576 / 1e6 / secs


def run_one(name, bins, args, port):
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = f"{work}/data"
    subprocess.run([f"{bins}/valised", "init", "--data", data, "--domain", "mfa.example"],
                   check=True, capture_output=True)
    server = subprocess.Popen(
        [f"{bins}/valised", "run", "--data", data, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        dd = dd_mb_per_s(work, args.mib)
        load = os.getloadavg()[0]
        out = subprocess.run(
            [f"{bins}/valise-bench", "--server", f"https://127.0.0.1:{port}", "--data", data,
             "--work", f"{work}/bench", "--server-pid", str(server.pid),
             "--blob-mib", str(args.mib), "--letters", str(args.letters)],
            capture_output=True, text=True, check=True,
        ).stdout
        report = json.loads(out[out.index("{"):])
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    report.update(build=name, dd_mb_per_s=dd, load_before=load, load_after=os.getloadavg()[0])
    return report


def save_rss(r):
    """The client's RSS as the save began → its peak during it (builds
    whose valise-bench does not report it: a dash)."""
    if "client_rss_peak_in_save_mib" not in r:
        return "–"
    return f"{r['client_rss_before_save_mib']:.0f} → {r['client_rss_peak_in_save_mib']:.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", action="append", required=True, help="NAME=DIR of the binaries")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--letters", type=int, default=50)
    p.add_argument("--work", default="target/benchrun")
    p.add_argument("--port", type=int, default=18443)
    args = p.parse_args()
    builds = [b.split("=", 1) for b in args.build]
    rows = []
    for run in range(args.runs):
        for name, bins in builds:
            r = run_one(name, bins, args, args.port)
            r["run"] = run + 1
            print(json.dumps(r), flush=True)
            rows.append(r)
    print("\n| run | build | load | dd MB/s | send MB/s (% dd) | save MB/s (% dd) "
          "| send p50 / with 100 KiB (ms) | server RSS MiB | client RSS in save MiB | sealing MB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        dd = r["dd_mb_per_s"]
        print(
            f"| {r['run']} | {r['build']} | {r['load_before']:.1f}–{r['load_after']:.1f} "
            f"| {dd:.0f} | {r['upload_mb_per_s']:.0f} ({100 * r['upload_mb_per_s'] / dd:.0f} %) "
            f"| {r['save_mb_per_s']:.0f} ({100 * r['save_mb_per_s'] / dd:.0f} %) "
            f"| {r['send_p50_ms']:.1f} / {r['send_with_100k_p50_ms']:.1f} "
            f"(+{r['send_with_100k_p50_ms'] - r['send_p50_ms']:.1f}) "
            f"| {r['server_rss_peak_before_mib']:.0f} → {r['server_rss_peak_after_mib']:.0f} "
            f"| {save_rss(r)} | {r['seal_only_mb_per_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
