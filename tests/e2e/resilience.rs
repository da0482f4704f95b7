//! Calls that survive: in a `NetLab` (two homes behind NAT routers), one peer's address changes
//! mid-call, or all UDP between the homes is blocked for a while, and the call must go on; the
//! time until video flows again is printed for NOTES.md.

use std::time::{Duration, Instant};

use confab_e2e::netem::{NetLab, Profile, Side};
use confab_e2e::{num, room_code, serial, test_media, Outcome, Peer, Server};
use serde_json::Value;

/// How long each call lasts once connected.
const CALL_SECS: &str = "30";

/// Alice, then Bob, into `room`.
fn start_call(
    lab: &mut NetLab,
    dir: &std::path::Path,
    room: &str,
) -> (Server, Peer, Peer, Instant) {
    let server = lab.start_signaling(&[]);
    let args = test_media("320x180", &["--duration", CALL_SECS, "--wait", "30"]);
    let started = Instant::now();
    let a = Peer::start_in(lab.alice(), dir, "alice", &server.url, room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(lab.bob(), dir, "bob", &server.url, room, &args);
    (server, a, b, started)
}

/// Waits until `peer` says it is connected.
fn wait_connected(peer: &Peer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !peer.stderr_so_far().contains("confab: connected") {
        assert!(
            Instant::now() < deadline,
            "never connected: {}",
            peer.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (second, frames decoded in it) of a peer's timeline.
fn received(stats: &Value) -> Vec<(f64, f64)> {
    stats["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|s| (num(s, "/t_s"), num(s, "/recv_fps")))
        .collect()
}

/// After `from_s`: how long until video came again (the first second with frames that is
/// followed by frames to the end), and whether it still flows in the call's last seconds.
fn recovery(timeline: &[(f64, f64)], from_s: f64) -> (Option<f64>, bool) {
    let after: Vec<&(f64, f64)> = timeline.iter().filter(|(t, _)| *t > from_s).collect();
    let flowing_at_end = after.len() >= 3 && after[after.len() - 3..].iter().all(|(_, f)| *f > 0.0);
    let last_gap = after.iter().rposition(|(_, fps)| *fps == 0.0);
    let back = match last_gap {
        Some(i) => after.get(i + 1).map(|(t, _)| t - from_s),
        None => after.first().map(|(t, _)| t - from_s),
    };
    (back, flowing_at_end)
}

fn finish(a: Peer, b: Peer) -> (Outcome, Outcome) {
    (
        a.finish(Duration::from_secs(90)),
        b.finish(Duration::from_secs(90)),
    )
}

/// Both calls ended well, and video still flows both ways at the end, after `event_s`.
fn assert_survived(what: &str, a: &Outcome, b: &Outcome, event_s: f64) {
    assert!(a.status.success(), "{what}: alice: {}", a.stderr);
    assert!(b.status.success(), "{what}: bob: {}", b.stderr);
    let (sa, sb) = (
        a.stats.as_ref().expect("alice's stats"),
        b.stats.as_ref().expect("bob's stats"),
    );
    for (receiver, who) in [(sb, "alice -> bob"), (sa, "bob -> alice")] {
        let (back, flowing) = recovery(&received(receiver), event_s);
        eprintln!(
            "{what}, {who}: video back {} s after the event ({} reconnections, {:.0} ms reconnecting, {} restarts)",
            back.map_or("never".into(), |s| format!("{s:.0}")),
            num(receiver, "/ice/reconnections"),
            num(receiver, "/ice/reconnecting_ms"),
            num(receiver, "/ice/restarts"),
        );
        assert!(
            flowing,
            "{what}, {who}: video flows at the end: {:?}",
            received(receiver)
        );
    }
}

#[test]
fn a_call_goes_on_when_one_peer_changes_address() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::GOOD);
    let dir = tempfile::tempdir().unwrap();
    let (_server, a, b, started) = start_call(&mut lab, dir.path(), &room_code(1101));
    wait_connected(&a);
    wait_connected(&b);
    std::thread::sleep(Duration::from_secs(4));
    let event_s = started.elapsed().as_secs_f64();
    lab.renumber(Side::Bob, std::net::Ipv4Addr::new(192, 168, 2, 20));
    let (a, b) = finish(a, b);
    assert_survived("address change", &a, &b, event_s);
    let restarts: f64 = [&a, &b]
        .iter()
        .map(|o| num(o.stats.as_ref().expect("stats"), "/ice/restarts"))
        .sum();
    // Bob sees his address change and restarts at once: often before either side even
    // notices the connection dropped.
    assert!(restarts >= 1.0, "an ICE restart carried the call");
}

#[test]
fn a_call_goes_on_after_six_seconds_without_udp() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::GOOD);
    let dir = tempfile::tempdir().unwrap();
    let (_server, a, b, started) = start_call(&mut lab, dir.path(), &room_code(1102));
    wait_connected(&a);
    wait_connected(&b);
    std::thread::sleep(Duration::from_secs(4));
    lab.block_udp(true);
    std::thread::sleep(Duration::from_secs(6));
    let event_s = started.elapsed().as_secs_f64();
    lab.block_udp(false);
    let (a, b) = finish(a, b);
    assert_survived("6 s without UDP", &a, &b, event_s);
    for (o, who) in [(&a, "alice"), (&b, "bob")] {
        assert!(
            o.stderr.contains("connected again"),
            "{who} saw the drop end: {}",
            o.stderr
        );
    }
}
