//! The browser side of interop tests and benchmarks: runs tests/web/browser_call.js (Debian's
//! headless Chromium through playwright-core) as a child process, in a network namespace when
//! given one (a `NetLab` home), and reads back its JSON line and per-second timeline.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{InNetns, Proc};

/// tests/web, where browser_call.js and its node_modules live.
pub fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// The page URL that joins `room` on the signaling server at `server_url` (its `ws://.../ws`).
pub fn page_url(server_url: &str, room: &str, name: &str) -> String {
    let http = server_url
        .replace("ws://", "http://")
        .trim_end_matches("/ws")
        .to_owned();
    format!("{http}/join/{room}?autojoin=1&name={name}")
}

/// A browser_call.js run in progress; killed (with its Chromium) on drop.
pub struct Browser {
    proc: Proc,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

/// What a finished browser_call.js said.
pub struct BrowserOutcome {
    /// Exit status 0: connected and the goals were met.
    pub ok: bool,
    /// Its JSON line (`Value::Null` when there was none).
    pub json: Value,
    pub stderr: String,
}

impl BrowserOutcome {
    /// The per-second samples (`t_s`, `send_kbps`, `recv_fps`, `freezes`, ...); empty if none.
    pub fn timeline(&self) -> &[Value] {
        self.json["timeline"].as_array().map_or(&[], Vec::as_slice)
    }
}

impl Browser {
    /// Starts `node browser_call.js URL ARGS` (inside `ns` when given); output goes to `dir`.
    pub fn start(
        ns: Option<&dyn InNetns>,
        dir: &Path,
        name: &str,
        url: &str,
        args: &[&str],
    ) -> Self {
        Self::start_with_env(ns, dir, name, url, args, &[])
    }

    /// Like `start`, with extra environment variables for the browser (an audio server).
    pub fn start_with_env(
        ns: Option<&dyn InNetns>,
        dir: &Path,
        name: &str,
        url: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Self {
        assert!(
            web_dir().join("node_modules/playwright-core").exists(),
            "playwright-core is missing: run `npm install` in tests/web (scripts/setup.sh --test does)"
        );
        let stdout_path = dir.join(format!("{name}.browser.json"));
        let stderr_path = dir.join(format!("{name}.browser.stderr"));
        let mut cmd = match ns {
            Some(ns) => {
                let mut cmd = crate::command("ip");
                cmd.args(["netns", "exec", ns.netns_name(), "node"]);
                cmd
            }
            None => crate::command("node"),
        };
        let child = cmd
            .arg(web_dir().join("browser_call.js"))
            .arg(url)
            .args(args)
            .envs(env.iter().cloned())
            .stdout(std::fs::File::create(&stdout_path).expect("browser stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("browser stderr file"))
            .spawn()
            .expect("node (scripts/setup.sh --test installs it)");
        Self {
            proc: Proc {
                child,
                name: format!("browser {name}"),
            },
            stdout_path,
            stderr_path,
        }
    }

    /// What the run (and the page's console) printed so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The process id of `node browser_call.js`; its Chromium runs as its descendants.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits up to `timeout` for the run to end (then kills it and panics).
    pub fn finish(mut self, timeout: Duration) -> BrowserOutcome {
        let status = self.proc.wait(timeout);
        let stdout = std::fs::read_to_string(&self.stdout_path).unwrap_or_default();
        let json = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        BrowserOutcome {
            ok: status.success(),
            json,
            stderr: std::fs::read_to_string(&self.stderr_path).unwrap_or_default(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGTERM first: playwright then closes its Chromium (a SIGKILL would orphan it).
        if matches!(self.proc.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.proc.pid().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.proc.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // `Proc`'s own drop kills whatever is left.
    }
}

/// Writes `frames` frames of Confab's moving test pattern at `width` x `height`, 30 fps, as a
/// .y4m file Chromium can use as its camera (`--fake-video`; it loops the file), so a browser
/// sends the same kind of picture a `--camera test` peer does.
pub fn write_pattern_y4m(path: &Path, width: u32, height: u32, frames: u32) {
    let file = std::fs::File::create(path).expect("create the .y4m file");
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg").expect("write .y4m");
    for index in 0..frames {
        let frame = confab_media::pattern::render(index, width, height, 0);
        out.write_all(b"FRAME\n").expect("write .y4m");
        out.write_all(&frame.data).expect("write .y4m");
    }
    out.flush().expect("write .y4m");
}

/// Ten seconds of the test signal as 48 kHz mono 16-bit WAV (Chromium and Confab loop it): a
/// microphone that is never quiet.
pub fn write_signal_wav(path: &Path) {
    let rate = confab_media::SAMPLE_RATE_HZ;
    let mut samples = vec![0.0f32; rate as usize * 10];
    confab_media::test_signal::Voice::First.fill(&mut samples, 0);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = hound::WavWriter::create(path, spec).expect("create the .wav");
    for s in samples {
        out.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .expect("write .wav");
    }
    out.finalize().expect("write .wav");
}
