//! Real services the device tests need, each started on private sockets and stopped on drop:
//! PulseAudio in user space with null sinks as virtual speakers and microphones (cpal speaks its
//! protocol; ALSA's default goes there too, for the ALSA fallback), and Xvfb as a display to
//! capture.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Proc;

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not come up within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private PulseAudio server.
pub struct Pulse {
    _proc: Proc,
    dir: tempfile::TempDir,
}

impl Pulse {
    /// Starts PulseAudio with one null sink per name. A sink `x` plays into `x.monitor`, which
    /// serves as a microphone: whatever is played to `x` is "heard" there.
    pub fn start(sinks: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        let run = dir.path().join("run");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        // A client cookie, as a desktop's server or libpulse's first client writes one. The
        // server takes anyone (`auth-anonymous=1`), but it still reads 256 bytes of cookie, and
        // the `pulseaudio` crate under cpal's native host sends none when it finds no file: the
        // server drops that connection and cpal falls back to ALSA (NOTES.md, "Through the
        // devices").
        std::fs::create_dir_all(home.join(".config/pulse")).unwrap();
        std::fs::write(home.join(".config/pulse/cookie"), [0u8; 256]).unwrap();
        // For a client on ALSA (cpal's fallback when it finds no PulseAudio): ALSA's default
        // device goes to PulseAudio too.
        std::fs::write(
            home.join(".asoundrc"),
            "pcm.!default { type pulse }\nctl.!default { type pulse }\n",
        )
        .unwrap();
        let socket = dir.path().join("native");
        let mut cmd = crate::command("pulseaudio");
        cmd.args([
            "-n",
            "--daemonize=no",
            "--system=false",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--disable-shm=yes",
            "--use-pid-file=no",
        ])
        .arg(format!(
            "--load=module-native-protocol-unix auth-anonymous=1 socket={}",
            socket.display()
        ));
        // `norewinds=1`: a null sink renders 50 ms at a time, like a sound card, instead of up
        // to its 2 s default latency and rewinding. With a client's short ALSA buffer (two
        // 10.7 ms periods) the 2 s render sometimes left the client without a request for 2 s:
        // a speaker that stalled (NOTES.md, "Through the devices").
        for sink in sinks {
            cmd.arg(format!("--load=module-null-sink sink_name={sink} rate=48000 norewinds=1 sink_properties=device.description={sink}"));
        }
        let child = cmd
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &run)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "pulseaudio is needed for the device tests (scripts/setup.sh --test installs it)",
            );
        let pulse = Self {
            _proc: Proc {
                child,
                name: "pulseaudio".into(),
            },
            dir,
        };
        let env = pulse.env(None, None);
        wait_for("PulseAudio", Duration::from_secs(15), || {
            Command::new("pactl")
                .arg("info")
                .envs(env.clone())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        pulse
    }

    /// Environment for a client: its default sink and source (PULSE_SINK / PULSE_SOURCE).
    pub fn env(&self, sink: Option<&str>, source: Option<&str>) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PULSE_SERVER".to_owned(),
                format!("unix:{}", self.dir.path().join("native").display()),
            ),
            (
                "HOME".to_owned(),
                self.dir.path().join("home").display().to_string(),
            ),
            (
                "XDG_RUNTIME_DIR".to_owned(),
                self.dir.path().join("run").display().to_string(),
            ),
        ];
        if let Some(sink) = sink {
            env.push(("PULSE_SINK".to_owned(), sink.to_owned()));
        }
        if let Some(source) = source {
            env.push(("PULSE_SOURCE".to_owned(), source.to_owned()));
        }
        env
    }

    /// Plays a WAV file into `sink` (in the background; killed on drop).
    pub fn play(&self, sink: &str, wav: &Path) -> Proc {
        let child = crate::command("paplay")
            .arg(format!("--device={sink}"))
            .arg(wav)
            .envs(self.env(None, None))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("paplay");
        Proc {
            child,
            name: "paplay".into(),
        }
    }

    /// Records `source` to a WAV file (48 kHz mono) until the returned process is stopped.
    pub fn record(&self, source: &str, wav: &Path) -> Proc {
        let child = crate::command("parecord")
            .args([
                &format!("--device={source}"),
                "--file-format=wav",
                "--rate=48000",
                "--channels=1",
                "--format=s16le",
            ])
            .arg(wav)
            .envs(self.env(None, None))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("parecord");
        Proc {
            child,
            name: "parecord".into(),
        }
    }
}

/// coturn on loopback, with coturn's shared-secret ("TURN REST API") authentication, so that it
/// only accepts credentials minted the way the signaling server mints them.
pub struct Coturn {
    _proc: Proc,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Coturn {
    pub fn start(secret: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        // Relay ports in a range of their own.
        let min = 40_000 + (port % 2_000) * 10;
        let log = std::fs::File::create(dir.path().join("turnserver.log")).expect("log file");
        let child = crate::command("turnserver")
            .args([
                "-n",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--fingerprint",
                "--allow-loopback-peers",
            ])
            .args([
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                "--realm=confab.test",
            ])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={min}"))
            .arg(format!("--max-port={}", min + 9))
            .args([
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
            ])
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turnserver.pid").display()
            ))
            .arg(format!("--userdb={}", dir.path().join("turndb").display()))
            .args(["--log-file=stdout", "--simple-log"])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("coturn is needed for the TURN tests (scripts/setup.sh --test installs it)");
        let log_path = dir.path().join("turnserver.log");
        wait_for("coturn", Duration::from_secs(10), || {
            std::fs::read_to_string(&log_path)
                .is_ok_and(|l| l.contains("listener opened") || l.contains("Total General servers"))
        });
        Self {
            _proc: Proc {
                child,
                name: "turnserver".into(),
            },
            _dir: dir,
            port,
        }
    }

    /// coturn's log so far (to see which credentials it accepted).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("turnserver.log")).unwrap_or_default()
    }
}

/// A private network namespace with its own loopback, optionally lossy: everything started in
/// it (server and peers) talks over that loopback, where iptables drops a share of UDP packets
/// (media and RTCP; signaling is TCP). Deleted on drop. Needs root (as CI has).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(udp_loss: f64) -> Self {
        let name = format!("confab-test-{}-{}", std::process::id(), rand_suffix());
        let ip = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                out.status.success(),
                "ip {args:?}: {} (network tests need root)",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        if udp_loss > 0.0 {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns.name,
                    "iptables",
                    "-A",
                    "INPUT",
                    "-p",
                    "udp",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                ])
                .arg(format!("{udp_loss}"))
                .args(["-j", "DROP"])
                .output()
                .expect("iptables");
            assert!(
                out.status.success(),
                "iptables: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }

    /// The arguments that run a program inside the namespace: `ip netns exec NAME ...`.
    pub fn prefix(&self) -> Vec<String> {
        vec!["netns".into(), "exec".into(), self.name.clone()]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// A private X display.
pub struct Xvfb {
    proc: Proc,
    pub display: String,
}

impl Xvfb {
    /// The X server's process (its CPU time is part of what a screen capture costs).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Shows `png` in a window at the top-left of the display until the returned process is
    /// dropped (a real window: X servers return the root window's background pixmap as black to
    /// a GetImage, which is what screen capture does).
    pub fn show(&self, png: &Path) -> Proc {
        let shown = self.display(png, &["-geometry", "+0+0"]);
        // Give it time to map and draw.
        std::thread::sleep(Duration::from_millis(1500));
        shown
    }

    /// ImageMagick's `display` showing `png` on this display, with `args`.
    fn display(&self, png: &Path, args: &[&str]) -> Proc {
        let child = crate::command("display")
            .args(["-display", &self.display])
            .args(args)
            .arg(png)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("display (ImageMagick; scripts/setup.sh --test installs it)");
        Proc {
            child,
            name: "display".into(),
        }
    }

    /// Runs a window manager (openbox) on the display until the returned process is dropped: xcap
    /// finds windows through the list a window manager keeps (`_NET_CLIENT_LIST_STACKING`).
    pub fn window_manager(&self) -> Proc {
        let managed = || {
            Command::new("xprop")
                .args([
                    "-display",
                    &self.display,
                    "-root",
                    "_NET_SUPPORTING_WM_CHECK",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("window id"))
        };
        // Openbox sometimes exits at once with status 1 and no message (3 of about 10 starts on
        // 12-05, in the full suite and alone; cause not known): it is started again, up to three
        // times.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let log = tempfile::NamedTempFile::new().expect("a temp file for openbox's messages");
            let mut child = crate::command("openbox")
                .args(["--sm-disable"])
                .env("DISPLAY", &self.display)
                .stdout(Stdio::null())
                .stderr(log.reopen().expect("openbox's log"))
                .spawn()
                .expect("openbox (scripts/setup.sh --test installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            let exited = loop {
                if managed() {
                    return Proc {
                        child,
                        name: "openbox".into(),
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let said = std::fs::read_to_string(log.path()).unwrap_or_default();
            eprintln!(
                "openbox did not come up on {} ({exited:?}): {said}",
                self.display
            );
            failures.push(format!("{exited:?}: {said}"));
            if exited.is_none() {
                break; // it ran but never managed the display: starting it again will not help
            }
        }
        panic!(
            "openbox did not come up on {} (exit status, then its messages, per start: {failures:?})",
            self.display
        );
    }

    /// Shows `png` in a window titled `title`, wherever the window manager puts it, until the
    /// returned process is dropped. The title is also set as `_NET_WM_NAME` in UTF-8, as toolkits
    /// do (ImageMagick sets only the older `WM_NAME`, which xcap does not read).
    pub fn show_window(&self, png: &Path, title: &str) -> Proc {
        let shown = self.display(png, &["-title", title]);
        let mut id = String::new();
        wait_for("the window", Duration::from_secs(10), || {
            let found = Command::new("xdotool")
                .args(["search", "--onlyvisible", "--name", title])
                .env("DISPLAY", &self.display)
                .output();
            id = found.map_or_else(
                |_| String::new(),
                |o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned()
                },
            );
            !id.is_empty()
        });
        let set = Command::new("xprop")
            .args(["-display", &self.display, "-id", &id])
            .args(["-f", "_NET_WM_NAME", "8u", "-set", "_NET_WM_NAME", title])
            .status()
            .expect("xprop (x11-utils)");
        assert!(set.success(), "xprop could not title window {id}");
        // Give it time to draw.
        std::thread::sleep(Duration::from_millis(500));
        shown
    }

    pub fn start(width: u32, height: u32) -> Self {
        // Xvfb takes the first display number free on this machine and says which (`-displayfd`,
        // on its stdout), once it accepts connections: no race with another X server starting
        // beside it, and the lock of one that was killed is no obstacle (Xvfb takes over a lock
        // whose process is gone).
        let mut child = crate::command("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                &format!("{width}x{height}x24"),
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is needed for the screen tests (scripts/setup.sh --test installs it)");
        let stdout = child.stdout.take().expect("Xvfb's stdout");
        let proc = Proc {
            child,
            name: "Xvfb".into(),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("xvfb-display".into())
            .spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            })
            .expect("a thread to read Xvfb's display");
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("Xvfb did not say its display within 10 s");
        let n: u32 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("Xvfb exited without a display: {line:?}"));
        Self {
            proc,
            display: format!(":{n}"),
        }
    }
}

impl Drop for Xvfb {
    /// Asks the server to stop, so that it removes its socket and lock from /tmp (killed, it
    /// leaves both behind); killed only if it has not exited within 2 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.proc.pid().to_string()])
            .status();
        self.proc.wait_or_kill(Duration::from_secs(2));
    }
}
