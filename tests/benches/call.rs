//! Call benchmark (a program, not a test): `confab serve` and two `confab join --headless` peers
//! with the stamped test pattern at 1280x720@30 on loopback. Prints, per peer: ms from join to the
//! first remote frame, glass-to-glass latency p50/p95, CPU seconds and peak RSS, encode and decode
//! ms per frame, and the rest of the call's quality numbers.
//!
//!     cargo bench -p confab-e2e --bench call -- [SECONDS] [WxH] [FPS]

use std::time::{Duration, Instant};

use confab_e2e::{num, room_code, Peer, Server};

/// (cpu seconds, peak RSS KiB) of a live process.
fn usage(pid: u32) -> Option<(f64, u64)> {
    Some((
        confab_e2e::cpu_seconds(pid)?,
        confab_e2e::memory_kib(pid, "VmHWM")?,
    ))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let secs = args.first().cloned().unwrap_or_else(|| "15".into());
    let size = args.get(1).cloned().unwrap_or_else(|| "1280x720".into());
    let fps = args.get(2).cloned().unwrap_or_else(|| "30".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&[]);
    let room = room_code(99);
    let peer_args = [
        "--speaker",
        "null",
        "--camera",
        "test",
        "--mic",
        "test",
        "--video-size",
        &size,
        "--fps",
        &fps,
        "--duration",
        &secs,
        "--wait",
        "30",
    ];
    let a = Peer::start(dir.path(), "a", &server.url, &room, &peer_args);
    std::thread::sleep(Duration::from_millis(300));
    let b = Peer::start(dir.path(), "b", &server.url, &room, &peer_args);
    let (pa, pb) = (a.proc.pid(), b.proc.pid());
    let mut last = [(0.0, 0u64); 2];
    let deadline = Instant::now() + Duration::from_secs(secs.parse::<u64>().unwrap_or(15) + 40);
    while Instant::now() < deadline {
        let (ua, ub) = (usage(pa), usage(pb));
        if ua.is_none() && ub.is_none() {
            break;
        }
        if let Some(u) = ua {
            last[0] = u;
        }
        if let Some(u) = ub {
            last[1] = u;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let outcomes = [
        a.finish(Duration::from_secs(30)),
        b.finish(Duration::from_secs(30)),
    ];
    println!(
        "call benchmark: {size}@{fps}, {secs} s, loopback, stamped test pattern + test signal"
    );
    for (i, (name, outcome)) in ["a (waited)", "b (offered)"]
        .iter()
        .zip(&outcomes)
        .enumerate()
    {
        let Some(s) = &outcome.stats else {
            println!("{name}: no stats ({}): {}", outcome.status, outcome.stderr);
            continue;
        };
        let (cpu, rss_kib) = last[i];
        // The other peer's send side, for the audio that reached this one.
        let Some(other) = &outcomes[1 - i].stats else {
            continue;
        };
        let call_secs = num(s, "/duration_s");
        println!(
            "{name}: join->first remote frame {:.0} ms (ICE connected at {:.0} ms), latency p50 {:.1} ms p95 {:.1} ms, \
             {:.1} fps, PSNR {:.1} dB, freezes {}, CPU {:.2} s ({:.2} cores), peak RSS {:.0} MiB, \
             encode {:.2} ms/frame, decode {:.2} ms/frame, send {:.0} kbps, audio latency p50 {:.0} ms p95 {:.0} ms \
             (capture to encoded p50 {:.1} ms at the sender, held in the jitter buffer p50 {:.1} \
             p95 {:.1} ms, target {:.0} ms, {:.0} ms packets, {} stretched, {} trimmed), \
             a/v skew p50 {:.0} ms p95 {:.0} ms (video minus audio), video held p50 {:.0} ms, \
             audio delayed {:.0} ms for video",
            num(s, "/ms_to/first_video_frame"),
            num(s, "/ms_to/ice_connected"),
            num(s, "/video_recv/latency_ms/p50"),
            num(s, "/video_recv/latency_ms/p95"),
            num(s, "/video_recv/fps"),
            num(s, "/video_recv/psnr_db/mean"),
            num(s, "/video_recv/freezes"),
            cpu,
            cpu / call_secs.max(1.0),
            rss_kib as f64 / 1024.0,
            num(s, "/video_send/encode_ms/mean"),
            num(s, "/video_recv/decode_ms/mean"),
            num(s, "/video_send/bitrate_kbps"),
            num(s, "/audio_recv/latency_ms/p50"),
            num(s, "/audio_recv/latency_ms/p95"),
            num(other, "/audio_send/capture_to_encoded_ms/p50"),
            num(s, "/audio_recv/held_ms/p50"),
            num(s, "/audio_recv/held_ms/p95"),
            num(s, "/audio_recv/jitter_buffer_ms"),
            num(s, "/audio_recv/packet_ms"),
            num(s, "/audio_recv/frames_stretched"),
            num(s, "/audio_recv/frames_dropped_latency"),
            num(s, "/sync/skew_ms/p50"),
            num(s, "/sync/skew_ms/p95"),
            num(s, "/sync/video_hold_ms/p50"),
            num(s, "/sync/audio_delay_ms"),
        );
    }
    drop(server);
}
