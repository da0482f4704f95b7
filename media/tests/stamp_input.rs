//! Property tests for the stamp reader, which reads frames decoded from the other peer's video:
//! any frame reads as a stamp or as none, never a panic, and a stamp written into a frame of any
//! size that fits reads back exactly.

use confab_media::stamp::{self, Stamp};
use confab_media::VideoFrame;
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_frame_reads_or_not(half_w in 1u32..200, half_h in 1u32..120, fill in any::<u8>(), noise in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut frame = VideoFrame::black(half_w * 2, half_h * 2, 0);
        frame.data.fill(fill);
        for (i, b) in noise.iter().enumerate() {
            let at = (i * 7919) % frame.data.len();
            frame.data[at] = *b;
        }
        let _ = stamp::read(&frame);
    }

    #[test]
    fn stamps_round_trip(half_w in 1u32..1000, half_h in 1u32..600, index in 0u32..(1 << 24), ts in 0u64..(1 << 56)) {
        let (w, h) = (half_w * 2, half_h * 2);
        prop_assume!(stamp::fits(w, h));
        let mut frame = VideoFrame::black(w, h, 0);
        let written = Stamp { index, capture_ts_us: ts };
        stamp::write(&mut frame, written);
        prop_assert_eq!(stamp::read(&frame), Some(written));
    }
}
