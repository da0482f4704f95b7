//! The synthetic test picture: a moving pattern that is a pure function of the frame index, with
//! the index and capture time stamped on top. The receiver calls `render` again with the index and
//! time it read from the stamp and gets the exact source frame back, for PSNR.

use std::f32::consts::TAU;

use super::stamp::{self, Stamp};
use super::VideoFrame;

/// Moving squares: (size as a fraction of height, speed in px/frame x, y, luma, u, v).
const SQUARES: [(f32, i64, i64, u8, u8, u8); 3] = [
    (0.22, 5, 3, 210, 90, 200),
    (0.15, -4, 6, 60, 200, 90),
    (0.30, 2, -2, 150, 60, 60),
];

/// Renders frame `index` of the test pattern at `width` x `height` (even), stamped.
pub fn render(index: u32, width: u32, height: u32, capture_ts_us: u64) -> VideoFrame {
    let mut frame = VideoFrame::black(width, height, capture_ts_us);
    render_into(&mut frame, index, capture_ts_us);
    frame
}

/// Renders frame `index` over `frame` (every sample is written, whatever it held), at the frame's
/// size: `render` without allocating a frame.
pub fn render_into(frame: &mut VideoFrame, index: u32, capture_ts_us: u64) {
    frame.capture_ts_us = capture_ts_us;
    // The stamp carries the index modulo 2^24: the picture follows what it carries.
    let index = index & stamp::INDEX_MASK;
    let (width, height) = (frame.width, frame.height);
    let (w, h) = (width as usize, height as usize);
    let t = index as f32;
    // Separable smooth background: a horizontal and a vertical wave, each drifting. Computed once
    // per column and row, then summed in integers (the sum stays within 43..=213), so that the
    // per-pixel loop is a vectorized add: a test camera costs little beside the encoder.
    let col: Vec<f32> = (0..w)
        .map(|x| 50.0 * (TAU * (x as f32 / w as f32 * 2.0 + t / 90.0)).sin())
        .collect();
    let col_luma: Vec<i16> = col.iter().map(|c| (128.0 + c).round() as i16).collect();
    let row: Vec<i16> = (0..h)
        .map(|y| (35.0 * (TAU * (y as f32 / h as f32 * 1.5 - t / 120.0)).cos()).round() as i16)
        .collect();
    let (yp, up, vp) = frame.planes_mut();
    for (line, r) in yp.chunks_exact_mut(w).zip(&row) {
        for (p, c) in line.iter_mut().zip(&col_luma) {
            *p = (c + r) as u8;
        }
    }
    let (cw, ch) = (w / 2, h / 2);
    let u_row: Vec<u8> = (0..cw).map(|x| (128.0 + col[x * 2] * 0.6) as u8).collect();
    for y in 0..ch {
        let v_val = (128.0 + 40.0 * (TAU * (y as f32 / ch as f32 + t / 150.0)).sin()) as u8;
        up[y * cw..(y + 1) * cw].copy_from_slice(&u_row);
        vp[y * cw..(y + 1) * cw].fill(v_val);
    }
    // Squares bouncing around the frame (a triangle wave keeps them inside).
    for &(size, dx, dy, luma, u, v) in &SQUARES {
        let side = ((h as f32 * size) as usize) & !1;
        let pos = |speed: i64, span: usize| -> usize {
            let span = span.saturating_sub(side).max(1) as i64;
            let p = (i64::from(index) * speed).rem_euclid(2 * span);
            (if p < span { p } else { 2 * span - p }) as usize & !1
        };
        let (x0, y0) = (pos(dx, w), pos(dy, h));
        for y in y0..(y0 + side).min(h) {
            yp[y * w + x0..(y * w + x0 + side).min((y + 1) * w)].fill(luma);
        }
        for y in y0 / 2..((y0 + side) / 2).min(ch) {
            let end = (x0 / 2 + side / 2).min(cw);
            up[y * cw + x0 / 2..y * cw + end].fill(u);
            vp[y * cw + x0 / 2..y * cw + end].fill(v);
        }
    }
    stamp::write(
        frame,
        Stamp {
            index,
            capture_ts_us,
        },
    );
}

/// Adds deterministic camera-like sensor noise (luma, +-6) to `frame`, different for each `seed`
/// (a frame index): content whose fine detail costs bits, as a real camera's does.
pub fn add_sensor_noise(frame: &mut VideoFrame, seed: u32) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed).wrapping_mul(0x2545_F491);
    let (y, _, _) = frame.planes_mut();
    for p in y.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % 13) as i16 - 6;
        *p = (i16::from(*p) + noise).clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::psnr_y;

    #[test]
    fn pure_function_of_index_and_time() {
        let a = render(42, 640, 360, 1_000);
        assert_eq!(a, render(42, 640, 360, 1_000));
        assert_ne!(a, render(43, 640, 360, 1_000), "it moves");
        assert_eq!(
            stamp::read(&a),
            Some(Stamp {
                index: 42,
                capture_ts_us: 1_000
            })
        );
        // Consecutive frames are similar (an encoder's job is realistic), distant ones are not.
        let near = psnr_y(&a, &render(43, 640, 360, 1_000)).unwrap();
        let far = psnr_y(&a, &render(142, 640, 360, 1_000)).unwrap();
        assert!(near > far, "{near} vs {far}");
    }

    #[test]
    fn rendering_over_another_frame_leaves_nothing_of_it() {
        let mut frame = render(7, 640, 360, 5);
        frame.data.iter_mut().step_by(3).for_each(|p| *p = 255);
        render_into(&mut frame, 42, 1_000);
        assert_eq!(frame, render(42, 640, 360, 1_000));
    }

    #[test]
    fn odd_sizes_and_tiny_frames_do_not_panic() {
        for (w, h) in [(2, 2), (16, 16), (130, 98), (1920, 1080)] {
            let f = render(7, w, h, 0);
            assert_eq!(f.data.len(), VideoFrame::i420_len(w, h));
        }
    }
}
