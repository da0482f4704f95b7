//! Which openh264 settings a call should use, by measurement: every variant encodes the same
//! 720p30 content (the test pattern, and the pattern with camera-like sensor noise) at the call
//! bitrate, interleaved over rounds; printed are encoder CPU per frame, wall time per frame,
//! the bitrate reached, skipped frames, luma PSNR of the decoded picture against the source, and
//! the CPU of decoding each stream with FFmpeg and with openh264 (which must agree to the pixel).
//!
//! `cargo bench -p confab-codecs --bench h264_tuning -- [FRAMES] [ROUNDS] [KBIT/S]`

use std::time::Instant;

use confab_codecs::h264::{
    default_bitrate_bps, Complexity, Deblocking, DecoderBackend, EncoderSettings, EncoderTuning,
    H264Decoder, H264Encoder,
};
use confab_media::quality::psnr_y;
use confab_media::{pattern, VideoFrame};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: u32 = 30;

#[derive(Default, Clone)]
struct Sample {
    cpu_ms_per_frame: f64,
    /// Decoder CPU per decoded picture: FFmpeg's, openh264's.
    decode_cpu_ms_per_frame: f64,
    openh264_decode_cpu_ms_per_frame: f64,
    wall_ms_per_frame: f64,
    kbps: f64,
    skipped: usize,
    psnr_db: f64,
    qp: f64,
}

fn variants() -> Vec<(&'static str, EncoderTuning)> {
    let calls = EncoderTuning::default();
    let with = |change: fn(&mut EncoderTuning)| {
        let mut tuning = calls;
        change(&mut tuning);
        tuning
    };
    vec![
        ("calls (low, 1 thread)", calls),
        (
            "complexity medium",
            with(|t| t.complexity = Complexity::Medium),
        ),
        ("complexity high", with(|t| t.complexity = Complexity::High)),
        (
            "no scene-change detection",
            with(|t| t.scene_change_detect = false),
        ),
        (
            "no background detection",
            with(|t| t.background_detection = false),
        ),
        (
            "no adaptive quantization",
            with(|t| t.adaptive_quantization = false),
        ),
        ("2 threads", with(|t| t.threads = 2)),
        (
            "deblocking always on",
            with(|t| t.deblocking = Deblocking::On),
        ),
        (
            "deblocking always off",
            with(|t| t.deblocking = Deblocking::Off),
        ),
    ]
}

/// CPU time of the whole process (every encoder thread), in ms.
fn process_cpu_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// Frame `index` of the content: the pattern, plus deterministic sensor-like noise if `noisy`.
fn source(index: u32, noisy: bool) -> VideoFrame {
    let mut frame = pattern::render(index, WIDTH, HEIGHT, u64::from(index) * 33_333);
    if noisy {
        pattern::add_sensor_noise(&mut frame, index);
    }
    frame
}

fn run(tuning: EncoderTuning, frames: u32, noisy: bool, bitrate_bps: u32) -> Sample {
    let settings = EncoderSettings {
        bitrate_bps,
        max_fps: FPS as f32,
        screen: false,
    };
    let mut encoder = H264Encoder::with_tuning(settings, tuning).expect("encoder");
    let mut decoder = H264Decoder::with_backend(DecoderBackend::Ffmpeg).expect("FFmpeg");
    let mut openh264 = H264Decoder::with_backend(DecoderBackend::OpenH264).expect("decoder");
    let mut openh264_cpu = 0.0;
    let (mut cpu, mut wall, mut bytes, mut skipped) = (0.0, 0.0, 0usize, 0usize);
    let (mut psnr_sum, mut decoded, mut decode_cpu, mut qp_sum) = (0.0, 0usize, 0.0, 0.0);
    for index in 0..frames {
        let frame = source(index, noisy);
        let (cpu0, wall0) = (process_cpu_ms(), Instant::now());
        let encoded = encoder.encode(&frame).expect("encode");
        cpu += process_cpu_ms() - cpu0;
        wall += wall0.elapsed().as_secs_f64() * 1e3;
        let Some(encoded) = encoded else {
            skipped += 1;
            continue;
        };
        bytes += encoded.data.len();
        qp_sum += f64::from(encoded.qp.unwrap_or(0));
        let cpu0 = process_cpu_ms();
        let picture = decoder.decode(&encoded.data).expect("decode");
        decode_cpu += process_cpu_ms() - cpu0;
        let cpu0 = process_cpu_ms();
        let same = openh264.decode(&encoded.data).expect("decode");
        openh264_cpu += process_cpu_ms() - cpu0;
        assert!(
            same.as_ref().map(|p| &p.data) == picture.as_ref().map(|p| &p.data),
            "frame {index}: the decoders disagree"
        );
        if let Some(picture) = picture {
            psnr_sum += psnr_y(&picture, &frame).expect("same size");
            decoded += 1;
        }
    }
    let n = f64::from(frames);
    Sample {
        cpu_ms_per_frame: cpu / n,
        decode_cpu_ms_per_frame: decode_cpu / decoded.max(1) as f64,
        openh264_decode_cpu_ms_per_frame: openh264_cpu / decoded.max(1) as f64,
        wall_ms_per_frame: wall / n,
        kbps: bytes as f64 * 8.0 / (n / f64::from(FPS)) / 1e3,
        skipped,
        psnr_db: psnr_sum / decoded.max(1) as f64,
        qp: qp_sum / decoded.max(1) as f64,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let frames: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(150);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let bitrate_bps = args
        .get(2)
        .and_then(|a| a.parse::<u32>().ok())
        .map_or(default_bitrate_bps(WIDTH, HEIGHT, FPS), |kbps| kbps * 1000);
    let variants = variants();
    println!(
        "{WIDTH}x{HEIGHT}@{FPS}, {} kbit/s target, {frames} frames, {rounds} rounds (medians)",
        bitrate_bps / 1000
    );
    for (content, noisy) in [("test pattern", false), ("pattern + sensor noise", true)] {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for (i, (_, tuning)) in variants.iter().enumerate() {
                samples[i].push(run(*tuning, frames, noisy, bitrate_bps));
            }
        }
        println!("\n{content}");
        println!("| variant | encoder CPU ms/frame | wall ms/frame | kbit/s | skipped | PSNR dB | CPU vs calls | FFmpeg decoder CPU ms/frame | openh264 decoder | QP |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let of = |s: &[Sample], field: fn(&Sample) -> f64| median(s.iter().map(field).collect());
        let base = of(&samples[0], |x| x.cpu_ms_per_frame);
        for ((name, _), s) in variants.iter().zip(&samples) {
            let cpu = of(s, |x| x.cpu_ms_per_frame);
            println!(
                "| {name} | {cpu:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
                of(s, |x| x.wall_ms_per_frame),
                of(s, |x| x.kbps),
                of(s, |x| x.skipped as f64),
                of(s, |x| x.psnr_db),
                cpu / base,
                of(s, |x| x.decode_cpu_ms_per_frame),
                of(s, |x| x.openh264_decode_cpu_ms_per_frame),
                of(s, |x| x.qp),
            );
        }
    }
}
