//! The synthetic twins of camera and microphone: the stamped test pattern (`--camera test`) and
//! the test signal (`--mic test`, or its second voice `--mic test:2`), both paced in real time.

use std::time::Duration;

use confab_media::{clock, pattern, test_signal, VideoFrame, SAMPLE_RATE_HZ};
use confab_media::{AudioSource, CaptureError, Pacer, VideoSource};

/// The stamped moving pattern of `media::pattern`, at a fixed size and rate.
pub struct TestPattern {
    width: u32,
    height: u32,
    pacer: Pacer,
    name: String,
}

impl TestPattern {
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        Self {
            width: width & !1,
            height: height & !1,
            pacer: Pacer::new(Duration::from_secs(1) / fps.max(1)),
            name: format!("test pattern {width}x{height}@{fps}"),
        }
    }
}

impl VideoSource for TestPattern {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_frame(&mut self) -> Result<VideoFrame, CaptureError> {
        // The tick number is the frame index: a tick skipped under load shows as a lost frame.
        let index = self.pacer.wait() as u32;
        Ok(pattern::render(
            index,
            self.width,
            self.height,
            clock::now_us(),
        ))
    }
}

/// How far behind real time a paced audio source may fall before it skips ahead.
pub const RESYNC_US: u64 = 100_000;

/// The test signal of `media::test_signal`, delivered in real time.
pub struct TestSignal {
    /// Wall-clock time of the next sample to deliver.
    next_us: u64,
    samples_out: u64,
    start_us: u64,
    voice: test_signal::Voice,
}

impl TestSignal {
    /// The first voice.
    pub fn new() -> Self {
        Self::with_voice(test_signal::Voice::First)
    }

    pub fn with_voice(voice: test_signal::Voice) -> Self {
        let start_us = clock::now_us();
        Self {
            next_us: start_us,
            samples_out: 0,
            start_us,
            voice,
        }
    }
}

impl Default for TestSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioSource for TestSignal {
    fn name(&self) -> &str {
        test_signal::SOURCE_NAME
    }

    fn read(&mut self, out: &mut [f32]) -> Result<u64, CaptureError> {
        // A source opened a while before its first read (or a stalled reader) resumes at the
        // present instead of delivering the backlog in a burst.
        let now = clock::now_us();
        if now.saturating_sub(self.next_us) > RESYNC_US {
            self.start_us = now;
            self.samples_out = 0;
            self.next_us = now;
        }
        let first_us = self.next_us;
        self.voice.fill(out, first_us);
        self.samples_out += out.len() as u64;
        self.next_us = self.start_us + self.samples_out * 1_000_000 / u64::from(SAMPLE_RATE_HZ);
        // Like a microphone, the block is available once its last sample has been "recorded".
        let now = clock::now_us();
        if self.next_us > now {
            std::thread::sleep(Duration::from_micros(self.next_us - now));
        }
        Ok(first_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::stamp;

    #[test]
    fn pattern_frames_are_stamped_in_order() {
        let mut source = TestPattern::new(320, 180, 100);
        let a = source.next_frame().unwrap();
        let b = source.next_frame().unwrap();
        let (sa, sb) = (stamp::read(&a).unwrap(), stamp::read(&b).unwrap());
        assert_eq!(sb.index, sa.index + 1);
        assert!(sb.capture_ts_us > sa.capture_ts_us);
    }

    #[test]
    fn a_late_first_read_does_not_burst() {
        let mut source = TestSignal::new();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut block = vec![0f32; 960];
        let t0 = source.read(&mut block).unwrap();
        assert!(
            clock::now_us() - t0 < 50_000,
            "the first block is from now, not from 300 ms ago"
        );
    }

    #[test]
    fn signal_blocks_are_contiguous_in_time() {
        for voice in [test_signal::Voice::First, test_signal::Voice::Second] {
            let mut source = TestSignal::with_voice(voice);
            let mut block = vec![0f32; 480];
            let t0 = source.read(&mut block).unwrap();
            let t1 = source.read(&mut block).unwrap();
            assert_eq!(t1 - t0, 10_000);
            let mut expected = vec![0f32; 480];
            voice.fill(&mut expected, t1);
            assert_eq!(block, expected);
        }
    }
}
