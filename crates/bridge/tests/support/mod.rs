//! A real `valise-bridge` over a real home (enrolled with the real server
//! by the CLI's helpers, `common`), and a small IMAP client that decodes
//! every line the bridge says with imap-codec, as a mail client would.
#![allow(dead_code)]
// Test support: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{Device, PASSPHRASE};
use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::{GreetingCodec, ResponseCodec};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bridge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_valise-bridge"))
}

/// Runs `valise-bridge --home <device's home> <args>`.
pub fn run(device: &Device, args: &[&str]) -> Output {
    Command::new(bridge_bin())
        .arg("--home")
        .arg(&device.home)
        .args(args)
        .env("VALISE_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap()
}

/// The password a `init` or `password --reset` printed.
pub fn password_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("bridge password: "))
        .unwrap()
        .to_owned()
}

/// `valise-bridge init` on a device's home; its password.
pub fn init(device: &Device) -> String {
    password_of(&run(device, &["init"]))
}

/// A running bridge on loopback ports it chose; killed on drop.
pub struct Bridge {
    child: Child,
    pub imap: String,
    pub smtp: String,
    /// The implicit-TLS IMAP address, if asked for.
    pub imaps: Option<String>,
    pub user: String,
    /// The bridge's log (stderr), for the no-plaintext checks.
    pub log: PathBuf,
    pub cert: PathBuf,
}

impl Bridge {
    /// Starts the bridge on `device`'s home; `tls`: STARTTLS offered (and
    /// required before login), else `--no-tls`.
    pub fn start(device: &Device, tls: bool) -> Self {
        Self::start_with(device, tls, &[])
    }

    /// As [`Bridge::start`], with more flags (`--imaps 127.0.0.1:0` adds
    /// the `imaps` address).
    pub fn start_with(device: &Device, tls: bool, extra: &[&str]) -> Self {
        let log = device
            .home
            .with_file_name(format!("bridge-{}.log", rand::random::<u32>()));
        let mut cmd = Command::new(bridge_bin());
        cmd.arg("--home")
            .arg(&device.home)
            .args(["--imap", "127.0.0.1:0", "--smtp", "127.0.0.1:0"])
            .args(extra)
            // Everything, so that the no-plaintext checks read every line.
            .args(["--log-level", "trace"])
            .env("VALISE_PASSPHRASE", PASSPHRASE)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if !tls {
            cmd.arg("--no-tls");
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = |what: &str| {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!("bridge exited: {}", std::fs::read_to_string(&log).unwrap())
                })
                .unwrap();
            line.strip_prefix(&format!("{what} listening on "))
                .unwrap_or_else(|| panic!("unexpected line {line}"))
                .to_owned()
        };
        let imap = port("imap");
        let smtp = port("smtp");
        let imaps = extra.contains(&"--imaps").then(|| port("imaps"));
        Self {
            child,
            imap,
            smtp,
            imaps,
            user: device.user.clone(),
            log,
            cert: device.home.join("bridge").join("cert.pem"),
        }
    }

    /// Stops the bridge with SIGKILL: no destructor runs, as in a crash.
    pub fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// A logged-in IMAP session over plain TCP (`--no-tls` bridges).
    pub fn login(&self, password: &str) -> Imap {
        let mut imap = Imap::connect(&self.imap);
        let r = imap.ok(&format!("LOGIN {} {password}", self.user));
        assert!(r.last().unwrap().contains("OK"), "{r:?}");
        imap
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bridge's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Starts the peak over from the present RSS (Linux `clear_refs` 5).
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
    }

    /// Sends the bridge a signal (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// The bridge's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An IMAP client that checks every server response with imap-codec.
pub struct Imap {
    stream: TcpStream,
    buf: Vec<u8>,
    next_tag: u32,
    pub greeting: String,
}

impl Imap {
    pub fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut imap = Self {
            stream,
            buf: Vec::new(),
            next_tag: 1,
            greeting: String::new(),
        };
        loop {
            match GreetingCodec::default().decode(&imap.buf) {
                Ok((rest, _)) => {
                    let used = imap.buf.len() - rest.len();
                    imap.greeting = String::from_utf8_lossy(&imap.buf[..used]).into_owned();
                    imap.buf.drain(..used);
                    break;
                }
                Err(GreetingDecodeError::Incomplete) => imap.fill(),
                Err(e) => panic!("greeting does not decode: {e:?}"),
            }
        }
        imap
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the bridge closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next response (one line, with its literals), decoded.
    pub fn response(&mut self) -> String {
        loop {
            match ResponseCodec::default().decode(&self.buf) {
                Ok((rest, _)) => {
                    let used = self.buf.len() - rest.len();
                    let text = String::from_utf8_lossy(&self.buf[..used]).into_owned();
                    self.buf.drain(..used);
                    return text;
                }
                Err(ResponseDecodeError::Incomplete)
                | Err(ResponseDecodeError::LiteralFound { .. }) => self.fill(),
                Err(e) => panic!(
                    "response does not decode ({e:?}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Responses until one starts with `prefix`.
    pub fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let r = self.response();
            let done = r.starts_with(prefix);
            all.push(r);
            if done {
                return all;
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).unwrap();
        self.stream.write_all(b"\r\n").unwrap();
    }

    /// Sends a tagged command; every response up to its tagged one.
    pub fn cmd(&mut self, command: &str) -> Vec<String> {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.send(&format!("{tag} {command}"));
        self.until(&format!("{tag} "))
    }

    /// As [`Imap::cmd`], asserting the tagged answer is OK.
    pub fn ok(&mut self, command: &str) -> Vec<String> {
        let r = self.cmd(command);
        let last = r.last().unwrap();
        assert!(last.split(' ').nth(1) == Some("OK"), "{command}: {r:#?}");
        r
    }

    /// Waits (with NOOP) until the selected folder holds `n` letters.
    pub fn wait_exists(&mut self, n: usize) {
        let want = format!("* {n} EXISTS");
        let start = Instant::now();
        loop {
            if self.ok("NOOP").iter().any(|r| r.starts_with(&want)) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never saw {want}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A Debian package's program, asserted present (`.ci/run` installs it).
pub fn tool(name: &str) -> Command {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .unwrap()
            .status
            .success(),
        "{name} is missing: .ci/run installs it"
    );
    Command::new(name)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    crate::common::files(dir)
}

/// An SMTP client that reads whole replies (every line CRLF-ended).
pub struct Smtp {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Smtp {
    pub fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut s = Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        };
        assert!(s.reply().starts_with("220 "));
        s
    }

    /// One reply (all its lines).
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            assert!(line.ends_with("\r\n"), "{line:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    pub fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// A session logged in (AUTH PLAIN) as the bridge's user, over plain
    /// TCP (`--no-tls` bridges): letters sent quickly, for tests that need
    /// many.
    pub fn login(bridge: &Bridge, password: &str) -> Self {
        use base64::Engine as _;
        let mut s = Self::connect(&bridge.smtp);
        s.send("EHLO test\r\n");
        assert!(s.reply().starts_with("250"));
        let plain = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{}\0{password}", bridge.user));
        s.send(&format!("AUTH PLAIN {plain}\r\n"));
        assert!(s.reply().starts_with("235 "));
        s
    }

    /// MAIL FROM `from`, RCPT TO `to` and DATA, each accepted: the mail's
    /// text goes next.
    pub fn begin_mail(&mut self, from: &str, to: &str) {
        self.send(&format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n"));
        for code in ["250 ", "250 ", "354 "] {
            let r = self.reply();
            assert!(r.starts_with(code), "wanted {code}: {r}");
        }
    }

    /// Sends one letter from `from` to `to`; the Message-ID the bridge's
    /// 250 names (`<id@valise>`).
    pub fn send_letter(&mut self, from: &str, to: &str, subject: &str, body: &str) -> String {
        self.begin_mail(from, to);
        self.send(&format!(
            "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}\r\n.\r\n"
        ));
        let sent = self.reply();
        assert!(sent.starts_with("250 "), "{sent}");
        sent.trim_end().rsplit(' ').next().unwrap().to_owned()
    }
}
