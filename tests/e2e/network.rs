//! Calls over a lossy network: a private network namespace whose loopback drops 5% of UDP
//! packets (media and RTCP; signaling is TCP). NACK, keyframe requests, Opus FEC and concealment
//! must keep the call going; the numbers are printed for NOTES.md.

use std::time::Duration;

use confab_e2e::services::Netns;
use confab_e2e::{num, room_code, serial, test_media, Peer, Server};

#[test]
fn a_call_survives_five_percent_loss() {
    let _machine = serial();
    let ns = Netns::new(0.05);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(Some(&ns), &[]);
    let room = room_code(101);
    let args = test_media(
        "640x360",
        &["--duration", "15", "--wait", "30", "--bind", "127.0.0.1:0"],
    );
    let a = Peer::start_in(&ns, dir.path(), "a", &server.url, &room, &args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start_in(&ns, dir.path(), "b", &server.url, &room, &args);
    let (a, b) = (
        a.finish(Duration::from_secs(60)),
        b.finish(Duration::from_secs(60)),
    );
    assert!(a.status.success(), "a: {}", a.stderr);
    assert!(b.status.success(), "b: {}", b.stderr);
    let (sa, sb) = (a.stats.unwrap(), b.stats.unwrap());
    for (sender, receiver, who) in [(&sa, &sb, "a -> b"), (&sb, &sa, "b -> a")] {
        let sent = num(sender, "/video_send/frames_encoded");
        let decoded = num(receiver, "/video_recv/frames_decoded");
        let plis = num(receiver, "/video_recv/keyframe_requests_sent");
        let answered = num(sender, "/video_send/keyframe_requests_received");
        let freezes = num(receiver, "/video_recv/freezes");
        let concealed = num(receiver, "/audio_recv/concealed_ratio");
        let fec = num(receiver, "/audio_recv/frames_recovered_fec");
        eprintln!(
            "5% loss, {who}: decoded {decoded} of {sent} frames, {freezes} freezes ({:.0} ms frozen), keyframe requests {plis} sent / {answered} received, \
             PSNR {:.1} dB, latency p50 {:.1} ms p95 {:.1} ms; audio concealed {:.1}%, {fec} frames recovered by FEC",
            num(receiver, "/video_recv/total_freeze_ms"),
            num(receiver, "/video_recv/psnr_db/mean"),
            num(receiver, "/video_recv/latency_ms/p50"),
            num(receiver, "/video_recv/latency_ms/p95"),
            concealed * 100.0,
        );
        assert!(decoded >= 0.8 * sent, "{who}: decoded {decoded} of {sent}");
        if plis >= 3.0 {
            assert!(answered >= 1.0, "{who}: keyframe requests reach the sender");
        }
        assert!(
            concealed < 0.15,
            "{who}: {:.1}% of audio concealed",
            concealed * 100.0
        );
        assert!(num(receiver, "/audio_recv/frames_decoded") > 500.0);
    }
}
