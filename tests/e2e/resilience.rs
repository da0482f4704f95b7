//! Calls that survive: in a `NetLab` (two homes behind NAT routers), one peer's address changes
//! mid-call, all UDP between the homes is blocked for a while, or the signaling server restarts,
//! and the call must go on (the time until video flows again is printed for NOTES.md); a peer
//! whose signaling is gone for good leaves the room once its grace period is over.

use std::time::{Duration, Instant};

use confab_e2e::netem::{NetLab, Profile, Side, PUBLIC_ADDR, STUN_PORT};
use confab_e2e::{logged_at, num, room_code, serial, tail, test_media, Outcome, Peer, Server};
use serde_json::Value;

/// How long each call lasts once connected.
const CALL_SECS: &str = "30";

/// Alice, then Bob, into `room`.
fn start_call(
    lab: &mut NetLab,
    dir: &std::path::Path,
    room: &str,
) -> (Server, Peer, Peer, Instant) {
    start_call_with(lab, dir, room, &[])
}

/// Like `start_call`, with extra arguments for the signaling server.
fn start_call_with(
    lab: &mut NetLab,
    dir: &std::path::Path,
    room: &str,
    server_args: &[&str],
) -> (Server, Peer, Peer, Instant) {
    let server = lab.start_signaling(server_args);
    let args = test_media("320x180", &["--duration", CALL_SECS, "--wait", "30"]);
    let started = Instant::now();
    let a = Peer::start_in(lab.alice(), dir, "alice", &server.url, room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(lab.bob(), dir, "bob", &server.url, room, &args);
    (server, a, b, started)
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
            "{what}, {who}: video flows at the end: {:?}\nalice: {}\nbob: {}",
            received(receiver),
            tail(&a.stderr, 4000),
            tail(&b.stderr, 4000),
        );
        // The stats name the path in use, whatever kind of candidate each end is (a restart
        // often ends on a peer-reflexive one, which no trickled candidate describes).
        let ice = &receiver["ice"];
        eprintln!("{what}, {who}: selected pair {ice}");
        for field in [
            "local_candidate_type",
            "remote_candidate_type",
            "local_address",
            "remote_address",
        ] {
            assert!(ice[field].is_string(), "{what}, {who}: {field} in {ice}");
        }
    }
}

/// Bob's machine moves to another network twice. First with 1.5 s without any address between
/// the two (a laptop going from one Wi-Fi network to another), and the new address 300 ms
/// without a route; then to a network that routes only to the servers' side (no default route).
#[test]
fn a_call_goes_on_when_one_peer_changes_address() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::GOOD);
    let dir = tempfile::tempdir().unwrap();
    let (_server, a, b, started) = start_call(&mut lab, dir.path(), &room_code(1101));
    a.wait_connected();
    b.wait_connected();
    std::thread::sleep(Duration::from_secs(4));
    let event_s = started.elapsed().as_secs_f64();
    // A Wi-Fi switch: 1.5 s without any address, then the new one, and its default route
    // 300 ms after it (the order a DHCP client sets them in).
    let changed = std::time::SystemTime::now();
    let routed = lab.renumber_after(
        Side::Bob,
        std::net::Ipv4Addr::new(192, 168, 2, 20),
        Duration::from_millis(1500),
        Duration::from_millis(300),
        "default",
    );
    // Then a network with a route to the servers' side only. Joining the mDNS group needs a
    // route to it, so the restart's new sockets have no mDNS: the call must go on without it.
    std::thread::sleep(Duration::from_secs(8));
    let second_s = started.elapsed().as_secs_f64();
    lab.renumber_after(
        Side::Bob,
        std::net::Ipv4Addr::new(192, 168, 2, 30),
        Duration::ZERO,
        Duration::ZERO,
        "203.0.113.0/24",
    );
    let mdns_group = std::net::Ipv4Addr::new(224, 0, 0, 251);
    assert!(!lab.has_route(Side::Bob, mdns_group), "no route for mDNS");
    let (a, b) = finish(a, b);
    for (receiver, who) in [(&b, "alice -> bob"), (&a, "bob -> alice")] {
        let stats = receiver.stats.as_ref().expect("stats");
        let (back, _) = recovery(&received(stats), second_s);
        eprintln!(
            "second address change, {who}: video back {} s after it",
            back.map_or("never".into(), |s| format!("{s:.0}")),
        );
    }
    assert_survived("address change", &a, &b, event_s);
    // Bob restarted only once he had a way out: a restart without a route gathers no
    // server-reflexive candidate, so Alice (behind her NAT) could not answer it, and the call
    // waited 4 s for the next one.
    let restarted = logged_at(&b.stderr, "restarting ICE");
    assert!(
        restarted.iter().all(|t| *t < changed || *t >= routed),
        "bob restarted before his route was back ({:?} after the change): {}",
        routed.duration_since(changed),
        b.stderr
    );
    // Nothing was tried while there was no address to try it from (a restart then has nothing
    // to gather on, and webrtc-rs ends the connection when its new sockets find no interface).
    assert!(
        !b.stderr.contains("could not prepare the connection"),
        "{}",
        b.stderr
    );
    let restarts: f64 = [&a, &b]
        .iter()
        .map(|o| num(o.stats.as_ref().expect("stats"), "/ice/restarts"))
        .sum();
    // Bob sees his address change and restarts at once: often before either side even
    // notices the connection dropped.
    assert!(restarts >= 2.0, "an ICE restart carried the call each time");
}

#[test]
fn a_call_goes_on_after_six_seconds_without_udp() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::GOOD);
    let dir = tempfile::tempdir().unwrap();
    let (_server, a, b, started) = start_call(&mut lab, dir.path(), &room_code(1102));
    a.wait_connected();
    b.wait_connected();
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
        // Alice restarted ICE with her first own offer (she had answered Bob's): the data
        // channels Bob created carry on, and no second pair is opened.
        assert_channels_opened_once(who, &o.stderr);
    }
}

/// `log` (a peer's or the page's) shows the call's two data channels opening once each: an ICE
/// restart offered by the side that answered the first offer opens no second pair.
fn assert_channels_opened_once(who: &str, log: &str) {
    assert_eq!(
        log.matches("data channel open").count(),
        2,
        "{who} saw the two data channels open, once each: {}",
        tail(log, 6000)
    );
    assert!(
        !log.contains("a second data channel"),
        "{who}: {}",
        tail(log, 6000)
    );
}

/// Signs resume tokens in the tests that restart the server.
const RESUME_KEY: &str = "resilience-test-key";

/// Kills `server` and, 2 s later, starts another on the same address with the same resume key.
fn restart_server(lab: &NetLab, server: Server) -> Server {
    let listen = server
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned();
    drop(server); // killed
    std::thread::sleep(Duration::from_secs(2));
    let stun = format!("stun:{PUBLIC_ADDR}:{STUN_PORT}");
    Server::start_listening_in(
        lab.public(),
        &listen,
        &["--stun", &stun, "--resume-key", RESUME_KEY],
    )
}

/// Waits until `peer` has its seat back on the (new) server.
fn wait_resumed(peer: &Peer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !peer
        .stderr_so_far()
        .contains("back on the signaling server")
    {
        assert!(
            Instant::now() < deadline,
            "never resumed: {}",
            peer.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_call_keeps_its_media_while_the_signaling_server_restarts() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::GOOD);
    let dir = tempfile::tempdir().unwrap();
    let (server, a, b, started) = start_call_with(
        &mut lab,
        dir.path(),
        &room_code(1103),
        &["--resume-key", RESUME_KEY],
    );
    a.wait_connected();
    b.wait_connected();
    std::thread::sleep(Duration::from_secs(3));
    let event_s = started.elapsed().as_secs_f64();
    let _server = restart_server(&lab, server);
    // Both take their seats back on the new server.
    for peer in [&a, &b] {
        wait_resumed(peer);
    }
    let (a, b) = finish(a, b);
    assert_survived("signaling server restart", &a, &b, event_s);
    // Media never depended on the server: no second without video after it went away (the last
    // second is cut short by the end of the call).
    for (o, who) in [(&b, "alice -> bob"), (&a, "bob -> alice")] {
        let timeline = received(o.stats.as_ref().expect("stats"));
        let after: Vec<_> = timeline.iter().filter(|(t, _)| *t > event_s).collect();
        let stalled: Vec<_> = after[..after.len().saturating_sub(1)]
            .iter()
            .filter(|(_, fps)| *fps == 0.0)
            .collect();
        assert!(
            stalled.is_empty(),
            "{who}: seconds without video: {stalled:?}"
        );
    }
}

#[test]
fn a_peer_whose_signaling_is_gone_for_good_leaves_after_the_grace_period() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::GOOD);
    let dir = tempfile::tempdir().unwrap();
    let (_server, a, b, _) = start_call_with(
        &mut lab,
        dir.path(),
        &room_code(1104),
        &["--idle-timeout", "3", "--resume-grace", "3"],
    );
    a.wait_connected();
    b.wait_connected();
    // Bob's signaling goes silent for good (his media still flows).
    lab.block_tcp(Side::Bob, true);
    let a = a.finish(Duration::from_secs(90));
    drop(b);
    assert!(a.status.success(), "alice: {}", a.stderr);
    let away = a
        .stderr
        .find("signaling connection dropped")
        .unwrap_or_else(|| panic!("alice heard bob was away: {}", a.stderr));
    let left = a
        .stderr
        .find("the other person left")
        .unwrap_or_else(|| panic!("alice heard bob left: {}", a.stderr));
    assert!(away < left, "away first, then gone: {}", a.stderr);
}

#[test]
fn symmetric_nat_without_turn_fails_on_both_sides_with_the_reason() {
    let _machine = serial();
    let mut lab = NetLab::with_nat(confab_e2e::netem::Nat::Symmetric, Profile::GOOD);
    let dir = tempfile::tempdir().unwrap();
    let server = lab.start_signaling(&[]);
    let args = test_media("320x180", &["--duration", "5", "--wait", "40"]);
    let room = room_code(1105);
    let a = Peer::start_in(lab.alice(), dir.path(), "alice", &server.url, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(lab.bob(), dir.path(), "bob", &server.url, &room, &args);
    let (a, b) = finish(a, b);
    for (o, who) in [(&a, "alice"), (&b, "bob")] {
        eprintln!("{who}: {}", o.stderr.lines().last().unwrap_or_default());
        assert!(!o.status.success(), "{who} cannot connect: {}", o.stderr);
        assert!(
            o.stderr.contains("a TURN server may be needed"),
            "{who} says why: {}",
            o.stderr
        );
    }
}

/// A benchmark more than a test (about two minutes): 20 calls over a 5%-loss, 80 ms RTT link
/// between two cone-NAT homes; prints how many connected and how long each took. Every one must
/// connect: a lost handshake packet has to be sent again. Run with `--ignored`.
#[test]
#[ignore = "a benchmark: run with --ignored"]
fn twenty_calls_over_a_lossy_link_all_connect() {
    calls_all_connect(Profile::WIFI_LOSSY, "5% loss, 80 ms RTT", 20, 1200);
}

/// The same over the very-bad link (10% loss, 500 ms RTT), 12 calls (about three minutes). The
/// signaling crosses the lossy link too, so each side's candidates can reach the other a second
/// or more apart: the first side's checks all fail before the other starts, and only a triggered
/// check (`vendor/rtc-ice`) connects the call.
#[test]
#[ignore = "a benchmark: run with --ignored"]
fn calls_over_a_very_bad_link_all_connect() {
    calls_all_connect(Profile::VERY_BAD, "10% loss, 500 ms RTT", 12, 1300);
}

fn calls_all_connect(profile: Profile, label: &str, calls: u64, first_room: u64) {
    let _machine = serial();
    let mut lab = NetLab::new(profile);
    let dir = tempfile::tempdir().unwrap();
    let server = lab.start_signaling(&[]);
    let args = test_media("320x180", &["--duration", "1", "--wait", "30"]);
    let mut connect_ms = Vec::new();
    let mut failures = Vec::new();
    for i in 0..calls {
        let room = room_code(first_room + i);
        let a = Peer::start_in(lab.alice(), dir.path(), "alice", &server.url, &room, &args);
        std::thread::sleep(Duration::from_millis(300));
        let b = Peer::start_in(lab.bob(), dir.path(), "bob", &server.url, &room, &args);
        let (a, b) = finish(a, b);
        let connected = [&a, &b].iter().all(|o| o.status.success());
        let ms = b
            .stats
            .as_ref()
            .and_then(|s| s["ms_to"]["ice_connected"].as_f64());
        match (connected, ms) {
            (true, Some(ms)) => connect_ms.push(ms),
            _ => failures.push(format!("call {i}: alice: {}\nbob: {}", a.stderr, b.stderr)),
        }
    }
    connect_ms.sort_by(f64::total_cmp);
    eprintln!(
        "{label}: {} of {calls} calls connected; ms from start to connected (bob): {connect_ms:?}",
        connect_ms.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

/// The web client's side of it: Chromium (the older peer, so the one that restarts ICE first) in
/// Alice's home and Confab in Bob's. All UDP is blocked for 6 s, then the signaling server is
/// killed and started again, then the browser's home gets a new address: both get their video
/// back each time, neither loses a second of it while the server is away, the page takes its
/// seat back on the new server, and it restarts ICE to carry the call to its new address.
#[test]
fn a_browser_call_survives_an_outage_and_a_server_restart() {
    use confab_e2e::browser::{page_url, write_pattern_y4m, Browser};

    let _machine = serial();
    let mut lab = NetLab::new(Profile::GOOD);
    let dir = tempfile::tempdir().unwrap();
    let server = lab.start_signaling(&["--resume-key", RESUME_KEY]);
    let room = room_code(1106);
    let y4m = dir.path().join("pattern.y4m");
    write_pattern_y4m(&y4m, 320, 180, 60);
    let y4m = y4m.to_str().expect("invariant: a temp path is UTF-8");
    let browser = Browser::start(
        Some(lab.alice()),
        dir.path(),
        "chromium",
        &page_url(&server.url, &room, "Chromium"),
        &[
            "--frames",
            "30",
            "--timeout",
            "60",
            "--hold",
            "60",
            "--fake-video",
            y4m,
        ],
    );
    // Chromium takes a moment to start and join.
    std::thread::sleep(Duration::from_secs(3));
    let args = test_media("320x180", &["--duration", "50", "--wait", "30"]);
    let started = Instant::now();
    let native = Peer::start_in(lab.bob(), dir.path(), "confab", &server.url, &room, &args);
    native.wait_connected();
    std::thread::sleep(Duration::from_secs(4));
    lab.block_udp(true);
    std::thread::sleep(Duration::from_secs(6));
    let outage_end_s = started.elapsed().as_secs_f64();
    lab.block_udp(false);
    std::thread::sleep(Duration::from_secs(5));

    let server_gone_s = started.elapsed().as_secs_f64();
    let _server = restart_server(&lab, server);
    wait_resumed(&native);
    std::thread::sleep(Duration::from_secs(2));
    let renumbered_s = started.elapsed().as_secs_f64();
    // A second without any address (with none at all for only an instant, Chromium does not
    // always go offline and online, as in one run on 12-05).
    lab.renumber_after(
        Side::Alice,
        std::net::Ipv4Addr::new(192, 168, 1, 20),
        Duration::from_secs(1),
        Duration::ZERO,
        "default",
    );
    // And again, with the new address before the old one goes: Chromium stays online, so the
    // page gets no event, and the path dies with the connection still saying "connected".
    std::thread::sleep(Duration::from_secs(8));
    let moved_s = started.elapsed().as_secs_f64();
    let moved = std::time::SystemTime::now();
    lab.renumber_staying_online(Side::Alice, std::net::Ipv4Addr::new(192, 168, 1, 30));

    let native = native.finish(Duration::from_secs(90));
    let browser = browser.finish(Duration::from_secs(30));
    assert!(native.status.success(), "confab: {}", native.stderr);
    assert!(
        browser.ok,
        "browser: {}\n{}",
        browser.json,
        tail(&browser.stderr, 6000)
    );
    assert!(
        native.stderr.contains("back on the signaling server"),
        "confab took its seat back: {}",
        native.stderr
    );
    assert!(
        num(&browser.json, "/resumes") >= 1.0,
        "the page took its seat back: {}",
        browser.json
    );
    assert_channels_opened_once("confab", &native.stderr);
    assert_channels_opened_once("the page", &browser.stderr);

    // Chromium -> Confab: video came back after the outage and did not stop for the server.
    let stats = native.stats.as_ref().expect("confab's stats");
    let timeline = received(stats);
    let before_server: Vec<(f64, f64)> = timeline
        .iter()
        .copied()
        .filter(|(t, _)| *t < server_gone_s)
        .collect();
    let (back, flowing) = recovery(&before_server, outage_end_s);
    eprintln!(
        "browser call, chromium -> confab: video back {} s after the outage; confab {} restarts, page {} restarts",
        back.map_or("never".into(), |s| format!("{s:.0}")),
        num(stats, "/ice/restarts"),
        num(&browser.json, "/iceRestarts"),
    );
    assert!(
        flowing && back.is_some_and(|s| s <= 3.0),
        "chromium -> confab: video back within 3 s of the outage's end: {timeline:?}\nconfab: {}\npage: {}",
        tail(&native.stderr, 6000),
        tail(&browser.stderr, 6000),
    );
    let after_restart: Vec<_> = timeline
        .iter()
        .filter(|(t, _)| *t > server_gone_s && *t < renumbered_s)
        .collect();
    let stalled: Vec<_> = after_restart[..after_restart.len().saturating_sub(1)]
        .iter()
        .filter(|(_, fps)| *fps == 0.0)
        .collect();
    assert!(
        stalled.is_empty(),
        "chromium -> confab: seconds without video while the server restarted: {stalled:?}"
    );
    // The page's new address: the page restarted ICE and the video came back.
    assert!(
        num(&browser.json, "/iceRestarts") >= 1.0,
        "the page restarted ICE after its address changed: {}",
        browser.json
    );
    let before_move: Vec<(f64, f64)> = timeline
        .iter()
        .copied()
        .filter(|(t, _)| *t < moved_s)
        .collect();
    // Chromium -> Confab flows again after `from_s` to the end of `timeline`; prints how soon.
    let flows_again = |what: &str, timeline: &[(f64, f64)], from_s: f64| {
        let (back, flowing) = recovery(timeline, from_s);
        eprintln!(
            "browser call, chromium -> confab: video back {} s after {what}",
            back.map_or("never".into(), |s| format!("{s:.0}")),
        );
        assert!(
            flowing,
            "chromium -> confab flows after {what}: {timeline:?}\nconfab: {}\npage: {}",
            tail(&native.stderr, 6000),
            tail(&browser.stderr, 6000),
        );
    };
    flows_again("the page's address changed", &before_move, renumbered_s);
    // Chromium went offline and online with the address change: the page restarted ICE then,
    // not seconds later when ICE noticed the drop.
    assert!(
        browser
            .stderr
            .contains("the network changed; restarting ICE"),
        "the page took the browser's online event for a network change: {}",
        tail(&browser.stderr, 6000),
    );

    // The second move: the page found its path dead by itself (nothing arriving) and restarted
    // before Chromium said the connection was down (~7.6 s after the path died).
    let since_move = |message: &str| -> Vec<std::time::SystemTime> {
        logged_at(&browser.stderr, message)
            .into_iter()
            .filter(|t| *t >= moved)
            .collect()
    };
    let (restarted, down) = (
        since_move("] restarting ICE"),
        since_move("connection state disconnected"),
    );
    flows_again("the page moved staying online", &timeline, moved_s);
    eprintln!(
        "browser call, second move: the page restarted {:?} after it, Chromium said disconnected \
         {:?} after it",
        restarted.first().map(|t| t.duration_since(moved)),
        down.first().map(|t| t.duration_since(moved)),
    );
    assert!(
        restarted
            .first()
            .is_some_and(|r| down.first().is_none_or(|d| r < d)),
        "the page restarted ICE before Chromium reported the connection down: {}",
        tail(&browser.stderr, 6000),
    );

    // Confab -> Chromium: the page saw the outage (seconds without frames once video had
    // started) and then video again, for several seconds in a row.
    let fps: Vec<f64> = browser
        .timeline()
        .iter()
        .map(|s| s["recv_fps"].as_f64().unwrap_or(0.0))
        .collect();
    let started_at = fps
        .iter()
        .position(|&f| f > 0.0)
        .expect("the page got video");
    let gap = fps[started_at..]
        .iter()
        .position(|&f| f == 0.0)
        .map(|i| started_at + i)
        .unwrap_or_else(|| panic!("the page's video stopped during the outage: {fps:?}"));
    let longest_run_after = fps[gap..]
        .split(|&f| f == 0.0)
        .map(<[f64]>::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_run_after >= 8,
        "confab -> chromium: video again after the outage for 8 s in a row: {fps:?}"
    );
}
