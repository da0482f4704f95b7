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
    let sse: u64 = a
        .iter()
        .zip(b)
        .map(|(&p, &q)| {
            let d = i64::from(p) - i64::from(q);
            (d * d) as u64
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
}
