//! The network emulator measured with real traffic (no Confab involved): round trips, rate limit,
//! loss and teardown of `NetLab` profiles; then one Confab call through the constrained profile,
//! which only has to connect and carry media (adaptation is judged elsewhere).

use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use confab_e2e::netem::{namespaces_now, NetLab, Profile, Scenario, Side, Step};
use confab_e2e::{bin, num, room_code, serial, test_media, Peer, Proc};

/// Bob's end of a probe: punches out from this port towards alice's.
const BOB_PORT: u16 = 5000;
const ALICE_PORT: u16 = 5001;

/// `netprobe ARGS` started in `side`'s home, bound to its probe port, aimed at the other home's
/// router (where the NAT mapping of the other probe lives).
fn probe(lab: &NetLab, side: Side, command: &str, args: &[&str]) -> Proc {
    let (port, other, other_port) = match side {
        Side::Alice => (ALICE_PORT, Side::Bob, BOB_PORT),
        Side::Bob => (BOB_PORT, Side::Alice, ALICE_PORT),
    };
    let child = lab
        .command(lab.home(side), bin("netprobe"))
        .arg(command)
        .args(["--bind", &format!("0.0.0.0:{port}")])
        .args([
            "--peer",
            &format!("{}:{other_port}", lab.public_addr(other)),
        ])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start netprobe");
    Proc {
        child,
        name: format!("netprobe {command}"),
    }
}

/// Waits for a probe and parses the JSON line it printed.
fn report(lab: &NetLab, mut probe: Proc) -> serde_json::Value {
    let status = probe.wait(Duration::from_secs(90));
    let mut out = String::new();
    probe
        .child
        .stdout
        .take()
        .expect("invariant: stdout was piped")
        .read_to_string(&mut out)
        .expect("read netprobe output");
    assert!(
        status.success(),
        "{} failed: {out}\n{}\n{}",
        probe.name,
        lab.report(),
        lab.conntrack()
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{}: {e}: {out:?}", probe.name))
}

/// Round trips alice -> bob -> alice in ms, sorted.
fn round_trips(lab: &NetLab) -> Vec<f64> {
    let server = probe(lab, Side::Bob, "serve", &["--idle-ms", "500"]);
    let pinger = probe(
        lab,
        Side::Alice,
        "ping",
        &["--count", "20", "--interval-ms", "25"],
    );
    let pings = report(lab, pinger);
    drop(report(lab, server));
    let mut rtts: Vec<f64> = pings["rtt_ms"]
        .as_array()
        .expect("rtt_ms")
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    rtts.sort_by(f64::total_cmp);
    assert!(rtts.len() >= 15, "most pings come back: {pings}");
    rtts
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// Sends `count` packets of `size` bytes at `rate_kbps` from alice to bob; bob's report.
fn flood(lab: &NetLab, count: u32, rate_kbps: u32, size: u32) -> serde_json::Value {
    let sink = probe(lab, Side::Bob, "serve", &["--idle-ms", "1000"]);
    let sender = probe(
        lab,
        Side::Alice,
        "send",
        &[
            "--count",
            &count.to_string(),
            "--rate-kbps",
            &rate_kbps.to_string(),
            "--size",
            &size.to_string(),
        ],
    );
    report(lab, sender);
    report(lab, sink)
}

#[test]
fn round_trip_time_follows_the_profile() {
    let _machine = serial();
    let lab = NetLab::new(Profile::GOOD);
    let good = round_trips(&lab);
    lab.set_profile(Profile::CONSTRAINED);
    let constrained = round_trips(&lab);
    eprintln!(
        "round trip alice-bob: good p50 {:.2} ms (max {:.2}); constrained p50 {:.1} ms (min {:.1}, max {:.1})",
        median(&good),
        good[good.len() - 1],
        median(&constrained),
        constrained[0],
        constrained[constrained.len() - 1],
    );
    assert!(median(&good) < 20.0, "an unshaped link is fast: {good:?}");
    // 40 ms on each uplink: 80 ms there and back (the margin is for a busy two-core machine).
    assert!(
        constrained[0] > 70.0,
        "no ping beats the delay: {constrained:?}"
    );
    assert!(
        median(&constrained) < 200.0,
        "the delay is not doubled: {constrained:?}"
    );
}

#[test]
fn the_rate_limit_caps_a_flood() {
    let _machine = serial();
    let lab = NetLab::new(Profile::CONSTRAINED);
    // 3 Mbit/s for about 3 s into the 1 Mbit/s uplink.
    let got = flood(&lab, 940, 3_000, 1_200);
    let kbps = num(&got, "/data_bytes") * 8.0 / num(&got, "/span_ms");
    eprintln!(
        "3 Mbit/s into 1 Mbit/s: {kbps:.0} kbit/s of UDP payload arrived ({} of 940 packets)\n{}",
        got["data_packets"],
        lab.report()
    );
    assert!(
        kbps <= 1_100.0,
        "at most the link's rate gets through: {got}"
    );
    assert!(
        kbps >= 700.0,
        "the link carries about its rate (payload is 97% of it): {got}"
    );
}

#[test]
fn wifi_lossy_loses_five_percent_at_random() {
    let _machine = serial();
    let lab = NetLab::new(Profile::WIFI_LOSSY);
    let got = flood(&lab, 2_000, 2_000, 200);
    let received = num(&got, "/distinct_seqs");
    let loss = 1.0 - received / 2_000.0;
    let runs = num(&got, "/loss_runs");
    eprintln!(
        "wifi-lossy: {:.2}% of 2000 packets lost in {runs} runs\n{}",
        loss * 100.0,
        lab.report()
    );
    assert!(
        (0.03..=0.07).contains(&loss),
        "5% +- 2% lost: {:.2}% ({got})",
        loss * 100.0
    );
    // Independent loss: runs are mostly single packets.
    assert!(runs >= 0.8 * (2_000.0 - received), "{got}");
}

#[test]
fn burst_loss_comes_in_runs() {
    let _machine = serial();
    let bursty = Profile {
        name: "bursty",
        loss_pct: 5.0,
        burst_pkts: 5.0,
        ..Profile::GOOD
    };
    let lab = NetLab::new(bursty);
    let got = flood(&lab, 3_000, 2_000, 200);
    let lost = 3_000.0 - num(&got, "/distinct_seqs");
    let runs = num(&got, "/loss_runs");
    let mean_run = lost / runs.max(1.0);
    eprintln!(
        "bursty (5%, bursts of 5): {:.2}% lost in {runs} runs of {mean_run:.1} packets on average",
        lost / 30.0
    );
    assert!((30.0..=300.0).contains(&lost), "about 5% lost: {got}");
    assert!(
        mean_run >= 2.5,
        "losses come in bursts, not one by one: {got}"
    );
}

#[test]
fn a_scenario_changes_the_link_mid_run() {
    let _machine = serial();
    let lab = NetLab::new(Profile::GOOD);
    let scenario = Scenario {
        name: "quick-drop",
        steps: vec![
            Step {
                at: Duration::ZERO,
                profile: Profile::DROP_HIGH,
            },
            Step {
                at: Duration::from_millis(300),
                profile: Profile::DROP_LOW,
            },
        ],
    };
    let player = lab.play(&scenario);
    assert_eq!(
        lab.profile(Side::Alice),
        Profile::DROP_HIGH,
        "the first step is applied at once"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.profile(Side::Bob) != Profile::DROP_LOW {
        assert!(Instant::now() < deadline, "the second step never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(player);
    assert_eq!(lab.profile(Side::Alice), Profile::DROP_LOW);
    let report = lab.report();
    eprintln!("{report}");
    assert!(report.contains("rate 500Kbit"), "tbf follows: {report}");
    // The drop: 3 Mbit/s, 500 kbit/s for 15 s, 3 Mbit/s again.
    let drop = Scenario::drop(Duration::from_secs(10));
    let rates: Vec<_> = drop
        .steps
        .iter()
        .map(|s| (s.at.as_secs(), s.profile.rate_kbps))
        .collect();
    assert_eq!(
        rates,
        [(0, Some(3_000)), (10, Some(500)), (25, Some(3_000))]
    );
}

#[test]
fn teardown_leaves_no_namespace_behind() {
    let _machine = serial();
    let lab = NetLab::new(Profile::CONSTRAINED);
    let names = lab.namespaces().to_vec();
    assert_eq!(names.len(), 5, "pub, two routers, two homes: {names:?}");
    assert!(names.iter().all(|n| namespaces_now().contains(n)));
    drop(lab);
    let left: Vec<_> = namespaces_now()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // Also when the test using it panics.
    let names = std::sync::Mutex::new(Vec::new());
    let outcome = std::panic::catch_unwind(|| {
        let lab = NetLab::new(Profile::WIFI_LOSSY);
        *names.lock().unwrap() = lab.namespaces().to_vec();
        panic!("a failing test");
    });
    assert!(outcome.is_err());
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 5);
    let left: Vec<_> = namespaces_now()
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "left behind after a panic: {left:?}");
}

#[test]
fn a_confab_call_connects_through_the_constrained_profile() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::CONSTRAINED);
    let dir = tempfile::tempdir().unwrap();
    let server = lab.start_signaling(&[]);
    let room = room_code(1010);
    let args = test_media("640x360", &["--duration", "12", "--wait", "30"]);
    let a = Peer::start_in(lab.alice(), dir.path(), "alice", &server.url, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(lab.bob(), dir.path(), "bob", &server.url, &room, &args);
    let (a, b) = (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    );
    eprintln!("{}", lab.report());
    assert!(a.status.success(), "alice: {}", a.stderr);
    assert!(b.status.success(), "bob: {}", b.stderr);
    let (sa, sb) = (
        a.stats.expect("alice's stats"),
        b.stats.expect("bob's stats"),
    );
    for (sender, receiver, who) in [(&sa, &sb, "alice -> bob"), (&sb, &sa, "bob -> alice")] {
        let decoded = num(receiver, "/video_recv/frames_decoded");
        let audio = num(receiver, "/audio_recv/frames_decoded");
        eprintln!(
            "constrained, {who}: decoded {decoded} of {} frames, {} freezes, latency p50 {:.0} ms; \
             audio {audio} frames decoded, {:.1}% concealed",
            num(sender, "/video_send/frames_encoded"),
            num(receiver, "/video_recv/freezes"),
            num(receiver, "/video_recv/latency_ms/p50"),
            num(receiver, "/audio_recv/concealed_ratio") * 100.0,
        );
        assert!(decoded > 0.0, "{who}: video arrives");
        assert!(audio > 0.0, "{who}: audio arrives");
    }
}
