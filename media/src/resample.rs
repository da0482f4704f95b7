//! Sample-rate conversion with rubato's FFT resampler.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

/// Resamples a whole mono clip from `from_hz` to `to_hz`.
pub fn resample_clip(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, String> {
    if from_hz == to_hz {
        return Ok(samples.to_vec());
    }
    if from_hz == 0 || to_hz == 0 {
        return Err(format!("cannot resample from {from_hz} Hz to {to_hz} Hz"));
    }
    let mut resampler =
        Fft::<f32>::new(from_hz as usize, to_hz as usize, 1024, 1, FixedSync::Input)
            .map_err(|e| e.to_string())?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| e.to_string())?;
    let needed = resampler.process_all_needed_output_len(samples.len());
    let mut out = vec![0f32; needed];
    let mut output = InterleavedSlice::new_mut(&mut out, 1, needed).map_err(|e| e.to_string())?;
    let (_, produced) = resampler
        .process_all_into_buffer(&input, &mut output, samples.len(), None)
        .map_err(|e| e.to_string())?;
    out.truncate(produced);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (i as f32 / rate as f32 * hz * std::f32::consts::TAU).sin() * 0.5)
            .collect()
    }

    #[test]
    fn keeps_length_and_frequency() {
        let input = tone(44_100, 1000.0, 44_100);
        let out = resample_clip(&input, 44_100, 48_000).unwrap();
        assert!((out.len() as i64 - 48_000).abs() <= 1, "{}", out.len());
        // Compare with a tone generated at 48 kHz directly, away from the edges.
        let reference = tone(48_000, 1000.0, 48_000);
        let err: f32 = out[2000..46_000]
            .iter()
            .zip(&reference[2000..46_000])
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            / 44_000.0;
        assert!(err < 1e-4, "mean squared error {err}");
        assert!(resample_clip(&input, 0, 48_000).is_err());
    }
}
