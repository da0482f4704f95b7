//! The frame stamp: a frame index and a capture time written into the image as large black and
//! white blocks that survive H.264, and read back after decoding. This is how the receiver knows
//! glass-to-glass latency, which frames were lost, and (by regenerating the source frame from its
//! index) the PSNR — the way libwebrtc's own quality tests use frame barcodes.
//!
//! Layout: blocks of `block_size(width)` pixels, left to right, top to bottom from the top-left
//! corner; 32 bits of index, 56 bits of capture time (µs), a 16-bit CRC, most significant first.

use super::VideoFrame;

const INDEX_BITS: u32 = 32;
const TIME_BITS: u32 = 56;
const CRC_BITS: u32 = 16;
const TOTAL_BITS: u32 = INDEX_BITS + TIME_BITS + CRC_BITS;

const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// What a stamp carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub index: u32,
    pub capture_ts_us: u64,
}

/// Edge of one stamp block: about 1/40 of the width, a multiple of 8, at least 8 pixels.
pub fn block_size(width: u32) -> u32 {
    ((width / 40) & !7).max(8)
}

/// Pixel rows the stamp occupies at the top of a frame of this width.
pub fn band_height(width: u32) -> u32 {
    let block = block_size(width);
    let per_row = (width / block).max(1);
    TOTAL_BITS.div_ceil(per_row) * block
}

/// Whether a frame of this size has room for a stamp.
pub fn fits(width: u32, height: u32) -> bool {
    width >= 8 * 16 && band_height(width) <= height / 2
}

/// CRC-16/CCITT-FALSE over the payload bits.
fn crc16(mut value: u128, bits: u32) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for _ in 0..bits {
        let bit = ((value >> (bits - 1)) & 1) as u16;
        value <<= 1;
        let top = (crc >> 15) & 1;
        crc <<= 1;
        if top ^ bit == 1 {
            crc ^= 0x1021;
        }
    }
    crc
}

fn payload(stamp: Stamp) -> u128 {
    let time = u128::from(stamp.capture_ts_us) & ((1u128 << TIME_BITS) - 1);
    (u128::from(stamp.index) << TIME_BITS) | time
}

/// Block positions (x, y) of each bit, in order.
fn blocks(width: u32) -> impl Iterator<Item = (u32, u32)> {
    let block = block_size(width);
    let per_row = (width / block).max(1);
    (0..TOTAL_BITS).map(move |i| ((i % per_row) * block, (i / per_row) * block))
}

/// Writes `stamp` into the top band of `frame` (luma blocks; chroma neutral under them).
pub fn write(frame: &mut VideoFrame, stamp: Stamp) {
    let width = frame.width;
    let block = block_size(width) as usize;
    let data = payload(stamp);
    let word = (data << CRC_BITS) | u128::from(crc16(data, INDEX_BITS + TIME_BITS));
    let (y, u, v) = frame.planes_mut();
    let w = width as usize;
    for (i, (bx, by)) in blocks(width).enumerate() {
        let bit = (word >> (TOTAL_BITS as usize - 1 - i)) & 1 == 1;
        let luma = if bit { WHITE } else { BLACK };
        let (bx, by) = (bx as usize, by as usize);
        for row in by..by + block {
            y[row * w + bx..row * w + bx + block].fill(luma);
        }
        for row in by / 2..(by + block) / 2 {
            let start = row * (w / 2) + bx / 2;
            u[start..start + block / 2].fill(128);
            v[start..start + block / 2].fill(128);
        }
    }
}

/// Reads a stamp back; `None` when the frame carries none (or it was damaged beyond the CRC).
pub fn read(frame: &VideoFrame) -> Option<Stamp> {
    if !fits(frame.width, frame.height) {
        return None;
    }
    let w = frame.width as usize;
    let block = block_size(frame.width) as usize;
    // Average the inside of each block, away from edges that ring after compression.
    let margin = block / 4;
    let y = frame.y();
    let mut word: u128 = 0;
    for (bx, by) in blocks(frame.width) {
        let (bx, by) = (bx as usize, by as usize);
        let mut sum: u32 = 0;
        let mut count: u32 = 0;
        for row in by + margin..by + block - margin {
            for &p in &y[row * w + bx + margin..row * w + bx + block - margin] {
                sum += u32::from(p);
                count += 1;
            }
        }
        let bit = sum / count.max(1) > u32::from(WHITE + BLACK) / 2;
        word = (word << 1) | u128::from(bit);
    }
    let data = word >> CRC_BITS;
    let crc = (word & 0xFFFF) as u16;
    if crc != crc16(data, INDEX_BITS + TIME_BITS) {
        return None;
    }
    Some(Stamp {
        index: (data >> TIME_BITS) as u32,
        capture_ts_us: (data & ((1u128 << TIME_BITS) - 1)) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_scales_with_width() {
        assert_eq!(block_size(1280), 32);
        assert_eq!(block_size(640), 16);
        assert_eq!(block_size(320), 8);
        assert_eq!(band_height(640), 3 * 16);
        assert!(fits(320, 180));
        assert!(!fits(64, 64));
    }

    #[test]
    fn round_trip_on_a_clean_frame() {
        for (w, h) in [
            (320, 180),
            (640, 360),
            (1280, 720),
            (1920, 1080),
            (352, 288),
        ] {
            let mut frame = VideoFrame::black(w, h, 0);
            let stamp = Stamp {
                index: 0xDEAD_BEEF,
                capture_ts_us: 1_790_000_000_123_456,
            };
            write(&mut frame, stamp);
            assert_eq!(read(&frame), Some(stamp), "{w}x{h}");
        }
    }

    #[test]
    fn damage_is_detected_not_misread() {
        let mut frame = VideoFrame::black(640, 360, 0);
        write(
            &mut frame,
            Stamp {
                index: 5,
                capture_ts_us: 99,
            },
        );
        // Flip one block: the CRC catches it.
        let (y, _, _) = frame.planes_mut();
        for row in 0..16 {
            for p in &mut y[row * 640 + 16 * 7..row * 640 + 16 * 8] {
                *p = 255 - *p;
            }
        }
        assert_eq!(read(&frame), None);
        assert_eq!(
            read(&VideoFrame::black(640, 360, 0)),
            None,
            "no stamp at all"
        );
    }

    #[test]
    fn survives_noise_and_blur() {
        let mut frame = VideoFrame::black(640, 360, 0);
        let stamp = Stamp {
            index: 123_456,
            capture_ts_us: 1_800_000_000_000_001,
        };
        write(&mut frame, stamp);
        let (y, _, _) = frame.planes_mut();
        for (i, p) in y.iter_mut().enumerate() {
            // +-40 of deterministic noise: far more than H.264 at sane bitrates leaves.
            let noise = ((i * 2_654_435_761) % 81) as i32 - 40;
            *p = (i32::from(*p) + noise).clamp(0, 255) as u8;
        }
        assert_eq!(read(&frame), Some(stamp));
    }
}
