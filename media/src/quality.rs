//! Picture quality: PSNR of a received frame against the source frame it came from.

use super::VideoFrame;

/// Luma PSNR in dB, capped at 100 for identical images; `None` when sizes differ.
pub fn psnr_y(a: &VideoFrame, b: &VideoFrame) -> Option<f64> {
    if (a.width, a.height) != (b.width, b.height) {
        return None;
    }
    psnr(a.y(), b.y())
}

/// PSNR in dB of two 8-bit planes of the same size, capped at 100 for identical planes; `None`
/// when the lengths differ or the planes are empty.
pub fn psnr(a: &[u8], b: &[u8]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    // Summed in u32 over chunks that cannot overflow it (255^2 x 2^16 < 2^32): the compiler
    // turns that into vector multiply-adds, where a u64 sum per sample stayed scalar.
    const CHUNK: usize = 1 << 16;
    let sse: u64 = a
        .chunks(CHUNK)
        .zip(b.chunks(CHUNK))
        .map(|(a, b)| {
            let chunk: u32 = a
                .iter()
                .zip(b)
                .map(|(&p, &q)| {
                    let d = i16::from(p) - i16::from(q);
                    (i32::from(d) * i32::from(d)) as u32
                })
                .sum();
            u64::from(chunk)
        })
        .sum();
    if sse == 0 {
        return Some(100.0);
    }
    let mse = sse as f64 / a.len() as f64;
    Some((10.0 * (255.0 * 255.0 / mse).log10()).min(100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_errors() {
        let a = VideoFrame::black(16, 16, 0);
        assert_eq!(psnr_y(&a, &a), Some(100.0));
        let mut b = a.clone();
        let (y, _, _) = b.planes_mut();
        y.iter_mut().for_each(|p| *p += 1); // MSE 1
        let psnr = psnr_y(&a, &b).unwrap();
        assert!((psnr - 48.1308).abs() < 1e-3, "{psnr}");
        assert_eq!(psnr_y(&a, &VideoFrame::black(8, 8, 0)), None);
    }

    #[test]
    fn the_largest_errors_over_many_chunks_sum_exactly() {
        // Every sample off by 255, over more than a chunk's worth: a u32 sum over the whole
        // plane would have wrapped after 66,051 samples.
        let n = 3 * 65_536 + 17;
        let (black, white) = (vec![0u8; n], vec![255u8; n]);
        assert_eq!(psnr(&black, &white), Some(0.0));
        // Half the samples off by 255 (the odd count rounds up): about 3.01 dB.
        let half: Vec<u8> = (0..n).map(|i| if i % 2 == 0 { 255 } else { 0 }).collect();
        let exact = 10.0 * (n as f64 / (n as f64 / 2.0).ceil()).log10();
        let got = psnr(&black, &half).unwrap();
        assert!((got - exact).abs() < 1e-9, "{got} vs {exact}");
    }
}
