//! Lip sync with the real binaries: one 8 s call on loopback where each side makes one of its
//! send paths 100 ms slower (hidden test flags; the capture timestamps are kept). Peer a's video
//! is late, so b's audio must wait for it; b's audio is late, so a must hold its video. Each side
//! measures the skew from the stamped pattern and the test signal's markers.

use std::time::Duration;

use confab_e2e::{num, room_code, serial, test_media, Peer, Server};

/// The skews (video minus audio latency, ms) measured at the markers from `from_s` on.
fn skews_after(stats: &serde_json::Value, from_s: f64) -> Vec<f64> {
    stats["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|s| num(s, "/t_s") >= from_s)
        .filter_map(|s| s["av_skew_ms"].as_f64())
        .collect()
}

#[test]
fn audio_and_video_meet_within_40_ms_when_one_path_is_100_ms_slower() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&[]);
    let room = room_code(13);
    // Audio processing off: noise suppression and gain control soften the markers' onsets, which
    // then read ~20 ms late and vary (a bias of the measurement, not of the sync).
    let common = [
        "--fps",
        "30",
        "--duration",
        "8",
        "--wait",
        "30",
        "--no-aec",
        "--no-ns",
        "--no-agc",
        "--no-hpf",
    ];
    let a_args = [&common[..], &["--test-video-delay-ms", "100"]].concat();
    let b_args = [&common[..], &["--test-audio-delay-ms", "100"]].concat();
    let a = Peer::start(
        dir.path(),
        "a",
        &server.url,
        &room,
        &test_media("640x360", &a_args),
    );
    let b = Peer::start(
        dir.path(),
        "b",
        &server.url,
        &room,
        &test_media("640x360", &b_args),
    );
    let (a, b) = (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    );
    let (sa, sb) = match (&a.stats, &b.stats) {
        (Some(sa), Some(sb)) => (sa, sb),
        _ => panic!("no stats\na: {}\nb: {}", a.stderr, b.stderr),
    };
    for (who, s) in [("a", sa), ("b", sb)] {
        println!("{who}: sync {:#}", s["sync"]);
        println!("{who}: skews by second {:?}", skews_after(s, 0.0));
        assert!(
            num(s, "/sync/sender_reports") > 0.0,
            "{who}: no sender reports"
        );
        // Converged by 4 s (the first report comes after 1 s, audio grows 80 ms a second).
        let skews = skews_after(s, 4.0);
        assert!(
            skews.len() >= 2,
            "{who}: too few markers measured: {skews:?}"
        );
        // Most markers within 40 ms: on this shared two-core machine one marker in a few reads a
        // scheduling hiccup (a late playout tick) of its own.
        let mut apart: Vec<f64> = skews.iter().map(|s| s.abs()).collect();
        apart.sort_by(f64::total_cmp);
        assert!(
            apart[apart.len() / 2] <= 40.0 && apart.iter().filter(|&&s| s > 40.0).count() <= 1,
            "{who}: audio and video more than 40 ms apart: {skews:?}\n{:#}",
            s["sync"]
        );
    }
    // Who waited: b's audio for a's late video, a's video for b's late audio.
    let b_audio_delay = num(sb, "/sync/audio_delay_ms");
    assert!(
        (50.0..=150.0).contains(&b_audio_delay),
        "b's audio should wait ~100 ms for a's video: {b_audio_delay}"
    );
    let a_hold = num(sa, "/sync/video_hold_ms/p50");
    assert!(
        (50.0..=150.0).contains(&a_hold),
        "a should hold video ~100 ms for b's audio: {a_hold}"
    );
    drop(server);
}
