//! Which openh264 settings a call should use, by measurement: every variant encodes the same
//! 720p30 content (the test pattern; the pattern with camera-like sensor noise; and a camera's
//! usual picture, a still background with a moving subject in the middle, all under sensor
//! noise) at the call bitrate, interleaved over rounds; printed are encoder CPU per frame, wall time per frame,
//! the bitrate reached, skipped frames, luma PSNR of the decoded picture against the source (and
//! of the middle third, where the subject moves), and
//! the CPU of decoding each stream with FFmpeg and with openh264 (which must agree to the pixel).
//!
//! `cargo bench -p confab-codecs --bench h264_tuning -- [FRAMES] [ROUNDS] [KBIT/S]`

use std::time::Instant;

use confab_codecs::h264::{
    default_bitrate_bps, Complexity, Deblocking, DecoderBackend, EncoderSettings, EncoderTuning,
    H264Decoder, H264Encoder,
};
use confab_media::quality::{psnr, psnr_y};
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
    /// Luma PSNR of the middle third (`SUBJECT`).
    subject_psnr_db: f64,
    qp: f64,
}

/// What the encoder is given.
#[derive(Clone, Copy, PartialEq)]
enum Content {
    Pattern,
    Noisy,
    /// The pattern's first frame standing still, the moving pattern in the middle third
    /// (`SUBJECT`), sensor noise over all of it: a person in front of a room.
    StillBackground,
}

/// The middle third of the picture, in luma pixels: x, y, width, height (even).
const SUBJECT: (usize, usize, usize, usize) = (
    WIDTH as usize / 3,
    HEIGHT as usize / 3 / 2 * 2,
    WIDTH as usize / 3,
    HEIGHT as usize / 3 / 2 * 2,
);

/// The luma of `SUBJECT`, row after row.
fn subject_luma(frame: &VideoFrame) -> Vec<u8> {
    let (x, y, w, h) = SUBJECT;
    let stride = frame.width as usize;
    (y..y + h)
        .flat_map(|row| &frame.y()[row * stride + x..row * stride + x + w])
        .copied()
        .collect()
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
            "neither detection",
            with(|t| {
                t.scene_change_detect = false;
                t.background_detection = false;
            }),
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

/// Frame `index` of the content.
fn source(index: u32, content: Content) -> VideoFrame {
    let ts = u64::from(index) * 33_333;
    let moving = pattern::render(index, WIDTH, HEIGHT, ts);
    let mut frame = match content {
        Content::Pattern => return moving,
        Content::Noisy => moving,
        Content::StillBackground => {
            let mut still = pattern::render(0, WIDTH, HEIGHT, ts);
            let (x, y, w, h) = SUBJECT;
            let width = WIDTH as usize;
            let (luma, cw) = (width * HEIGHT as usize, width / 2);
            let chroma = cw * HEIGHT as usize / 2;
            // Each plane: (offset, stride, x, y, w, h).
            let planes = [
                (0, width, x, y, w, h),
                (luma, cw, x / 2, y / 2, w / 2, h / 2),
                (luma + chroma, cw, x / 2, y / 2, w / 2, h / 2),
            ];
            for (offset, stride, px, py, pw, ph) in planes {
                for row in py..py + ph {
                    let at = offset + row * stride + px;
                    still.data[at..at + pw].copy_from_slice(&moving.data[at..at + pw]);
                }
            }
            still
        }
    };
    pattern::add_sensor_noise(&mut frame, index);
    frame
}

fn run(tuning: EncoderTuning, frames: u32, content: Content, bitrate_bps: u32) -> Sample {
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
    let mut subject_psnr_sum = 0.0;
    for index in 0..frames {
        let frame = source(index, content);
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
            subject_psnr_sum +=
                psnr(&subject_luma(&picture), &subject_luma(&frame)).expect("same size");
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
        subject_psnr_db: subject_psnr_sum / decoded.max(1) as f64,
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
    for (name, content) in [
        ("test pattern", Content::Pattern),
        ("pattern + sensor noise", Content::Noisy),
        (
            "still background, moving subject, sensor noise",
            Content::StillBackground,
        ),
    ] {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for (i, (_, tuning)) in variants.iter().enumerate() {
                samples[i].push(run(*tuning, frames, content, bitrate_bps));
            }
        }
        println!("\n{name}");
        println!("| variant | encoder CPU ms/frame | wall ms/frame | kbit/s | skipped | PSNR dB | subject PSNR dB | CPU vs calls | FFmpeg decoder CPU ms/frame | openh264 decoder | QP |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        let of = |s: &[Sample], field: fn(&Sample) -> f64| median(s.iter().map(field).collect());
        let base = of(&samples[0], |x| x.cpu_ms_per_frame);
        for ((name, _), s) in variants.iter().zip(&samples) {
            let cpu = of(s, |x| x.cpu_ms_per_frame);
            println!(
                "| {name} | {cpu:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
                of(s, |x| x.wall_ms_per_frame),
                of(s, |x| x.kbps),
                of(s, |x| x.skipped as f64),
                of(s, |x| x.psnr_db),
                of(s, |x| x.subject_psnr_db),
                cpu / base,
                of(s, |x| x.decode_cpu_ms_per_frame),
                of(s, |x| x.openh264_decode_cpu_ms_per_frame),
                of(s, |x| x.qp),
            );
        }
    }
}
