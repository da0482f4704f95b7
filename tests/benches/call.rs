//! Call benchmark (a program, not a test): `confab serve` and two `confab join --headless` peers
//! with the stamped test pattern at 1280x720@30 and the test signal, on loopback or, with a
//! DELAY_MS, in a `NetLab` whose uplinks each add that one-way delay (root; the namespaces are
//! made and removed by the harness). Prints, per peer: ms from join to the first remote frame,
//! glass-to-glass latency p50/p95, CPU seconds and peak RSS, encode and decode ms per frame, and
//! the audio's mouth-to-ear latency stage by stage with the audio/video skew.
//!
//!
//!     cargo bench -p confab-e2e --bench call -- [SECONDS] [WxH] [FPS] [DELAY_MS] [--pulse] [PEER FLAGS]
//!
//! `--pulse`: the peers' microphones and speakers are real devices, null sinks of a PulseAudio
//! the bench starts (cpal speaks PulseAudio's protocol to it); each microphone hears a tone in
//! bursts, so mouth to ear is measured by the sender reports only (no test-signal markers), the
//! devices' own buffering included, and the stages show what the devices add.

use std::path::Path;
use std::time::{Duration, Instant};

use confab_e2e::netem::{NetLab, Profile};
use confab_e2e::services::Pulse;
use confab_e2e::{num, room_code, Peer, Server};

/// A 48 kHz mono WAV of a `hz` tone in 200 ms bursts with 200 ms pauses, `secs` long: a voice
/// for a microphone (noise suppression takes a steady tone for noise).
fn tone_bursts(path: &Path, hz: f64, secs: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).expect("write a WAV");
    for n in 0..48_000 * secs {
        let t = f64::from(n) / 48_000.0;
        let on = (n / 9_600) % 2 == 0;
        let s = if on {
            0.3 * (std::f64::consts::TAU * hz * t).sin()
        } else {
            0.0
        };
        wav.write_sample((s * f64::from(i16::MAX)) as i16)
            .expect("write a WAV");
    }
    wav.finalize().expect("write a WAV");
}

/// (cpu seconds, peak RSS KiB) of a live process.
fn usage(pid: u32) -> Option<(f64, u64)> {
    Some((
        confab_e2e::cpu_seconds(pid)?,
        confab_e2e::memory_kib(pid, "VmHWM")?,
    ))
}

/// p50 / p95 of the histogram at `pointer` (ms), as "p50/p95".
fn p50_p95(stats: &serde_json::Value, pointer: &str) -> String {
    format!(
        "{:.1}/{:.1}",
        num(stats, &format!("{pointer}/p50")),
        num(stats, &format!("{pointer}/p95"))
    )
}

/// The audio that reached `receiver` from `sender`: mouth to ear, stage by stage (p50/p95 ms),
/// and lip sync.
fn print_audio(name: &str, receiver: &serde_json::Value, sender: &serde_json::Value) {
    let (r, s) = (receiver, sender);
    println!(
        "{name}: audio mouth-to-ear p50/p95 {} ms from {} markers (every packet, by the sender \
         reports: {} ms); stages p50/p95: the microphone device {} ms old, capture to encoded {}, \
         to sent {}, markers' onsets late out of \
         audio processing {} (sender), to arrival {}, \
         waited in the jitter buffer {} (target now {:.0} ms, {:.0} ms packets, {} stretched, \
         {} trimmed, {} concealed, {} late), the speaker and its device {} (ran dry for {:.0} ms); a/v \
         skew p50/p95 {} ms \
         (video minus audio), video held p50 {:.0} ms, audio delayed {:.0} ms for video",
        p50_p95(r, "/audio_recv/latency_ms"),
        num(r, "/audio_recv/latency_ms/count"),
        p50_p95(r, "/audio_recv/latency_estimated_ms"),
        s["audio_send"]["mic_device_ms"]
            .as_f64()
            .map_or("-".into(), |ms| format!("{ms:.1}")),
        p50_p95(s, "/audio_send/capture_to_encoded_ms"),
        p50_p95(s, "/audio_send/capture_to_sent_ms"),
        p50_p95(s, "/audio_send/processing_ms"),
        p50_p95(r, "/audio_recv/transit_ms"),
        p50_p95(r, "/audio_recv/waited_ms"),
        num(r, "/audio_recv/jitter_buffer_ms"),
        num(r, "/audio_recv/packet_ms"),
        num(r, "/audio_recv/frames_stretched"),
        num(r, "/audio_recv/frames_dropped_latency"),
        num(r, "/audio_recv/frames_concealed"),
        num(r, "/audio_recv/packets_late"),
        p50_p95(r, "/audio_recv/speaker_delay_ms"),
        num(r, "/audio_recv/speaker_underrun_samples") / 48.0,
        p50_p95(r, "/sync/skew_ms"),
        num(r, "/sync/video_hold_ms/p50"),
        num(r, "/sync/audio_delay_ms"),
    );
    let by_second: Vec<String> = r["timeline"]
        .as_array()
        .map(|seconds| {
            seconds
                .iter()
                .map(|s| {
                    s["audio_latency_ms"]
                        .as_f64()
                        .map_or("-".into(), |ms| format!("{ms:.0}"))
                })
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{name}: the last marker's mouth-to-ear in each second: {}",
        by_second.join(" ")
    );
}

fn main() {
    // Flags are the peers' (e.g. `--no-aec --no-ns --no-agc --no-hpf`), but for cargo's `--bench`.
    let (flags, args): (Vec<String>, Vec<String>) = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .partition(|a| a.starts_with("--"));
    let pulse = flags.iter().any(|f| f == "--pulse");
    let flags: Vec<String> = flags.into_iter().filter(|f| f != "--pulse").collect();
    let secs = args.first().cloned().unwrap_or_else(|| "15".into());
    let size = args.get(1).cloned().unwrap_or_else(|| "1280x720".into());
    let fps = args.get(2).cloned().unwrap_or_else(|| "30".into());
    let delay_ms: u32 = args
        .get(3)
        .map_or(0, |d| d.parse().expect("DELAY_MS: a number"));
    let dir = tempfile::tempdir().expect("temp dir");
    // Each microphone is a null sink's monitor, fed a tone; each speaker a null sink.
    let pulse = pulse.then(|| {
        assert_eq!(delay_ms, 0, "--pulse is for loopback calls");
        let pulse = Pulse::start(&["spk_a", "spk_b", "mic_a", "mic_b"]);
        let feeds: Vec<_> = [("mic_a", 440.0), ("mic_b", 660.0)]
            .into_iter()
            .map(|(sink, hz)| {
                let wav = dir.path().join(format!("{sink}.wav"));
                tone_bursts(&wav, hz, 120);
                pulse.play(sink, &wav)
            })
            .collect();
        (pulse, feeds)
    });
    // Declared before the server and the peers, so that it is torn down after them.
    let mut lab = (delay_ms > 0).then(|| {
        NetLab::new(Profile {
            name: "delay",
            delay_ms,
            ..Profile::GOOD
        })
    });
    let server = match lab.as_mut() {
        Some(lab) => lab.start_signaling(&[]),
        None => Server::start(&[]),
    };
    let room = room_code(99);
    let mut peer_args = vec![
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
    peer_args.extend(flags.iter().map(String::as_str));
    // b speaks with the test signal's second voice: two people, not one twice (with one voice,
    // each echo canceller would take its own bursts, heard back from the other side, for echo).
    let mut b_args = peer_args.clone();
    let mic = b_args
        .iter()
        .position(|&a| a == "--mic")
        .expect("--mic is set");
    b_args[mic + 1] = "test:2";
    if pulse.is_some() {
        for args in [&mut peer_args, &mut b_args] {
            for (flag, device) in [("--mic", "default"), ("--speaker", "default")] {
                let at = args.iter().position(|&a| a == flag).expect("set above");
                args[at + 1] = device;
            }
        }
    }
    let start = |name: &str| {
        let args = if name == "a" { &peer_args } else { &b_args };
        if let Some((pulse, _)) = &pulse {
            let env = pulse.env(
                Some(&format!("spk_{name}")),
                Some(&format!("mic_{name}.monitor")),
            );
            return Peer::start_with_env(dir.path(), name, &server.url, &room, args, &env);
        }
        match lab.as_ref() {
            Some(lab) => {
                let home = if name == "a" { lab.alice() } else { lab.bob() };
                Peer::start_in(home, dir.path(), name, &server.url, &room, args)
            }
            None => Peer::start(dir.path(), name, &server.url, &room, args),
        }
    };
    let a = start("a");
    std::thread::sleep(Duration::from_millis(300));
    let b = start("b");
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
    let link = match delay_ms {
        0 => "loopback".to_owned(),
        ms => format!("{ms} ms each way (NetLab)"),
    };
    let audio = match pulse {
        Some(_) => "a tone in bursts through PulseAudio devices",
        None => "the test signal",
    };
    println!("call benchmark: {size}@{fps}, {secs} s, {link}, stamped test pattern + {audio}");
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
             encode {:.2} ms/frame, decode {:.2} ms/frame, send {:.0} kbps",
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
        );
        print_audio(name, s, other);
    }
    drop(server);
    drop(lab);
    drop(pulse);
}
