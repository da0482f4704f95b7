//! Bandwidth adaptation end to end: two Confab peers behind NAT routers in network namespaces
//! (`NetLab`), each uplink shaped by a profile, sending the stamped 720p30 pattern. The assertions
//! read the per-second `timeline` of `--stats-json`, so they look at the end of a call (or the
//! seconds of a dip), not whole-call averages. Margins leave room for a noisy two-core machine.

use std::time::Duration;

use confab_e2e::netem::{NetLab, Profile, Scenario};
use confab_e2e::timeline::{longest_stall_s, mean, window};
use confab_e2e::{num, room_code, serial, test_media, Outcome, Peer};
use serde_json::Value;

/// Runs a call of `secs` through `lab` (after `scenario`, if any, starts with the call); returns
/// both sides' stats.
fn call(lab: &mut NetLab, scenario: Option<&Scenario>, room: u64, secs: u32) -> (Value, Value) {
    let dir = tempfile::tempdir().unwrap();
    let server = lab.start_signaling(&[]);
    let room = room_code(room);
    let duration = secs.to_string();
    let args = test_media("1280x720", &["--duration", &duration, "--wait", "30"]);
    let _player = scenario.map(|s| lab.play(s));
    let a = Peer::start_in(lab.alice(), dir.path(), "alice", &server.url, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(lab.bob(), dir.path(), "bob", &server.url, &room, &args);
    let finish = |p: Peer, who: &str| -> Value {
        let out: Outcome = p.finish(Duration::from_secs(u64::from(secs) + 60));
        assert!(out.status.success(), "{who}: {}", out.stderr);
        out.stats.unwrap_or_else(|| panic!("{who}: no stats"))
    };
    let (sa, sb) = (finish(a, "alice"), finish(b, "bob"));
    eprintln!("{}", lab.report());
    (sa, sb)
}

/// The timeline's seconds with `t_s` in `from..to`.
fn seconds(stats: &Value, from: f64, to: f64) -> Vec<&Value> {
    window(stats["timeline"].as_array().expect("a timeline"), from, to)
}

/// `field` of each second; a second without it fails the test (`num`).
fn series(secs: &[&Value], field: &str) -> Vec<f64> {
    secs.iter().map(|s| num(s, &format!("/{field}"))).collect()
}

fn print_timeline(who: &str, sender: &Value, receiver: &Value) {
    eprintln!(
        "{who}: sender video_send {}\nsender bwe {}\nreceiver video_recv {}",
        sender["video_send"], sender["bwe"], receiver["video_recv"]
    );
    let send = sender["timeline"].as_array().unwrap();
    let recv = receiver["timeline"].as_array().unwrap();
    eprintln!("{who}: t  send_kbps target_kbps size  fps | recv_fps freezes");
    for (s, r) in send.iter().zip(recv) {
        eprintln!(
            "  {:5.1} {:6.0} {:6.0} {:4}x{:<4} {:4.0} | {:4.0} {}",
            num(s, "/t_s"),
            num(s, "/send_kbps"),
            num(s, "/target_kbps"),
            num(s, "/send_width"),
            num(s, "/send_height"),
            num(s, "/send_fps"),
            num(r, "/recv_fps"),
            num(r, "/freezes"),
        );
    }
}

#[test]
fn a_constrained_link_is_filled_not_flooded() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::CONSTRAINED);
    let (sa, sb) = call(&mut lab, None, 2001, 20);
    for (sender, receiver, who) in [(&sa, &sb, "alice -> bob"), (&sb, &sa, "bob -> alice")] {
        print_timeline(who, sender, receiver);
        let end = num(sender, "/duration_s");
        let last_sent = seconds(sender, end - 10.0, end);
        let last_recv = seconds(receiver, end - 10.0, end);
        let send_kbps = mean(&series(&last_sent, "send_kbps"));
        let fps = mean(&series(&last_recv, "recv_fps"));
        // Freezes in the last 10 s (the timeline counts them cumulatively).
        let freezes = num(last_recv.last().expect("seconds"), "/freezes")
            - num(last_recv.first().expect("seconds"), "/freezes");
        let concealed = num(receiver, "/audio_recv/concealed_ratio");
        eprintln!(
            "constrained, {who}: last 10 s video {send_kbps:.0} kbit/s, received {fps:.1} fps, \
             {freezes} freezes, audio concealed {:.1}%",
            concealed * 100.0
        );
        // 1 Mbit/s carries audio (~50 kbit/s with headers) and packet overhead too.
        assert!(
            send_kbps <= 950.0,
            "{who}: {send_kbps:.0} kbit/s into a 1 Mbit/s link"
        );
        assert!(send_kbps >= 300.0, "{who}: only {send_kbps:.0} kbit/s used");
        assert!(fps >= 20.0, "{who}: {fps:.1} fps over the last 10 s");
        assert!(freezes <= 2.0, "{who}: {freezes} freezes in the last 10 s");
        assert!(
            concealed <= 0.05,
            "{who}: {:.1}% of audio concealed",
            concealed * 100.0
        );
    }
}

#[test]
fn a_link_that_drops_and_comes_back_is_followed_both_ways() {
    let _machine = serial();
    let dip_at = 10.0;
    let back_at = dip_at + Scenario::DROP_LENGTH.as_secs_f64();
    let mut lab = NetLab::new(Profile::DROP_HIGH);
    let scenario = Scenario::drop(Duration::from_secs_f64(dip_at));
    let (sa, sb) = call(&mut lab, Some(&scenario), 2002, 42);
    for (sender, receiver, who) in [(&sa, &sb, "alice -> bob"), (&sb, &sa, "bob -> alice")] {
        print_timeline(who, sender, receiver);
        // The scenario's clock starts a moment before the peers join: allow a second.
        let during = seconds(sender, dip_at + 5.5, back_at);
        let during_kbps = series(&during, "send_kbps");
        let fps_during = mean(&series(
            &seconds(receiver, dip_at + 1.0, back_at),
            "recv_fps",
        ));
        let after = series(&seconds(sender, back_at, back_at + 16.0), "send_kbps");
        let encoded = num(sender, "/video_send/frames_encoded");
        let keyframes = num(sender, "/video_send/keyframes");
        eprintln!(
            "drop, {who}: during the dip {during_kbps:?} kbit/s, {fps_during:.1} fps; after \
             {after:?}; {keyframes} keyframes in {encoded} frames"
        );
        assert!(
            !during_kbps.is_empty() && during_kbps.iter().all(|&k| k <= 500.0),
            "{who}: not under 500 kbit/s within 5 s of the drop: {during_kbps:?}"
        );
        assert!(
            fps_during >= 12.0,
            "{who}: {fps_during:.1} fps during the dip"
        );
        assert!(
            after.iter().any(|&k| k >= 1500.0),
            "{who}: not back above 1.5 Mbit/s within 15 s: {after:?}"
        );
        assert!(
            keyframes * 100.0 < encoded,
            "{who}: {keyframes} keyframes in {encoded} frames"
        );
    }
}

#[test]
fn a_good_link_gets_720p30_from_the_first_second() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::GOOD);
    let (sa, sb) = call(&mut lab, None, 2003, 6);
    for (sender, receiver, who) in [(&sa, &sb, "alice -> bob"), (&sb, &sa, "bob -> alice")] {
        print_timeline(who, sender, receiver);
        // The first second with video sent, within a second and a half of connecting, is 720p.
        let connected_s = num(sender, "/ms_to/ice_connected") / 1000.0;
        let first = seconds(sender, connected_s, connected_s + 1.5)
            .into_iter()
            .find(|s| num(s, "/send_fps") > 0.0)
            .unwrap_or_else(|| panic!("{who}: nothing sent in the first second"));
        assert_eq!(
            (num(first, "/send_width"), num(first, "/send_height")),
            (1280.0, 720.0),
            "{who}: the first second is sent at 720p"
        );
        assert!(num(first, "/send_fps") >= 25.0, "{who}: {first}");
        let early = seconds(receiver, connected_s + 1.0, connected_s + 3.0);
        let fps = mean(&series(&early, "recv_fps"));
        assert!(
            fps >= 25.0,
            "{who}: {fps:.1} fps in the seconds after connecting"
        );
        assert_eq!(num(receiver, "/video_recv/width"), 1280.0);
    }
}

#[test]
fn a_lossy_link_keeps_the_frame_rate_and_resends_sparingly() {
    let _machine = serial();
    let mut lab = NetLab::new(Profile::WIFI_LOSSY);
    let (sa, sb) = call(&mut lab, None, 2004, 16);
    let mut freezes_both_ways = 0.0;
    for (sender, receiver, who) in [(&sa, &sb, "alice -> bob"), (&sb, &sa, "bob -> alice")] {
        print_timeline(who, sender, receiver);
        let end = num(sender, "/duration_s");
        let fps = mean(&series(&seconds(receiver, end - 10.0, end), "recv_fps"));
        let lost = num(sender, "/bwe/packets_lost");
        let resent = num(sender, "/bwe/retransmissions");
        let reported = num(sender, "/bwe/packets_reported");
        let asked = num(receiver, "/bwe/nack_requests");
        let freezes = num(receiver, "/video_recv/freezes");
        eprintln!(
            "wifi-lossy, {who}: {fps:.1} fps over the last 10 s; {lost} of {reported} packets \
             lost, {asked} asked for again, {resent} resent ({:.2} per loss); {freezes} freezes \
             ({:.0} ms added for resends); audio concealed {:.1}%",
            resent / lost.max(1.0),
            num(receiver, "/video_recv/resend_delay_ms"),
            num(receiver, "/audio_recv/concealed_ratio") * 100.0
        );
        assert!(fps >= 25.0, "{who}: {fps:.1} fps over the last 10 s");
        freezes_both_ways += freezes;
        assert!(
            lost > 0.0,
            "{who}: a 5% lossy link lost nothing: the test proves nothing"
        );
        assert!(
            resent <= 2.0 * lost,
            "{who}: {resent} retransmissions for {lost} lost packets"
        );
        assert!(
            asked > 0.0 && asked <= 2.0 * lost,
            "{who}: {asked} packets asked for again for {lost} lost packets"
        );
    }
    // About 10 video packets a second are lost each way, and one loss in ten needs a second
    // resend, one in a hundred a third. Shown as soon as decoded, such frames froze the picture
    // 7-16 times a call (both ways); with the round trip added to the playout delay and the
    // third round waited for, 1-7; with repeats sent twice and the delay from the first frame,
    // 0-2 (NOTES.md, "Freezes on a lossy link").
    assert!(
        freezes_both_ways <= 8.0,
        "{freezes_both_ways} freezes in a 16 s call, both ways"
    );
}

/// A call on a bad link holds: after the first frame the picture never stands still for more
/// than `max_stall_s` whole seconds, video stays under `max_video_kbps` over the last 10 s and
/// still moves (>= `min_fps`), and at most `max_concealed` of the audio is concealed.
fn a_bad_link_holds(
    profile: Profile,
    room: u64,
    max_video_kbps: f64,
    min_fps: f64,
    max_stall_s: u32,
    max_concealed: f64,
) {
    let _machine = serial();
    let mut lab = NetLab::new(profile);
    let (sa, sb) = call(&mut lab, None, room, 20);
    // Both directions are measured (and printed) before either is judged.
    let mut measured = Vec::new();
    for (sender, receiver, who) in [(&sa, &sb, "alice -> bob"), (&sb, &sa, "bob -> alice")] {
        print_timeline(who, sender, receiver);
        let end = num(sender, "/duration_s");
        let send_kbps = mean(&series(&seconds(sender, end - 10.0, end), "send_kbps"));
        let fps = mean(&series(&seconds(receiver, end - 10.0, end), "recv_fps"));
        let stall = longest_stall_s(&seconds(receiver, 0.0, end + 1.0));
        let concealed = num(receiver, "/audio_recv/concealed_ratio");
        let decoded = num(receiver, "/video_recv/frames_decoded");
        eprintln!(
            "{}, {who}: last 10 s video {send_kbps:.0} kbit/s, received {fps:.1} fps; longest \
             stall {stall} s, {} freezes, audio concealed {:.1}% (FEC recovered {}); {} \
             keyframes in {} frames",
            profile.name,
            num(receiver, "/video_recv/freezes"),
            concealed * 100.0,
            num(receiver, "/audio_recv/frames_recovered_fec"),
            num(sender, "/video_send/keyframes"),
            num(sender, "/video_send/frames_encoded"),
        );
        measured.push((who, send_kbps, fps, stall, concealed, decoded));
    }
    for (who, send_kbps, fps, stall, concealed, decoded) in measured {
        assert!(decoded > 0.0, "{who}: no video at all");
        assert!(
            send_kbps <= max_video_kbps,
            "{who}: {send_kbps:.0} kbit/s of video on {profile:?}"
        );
        assert!(fps >= min_fps, "{who}: {fps:.1} fps over the last 10 s");
        assert!(
            stall <= max_stall_s,
            "{who}: the picture stood still for {stall} s"
        );
        assert!(
            concealed <= max_concealed,
            "{who}: {:.1}% of audio concealed",
            concealed * 100.0
        );
    }
}

#[test]
#[ignore = "fails in about one run in nine (engine): GCC's loss rule takes 10% random loss for congestion and the estimate sits at its floor (58-96 kbit/s of video, 320x180 at ~15 fps), so one long stall takes the last 10 s under 10 fps (8.4 once); a higher rate needs video FEC; see NOTES.md"]
fn a_very_bad_link_holds_the_call() {
    // 1 Mbit/s, 250 ms each way, 10% loss.
    a_bad_link_holds(Profile::VERY_BAD, 2005, 950.0, 10.0, 2, 0.15);
}

/// The call starts at 2 Mbit/s into the 400 kbit/s link, so its first seconds stand still ~2 s
/// (the limit; 9 runs of 9 on 2026-12-03 after the keyframe changes, see NOTES.md).
#[test]
fn a_3g_link_holds_the_call() {
    // 400 kbit/s, 175 ms each way: audio and headers take ~50 kbit/s of it.
    a_bad_link_holds(Profile::THREE_G, 2006, 380.0, 10.0, 2, 0.05);
}
