//! A streaming mono resampler (rubato's windowed-sinc resampler) for device audio: push samples at
//! one rate as they come, pop them at another.

use std::collections::VecDeque;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, Resampler as _};

use crate::resample::sinc_resampler;

pub struct StreamResampler {
    resampler: Option<Async<f32>>,
    input: Vec<f32>,
    chunk: usize,
    out_buf: Vec<f32>,
    output: VecDeque<f32>,
}

impl StreamResampler {
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, String> {
        if from_hz == 0 || to_hz == 0 {
            return Err(format!("cannot resample {from_hz} Hz to {to_hz} Hz"));
        }
        // 10 ms chunks: the blocks the rest of the audio moves in.
        let chunk = (from_hz as usize / 100).max(1);
        let resampler = if from_hz == to_hz {
            None
        } else {
            Some(sinc_resampler(from_hz, to_hz, chunk)?)
        };
        let out_len = resampler.as_ref().map_or(0, |r| r.output_frames_max());
        Ok(Self {
            resampler,
            input: Vec::new(),
            chunk,
            out_buf: vec![0.0; out_len],
            output: VecDeque::new(),
        })
    }

    pub fn push(&mut self, samples: &[f32]) {
        let Some(resampler) = self.resampler.as_mut() else {
            self.output.extend(samples);
            return;
        };
        self.input.extend_from_slice(samples);
        let mut start = 0;
        while self.input.len() - start >= self.chunk {
            let chunk = &self.input[start..start + self.chunk];
            let out_len = self.out_buf.len();
            let (Ok(input), Ok(mut output)) = (
                InterleavedSlice::new(chunk, 1, self.chunk),
                InterleavedSlice::new_mut(&mut self.out_buf, 1, out_len),
            ) else {
                break;
            };
            match resampler.process_into_buffer(&input, &mut output, None) {
                Ok((_, produced)) => self.output.extend(&self.out_buf[..produced]),
                Err(e) => tracing::warn!(%e, "resampling failed; dropping a chunk"),
            }
            start += self.chunk;
        }
        self.input.drain(..start);
    }

    pub fn available(&self) -> usize {
        self.output.len()
    }

    /// Fills `out` if enough samples are ready.
    pub fn pop(&mut self, out: &mut [f32]) -> bool {
        if self.output.len() < out.len() {
            return false;
        }
        let n = out.len();
        for (o, s) in out.iter_mut().zip(self.output.drain(..n)) {
            *o = s;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_convert_continuously() {
        let mut r = StreamResampler::new(44_100, 48_000).unwrap();
        let tone: Vec<f32> = (0..44_100).map(|i| (i as f32 * 0.01).sin()).collect();
        for piece in tone.chunks(333) {
            r.push(piece);
        }
        let got = r.available();
        assert!((47_000..=48_000).contains(&got), "{got}");
        let mut out = vec![0.0; 480];
        assert!(r.pop(&mut out));
        let mut same = StreamResampler::new(48_000, 48_000).unwrap();
        same.push(&[0.5; 10]);
        let mut ten = [0.0; 10];
        assert!(same.pop(&mut ten) && ten == [0.5; 10]);
        assert!(!same.pop(&mut ten));
        assert!(StreamResampler::new(0, 48_000).is_err());
    }

    #[test]
    fn a_device_at_44_1_khz_is_delayed_by_two_milliseconds_at_most() {
        // 10 ms a block in, 10 ms a block out (the FFT resampler waited for 1024 samples).
        let mut r = StreamResampler::new(44_100, 48_000).unwrap();
        let mut click = vec![0.0; 441];
        click[0] = 1.0;
        r.push(&click);
        assert!((470..=480).contains(&r.available()), "{}", r.available());
        for _ in 0..4 {
            r.push(&[0.0; 441]);
        }
        let mut out = vec![0.0; 4 * 480];
        assert!(r.pop(&mut out));
        let peak = (0..out.len())
            .max_by(|&a, &b| out[a].abs().total_cmp(&out[b].abs()))
            .unwrap();
        // The click comes out once, where the filter's delay puts it.
        assert!(peak <= 96, "the click came out {peak} samples late");
        assert!(out[peak].abs() > 0.5, "{}", out[peak]);
    }
}
