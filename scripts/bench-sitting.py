#!/usr/bin/env python3
"""One benchmark sitting: the same scenarios against two builds, run
alternately, so that figures taken on this shared, noisy machine compare
as ratios (docs/BENCHMARKS.md).

For each run it initialises a fresh data directory, starts `valised run`
pinned to one core (`taskset -c SERVER_CPU`), runs `valise-bench` pinned to
the other with homes on a tmpfs (`--work`), and measures the server itself
from /proc: CPU time (utime + stime, all threads) from the bench's
"sending" line to its exit (the send window and the drain), and peak RSS
(VmHWM). Both builds are measured the same way, whatever their bench can
report.

    scripts/bench-sitting.py --build before=/work/old/target/release \\
        --build after=target/release --runs 2 -- \\
        "-k 11 -n 5000 -s 10 --light-senders|--preseal" ...

A scenario's arguments may name a flag that differs between the builds as
`AFTER|BEFORE` (the new spelling first). Prints one JSON line per run and a
Markdown table at the end.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICKS


def rss_peak_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def spelled(args, first):
    out = []
    for a in args.split():
        if "|" in a:
            new, old = a.split("|")
            a = new if first else old
        if a:
            out.append(a)
    return out


def run_one(bins, scenario, newest, port, server_cpu, bench_cpu, tmpfs, server_args):
    data = tempfile.mkdtemp(prefix="sitting-", dir="/tmp")
    work = tempfile.mkdtemp(prefix="sitting-homes-", dir=tmpfs)
    try:
        subprocess.run(
            [f"{bins}/valised", "init", "--data", f"{data}/D", "--domain", "mfa.example"],
            check=True, capture_output=True)
        server = subprocess.Popen(
            ["taskset", "-c", server_cpu, f"{bins}/valised", "run", "--data", f"{data}/D",
             "--listen", f"127.0.0.1:{port}", "--directory-interval-ms", "100",
             "--log-level", "error"] + server_args.split(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                import socket
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        bench = subprocess.Popen(
            ["taskset", "-c", bench_cpu, f"{bins}/valise-bench", "--server",
             f"https://127.0.0.1:{port}", "--data", f"{data}/D", "--work", work, "--json"]
            + spelled(scenario, newest),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cpu0 = None
        for line in bench.stderr:
            if line.startswith("sending") and cpu0 is None:
                cpu0 = cpu_seconds(server.pid)
        out, _ = bench.communicate()
        cpu1 = cpu_seconds(server.pid)
        rss = rss_peak_mib(server.pid)
        server.kill()
        server.wait()
        if bench.returncode != 0 or cpu0 is None:
            return {"error": f"bench exited {bench.returncode}"}
        report = json.loads(out)
        letters = report["letters"]
        deliveries = letters * report["devices_per_letter"]
        return {
            "accepted_per_s": report.get("accepted_per_s", report.get("accepted_letters_per_s")),
            "deliveries_per_s": report.get("deliveries_per_s",
                                           report.get("fanned_out_deliveries_per_s")),
            "p50_ms": report.get("p50_ms", report.get("latency_ms_p50")),
            "p99_ms": report.get("p99_ms", report.get("latency_ms_p99")),
            "catchup_s": report.get("catchup_seconds"),
            "server_cpu_us_per_letter": (cpu1 - cpu0) * 1e6 / letters,
            "server_cpu_us_per_delivery": (cpu1 - cpu0) * 1e6 / deliveries,
            "server_rss_peak_mib": rss,
        }
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", action="append", required=True,
                   help="NAME=DIR holding valised and valise-bench; the first is the newest")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--port", type=int, default=18600)
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--bench-cpu", default="1")
    p.add_argument("--tmpfs", default="/dev/shm")
    p.add_argument("--server-args", default="--max-sends-per-second 1000000",
                   help="extra `valised run` flags for every run (default: no per-device "
                        "send limit, which would otherwise cap a sender at 500 letters/s)")
    p.add_argument("scenarios", nargs="+")
    a = p.parse_args()
    builds = [b.split("=", 1) for b in a.build]
    results = {}
    for scenario in a.scenarios:
        for run in range(a.runs):
            for i, (name, bins) in enumerate(builds):
                r = run_one(bins, scenario, i == 0, a.port, a.server_cpu, a.bench_cpu, a.tmpfs,
                            a.server_args)
                a.port += 1
                r.update(build=name, scenario=scenario, run=run)
                print(json.dumps(r), flush=True)
                results.setdefault((scenario, name), []).append(r)
    keys = ["accepted_per_s", "deliveries_per_s", "p50_ms", "p99_ms", "catchup_s",
            "server_cpu_us_per_letter", "server_cpu_us_per_delivery", "server_rss_peak_mib"]
    print("\n| scenario | build | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for (scenario, name), rs in results.items():
        cells = []
        for k in keys:
            vals = [r.get(k) for r in rs if r.get(k) is not None]
            cells.append(" · ".join(f"{v:,.1f}" if v < 100 else f"{v:,.0f}" for v in vals) or "–")
        print(f"| `{scenario}` | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
