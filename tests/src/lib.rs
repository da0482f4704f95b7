//! The harness for end-to-end tests: finds the release binaries, starts the signaling server and
//! peers as child processes on free ports, and cleans every one of them up (on drop, so also when
//! a test fails). Tests that drive real processes run one at a time (`serial`), since two cores
//! cannot run two calls without distorting both.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The directory of the binaries built alongside this test (target/release or target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

/// A binary of the workspace; panics with the command to run when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --release --workspace --bins`, as scripts/test does)",
        path.display()
    );
    path
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the machine for one test that runs real calls.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit; kills it after that.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        self.wait_or_kill(timeout)
            .unwrap_or_else(|| panic!("{} did not exit within {timeout:?}", self.name))
    }

    /// Waits up to `timeout` for the process to exit; kills it after that and gives `None`.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command for a process the harness keeps running beside a test (a server, a peer, a device
/// server): on Linux the kernel kills it when the test's thread dies. `Proc`'s drop covers a test
/// that fails; this covers a test process that is killed (by a signal, a timeout, Ctrl-C), where
/// no destructor runs and the children would otherwise be left running.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call, allocating nothing. The signal is kept across the exec
        // (`ip netns exec` execs the program in turn), and it is sent when the thread that
        // forked exits: the harness starts its processes on the test's own thread, which
        // outlives them.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

/// A network namespace programs can be started in (`ip netns exec NAME ...`).
pub trait InNetns {
    fn netns_name(&self) -> &str;
}

impl InNetns for services::Netns {
    fn netns_name(&self) -> &str {
        &self.name
    }
}

/// A command for a workspace binary, run inside `ns` when given.
fn wrapped(ns: Option<&dyn InNetns>, name: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut cmd = command("ip");
            cmd.args(["netns", "exec", ns.netns_name()]).arg(bin(name));
            cmd
        }
        None => command(bin(name)),
    }
}

/// A signaling server on a free loopback port.
pub struct Server {
    pub proc: Proc,
    pub url: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_in(None, extra)
    }

    /// Starts the server inside a network namespace (`ip netns exec ...`) when given one.
    pub fn start_in(ns: Option<&services::Netns>, extra: &[&str]) -> Self {
        Self::start_full(ns.map(|ns| ns as &dyn InNetns), "127.0.0.1:0", extra)
    }

    /// Starts the server inside `ns`, listening on `listen` (an address of that namespace).
    pub fn start_listening_in(ns: &dyn InNetns, listen: &str, extra: &[&str]) -> Self {
        Self::start_full(Some(ns), listen, extra)
    }

    fn start_full(ns: Option<&dyn InNetns>, listen: &str, extra: &[&str]) -> Self {
        let mut child = wrapped(ns, "confab")
            .arg("serve")
            .args(["--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("CONFAB_TEST_SERVER_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start confab serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self {
            proc: Proc {
                child,
                name: "confab serve".into(),
            },
            url,
        }
    }
}

pub mod browser;
pub mod netem;
pub mod relay;
pub mod services;
pub mod timeline;

impl Server {
    /// The server's /healthz report.
    pub fn health(&self) -> Option<serde_json::Value> {
        use std::io::{Read as _, Write as _};
        let addr = self.url.trim_start_matches("ws://").trim_end_matches("/ws");
        let mut tcp = std::net::TcpStream::connect(addr).ok()?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        tcp.read_to_string(&mut response).ok()?;
        serde_json::from_str(response.split("\r\n\r\n").nth(1)?).ok()
    }

    /// Waits until `n` people are in rooms (peers take a moment to start and join); on failure
    /// the panic shows what `peers` printed.
    pub fn wait_for_peers(&self, n: u64, peers: &[&Peer]) {
        if !self.peers_within(n, Duration::from_secs(30)) {
            let said: Vec<String> = peers.iter().map(|p| p.stderr_so_far()).collect();
            panic!(
                "{n} peers never joined: {:?}\npeers said:\n{}",
                self.health(),
                said.join("\n---\n")
            );
        }
    }

    /// Whether the server counts `n` people in rooms within `timeout`.
    pub fn peers_within(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.health().and_then(|h| h["peers"].as_u64()) != Some(n) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

/// A finished `confab join`.
pub struct Outcome {
    pub status: ExitStatus,
    pub stderr: String,
    pub stats: Option<serde_json::Value>,
}

impl Outcome {
    /// The stats of a peer whose call ended well; fails the test with its log otherwise.
    pub fn succeeded(self, who: &str) -> serde_json::Value {
        assert!(
            self.status.success(),
            "{who} failed ({}): {}",
            self.status,
            self.stderr
        );
        self.stats
            .unwrap_or_else(|| panic!("{who} wrote no stats: {}", self.stderr))
    }
}

/// A `confab join --headless` in progress.
pub struct Peer {
    pub proc: Proc,
    stderr_path: PathBuf,
    stats_path: PathBuf,
}

impl Peer {
    /// Starts `confab join ROOM --headless --server URL` with `args`; stats go to `dir`.
    pub fn start(dir: &Path, name: &str, server: &str, room: &str, args: &[&str]) -> Self {
        Self::start_with_env(dir, name, server, room, args, &[])
    }

    /// Like `start`, with extra environment variables (a display, an audio server).
    pub fn start_with_env(
        dir: &Path,
        name: &str,
        server: &str,
        room: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Self {
        Self::start_full(None, dir, name, server, room, args, env)
    }

    /// Starts a peer inside a network namespace.
    pub fn start_in(
        ns: &dyn InNetns,
        dir: &Path,
        name: &str,
        server: &str,
        room: &str,
        args: &[&str],
    ) -> Self {
        Self::start_full(Some(ns), dir, name, server, room, args, &[])
    }

    fn start_full(
        ns: Option<&dyn InNetns>,
        dir: &Path,
        name: &str,
        server: &str,
        room: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Self {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stats_path = dir.join(format!("{name}.json"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = wrapped(ns, "confab")
            .args([
                "join",
                room,
                "--headless",
                "--server",
                server,
                "--name",
                name,
            ])
            .arg("--stats-json")
            .arg(&stats_path)
            .args(args)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start confab join");
        Self {
            proc: Proc {
                child,
                name: format!("peer {name}"),
            },
            stderr_path,
            stats_path,
        }
    }

    /// Waits up to 30 s until the peer says it is connected; panics with its stderr otherwise.
    pub fn wait_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.stderr_so_far().contains("confab: connected") {
            assert!(
                Instant::now() < deadline,
                "never connected: {}",
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the peer has written to stderr so far (and whether it is still running).
    pub fn stderr_so_far(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        format!("[{} pid {}] {text}", self.proc.name, self.proc.pid())
    }

    pub fn finish(mut self, timeout: Duration) -> Outcome {
        let status = self.proc.wait_or_kill(timeout);
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let Some(status) = status else {
            panic!(
                "{} did not exit within {timeout:?}; its stderr:\n{stderr}",
                self.proc.name
            );
        };
        let stats = std::fs::read_to_string(&self.stats_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        Outcome {
            status,
            stderr,
            stats,
        }
    }
}

/// A file of `len` pseudo-random bytes; returns its SHA-256.
pub fn random_file(path: &Path, len: usize) -> String {
    use sha2::Digest as _;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(path, &data).expect("write test file");
    hex::encode(sha2::Sha256::digest(&data))
}

/// A fresh valid room code (letters from the clock and a counter; unique per run).
pub fn room_code(salt: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut n = nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let letters: String = (0..10)
        .map(|_| {
            let c = (b'a' + (n % 26) as u8) as char;
            n /= 26;
            c
        })
        .collect();
    format!("{}-{}-{}", &letters[..3], &letters[3..7], &letters[7..])
}

/// The synthetic media a headless test peer sends and plays (stamped test pattern at `size`, test
/// signal, no speaker), followed by `more` arguments.
pub fn test_media<'a>(size: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--camera",
        "test",
        "--mic",
        "test",
        "--speaker",
        "null",
        "--video-size",
        size,
    ];
    args.extend_from_slice(more);
    args
}

/// The last `bytes` or so of a long log, from the start of a line, for a failure message.
pub fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let start = text[start..].find('\n').map_or(start, |i| start + i + 1);
    &text[start..]
}

/// When each line of a peer's log that contains `message` was written: the log's lines start
/// with a UTC timestamp (`2026-12-05T01:56:33.970301Z`). Lines without one are skipped.
pub fn logged_at(log: &str, message: &str) -> Vec<std::time::SystemTime> {
    log.lines()
        .filter(|line| line.contains(message))
        .filter_map(|line| utc_timestamp(line.split_whitespace().next()?))
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` as a time.
fn utc_timestamp(text: &str) -> Option<std::time::SystemTime> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.splitn(3, ':').map(str::parse::<u64>);
    let (hh, mm, ss) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    let nanos: u32 = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

/// One second of what a peer sent, from its stats' timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct SentSecond {
    pub height: u64,
    pub limitation: String,
    pub kbps: f64,
}

/// What a peer sent, second by second, from its stats' timeline, for the seconds it sent video.
pub fn sent_by_second(stats: &serde_json::Value) -> Vec<SentSecond> {
    stats["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|s| s["send_height"].as_u64().unwrap_or(0) > 0)
        .map(|s| SentSecond {
            height: s["send_height"].as_u64().unwrap_or(0),
            limitation: s["quality_limitation"].as_str().unwrap_or("").to_owned(),
            kbps: s["send_kbps"].as_f64().unwrap_or(0.0),
        })
        .collect()
}

/// The most video a peer may send while its receiver asks for the least (180p20, whose encoder
/// gets 150 kbit/s however much the link carries), in its steady seconds: the rate controller's
/// overshoot on top. It sent ~400 kbit/s there while the encoder was given the link's share.
pub const LEAST_VIDEO_MAX_KBPS: f64 = 250.0;

/// A peer's picture went from 720p to 180p for the receiver (at least 3 s of it) and back to
/// 720p with nothing in between: the receiver asked for the least video and took the ask back.
/// At 180p the peer sent little (`LEAST_VIDEO_MAX_KBPS`, the median of its seconds but the first
/// and the last).
pub fn assert_least_video_then_all(sent: &[SentSecond]) {
    let mut heights: Vec<u64> = sent.iter().map(|s| s.height).collect();
    heights.dedup();
    assert_eq!(
        heights,
        [720, 180, 720],
        "heights sent, second by second: {sent:?}"
    );
    let least: Vec<&SentSecond> = sent.iter().filter(|s| s.height == 180).collect();
    assert!(
        least.len() >= 3 && least.iter().all(|s| s.limitation == "receiver"),
        "180p for the receiver: {sent:?}"
    );
    // The first 180p second carries the new rung's keyframe and the last may carry 720p's.
    let mut kbps: Vec<f64> = least[1..least.len() - 1].iter().map(|s| s.kbps).collect();
    kbps.sort_by(f64::total_cmp);
    let median = kbps[kbps.len() / 2];
    eprintln!("180p for the receiver: {kbps:.0?} kbit/s (median {median:.0})");
    assert!(
        median <= LEAST_VIDEO_MAX_KBPS,
        "{median:.0} kbit/s of 180p for a receiver that asked for the least: {sent:?}"
    );
}

/// Reads a number at a JSON pointer like `/video_recv/frames_decoded`.
pub fn num(stats: &serde_json::Value, pointer: &str) -> f64 {
    stats
        .pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {stats:#}"))
}

/// CPU seconds (user + system) a live process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A memory figure of a live process in KiB (`VmRSS`, `VmHWM`...), from /proc.
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// What a killed test leaves behind: the thread that started a process is gone without
    /// dropping its `Proc` (here it forgets it, as a signal would), and the process must die too.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_dies_with_the_thread_that_started_it() {
        let pid = std::thread::Builder::new()
            .name("starter".into())
            .spawn(|| {
                let child = command("sleep")
                    .arg("30")
                    .spawn()
                    .expect("sleep is part of coreutils");
                let pid = child.id();
                std::mem::forget(child);
                pid
            })
            .unwrap()
            .join()
            .unwrap();
        // The child is ours, so it stays a zombie once killed until it is reaped: wait for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child's pid, writing into a local.
            #[allow(unsafe_code)]
            let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if reaped == pid as libc::pid_t {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the child outlived its thread by 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(libc::WIFSIGNALED(status), "status {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGKILL);
    }

    #[test]
    fn log_lines_are_timed_by_their_timestamp() {
        let log = "2026-12-05T01:56:33.970301Z  INFO confab_engine::session: restarting ICE\n\
                   confab: restarting ICE (no timestamp)\n\
                   2000-02-29T23:59:59Z  INFO x: restarting ICE\n\
                   1970-01-01T00:00:00.5Z  INFO x: something else\n";
        assert_eq!(
            logged_at(log, "restarting ICE"),
            vec![
                // date -u -d 2026-12-05T01:56:33Z +%s
                UNIX_EPOCH + Duration::new(1_796_435_793, 970_301_000),
                UNIX_EPOCH + Duration::from_secs(951_868_799),
            ]
        );
        assert_eq!(
            logged_at(log, "something else"),
            vec![UNIX_EPOCH + Duration::from_millis(500)]
        );
    }
}
