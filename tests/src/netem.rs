//! A network emulator for end-to-end tests: `NetLab` builds two homes (alice, bob) behind NAT
//! routers and a public network between them, all in namespaces it owns and deletes on drop, and
//! shapes each router's uplink with a `Profile` (tbf for the rate, tests/tools/nfq_delay.c for
//! delay, jitter and loss), changeable mid-call.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{InNetns, Proc, Server};

/// What one uplink does to the packets leaving a home (both directions of a call are shaped
/// when both routers get a profile: "40 ms each way" means 80 ms round trip between the homes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// Token-bucket rate limit; `None`: as fast as the veth goes.
    pub rate_kbps: Option<u32>,
    /// One-way delay added to every packet.
    pub delay_ms: u32,
    /// Uniform jitter, +- this much (packets are never reordered).
    pub jitter_ms: u32,
    /// Share of packets lost, in percent.
    pub loss_pct: f64,
    /// Mean length of a loss burst in packets; 1 is independent (random) loss.
    pub burst_pkts: f64,
}

impl Profile {
    /// No shaping at all.
    pub const GOOD: Self = Self {
        name: "good",
        rate_kbps: None,
        delay_ms: 0,
        jitter_ms: 0,
        loss_pct: 0.0,
        burst_pkts: 1.0,
    };
    pub const HOME: Self = Self {
        name: "home",
        rate_kbps: Some(3_000),
        delay_ms: 20,
        ..Self::GOOD
    };
    pub const CONSTRAINED: Self = Self {
        name: "constrained",
        rate_kbps: Some(1_000),
        delay_ms: 40,
        ..Self::GOOD
    };
    pub const WIFI_LOSSY: Self = Self {
        name: "wifi-lossy",
        delay_ms: 40,
        loss_pct: 5.0,
        ..Self::GOOD
    };
    pub const VERY_BAD: Self = Self {
        name: "very-bad",
        rate_kbps: Some(1_000),
        delay_ms: 250,
        loss_pct: 10.0,
        ..Self::GOOD
    };
    pub const THREE_G: Self = Self {
        name: "3g",
        rate_kbps: Some(400),
        delay_ms: 175,
        ..Self::GOOD
    };
    /// The "drop" scenario's normal link and its dip.
    pub const DROP_HIGH: Self = Self {
        name: "drop-3mbit",
        rate_kbps: Some(3_000),
        ..Self::GOOD
    };
    pub const DROP_LOW: Self = Self {
        name: "drop-500kbit",
        rate_kbps: Some(500),
        ..Self::GOOD
    };
}

/// One change of a `Scenario`: from `at` (after the scenario starts), both uplinks get `profile`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub profile: Profile,
}

/// A profile over time, as data: what `NetLab::play` applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: &'static str,
    /// In time order; the first is at zero.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// How long the "drop" scenario's dip lasts.
    pub const DROP_LENGTH: Duration = Duration::from_secs(15);

    /// One profile for the whole run.
    pub fn steady(profile: Profile) -> Self {
        Self {
            name: profile.name,
            steps: vec![Step {
                at: Duration::ZERO,
                profile,
            }],
        }
    }

    /// 3 Mbit/s, down to 500 kbit/s at `dip_at` for `DROP_LENGTH`, then 3 Mbit/s again.
    pub fn drop(dip_at: Duration) -> Self {
        let step = |at, profile| Step { at, profile };
        Self {
            name: "drop",
            steps: vec![
                step(Duration::ZERO, Profile::DROP_HIGH),
                step(dip_at, Profile::DROP_LOW),
                step(dip_at + Self::DROP_LENGTH, Profile::DROP_HIGH),
            ],
        }
    }

    /// Every profile the issue names, the drop dipping after `dip_at` (for benchmarks).
    pub fn all(dip_at: Duration) -> Vec<Self> {
        let mut all: Vec<Self> = [
            Profile::GOOD,
            Profile::HOME,
            Profile::CONSTRAINED,
            Profile::WIFI_LOSSY,
            Profile::VERY_BAD,
            Profile::THREE_G,
        ]
        .into_iter()
        .map(Self::steady)
        .collect();
        all.push(Self::drop(dip_at));
        all
    }
}

/// Which home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Alice,
    Bob,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Alice => 0,
            Side::Bob => 1,
        }
    }
}

/// How the routers translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Linux MASQUERADE: port-preserving, endpoint-independent mapping; hole punching works.
    Cone,
    /// A new random port per destination: direct paths fail, only a relay gets through.
    Symmetric,
}

/// A namespace of the lab and its address there.
#[derive(Debug)]
pub struct Host {
    pub netns: String,
    pub addr: Ipv4Addr,
}

impl InNetns for Host {
    fn netns_name(&self) -> &str {
        &self.netns
    }
}

/// The public network's own address (where the signaling and STUN servers listen).
pub const PUBLIC_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The STUN port in the public network.
pub const STUN_PORT: u16 = 3478;
/// The bottleneck queue of a rate-limited uplink: tbf holds at most this much.
const TBF_LATENCY: &str = "100ms";
/// tbf's bucket: how much may leave at line rate after a pause.
const TBF_BURST: &str = "10kb";
/// The NFQUEUE number the delay tool serves (queues are per namespace).
const QUEUE_NUM: &str = "1";
/// What namespaces of this harness are called: PREFIX-PID-N-ROLE.
const PREFIX: &str = "cfnet";

/// Two homes behind NAT routers, a public network between them; torn down on drop.
pub struct NetLab {
    alice: Host,
    bob: Host,
    public: Host,
    routers: [Arc<Router>; 2],
    /// Every namespace made so far, deleted on drop (also after a half-done setup).
    namespaces: Vec<String>,
    stun: Option<Proc>,
    dir: tempfile::TempDir,
}

/// One home's router: its namespace, the uplink shaping applied now, and the delay tool.
struct Router {
    netns: String,
    public_addr: Ipv4Addr,
    state: Mutex<Shaping>,
}

struct Shaping {
    profile: Profile,
    /// `None` once the lab is torn down.
    delay: Option<DelayTool>,
}

/// The running nfq_delay of one router and its control pipes.
struct DelayTool {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _proc: Proc,
}

impl DelayTool {
    /// Sends one command and returns the tool's one-line answer.
    fn ask(&mut self, command: &str) -> Result<String, String> {
        writeln!(self.stdin, "{command}").map_err(|e| format!("nfq_delay: {e}"))?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Ok(line.trim().to_owned()),
            Ok(_) => Err("nfq_delay exited".into()),
            Err(e) => Err(format!("nfq_delay: {e}")),
        }
    }
}

impl Router {
    fn apply(&self, profile: Profile) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.profile.rate_kbps != profile.rate_kbps || state.delay.is_none() {
            match profile.rate_kbps {
                Some(kbps) => run(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.netns,
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    "wan",
                    "root",
                    "tbf",
                    "rate",
                    &format!("{kbps}kbit"),
                    "burst",
                    TBF_BURST,
                    "latency",
                    TBF_LATENCY,
                ])?,
                None => {
                    // Back to the default qdisc; "no such qdisc" when there was none is fine.
                    let _ = run(&[
                        "ip",
                        "netns",
                        "exec",
                        &self.netns,
                        "tc",
                        "qdisc",
                        "del",
                        "dev",
                        "wan",
                        "root",
                    ]);
                }
            }
        }
        let Some(delay) = state.delay.as_mut() else {
            return Err("the lab is torn down".into());
        };
        let answer = delay.ask(&format!(
            "set {} {} {} {}",
            profile.delay_ms, profile.jitter_ms, profile.loss_pct, profile.burst_pkts
        ))?;
        if answer != "ok" {
            return Err(format!("nfq_delay answered {answer:?} to {profile:?}"));
        }
        state.profile = profile;
        Ok(())
    }

    fn report(&self) -> String {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let delay = state.delay.as_mut().map_or_else(
            || "torn down".to_owned(),
            |d| d.ask("stats").unwrap_or_else(|e| e),
        );
        let qdisc = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "tc",
                "-s",
                "qdisc",
                "show",
                "dev",
                "wan",
            ])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        format!("{} [{}]: {delay}; {qdisc}", self.netns, state.profile.name)
    }
}

/// Runs a command to completion; its stderr is the error.
fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {} (the network emulator needs root)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `run` for setup steps, where a failure ends the test.
fn must(args: &[&str]) {
    run(args).unwrap_or_else(|e| panic!("{e}"));
}

/// The delay tool, compiled once per source version into the target directory.
fn delay_tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        use sha2::Digest as _;
        const SOURCE: &str = include_str!("../tools/nfq_delay.c");
        let hash = hex::encode(sha2::Sha256::digest(SOURCE.as_bytes()));
        let dir = crate::bin_dir().join("netem-tools");
        let tool = dir.join(format!("nfq_delay-{}", &hash[..16]));
        if tool.exists() {
            return tool;
        }
        std::fs::create_dir_all(&dir).expect("create the tool directory");
        let source = dir.join(format!("nfq_delay-{}.c", &hash[..16]));
        std::fs::write(&source, SOURCE).expect("write nfq_delay.c");
        // Built under a private name and renamed, so concurrent test processes never run half a file.
        let partial = dir.join(format!("nfq_delay-{}.{}", &hash[..16], std::process::id()));
        let out = Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&partial)
            .arg(&source)
            .arg("-lnetfilter_queue")
            .output()
            .expect("gcc is needed for the network emulator (scripts/setup.sh --test)");
        assert!(
            out.status.success(),
            "building nfq_delay failed (libnetfilter-queue-dev comes with scripts/setup.sh --test):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&partial, &tool).expect("move nfq_delay into place");
        tool
    })
}

/// Deletes namespaces a killed earlier run of this harness left behind (their process is gone).
fn sweep_stale_namespaces() {
    for name in namespaces_now() {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(&["ip", "netns", "del", &name]);
        }
    }
}

/// The names of all network namespaces on the machine now.
pub fn namespaces_now() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

impl NetLab {
    /// A lab with cone NATs and `profile` on both uplinks.
    pub fn new(profile: Profile) -> Self {
        Self::with_nat(Nat::Cone, profile)
    }

    pub fn with_nat(kind: Nat, profile: Profile) -> Self {
        static LABS: AtomicU32 = AtomicU32::new(0);
        sweep_stale_namespaces();
        let tool = delay_tool();
        let id = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::Relaxed)
        );
        let name = |role: &str| format!("{id}-{role}");
        let router = |side: u8| {
            Arc::new(Router {
                netns: name(&format!("nat{side}")),
                public_addr: Ipv4Addr::new(203, 0, 113, 10 + side),
                state: Mutex::new(Shaping {
                    profile: Profile::GOOD,
                    delay: None,
                }),
            })
        };
        let mut lab = Self {
            alice: Host {
                netns: name("alice"),
                addr: Ipv4Addr::new(192, 168, 1, 10),
            },
            bob: Host {
                netns: name("bob"),
                addr: Ipv4Addr::new(192, 168, 2, 10),
            },
            public: Host {
                netns: name("pub"),
                addr: PUBLIC_ADDR,
            },
            routers: [router(1), router(2)],
            namespaces: Vec::new(),
            stun: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let public = lab.public.netns.clone();
        for ns in [
            public.clone(),
            lab.routers[0].netns.clone(),
            lab.routers[1].netns.clone(),
            lab.alice.netns.clone(),
            lab.bob.netns.clone(),
        ] {
            must(&["ip", "netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        must(&["ip", "-n", &public, "link", "add", "br0", "type", "bridge"]);
        must(&[
            "ip",
            "-n",
            &public,
            "addr",
            "add",
            &format!("{PUBLIC_ADDR}/24"),
            "dev",
            "br0",
        ]);
        must(&["ip", "-n", &public, "link", "set", "br0", "up"]);
        for (side, router) in (1u8..).zip(lab.routers.clone()) {
            let nat = router.netns.as_str();
            let home = if side == 1 { &lab.alice } else { &lab.bob };
            let port = format!("port{side}");
            // Each veth is born inside its namespaces: no name is ever taken in the host's.
            must(&[
                "ip", "-n", nat, "link", "add", "wan", "type", "veth", "peer", "name", &port,
                "netns", &public,
            ]);
            must(&[
                "ip", "-n", &public, "link", "set", &port, "master", "br0", "up",
            ]);
            must(&[
                "ip",
                "-n",
                nat,
                "addr",
                "add",
                &format!("{}/24", router.public_addr),
                "dev",
                "wan",
            ]);
            must(&["ip", "-n", nat, "link", "set", "wan", "up"]);
            must(&[
                "ip",
                "-n",
                nat,
                "route",
                "add",
                "default",
                "via",
                &PUBLIC_ADDR.to_string(),
            ]);
            must(&[
                "ip",
                "-n",
                nat,
                "link",
                "add",
                "lan",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &home.netns,
            ]);
            must(&[
                "ip",
                "-n",
                nat,
                "addr",
                "add",
                &format!("192.168.{side}.1/24"),
                "dev",
                "lan",
            ]);
            must(&["ip", "-n", nat, "link", "set", "lan", "up"]);
            must(&[
                "ip",
                "-n",
                &home.netns,
                "addr",
                "add",
                &format!("{}/24", home.addr),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", &home.netns, "link", "set", "eth0", "up"]);
            must(&[
                "ip",
                "-n",
                &home.netns,
                "route",
                "add",
                "default",
                "via",
                &format!("192.168.{side}.1"),
            ]);
            let in_nat = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", nat];
                all.extend_from_slice(args);
                must(&all);
            };
            in_nat(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            let mut masquerade = vec![
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                "wan",
                "-j",
                "MASQUERADE",
            ];
            if kind == Nat::Symmetric {
                masquerade.push("--random-fully");
            }
            in_nat(&masquerade);
            // Unsolicited packets from outside are dropped in INPUT, so their conntrack entry is
            // never confirmed and cannot collide with the mapping a later outgoing packet needs
            // (MASQUERADE would move to another port: the NAT would stop looking like a cone).
            in_nat(&[
                "iptables",
                "-A",
                "INPUT",
                "-i",
                "wan",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ]);
            in_nat(&["iptables", "-A", "INPUT", "-i", "wan", "-j", "DROP"]);
            in_nat(&["iptables", "-P", "FORWARD", "DROP"]);
            in_nat(&[
                "iptables", "-A", "FORWARD", "-i", "lan", "-o", "wan", "-j", "ACCEPT",
            ]);
            in_nat(&[
                "iptables",
                "-A",
                "FORWARD",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ]);
            // The delay tool first: an NFQUEUE rule with no listener drops everything.
            let mut child = Command::new("ip")
                .args(["netns", "exec", nat])
                .arg(tool)
                .arg(QUEUE_NUM)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start nfq_delay");
            let stdin = child.stdin.take().expect("invariant: stdin was piped");
            let mut stdout =
                BufReader::new(child.stdout.take().expect("invariant: stdout was piped"));
            let proc = Proc {
                child,
                name: format!("nfq_delay in {nat}"),
            };
            let mut ready = String::new();
            let _ = stdout.read_line(&mut ready);
            assert_eq!(ready.trim(), "ready", "nfq_delay in {nat} did not start");
            router.state.lock().unwrap_or_else(|p| p.into_inner()).delay = Some(DelayTool {
                stdin,
                stdout,
                _proc: proc,
            });
            in_nat(&[
                "iptables",
                "-t",
                "mangle",
                "-A",
                "FORWARD",
                "-o",
                "wan",
                "-j",
                "NFQUEUE",
                "--queue-num",
                QUEUE_NUM,
            ]);
            router.apply(profile).unwrap_or_else(|e| panic!("{e}"));
        }
        lab
    }

    pub fn alice(&self) -> &Host {
        &self.alice
    }

    pub fn bob(&self) -> &Host {
        &self.bob
    }

    /// The public network, where servers run.
    pub fn public(&self) -> &Host {
        &self.public
    }

    /// The home on `side`.
    pub fn home(&self, side: Side) -> &Host {
        match side {
            Side::Alice => &self.alice,
            Side::Bob => &self.bob,
        }
    }

    /// The address `side`'s router shows the public network (its NAT mappings live there).
    pub fn public_addr(&self, side: Side) -> Ipv4Addr {
        self.routers[side.index()].public_addr
    }

    /// Every namespace the lab made (all deleted on drop).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// `program` run inside `host`'s namespace.
    pub fn command(&self, host: &Host, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.netns]).arg(program);
        cmd
    }

    /// Shapes both uplinks with `profile` from now on.
    pub fn set_profile(&self, profile: Profile) {
        for side in [Side::Alice, Side::Bob] {
            self.set_uplink(side, profile);
        }
    }

    /// Shapes `side`'s uplink with `profile` from now on.
    pub fn set_uplink(&self, side: Side, profile: Profile) {
        self.routers[side.index()]
            .apply(profile)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The profile on `side`'s uplink now.
    pub fn profile(&self, side: Side) -> Profile {
        self.routers[side.index()]
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .profile
    }

    /// What each uplink did so far: the delay tool's counters and tbf's (sent, dropped, backlog).
    pub fn report(&self) -> String {
        self.routers
            .iter()
            .map(|r| r.report())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The routers' connection-tracking tables (NAT mappings), for a failure message.
    pub fn conntrack(&self) -> String {
        self.routers
            .iter()
            .map(|r| {
                let out = Command::new("ip")
                    .args(["netns", "exec", &r.netns, "cat", "/proc/net/nf_conntrack"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                format!("{}:\n{out}", r.netns)
            })
            .collect()
    }

    /// Applies `scenario`'s first step now and the others on a timer thread, until the returned
    /// `Player` is dropped. Both uplinks get each step.
    pub fn play(&self, scenario: &Scenario) -> Player {
        let mut steps = scenario.steps.iter().copied();
        if let Some(first) = steps.next() {
            self.set_profile(first.profile);
        }
        let rest: Vec<Step> = steps.collect();
        let routers = self.routers.clone();
        let (stop, stopped) = sync_channel::<()>(1);
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name(format!("netem {}", scenario.name))
            .spawn(move || {
                for step in rest {
                    let wait = (started + step.at).saturating_duration_since(Instant::now());
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return, // stopped (or the player is gone)
                    }
                    for router in &routers {
                        if let Err(e) = router.apply(step.profile) {
                            eprintln!("netem: {} at {:?}: {e}", step.profile.name, step.at);
                        }
                    }
                }
            })
            .expect("spawn the netem scenario thread");
        Player {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A signaling server in the public network that hands out the lab's STUN server (started
    /// here too), so peers in the homes learn their public addresses and punch through.
    pub fn start_signaling(&mut self, extra: &[&str]) -> Server {
        if self.stun.is_none() {
            self.stun = Some(self.start_stun());
        }
        let stun = format!("stun:{PUBLIC_ADDR}:{STUN_PORT}");
        let mut args = vec!["--stun", stun.as_str()];
        args.extend_from_slice(extra);
        Server::start_listening_in(&self.public, &format!("{PUBLIC_ADDR}:0"), &args)
    }

    fn start_stun(&self) -> Proc {
        let log_path = self.dir.path().join("stun.log");
        let log = std::fs::File::create(&log_path).expect("stun log file");
        let child = self
            .command(&self.public, "turnserver")
            .args(["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls"])
            .arg(format!("--listening-ip={PUBLIC_ADDR}"))
            .arg(format!("--listening-port={STUN_PORT}"))
            .arg(format!(
                "--pidfile={}",
                self.dir.path().join("stun.pid").display()
            ))
            .arg(format!(
                "--userdb={}",
                self.dir.path().join("stun.db").display()
            ))
            .args(["--log-file=stdout", "--simple-log"])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("coturn is needed for the STUN server (scripts/setup.sh --test installs it)");
        let proc = Proc {
            child,
            name: "turnserver --stun-only".into(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Depending on the version, coturn announces its listeners or only its server threads.
        while !std::fs::read_to_string(&log_path)
            .is_ok_and(|l| l.contains("listener opened") || l.contains("Total General servers"))
        {
            assert!(
                Instant::now() < deadline,
                "the STUN server did not come up: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proc
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Processes first (a namespace with a process in it outlives `ip netns del`).
        self.stun = None;
        for router in &self.routers {
            router.state.lock().unwrap_or_else(|p| p.into_inner()).delay = None;
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run(&["ip", "netns", "del", ns]) {
                eprintln!("netem teardown: {e}");
            }
        }
    }
}

/// A scenario being played; dropping it stops the timer (the profile in force stays).
pub struct Player {
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Player {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
