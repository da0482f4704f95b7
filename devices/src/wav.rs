//! WAV files: `--mic file:X.wav` plays one in a loop (any rate and channel count, mixed to mono
//! and resampled to 48 kHz), `--record-audio X.wav` / `--speaker file:X.wav` write 48 kHz mono
//! 16-bit. And the null sink, which discards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use confab_media::resample::resample_clip;
use confab_media::{clock, SAMPLE_RATE_HZ};
use confab_media::{AudioSink, AudioSource, CaptureError};

/// Loads a WAV file as mono f32 at 48 kHz.
pub fn load_mono_48k(path: &Path) -> Result<Vec<f32>, CaptureError> {
    let bad = |reason: String| CaptureError::BadFile {
        path: path.to_owned(),
        kind: "WAV",
        reason,
    };
    let mut reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(source) => CaptureError::Read {
            path: path.to_owned(),
            source,
        },
        other => bad(other.to_string()),
    })?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        return Err(bad("it holds no samples".into()));
    }
    if spec.sample_rate == SAMPLE_RATE_HZ {
        Ok(mono)
    } else {
        resample_clip(&mono, spec.sample_rate, SAMPLE_RATE_HZ).map_err(bad)
    }
}

/// Plays a WAV file in a loop, in real time.
pub struct WavSource {
    samples: Vec<f32>,
    position: usize,
    start_us: u64,
    delivered: u64,
    name: String,
}

impl WavSource {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let samples = load_mono_48k(path)?;
        Ok(Self {
            name: format!(
                "{} ({:.1} s)",
                path.display(),
                samples.len() as f64 / f64::from(SAMPLE_RATE_HZ)
            ),
            samples,
            position: 0,
            start_us: clock::now_us(),
            delivered: 0,
        })
    }
}

impl AudioSource for WavSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, out: &mut [f32]) -> Result<u64, CaptureError> {
        let now = clock::now_us();
        if now
            .saturating_sub(self.start_us + self.delivered * 1_000_000 / u64::from(SAMPLE_RATE_HZ))
            > super::test_sources::RESYNC_US
        {
            // Opened long before the first read: start from the present, not with a burst.
            self.start_us = now;
            self.delivered = 0;
        }
        let first_us = self.start_us + self.delivered * 1_000_000 / u64::from(SAMPLE_RATE_HZ);
        for s in out.iter_mut() {
            *s = self.samples[self.position];
            self.position = (self.position + 1) % self.samples.len();
        }
        self.delivered += out.len() as u64;
        let due = self.start_us + self.delivered * 1_000_000 / u64::from(SAMPLE_RATE_HZ);
        let now = clock::now_us();
        if due > now {
            std::thread::sleep(Duration::from_micros(due - now));
        }
        Ok(first_us)
    }
}

/// Writes 48 kHz mono 16-bit WAV.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
}

impl WavSink {
    pub fn create(path: &Path) -> Result<Self, CaptureError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE_HZ,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| CaptureError::Write {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        Ok(Self {
            path: path.to_owned(),
            writer: Some(writer),
        })
    }

    fn error(&self, e: hound::Error) -> CaptureError {
        CaptureError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        }
    }
}

impl AudioSink for WavSink {
    fn name(&self) -> &str {
        "WAV file"
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), CaptureError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let result = samples
            .iter()
            .try_for_each(|&s| writer.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16));
        result.map_err(|e| self.error(e))
    }

    fn finish(&mut self) -> Result<(), CaptureError> {
        match self.writer.take() {
            Some(writer) => writer.finalize().map_err(|e| self.error(e)),
            None => Ok(()),
        }
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if let Err(err) = self.finish() {
            tracing::warn!(%err, "could not finish the WAV file");
        }
    }
}

/// Discards what it is given (`--speaker null`).
pub struct NullSink;

impl AudioSink for NullSink {
    fn name(&self) -> &str {
        "null"
    }

    fn write(&mut self, _samples: &[f32]) -> Result<(), CaptureError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, frames: usize) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames {
            let v =
                ((i as f32 / rate as f32 * 440.0 * std::f32::consts::TAU).sin() * 16000.0) as i16;
            for _ in 0..channels {
                w.write_sample(v).unwrap();
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn loads_any_rate_and_channels_as_48k_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav(&path, 16_000, 2, 16_000);
        let samples = load_mono_48k(&path).unwrap();
        assert!(
            (samples.len() as i64 - 48_000).abs() < 1_000,
            "{}",
            samples.len()
        );
        let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 16000.0 / 32768.0).abs() < 0.05, "{peak}");
    }

    #[test]
    fn sink_then_source_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.wav");
        let mut sink = WavSink::create(&path).unwrap();
        let input: Vec<f32> = (0..960).map(|i| (i as f32 / 960.0) - 0.5).collect();
        sink.write(&input).unwrap();
        sink.finish().unwrap();
        let mut source = WavSource::open(&path).unwrap();
        let mut out = vec![0f32; 960 * 2];
        source.read(&mut out).unwrap();
        for (a, b) in out[..960].iter().zip(&input) {
            assert!((a - b).abs() < 1e-4);
        }
        assert_eq!(out[960..], out[..960], "it loops");
    }

    #[test]
    fn bad_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = WavSource::open(&dir.path().join("none.wav"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"not a wav file at all").unwrap();
        let err = WavSource::open(&junk).err().unwrap().to_string();
        assert!(err.contains("not a usable WAV file"), "{err}");
    }
}
