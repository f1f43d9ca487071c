#!/usr/bin/env python3
"""The mail bridge's figures on a 10,000-letter INBOX (docs/BENCHMARKS.md,
"Issue 12"). Starts a fresh `valised`, has `valise-bench` send N letters
from one user to another (-k 2 -s 1: the receiver's home then holds them
all), sets up `valise-bridge` on the receiver's home, and times with
Python's imaplib over loopback (--no-tls):

  SELECT INBOX (first: UIDs given to every letter; then again),
  UID FETCH 1:* (UID FLAGS ENVELOPE),
  Thunderbird's header fetch (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (...)]),
  IDLE push: the sender's `valise send` returns → `* N EXISTS` on an IDLE
  session (--pushes sends, one at a time; p50 and max),
  the bridge's peak RSS (VmHWM),
  `valise inbox` on the receiver's home without the bridge, then while it
  runs (issue 12: the bridge holds the home per step, so a command waits
  at most one step), then while a mail client keeps the bridge busy with
  `UID FETCH 1:* (UID FLAGS ENVELOPE)` back to back: --inbox-runs each,
  median and max, and the ratios to the first.
  mbsync (Debian's isync): a first full sync of the INBOX into a Maildir,
  then a second run that has nothing to do,
  SMTP submission through the bridge (smtplib, --smtp-sends letters back to
  the sender): end of DATA → 250 (p50, p99, max),
  the peak RSS again after all of it,
  and the bridge's resident memory (VmRSS) after each of --whole-fetches
  sessions that fetch every letter's body (`UID FETCH 1:* (BODY.PEEK[])`).

Usage: scripts/bridge-bench.py [--bins target/release] [--letters 10000]
       [--pushes 20] [--smtp-sends 200] [--whole-fetches 6] [--malloc-arena-max N]
       [--bridge-env NAME=VALUE ...]
Prints one JSON object.
"""
import argparse
import email.parser
import email.policy
import imaplib
import json
import os
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

PASSPHRASE = "valise-bench passphrase"
THUNDERBIRD = ("UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
               "Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type "
               "Reply-To)]")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def timed(f):
    t = time.perf_counter()
    result = f()
    return time.perf_counter() - t, result


def idle_pushes(bins, imap_port, user, password, sender_home, env, n):
    """Seconds from each `valise send` returning to the IDLE session's EXISTS, sorted."""
    s = socket.create_connection(("127.0.0.1", imap_port))
    f = s.makefile("rb")
    f.readline()

    def until(prefix):
        while True:
            line = f.readline()
            if line.startswith(prefix):
                return line

    s.sendall(f"a LOGIN {user} {password}\r\n".encode())
    until(b"a ")
    s.sendall(b"b SELECT INBOX\r\n")
    until(b"b ")
    s.sendall(b"c IDLE\r\n")
    until(b"+")
    latencies = []
    for i in range(n):
        # A commit race with the receiver's own upkeep is retried (the
        # clock starts when a send returns, so a retry costs nothing here).
        for _ in range(5):
            sent = subprocess.run([f"{bins}/valise", "--home", sender_home, "send", "--to",
                                   user, "--subject", f"push {i}", "--body", "x"],
                                  env=env, capture_output=True, text=True)
            if sent.returncode == 0:
                break
        else:
            raise SystemExit(f"valise send: {sent.stderr}")
        t = time.perf_counter()
        line = f.readline()
        while b"EXISTS" not in line:
            line = f.readline()
        latencies.append(round(time.perf_counter() - t, 3))
    s.sendall(b"DONE\r\n")
    s.close()
    return sorted(latencies)


def median(sorted_times):
    return sorted_times[len(sorted_times) // 2]


def inbox_runs(bins, home, env, n):
    """Seconds of each `valise inbox --json` on `home`, sorted."""
    times = []
    for _ in range(n):
        took, out = timed(lambda: subprocess.run(
            [f"{bins}/valise", "--home", home, "inbox", "--json"], env=env, capture_output=True))
        if out.returncode != 0:
            raise SystemExit(f"valise inbox: {out.stderr.decode()}")
        times.append(round(took, 3))
    return sorted(times)


def inbox_while_busy(bins, home, env, n, imap_port, user, password):
    """`valise inbox` times while a mail client fetches every envelope back
    to back; and how many fetches it made meanwhile."""
    stop = threading.Event()
    fetches = [0]

    def busy():
        imap = imaplib.IMAP4("127.0.0.1", imap_port)
        imap.login(user, password)
        imap.select("INBOX")
        while not stop.is_set():
            imap.uid("FETCH", "1:*", "(UID FLAGS ENVELOPE)")
            fetches[0] += 1
        imap.logout()

    client = threading.Thread(target=busy)
    client.start()
    time.sleep(1)
    try:
        times = inbox_runs(bins, home, env, n)
    finally:
        stop.set()
        client.join()
    return times, fetches[0]


def mbsync_runs(imap_port, user, password, maildir):
    """Seconds of a first mbsync of the INBOX into an empty Maildir, and of
    a second run; the letters the first one wrote. mbsync fsyncs every mail
    it writes (FSync yes), so a Maildir on disk times the disk as well."""
    rc = os.path.join(maildir, "mbsyncrc")
    os.makedirs(os.path.join(maildir, "mail"))
    with open(rc, "w") as f:
        # --no-tls: IMAP LOGIN (mbsync's SASL PLAIN wants TLS).
        f.write(f"IMAPAccount bridge\nHost 127.0.0.1\nPort {imap_port}\nUser {user}\n"
                f"Pass {password}\nSSLType None\nAuthMechs LOGIN\n\n"
                f"IMAPStore bridge\nAccount bridge\n\n"
                f"MaildirStore local\nPath {maildir}/mail/\nInbox {maildir}/mail/INBOX\n\n"
                f"Channel inbox\nFar :bridge:INBOX\nNear :local:INBOX\nCreate Near\n"
                f"Sync All\nExpunge None\nSyncState *\n")

    def run():
        out = subprocess.run(["mbsync", "-q", "-c", rc, "inbox"], capture_output=True, text=True)
        if out.returncode != 0 or "UIDVALIDITY" in out.stdout + out.stderr:
            raise SystemExit(f"mbsync: {out.stdout}{out.stderr}")

    first, _ = timed(run)
    letters = sum(len(os.listdir(os.path.join(maildir, "mail", "INBOX", d)))
                  for d in ("new", "cur"))
    # mbsync sleeps a second when the Maildir changed within the last one
    # (its timestamps' granularity): a real second run comes later.
    time.sleep(1.1)
    second, _ = timed(run)
    return first, second, letters


def maildir_equals_inbox(maildir, bins, home, env):
    """The mails the first mbsync wrote are exactly the letters of `valise
    inbox --json` (run beside the bridge: the home is shared per step):
    as many, one Message-ID each, the same subjects. Exits if not."""
    folder = os.path.join(maildir, "mail", "INBOX")
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    subjects, ids = [], set()
    for d in ("new", "cur"):
        for name in os.listdir(os.path.join(folder, d)):
            with open(os.path.join(folder, d, name), "rb") as f:
                head = parser.parse(f)
            subjects.append(str(head["Subject"]))
            ids.add(str(head["Message-ID"]))
    out = subprocess.run([f"{bins}/valise", "--home", home, "inbox", "--json"], env=env,
                         capture_output=True, check=True)
    letters = json.loads(out.stdout)
    expected = sorted(l["subject"] for l in letters)
    if len(ids) != len(subjects) or sorted(subjects) != expected:
        raise SystemExit(f"mbsync's Maildir is not `valise inbox`: {len(subjects)} mails, "
                         f"{len(ids)} Message-IDs, {len(expected)} letters")
    return len(letters)


def smtp_sends(smtp_port, user, password, to, n):
    """Seconds from the end of DATA to the bridge's 250, for n letters, sorted."""
    smtp = smtplib.SMTP("127.0.0.1", smtp_port)
    smtp.login(user, password)
    latencies = []
    for i in range(n):
        mail = (f"From: {user}\r\nTo: {to}\r\nSubject: timed {i}\r\n\r\n"
                f"{'x' * 512}\r\n.\r\n").encode()
        smtp.mail(user)
        smtp.rcpt(to)
        code, _ = smtp.docmd("DATA")
        assert code == 354, code
        t = time.perf_counter()
        smtp.send(mail)
        code, reply = smtp.getreply()
        latencies.append(time.perf_counter() - t)
        if code != 250:
            raise SystemExit(f"SMTP {code} {reply}")
    smtp.quit()
    return sorted(latencies)


def cpu_s(pid):
    """CPU seconds (user + system) a process used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return round(next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024, 1)


def whole_fetches(imap_port, user, password, pid, n):
    """The bridge's VmRSS after each of n sessions that fetch every body."""
    after = []
    for _ in range(n):
        imap = imaplib.IMAP4("127.0.0.1", imap_port)
        imap.login(user, password)
        imap.select("INBOX")
        imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
        imap.logout()
        after.append(rss_mib(pid))
    return after


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return round(next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024, 1)


def memory_mib(pid):
    """Where the bridge's memory is: its peak and resident set, the
    resident set's anonymous (heap, stacks) and file-backed (the binary,
    mapped libraries) parts."""
    with open(f"/proc/{pid}/status") as f:
        kib = {l.split(":")[0]: int(l.split()[1]) for l in f
               if l.startswith(("VmHWM", "VmRSS", "RssAnon", "RssFile"))}
    return {k: round(v / 1024, 1) for k, v in kib.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bins", default="target/release")
    ap.add_argument("--letters", type=int, default=10000)
    ap.add_argument("--pushes", type=int, default=20)
    ap.add_argument("--inbox-runs", type=int, default=10)
    ap.add_argument("--smtp-sends", type=int, default=200)
    ap.add_argument("--whole-fetches", type=int, default=6)
    ap.add_argument("--malloc-arena-max", help="MALLOC_ARENA_MAX for the bridge (glibc)")
    ap.add_argument("--bridge-env", action="append", default=[], metavar="NAME=VALUE",
                    help="more environment for the bridge (e.g. GLIBC_TUNABLES=...)")
    args = ap.parse_args()
    bins = os.path.abspath(args.bins)
    data = tempfile.mkdtemp(prefix="bridge-bench-")
    work = tempfile.mkdtemp(prefix="bridge-bench-homes-", dir="/dev/shm")
    port = free_port()
    subprocess.run([f"{bins}/valised", "init", "--data", f"{data}/D", "--domain", "mfa.example"],
                   check=True, capture_output=True)
    server = subprocess.Popen(
        [f"{bins}/valised", "run", "--data", f"{data}/D", "--listen", f"127.0.0.1:{port}",
         "--directory-interval-ms", "100", "--max-sends-per-second", "1000000",
         "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bridge = None
    try:
        wait_port(port)
        subprocess.run([f"{bins}/valise-bench", "--server", f"https://127.0.0.1:{port}",
                        "--data", f"{data}/D", "--work", work, "--json", "-k", "2", "-s", "1",
                        "-n", str(args.letters), "--body-bytes", "512"],
                       check=True, capture_output=True)
        home = os.path.join(work, "u1")
        env = dict(os.environ, VALISE_PASSPHRASE=PASSPHRASE)
        init = subprocess.run([f"{bins}/valise-bridge", "--home", home, "init"], env=env,
                              check=True, capture_output=True, text=True)
        password = init.stdout.split("bridge password: ")[1].split()[0]
        inbox_runs(bins, home, env, 1)  # warm the page cache
        inbox_alone = inbox_runs(bins, home, env, args.inbox_runs)
        user = init.stdout.split("user: ")[1].split()[0]
        imap_port, smtp_port = free_port(), free_port()
        bridge = subprocess.Popen(
            [f"{bins}/valise-bridge", "--home", home, "--imap", f"127.0.0.1:{imap_port}",
             "--smtp", f"127.0.0.1:{smtp_port}", "--no-tls", "--log-level", "warn"],
            env=dict(env, **({"MALLOC_ARENA_MAX": args.malloc_arena_max}
                             if args.malloc_arena_max else {}),
                     **dict(e.split("=", 1) for e in args.bridge_env)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(imap_port)
        memory = {"started": memory_mib(bridge.pid)}
        imap = imaplib.IMAP4("127.0.0.1", imap_port)
        imap.login(user, password)
        first_select, (_, exists) = timed(lambda: imap.select("INBOX"))
        select, _ = timed(lambda: imap.select("INBOX"))
        fetch, (_, rows) = timed(lambda: imap.uid("FETCH", "1:*", "(UID FLAGS ENVELOPE)"))
        fetch2, _ = timed(lambda: imap.uid("FETCH", "1:*", "(UID FLAGS ENVELOPE)"))
        headers, _ = timed(lambda: imap.uid("FETCH", "1:*", f"({THUNDERBIRD})"))
        # The sender, to whom the SMTP figure writes back.
        _, hdr = imap.uid("FETCH", "1", "(BODY.PEEK[HEADER.FIELDS (FROM)])")
        sender = hdr[0][1].decode().split(":", 1)[1].strip()
        imap.logout()
        inbox_beside = inbox_runs(bins, home, env, args.inbox_runs)
        inbox_busy, busy_fetches = inbox_while_busy(bins, home, env, args.inbox_runs,
                                                    imap_port, user, password)
        pushes = idle_pushes(bins, imap_port, user, password, os.path.join(work, "u0"), env,
                             args.pushes)
        rss = peak_rss_mib(bridge.pid)
        memory["listing"] = memory_mib(bridge.pid)
        # The Maildir on disk (as a user's), then on tmpfs (the bridge's
        # part, without the disk's fsyncs).
        mbsync = {}
        for where, root in (("disk", data), ("tmpfs", work)):
            cpu_before = cpu_s(bridge.pid)
            first, second, synced = mbsync_runs(imap_port, user, password,
                                                os.path.join(root, "maildir"))
            equal = maildir_equals_inbox(os.path.join(root, "maildir"), bins, home, env)
            mbsync[where] = {"first": round(first, 2), "second": round(second, 3),
                             "letters": synced, "equals_valise_inbox": equal,
                             "bridge_cpu_s": round(cpu_s(bridge.pid) - cpu_before, 2)}
        rss_mbsync = peak_rss_mib(bridge.pid)
        memory["mbsync"] = memory_mib(bridge.pid)
        sends = smtp_sends(smtp_port, user, password, sender, args.smtp_sends)
        rss_whole = whole_fetches(imap_port, user, password, bridge.pid, args.whole_fetches)
        memory["all"] = memory_mib(bridge.pid)
        pct = lambda p: round(sends[min(len(sends) - 1, int(p * len(sends)))], 3)
        print(json.dumps({
            "letters_in_inbox": int(exists[0]),
            "fetch_rows": len([r for r in rows if isinstance(r, bytes)]),
            "first_select_s": round(first_select, 3),
            "select_s": round(select, 4),
            "uid_fetch_uid_flags_envelope_s": [round(fetch, 3), round(fetch2, 3)],
            "thunderbird_header_fetch_s": round(headers, 3),
            "idle_push_s": {"p50": pushes[len(pushes) // 2], "max": pushes[-1], "n": len(pushes)},
            "bridge_peak_rss_mib": rss,
            "mbsync_s": mbsync,
            "bridge_peak_rss_after_mbsync_mib": rss_mbsync,
            "smtp_end_of_data_to_250_s": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0),
                                          "n": len(sends)},
            "bridge_rss_after_whole_fetches_mib": rss_whole,
            "bridge_peak_rss_after_all_mib": peak_rss_mib(bridge.pid),
            "bridge_memory_mib": memory,
            "valise_inbox_s": {
                "alone": {"median": median(inbox_alone), "max": inbox_alone[-1]},
                "bridge_running": {"median": median(inbox_beside), "max": inbox_beside[-1]},
                "bridge_busy": {"median": median(inbox_busy), "max": inbox_busy[-1],
                                "fetches_meanwhile": busy_fetches},
                "ratio_running": round(median(inbox_beside) / median(inbox_alone), 2),
                "ratio_busy": round(median(inbox_busy) / median(inbox_alone), 2),
                "n": args.inbox_runs,
            },
        }))
    finally:
        if bridge:
            bridge.kill()
        server.kill()
        subprocess.run(["rm", "-rf", data, work])


if __name__ == "__main__":
    main()
