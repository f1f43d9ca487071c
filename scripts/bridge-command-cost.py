#!/usr/bin/env python3
"""What one IMAP command costs the bridge, for two bridge binaries on one
home, in one run (docs/BENCHMARKS.md, "Issue 12: cost of a command"): a
fresh `valised`, `valise-bench -k 2 -s 1 -n 50` fills the receiver's home,
then each bridge in turn serves it (--no-tls) while Python's imaplib times
N `NOOP`s and N `UID FETCH 1 (FLAGS)` round trips; the bridges alternate
--rounds times and the medians per command are compared as a ratio (the
machine is shared: one run, interleaved, ratios only).

Usage: scripts/bridge-command-cost.py --bins target/debug \\
           --base /path/to/other/valise-bridge [-n 2000] [--rounds 3]
Prints one JSON object.
"""
import argparse
import imaplib
import json
import os
import statistics
import subprocess
import tempfile
import time
import importlib.util

spec = importlib.util.spec_from_file_location(
    "bridge_bench", os.path.join(os.path.dirname(__file__), "bridge-bench.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def per_command(bridge_bin, home, env, user, password, n):
    imap_port, smtp_port = bench.free_port(), bench.free_port()
    bridge = subprocess.Popen(
        [bridge_bin, "--home", home, "--imap", f"127.0.0.1:{imap_port}",
         "--smtp", f"127.0.0.1:{smtp_port}", "--no-tls", "--log-level", "warn"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_port(imap_port)
        imap = imaplib.IMAP4("127.0.0.1", imap_port)
        imap.login(user, password)
        imap.select("INBOX")
        out = {}
        for name, command in [("noop", lambda: imap.noop()),
                              ("uid_fetch_flags", lambda: imap.uid("FETCH", "1", "(FLAGS)"))]:
            start = time.perf_counter()
            for _ in range(n):
                command()
            out[name] = (time.perf_counter() - start) / n
        imap.logout()
        return out
    finally:
        bridge.kill()
        bridge.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bins", default="target/debug")
    ap.add_argument("--base", required=True)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bins = os.path.abspath(args.bins)
    data = tempfile.mkdtemp(prefix="bridge-cost-")
    work = tempfile.mkdtemp(prefix="bridge-cost-homes-", dir="/dev/shm")
    port = bench.free_port()
    subprocess.run([f"{bins}/valised", "init", "--data", f"{data}/D", "--domain", "mfa.example"],
                   check=True, capture_output=True)
    server = subprocess.Popen(
        [f"{bins}/valised", "run", "--data", f"{data}/D", "--listen", f"127.0.0.1:{port}",
         "--directory-interval-ms", "100", "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_port(port)
        subprocess.run([f"{bins}/valise-bench", "--server", f"https://127.0.0.1:{port}",
                        "--data", f"{data}/D", "--work", work, "--json", "-k", "2", "-s", "1",
                        "-n", "50", "--body-bytes", "512"], check=True, capture_output=True)
        home = os.path.join(work, "u1")
        env = dict(os.environ, VALISE_PASSPHRASE=bench.PASSPHRASE)
        init = subprocess.run([f"{bins}/valise-bridge", "--home", home, "init"], env=env,
                              check=True, capture_output=True, text=True)
        password = init.stdout.split("bridge password: ")[1].split()[0]
        user = init.stdout.split("user: ")[1].split()[0]
        runs = {"this": [], "base": []}
        for _ in range(args.rounds):
            for which, binary in [("base", os.path.abspath(args.base)),
                                  ("this", f"{bins}/valise-bridge")]:
                runs[which].append(per_command(binary, home, env, user, password, args.n))
        result = {}
        for name in ["noop", "uid_fetch_flags"]:
            this = statistics.median(r[name] for r in runs["this"])
            base = statistics.median(r[name] for r in runs["base"])
            result[name] = {"this_ms": round(this * 1000, 3), "base_ms": round(base * 1000, 3),
                            "ratio": round(this / base, 2)}
        result["n"], result["rounds"] = args.n, args.rounds
        print(json.dumps(result))
    finally:
        server.kill()
        subprocess.run(["rm", "-rf", data, work])


if __name__ == "__main__":
    main()
