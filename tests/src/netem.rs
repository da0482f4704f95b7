//! A network emulator for end-to-end tests: `NetLab` builds two homes (alice, bob) behind NAT
//! routers and a public network between them, all in namespaces it owns and deletes on drop, and
//! shapes each router's uplink with a `Profile` (tbf for the rate, tests/tools/nfq_delay.c for
//! delay, jitter and loss), changeable mid-call.

use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::{InNetns, Proc, Server};

mod delay;
mod profile;

use delay::{delay_tool, DelayTool};
pub use profile::{Profile, Scenario, Step};

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
/// The STUN port in the public network (also the TURN port once `NetLab::start_turn` ran).
pub const STUN_PORT: u16 = 3478;
/// The TURN server's relay ports, on `PUBLIC_ADDR`.
const RELAY_PORTS: (u16, u16) = (49_160, 49_200);
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
    /// coturn in the public network: STUN only, or a full TURN server after `start_turn`.
    stun: Option<Proc>,
    /// The shared secret of the TURN server, when there is one (the signaling server mints
    /// time-limited credentials from it).
    turn_secret: Option<String>,
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

impl Router {
    fn apply(&self, profile: Profile) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.profile.rate_kbps != profile.rate_kbps {
            let ns = &self.netns;
            match profile.rate_kbps {
                Some(kbps) => run(&format!(
                    "ip netns exec {ns} tc qdisc replace dev wan root tbf rate {kbps}kbit burst {TBF_BURST} latency {TBF_LATENCY}"
                ))?,
                // Back to the default qdisc.
                None => run(&format!("ip netns exec {ns} tc qdisc del dev wan root"))?,
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

/// Runs a command line (words split at spaces) to completion; its stderr is the error.
fn run(line: &str) -> Result<(), String> {
    let args: Vec<&str> = line.split_whitespace().collect();
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

/// The lab is IPv4 only. With IPv6 on, each new veth gets a link-local address whose duplicate
/// detection finishes about a second later; Chromium sees that as the network changing and drops
/// the page it was loading (`net::ERR_NETWORK_CHANGED`).
fn no_ipv6(ns: &str) {
    for key in ["all", "default"] {
        must(&format!(
            "ip netns exec {ns} sysctl -qw net.ipv6.conf.{key}.disable_ipv6=1"
        ));
    }
}

/// `run` for setup steps, where a failure ends the test.
fn must(line: &str) {
    run(line).unwrap_or_else(|e| panic!("{e}"));
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
            let _ = run(&format!("ip netns del {name}"));
        }
    }
}

/// Kills the processes left in namespace `ns` (this lab's own), by their ids.
fn kill_processes_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if pid.parse::<u32>().is_ok() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
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
            turn_secret: None,
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
            must(&format!("ip netns add {ns}"));
            lab.namespaces.push(ns.clone());
            no_ipv6(&ns);
            must(&format!("ip -n {ns} link set lo up"));
        }
        must(&format!("ip -n {public} link add br0 type bridge"));
        must(&format!("ip -n {public} addr add {PUBLIC_ADDR}/24 dev br0"));
        must(&format!("ip -n {public} link set br0 up"));
        for (side, router) in (1u8..).zip(lab.routers.clone()) {
            let nat = router.netns.as_str();
            let (home, addr) = if side == 1 {
                (&lab.alice.netns, lab.alice.addr)
            } else {
                (&lab.bob.netns, lab.bob.addr)
            };
            let wan_addr = router.public_addr;
            // Each veth is born inside its namespaces: no name is ever taken in the host's.
            for line in [
                format!("ip -n {nat} link add wan type veth peer name port{side} netns {public}"),
                format!("ip -n {public} link set port{side} master br0 up"),
                format!("ip -n {nat} addr add {wan_addr}/24 dev wan"),
                format!("ip -n {nat} link set wan up"),
                format!("ip -n {nat} route add default via {PUBLIC_ADDR}"),
                format!("ip -n {nat} link add lan type veth peer name eth0 netns {home}"),
                format!("ip -n {nat} addr add 192.168.{side}.1/24 dev lan"),
                format!("ip -n {nat} link set lan up"),
                format!("ip -n {home} addr add {addr}/24 dev eth0"),
                format!("ip -n {home} link set eth0 up"),
                format!("ip -n {home} route add default via 192.168.{side}.1"),
            ] {
                must(&line);
            }
            let random = if kind == Nat::Symmetric {
                "--random-fully"
            } else {
                ""
            };
            for line in [
                "sysctl -qw net.ipv4.ip_forward=1".to_owned(),
                format!("iptables -t nat -A POSTROUTING -o wan -j MASQUERADE {random}"),
                // Unsolicited packets from outside are dropped in INPUT, so their conntrack entry
                // is never confirmed and cannot collide with the mapping a later outgoing packet
                // needs (MASQUERADE would move to another port: no longer a cone).
                "iptables -A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
                    .into(),
                "iptables -A INPUT -i wan -j DROP".into(),
                "iptables -P FORWARD DROP".into(),
                "iptables -A FORWARD -i lan -o wan -j ACCEPT".into(),
                "iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT".into(),
            ] {
                must(&format!("ip netns exec {nat} {line}"));
            }
            // The delay tool first: an NFQUEUE rule with no listener drops everything.
            let mut child = crate::command("ip")
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
            // Behind symmetric NAT, a flow's first packet skips the queue: while it waits there
            // its connection is not yet confirmed, so a second packet of the same flow would get
            // a mapping of its own (--random-fully: another port), and a TURN server would see
            // one socket's requests from two addresses (438 Wrong nonce).
            let first_packets = if kind == Nat::Symmetric {
                "-m conntrack ! --ctstate NEW"
            } else {
                ""
            };
            must(&format!(
                "ip netns exec {nat} iptables -t mangle -A FORWARD -o wan {first_packets} -j NFQUEUE --queue-num {QUEUE_NUM}"
            ));
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
        let mut cmd = crate::command("ip");
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

    /// Gives `side`'s home machine a new address in its network (as when a laptop moves to
    /// another network): the old address is gone at once, and the default route comes back.
    pub fn renumber(&mut self, side: Side, addr: Ipv4Addr) {
        self.renumber_after(side, addr, Duration::ZERO, Duration::ZERO, "default");
    }

    /// Like `renumber`, with `gap` between the old address going and the new one coming, when
    /// the machine has no address at all (a laptop between two Wi-Fi networks), and `route_lag`
    /// between the new address and its route (a DHCP client sets the address first and the
    /// routes after it; until then the machine has an address but no way out). The route is to
    /// `route_to` through the home's router: `default`, or a network such as
    /// `203.0.113.0/24` (the public side, with the servers) for a network that routes nowhere
    /// else. Returns the wall-clock time just before the route was set.
    pub fn renumber_after(
        &mut self,
        side: Side,
        addr: Ipv4Addr,
        gap: Duration,
        route_lag: Duration,
        route_to: &str,
    ) -> SystemTime {
        let host = match side {
            Side::Alice => &mut self.alice,
            Side::Bob => &mut self.bob,
        };
        let (ns, old, n) = (&host.netns, host.addr, side.index() + 1);
        must(&format!("ip -n {ns} addr del {old}/24 dev eth0"));
        std::thread::sleep(gap);
        must(&format!("ip -n {ns} addr add {addr}/24 dev eth0"));
        std::thread::sleep(route_lag);
        let routed = SystemTime::now();
        must(&format!(
            "ip -n {ns} route replace {route_to} via 192.168.{n}.1"
        ));
        host.addr = addr;
        routed
    }

    /// Moves `side`'s home machine to `addr` without a moment offline: the new address comes
    /// first, then the old one goes (a laptop whose Ethernet is unplugged while its Wi-Fi is up).
    /// The machine always has an address, so a browser on it stays online throughout.
    pub fn renumber_staying_online(&mut self, side: Side, addr: Ipv4Addr) {
        let host = match side {
            Side::Alice => &mut self.alice,
            Side::Bob => &mut self.bob,
        };
        let (ns, old, n) = (&host.netns, host.addr, side.index() + 1);
        // Both addresses are in the home's /24: the new one is a secondary, which must become the
        // primary when the old goes (by default the kernel deletes secondaries with it).
        must(&format!(
            "ip netns exec {ns} sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1"
        ));
        must(&format!("ip -n {ns} addr add {addr}/24 dev eth0"));
        must(&format!("ip -n {ns} addr del {old}/24 dev eth0"));
        must(&format!(
            "ip -n {ns} route replace default via 192.168.{n}.1"
        ));
        host.addr = addr;
    }

    /// Whether `side`'s home machine has a route to `to` (`ip route get`).
    pub fn has_route(&self, side: Side, to: Ipv4Addr) -> bool {
        let host = match side {
            Side::Alice => &self.alice,
            Side::Bob => &self.bob,
        };
        run(&format!("ip -n {} route get {to}", host.netns)).is_ok()
    }

    /// Drops every UDP packet the routers would forward (both ways, both homes), or lets them
    /// through again; signaling (TCP) is not affected.
    pub fn block_udp(&self, blocked: bool) {
        let op = if blocked { "-I" } else { "-D" };
        for router in &self.routers {
            must(&format!(
                "ip netns exec {} iptables {op} FORWARD -p udp -j DROP",
                router.netns
            ));
        }
    }

    /// Drops every TCP packet `side`'s router would forward (its signaling connection goes
    /// silent; media, UDP, is not affected), or lets them through again.
    pub fn block_tcp(&self, side: Side, blocked: bool) {
        let op = if blocked { "-I" } else { "-D" };
        must(&format!(
            "ip netns exec {} iptables {op} FORWARD -p tcp -j DROP",
            self.routers[side.index()].netns
        ));
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
    /// here too), so peers in the homes learn their public addresses and punch through; after
    /// `start_turn`, it also hands out the TURN server with credentials it mints.
    pub fn start_signaling(&mut self, extra: &[&str]) -> Server {
        if self.stun.is_none() {
            self.stun = Some(self.start_coturn(None));
        }
        let stun = format!("stun:{PUBLIC_ADDR}:{STUN_PORT}");
        let mut args = vec!["--stun".to_owned(), stun];
        if let Some(secret) = &self.turn_secret {
            args.extend([
                "--turn".to_owned(),
                self.turn_url(),
                "--turn-secret".to_owned(),
                secret.clone(),
            ]);
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_listening_in(&self.public, &format!("{PUBLIC_ADDR}:0"), &args)
    }

    /// Makes the lab's coturn a full TURN server on `PUBLIC_ADDR` (relay addresses in the public
    /// network too) that accepts only credentials minted from `secret` (coturn's TURN REST
    /// scheme, as `--turn-secret` mints them). Call before `start_signaling`, whose server then
    /// hands it out.
    pub fn start_turn(&mut self, secret: &str) {
        assert!(
            self.stun.is_none(),
            "start_turn before start_signaling: the STUN server already runs"
        );
        self.add_void_route();
        self.stun = Some(self.start_coturn(Some(secret)));
        self.turn_secret = Some(secret.to_owned());
    }

    /// The TURN server's URL (UDP), as the signaling server hands it out.
    pub fn turn_url(&self) -> String {
        format!("turn:{PUBLIC_ADDR}:{STUN_PORT}?transport=udp")
    }

    /// What coturn logged so far (which allocations and permissions it granted).
    pub fn coturn_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stun.log")).unwrap_or_default()
    }

    /// A default route for the public network into a namespace that drops everything: coturn
    /// relays to every candidate a peer asks permission for, private home addresses included,
    /// and a send that fails with "network unreachable" ends its allocation; dropped silently,
    /// those packets harm nothing.
    fn add_void_route(&mut self) {
        let (public, void) = (
            self.public.netns.clone(),
            format!("{}-void", self.public.netns),
        );
        must(&format!("ip netns add {void}"));
        self.namespaces.push(void.clone());
        no_ipv6(&void);
        for line in [
            format!("ip -n {public} link add void type veth peer name void0 netns {void}"),
            format!("ip -n {public} addr add 100.127.255.1/30 dev void"),
            format!("ip -n {public} link set void up"),
            format!("ip -n {void} addr add 100.127.255.2/30 dev void0"),
            format!("ip -n {void} link set void0 up"),
            // No forwarding and no routes back in `void`: whatever arrives there is dropped.
            format!("ip -n {public} route add default via 100.127.255.2"),
        ] {
            must(&line);
        }
    }

    /// coturn in the public network: STUN only, or a TURN server with `turn_secret`.
    fn start_coturn(&self, turn_secret: Option<&str>) -> Proc {
        let log_path = self.dir.path().join("stun.log");
        let log = std::fs::File::create(&log_path).expect("stun log file");
        let mut cmd = self.command(&self.public, "turnserver");
        cmd.args(["-n", "--no-cli", "--no-tls", "--no-dtls"])
            .arg(format!("--listening-ip={PUBLIC_ADDR}"))
            .arg(format!("--listening-port={STUN_PORT}"));
        match turn_secret {
            None => {
                cmd.arg("--stun-only");
            }
            Some(secret) => {
                // Verbose: the log names each allocation and permission (for failure messages).
                cmd.args(["--fingerprint", "--realm=confab.test", "--verbose"])
                    .arg(format!("--relay-ip={PUBLIC_ADDR}"))
                    .arg(format!("--min-port={}", RELAY_PORTS.0))
                    .arg(format!("--max-port={}", RELAY_PORTS.1))
                    .arg("--use-auth-secret")
                    .arg(format!("--static-auth-secret={secret}"));
            }
        }
        let child = cmd
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
            name: if turn_secret.is_some() {
                "turnserver".into()
            } else {
                "turnserver --stun-only".into()
            },
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
        // Whatever a test started in the homes and is still running there (a browser's
        // renderer outliving its driver), so the namespaces really go.
        for ns in &self.namespaces {
            kill_processes_in(ns);
        }
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run(&format!("ip netns del {ns}")) {
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
