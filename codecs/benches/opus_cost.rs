//! What the Opus encoder costs a call, and what its settings change: the same speech (espeak-ng)
//! encoded as the call does (10 ms frames, in-band FEC for 10% loss, complexity 10) and with one
//! setting changed at a time, Chromium's desktop complexity (9) among them. Printed per variant:
//! the best of the rounds in cores (encoder time over audio time) and the bitrate reached.
//!
//! `cargo bench -p confab-codecs --bench opus_cost -- [ROUNDS] [KBIT/S]`

use std::time::Instant;

use confab_codecs::opus::OpusEncoder;
use confab_devices::wav::load_mono_48k;
use confab_media::SAMPLE_RATE_HZ;

const TEXT: &str =
    "This is the far end talking. I am reading a long paragraph so that the encoder has \
    something real to work on. The quick brown fox jumps over the lazy dog, and then it jumps back \
    again. We keep talking for a while: one, two, three, four, five, six, seven, eight, nine, ten.";

struct Variant {
    name: &'static str,
    complexity: i32,
    fec: bool,
    frame_ms: usize,
}

fn speech() -> Vec<f32> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("speech.wav");
    let text = [TEXT; 3].join(" ");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng is needed (scripts/setup.sh --test installs it)");
    assert!(status.success(), "espeak-ng failed");
    load_mono_48k(&path).expect("espeak-ng's wav")
}

/// Seconds of `encode` time per second of audio, and the bitrate (kbit/s): `pcm` in frames of
/// `frame_ms`, `encode` returning the bytes of each packet.
fn measure(pcm: &[f32], frame_ms: usize, mut encode: impl FnMut(&[f32]) -> usize) -> (f64, f64) {
    let frame = SAMPLE_RATE_HZ as usize / 1000 * frame_ms;
    let (mut bytes, mut frames) = (0, 0);
    let started = Instant::now();
    for chunk in pcm.chunks_exact(frame) {
        bytes += encode(chunk);
        frames += 1;
    }
    let audio_s = (frames * frame) as f64 / f64::from(SAMPLE_RATE_HZ);
    (
        started.elapsed().as_secs_f64() / audio_s,
        bytes as f64 * 8.0 / audio_s / 1000.0,
    )
}

/// `variant` through the opus crate directly.
fn encode(pcm: &[f32], variant: &Variant, kbps: i32) -> (f64, f64) {
    let mut encoder = opus::Encoder::new(
        SAMPLE_RATE_HZ,
        opus::Channels::Mono,
        opus::Application::Voip,
    )
    .expect("an Opus encoder");
    encoder
        .set_bitrate(opus::Bitrate::Bits(kbps * 1000))
        .expect("bitrate");
    encoder.set_inband_fec(variant.fec).expect("fec");
    encoder
        .set_packet_loss_perc(if variant.fec { 10 } else { 0 })
        .expect("loss");
    encoder
        .set_complexity(variant.complexity)
        .expect("complexity");
    let mut out = vec![0u8; 1500];
    measure(pcm, variant.frame_ms, |chunk| {
        encoder.encode_float(chunk, &mut out).expect("encode")
    })
}

/// The call's own encoder type, as a check that the first variant is what calls run.
fn encode_as_shipped(pcm: &[f32], kbps: i32) -> (f64, f64) {
    let mut encoder = OpusEncoder::new(kbps * 1000).expect("the call's encoder");
    measure(pcm, 10, |chunk| {
        encoder.encode(chunk).expect("encode").len()
    })
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let kbps: i32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let pcm = speech();
    let variants = [
        Variant {
            name: "as calls run it",
            complexity: 10,
            fec: true,
            frame_ms: 10,
        },
        Variant {
            name: "complexity 9 (Chromium, desktop)",
            complexity: 9,
            fec: true,
            frame_ms: 10,
        },
        Variant {
            name: "complexity 5 (Chromium, mobile)",
            complexity: 5,
            fec: true,
            frame_ms: 10,
        },
        Variant {
            name: "no FEC",
            complexity: 10,
            fec: false,
            frame_ms: 10,
        },
        Variant {
            name: "20 ms frames",
            complexity: 10,
            fec: true,
            frame_ms: 20,
        },
    ];
    println!(
        "{:.1} s of speech, {kbps} kbit/s, best of {rounds} interleaved rounds",
        pcm.len() as f64 / f64::from(SAMPLE_RATE_HZ)
    );
    let mut best = vec![(f64::MAX, 0.0); variants.len() + 1];
    for _ in 0..rounds {
        for (i, variant) in variants.iter().enumerate() {
            let (cores, rate) = encode(&pcm, variant, kbps);
            best[i] = (best[i].0.min(cores), rate);
        }
        let (cores, rate) = encode_as_shipped(&pcm, kbps);
        let last = variants.len();
        best[last] = (best[last].0.min(cores), rate);
    }
    for (i, variant) in variants.iter().enumerate() {
        println!(
            "{:34} {:.4} cores ({:+5.1}%), {:.1} kbit/s",
            variant.name,
            best[i].0,
            (best[i].0 / best[0].0 - 1.0) * 100.0,
            best[i].1
        );
    }
    let shipped = best[variants.len()];
    println!(
        "{:34} {:.4} cores ({:+5.1}%), {:.1} kbit/s",
        "the call's OpusEncoder",
        shipped.0,
        (shipped.0 / best[0].0 - 1.0) * 100.0,
        shipped.1
    );
}
