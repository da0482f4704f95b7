//! The frame stamp: a frame index, a capture time and the size the frame was made at, written
//! into the image as large black and white blocks that survive H.264 and scaling, and read back
//! after decoding. This is how the receiver knows glass-to-glass latency, which frames were lost,
//! and (by regenerating the source frame from its index, at its size) the PSNR, the way
//! libwebrtc's own quality tests use frame barcodes.
//!
//! Layout: 40 square blocks to a row, each 1/40 of the width (block `i` of a row spans
//! `i * width / 40 ..= (i + 1) * width / 40 - 1`, rows the same from the top), left to right, top
//! to bottom from the top-left corner: 24 bits of index, 56 bits of capture time (µs), the
//! source's width and height in 2-pixel units (12 bits each), a 16-bit CRC, most significant
//! first: three rows. The layout is a fixed fraction of the width, so a frame scaled on its way
//! (a lower rung of the sender's ladder) still reads; at widths that are multiples of 320 the
//! blocks fall on the codec's 8-pixel grid.

use super::VideoFrame;

const INDEX_BITS: u32 = 24;
const TIME_BITS: u32 = 56;
const SIZE_BITS: u32 = 12;
const CRC_BITS: u32 = 16;
const DATA_BITS: u32 = INDEX_BITS + TIME_BITS + 2 * SIZE_BITS;
const TOTAL_BITS: u32 = DATA_BITS + CRC_BITS;
const PER_ROW: u32 = 40;
const ROWS: u32 = TOTAL_BITS.div_ceil(PER_ROW);

/// The index is carried modulo 2^24 (155 hours at 30 frames a second): the test pattern's
/// geometry follows the carried index, so a frame and its stamp always agree.
pub const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// The largest source edge a stamp can carry.
const MAX_EDGE: u32 = ((1 << SIZE_BITS) - 1) * 2;

const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// What a stamp carries, as the sender wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The frame's index, modulo 2^24 (`INDEX_MASK`).
    pub index: u32,
    pub capture_ts_us: u64,
}

/// A stamp read back, with the size of the frame it was written into: the receiver's frame can
/// be smaller (scaled by the sender's ladder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub stamp: Stamp,
    pub source_width: u32,
    pub source_height: u32,
}

/// Edge of one stamp block, in whole pixels (blocks are `width / 40`, some a pixel wider).
pub fn block_size(width: u32) -> u32 {
    width / PER_ROW
}

/// Pixel rows the stamp occupies at the top of a frame of this width.
pub fn band_height(width: u32) -> u32 {
    ROWS * width / PER_ROW
}

/// Whether a frame of this size has room for a stamp that reads back: blocks of at least 4
/// pixels, in the top half, and a size the stamp can carry.
pub fn fits(width: u32, height: u32) -> bool {
    block_size(width) >= 4 && band_height(width) <= height / 2 && width.max(height) <= MAX_EDGE
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

fn payload(stamp: Stamp, width: u32, height: u32) -> u128 {
    let time = u128::from(stamp.capture_ts_us) & ((1u128 << TIME_BITS) - 1);
    let size = (u128::from(width / 2) << SIZE_BITS) | u128::from(height / 2);
    (((u128::from(stamp.index & INDEX_MASK) << TIME_BITS) | time) << (2 * SIZE_BITS)) | size
}

/// The pixel span `[start, end)` of block `i` along an edge of `width` pixels' layout.
fn span(i: u32, width: u32) -> (usize, usize) {
    (
        (i * width / PER_ROW) as usize,
        ((i + 1) * width / PER_ROW) as usize,
    )
}

/// Each bit's block, in order: its columns and rows `[start, end)`.
fn blocks(width: u32) -> impl Iterator<Item = ((usize, usize), (usize, usize))> {
    (0..TOTAL_BITS).map(move |i| (span(i % PER_ROW, width), span(i / PER_ROW, width)))
}

/// Writes `stamp` into the top band of `frame` (luma blocks; chroma neutral under them), with the
/// frame's size as the source size. Does nothing to a frame it does not `fit`.
pub fn write(frame: &mut VideoFrame, stamp: Stamp) {
    let (width, height) = (frame.width, frame.height);
    if !fits(width, height) {
        return;
    }
    let data = payload(stamp, width, height);
    let word = (data << CRC_BITS) | u128::from(crc16(data, DATA_BITS));
    let (y, u, v) = frame.planes_mut();
    let w = width as usize;
    for (i, ((x0, x1), (y0, y1))) in blocks(width).enumerate() {
        let bit = (word >> (TOTAL_BITS as usize - 1 - i)) & 1 == 1;
        let luma = if bit { WHITE } else { BLACK };
        for row in y0..y1 {
            y[row * w + x0..row * w + x1].fill(luma);
        }
        for row in y0 / 2..y1 / 2 {
            let start = row * (w / 2);
            u[start + x0 / 2..start + x1 / 2].fill(128);
            v[start + x0 / 2..start + x1 / 2].fill(128);
        }
    }
}

/// Reads a stamp back; `None` when the frame carries none (or it was damaged beyond the CRC).
pub fn read(frame: &VideoFrame) -> Option<Stamp> {
    read_stamped(frame).map(|s| s.stamp)
}

/// Reads a stamp and the size of the frame it was written into.
pub fn read_stamped(frame: &VideoFrame) -> Option<Stamped> {
    if !fits(frame.width, frame.height) {
        return None;
    }
    let w = frame.width as usize;
    let y = frame.y();
    let mut word: u128 = 0;
    for ((x0, x1), (y0, y1)) in blocks(frame.width) {
        // Average the inside of each block, away from edges that ring after compression or
        // blur in scaling.
        let (mx, my) = ((x1 - x0) / 4, (y1 - y0) / 4);
        let mut sum: u32 = 0;
        let mut count: u32 = 0;
        for row in y0 + my..y1 - my {
            for &p in &y[row * w + x0 + mx..row * w + x1 - mx] {
                sum += u32::from(p);
                count += 1;
            }
        }
        let bit = sum / count.max(1) > u32::from(WHITE + BLACK) / 2;
        word = (word << 1) | u128::from(bit);
    }
    let data = word >> CRC_BITS;
    let crc = (word & 0xFFFF) as u16;
    if crc != crc16(data, DATA_BITS) {
        return None;
    }
    let size_mask = (1u128 << SIZE_BITS) - 1;
    let stamp_bits = data >> (2 * SIZE_BITS);
    Some(Stamped {
        stamp: Stamp {
            index: (stamp_bits >> TIME_BITS) as u32,
            capture_ts_us: (stamp_bits & ((1u128 << TIME_BITS) - 1)) as u64,
        },
        source_width: ((data >> SIZE_BITS) & size_mask) as u32 * 2,
        source_height: (data & size_mask) as u32 * 2,
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
        assert_eq!(band_height(1280), 3 * 32);
        assert_eq!(band_height(640), 3 * 16);
        assert!(fits(320, 180));
        assert!(fits(160, 90));
        assert!(!fits(64, 64));
        assert!(!fits(158, 90), "blocks under 4 pixels");
        assert!(!fits(8192, 4320), "a size the stamp cannot carry");
    }

    #[test]
    fn a_frame_scaled_on_its_way_reads_with_its_source_size() {
        let stamp = Stamp {
            index: 0x00AB_CDEF,
            capture_ts_us: 1_790_000_000_123_456,
        };
        for (source, scaled) in [
            (
                (1280, 720),
                [(960, 540), (640, 360), (480, 270), (426, 240), (320, 180)],
            ),
            (
                (1920, 1080),
                [(1280, 720), (854, 480), (640, 360), (480, 270), (320, 180)],
            ),
        ] {
            let mut frame = VideoFrame::black(source.0, source.1, 0);
            frame.data.fill(90);
            write(&mut frame, stamp);
            for (w, h) in scaled {
                let small = crate::convert::scale(&frame, w, h);
                assert_eq!(
                    read_stamped(&small),
                    Some(Stamped {
                        stamp,
                        source_width: source.0,
                        source_height: source.1
                    }),
                    "{source:?} -> {w}x{h}"
                );
            }
        }
    }

    #[test]
    fn the_index_is_carried_modulo_2_24() {
        let mut frame = VideoFrame::black(640, 360, 0);
        write(
            &mut frame,
            Stamp {
                index: (1 << 24) + 5,
                capture_ts_us: 7,
            },
        );
        assert_eq!(read(&frame).map(|s| s.index), Some(5));
    }

    #[test]
    fn round_trip_on_a_clean_frame() {
        for (w, h) in [
            (320, 180),
            (640, 360),
            (1280, 720),
            (1920, 1080),
            (352, 288),
            (1366, 768),
        ] {
            let mut frame = VideoFrame::black(w, h, 0);
            let stamp = Stamp {
                index: 0x00BE_EF01,
                capture_ts_us: 1_790_000_000_123_456,
            };
            write(&mut frame, stamp);
            assert_eq!(
                read_stamped(&frame),
                Some(Stamped {
                    stamp,
                    source_width: w,
                    source_height: h
                }),
                "{w}x{h}"
            );
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
