//! What the capture and send paths' pixel work costs per frame, outside the codecs: a screen's
//! RGBA to I420 and its scale to the 1080p the screen share sends, a camera's YUYV or NV12 to
//! I420, the sender's scale to a lower rung of the ladder, the window's self-view thumbnail and
//! the CPU path's I420 to RGBA; and, for audio, a 44.1 kHz device's 10 ms block resampled to
//! 48 kHz. Printed per case: the best of the rounds in ms a frame (a block), and what that costs
//! at the rate the case runs at.
//!
//! `cargo bench -p confab-media --bench convert -- [ROUNDS] [FRAMES]`

use std::hint::black_box;
use std::time::Instant;

use confab_media::convert::{
    i420_to_rgba, nv12_to_i420, packed_to_i420, scale, scale_to, yuyv_to_i420, Packed,
};
use confab_media::stream_resampler::StreamResampler;
use confab_media::{pattern, quality, stamp, VideoFrame};

/// Bytes that vary like a picture does (a gradient with noise), so no branch or cache effect
/// favours a flat buffer.
fn bytes(n: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            ((i / 7) as u32 % 200 + (state & 31)) as u8
        })
        .collect()
}

struct Case {
    name: String,
    fps: f64,
    run: Box<dyn FnMut()>,
}

fn case(name: impl Into<String>, fps: f64, run: impl FnMut() + 'static) -> Case {
    Case {
        name: name.into(),
        fps,
        run: Box::new(run),
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(5).max(1);
    let frames = args.get(1).copied().unwrap_or(30).max(1);

    let mut cases = Vec::new();
    for (w, h) in [(1920u32, 1080u32), (2560, 1440), (3840, 2160)] {
        let rgba = bytes(w as usize * h as usize * 4);
        cases.push(case(
            format!("screen {w}x{h} RGBA -> I420, fit to 1920x1080"),
            10.0,
            move || {
                let frame =
                    packed_to_i420(&rgba, w, h, w as usize * 4, Packed::Rgba, 0).expect("sized");
                let (tw, th) = confab_media::convert::fit(w, h, 1920, 1080);
                black_box(scale(&frame, tw, th));
            },
        ));
    }
    let yuyv = bytes(1280 * 720 * 2);
    cases.push(case("camera 1280x720 YUYV -> I420", 30.0, move || {
        black_box(yuyv_to_i420(&yuyv, 1280, 720, 0).expect("sized"));
    }));
    let nv12 = bytes(1280 * 720 * 3 / 2);
    cases.push(case("camera 1280x720 NV12 -> I420", 30.0, move || {
        black_box(nv12_to_i420(&nv12, 1280, 720, 0).expect("sized"));
    }));
    let rgb = bytes(1280 * 720 * 3);
    cases.push(case(
        "camera 1280x720 RGB (MJPEG) -> I420",
        30.0,
        move || {
            black_box(packed_to_i420(&rgb, 1280, 720, 1280 * 3, Packed::Rgb, 0).expect("sized"));
        },
    ));
    for (w, h) in [(960u32, 540u32), (640, 360), (480, 270)] {
        let source = pattern::render(7, 1280, 720, 0);
        cases.push(case(
            format!("send 1280x720 scaled to a rung of {w}x{h}"),
            30.0,
            move || {
                black_box(scale(&source, w, h));
            },
        ));
    }
    let source = pattern::render(7, 1280, 720, 0);
    let mut thumb = VideoFrame::black(320, 180, 0);
    cases.push(case("self view 1280x720 -> 320x180", 15.0, move || {
        scale_to(&source, 320, 180, &mut thumb);
        black_box(&thumb);
    }));
    let source = pattern::render(7, 1280, 720, 0);
    let mut rgba = Vec::new();
    cases.push(case(
        "window (CPU path) 1280x720 I420 -> RGBA",
        30.0,
        move || {
            i420_to_rgba(&source, &mut rgba);
            black_box(&rgba);
        },
    ));

    // The receiver's test instruments, on every stamped frame (a test camera's or .y4m's): its
    // stamp read on each, and its luma PSNR against the source on one in four.
    let mut received = pattern::render(7, 1280, 720, 0);
    received.data.iter_mut().step_by(3).for_each(|p| *p ^= 3);
    cases.push(case(
        "receiver: stamp of a 1280x720 frame",
        30.0,
        move || {
            black_box(stamp::read_stamped(&received));
        },
    ));
    let (a, b) = (pattern::render(7, 1280, 720, 0), bytes(1280 * 720 * 3 / 2));
    let b = VideoFrame {
        data: b,
        ..a.clone()
    };
    cases.push(case("receiver: luma PSNR of 1280x720", 7.5, move || {
        black_box(quality::psnr_y(&a, &b));
    }));

    let mut resampler = StreamResampler::new(44_100, 48_000).expect("rates");
    let speech: Vec<f32> = bytes(441)
        .iter()
        .map(|&b| f32::from(b) / 255.0 - 0.5)
        .collect();
    let mut block = vec![0.0; 480];
    cases.push(case(
        "microphone at 44.1 kHz: 10 ms resampled to 48 kHz",
        100.0,
        move || {
            resampler.push(&speech);
            while resampler.pop(&mut block) {
                black_box(&block);
            }
        },
    ));

    println!("best of {rounds} rounds of {frames} frames; cores = ms a frame x fps / 1000");
    println!("| case | ms a frame | fps | cores |");
    println!("|---|---|---|---|");
    for mut c in cases {
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let started = Instant::now();
            for _ in 0..frames {
                (c.run)();
            }
            best = best.min(started.elapsed().as_secs_f64() * 1000.0 / frames as f64);
        }
        println!(
            "| {} | {:.2} | {} | {:.3} |",
            c.name,
            best,
            c.fps,
            best * c.fps / 1000.0
        );
    }
}
