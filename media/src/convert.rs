//! Pixel-format conversion and scaling into I420 (BT.601, limited range, as H.264 peers expect):
//! packed RGB/BGR/RGBA/BGRA (screens, decoded MJPEG), YUYV and NV12 (cameras), grey; and back to
//! RGBA for display. Odd sizes are cropped to even; chroma is the average of each 2x2 block.

use super::VideoFrame;

/// Byte layout of a packed RGB-family pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    Rgb,
    Bgr,
    Rgba,
}

impl Packed {
    fn bytes(self) -> usize {
        match self {
            Self::Rgb | Self::Bgr => 3,
            Self::Rgba => 4,
        }
    }

    fn rgb(self, p: &[u8]) -> (i32, i32, i32) {
        match self {
            Self::Rgb | Self::Rgba => (i32::from(p[0]), i32::from(p[1]), i32::from(p[2])),
            Self::Bgr => (i32::from(p[2]), i32::from(p[1]), i32::from(p[0])),
        }
    }
}

#[inline]
fn y_of(r: i32, g: i32, b: i32) -> u8 {
    (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
}

#[inline]
fn u_of(r: i32, g: i32, b: i32) -> u8 {
    (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8
}

#[inline]
fn v_of(r: i32, g: i32, b: i32) -> u8 {
    (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a {width}x{height} {format} image needs {needed} bytes, got {got}")]
pub struct SizeError {
    pub width: u32,
    pub height: u32,
    pub format: &'static str,
    pub needed: usize,
    pub got: usize,
}

fn check(
    data: &[u8],
    width: u32,
    height: u32,
    needed: usize,
    format: &'static str,
) -> Result<(u32, u32), SizeError> {
    if data.len() < needed || width < 2 || height < 2 {
        return Err(SizeError {
            width,
            height,
            format,
            needed,
            got: data.len(),
        });
    }
    Ok((width & !1, height & !1))
}

/// Packed RGB-family pixels (rows `stride` bytes apart) to I420.
pub fn packed_to_i420(
    data: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    layout: Packed,
    capture_ts_us: u64,
) -> Result<VideoFrame, SizeError> {
    let bpp = layout.bytes();
    let needed = stride * (height as usize).saturating_sub(1) + width as usize * bpp;
    let (w, h) = check(
        data,
        width,
        height,
        needed.max(stride.min(data.len())),
        "RGB",
    )?;
    let mut frame = VideoFrame::black(w, h, capture_ts_us);
    let (wu, hu) = (w as usize, h as usize);
    let (yp, up, vp) = frame.planes_mut();
    for y in (0..hu).step_by(2) {
        for x in (0..wu).step_by(2) {
            let (mut rs, mut gs, mut bs) = (0, 0, 0);
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let o = (y + dy) * stride + (x + dx) * bpp;
                let (r, g, b) = layout.rgb(&data[o..o + bpp]);
                yp[(y + dy) * wu + x + dx] = y_of(r, g, b);
                rs += r;
                gs += g;
                bs += b;
            }
            let c = (y / 2) * (wu / 2) + x / 2;
            up[c] = u_of(rs / 4, gs / 4, bs / 4);
            vp[c] = v_of(rs / 4, gs / 4, bs / 4);
        }
    }
    Ok(frame)
}

/// YUYV 4:2:2 (Y0 U Y1 V) to I420.
pub fn yuyv_to_i420(
    data: &[u8],
    width: u32,
    height: u32,
    capture_ts_us: u64,
) -> Result<VideoFrame, SizeError> {
    let stride = width as usize * 2;
    let (w, h) = check(data, width, height, stride * height as usize, "YUYV")?;
    let mut frame = VideoFrame::black(w, h, capture_ts_us);
    let (wu, hu) = (w as usize, h as usize);
    let (yp, up, vp) = frame.planes_mut();
    for y in 0..hu {
        let row = &data[y * stride..];
        for x in 0..wu {
            yp[y * wu + x] = row[x * 2];
        }
    }
    for y in (0..hu).step_by(2) {
        let (r0, r1) = (&data[y * stride..], &data[(y + 1) * stride..]);
        for x in (0..wu).step_by(2) {
            let o = x * 2;
            let c = (y / 2) * (wu / 2) + x / 2;
            up[c] = (u16::from(r0[o + 1]) + u16::from(r1[o + 1])).div_ceil(2) as u8;
            vp[c] = (u16::from(r0[o + 3]) + u16::from(r1[o + 3])).div_ceil(2) as u8;
        }
    }
    Ok(frame)
}

/// NV12 (Y plane, then interleaved U/V at quarter size) to I420.
pub fn nv12_to_i420(
    data: &[u8],
    width: u32,
    height: u32,
    capture_ts_us: u64,
) -> Result<VideoFrame, SizeError> {
    let (wf, hf) = (width as usize, height as usize);
    let needed = wf * hf + wf * (hf / 2);
    let (w, h) = check(data, width, height, needed, "NV12")?;
    let mut frame = VideoFrame::black(w, h, capture_ts_us);
    let (wu, hu) = (w as usize, h as usize);
    let (yp, up, vp) = frame.planes_mut();
    for y in 0..hu {
        yp[y * wu..(y + 1) * wu].copy_from_slice(&data[y * wf..y * wf + wu]);
    }
    let uv = &data[wf * hf..];
    for y in 0..hu / 2 {
        for x in 0..wu / 2 {
            up[y * (wu / 2) + x] = uv[y * wf + 2 * x];
            vp[y * (wu / 2) + x] = uv[y * wf + 2 * x + 1];
        }
    }
    Ok(frame)
}

/// 8-bit grey to I420 (neutral chroma).
pub fn gray_to_i420(
    data: &[u8],
    width: u32,
    height: u32,
    capture_ts_us: u64,
) -> Result<VideoFrame, SizeError> {
    let (wf, hf) = (width as usize, height as usize);
    let (w, h) = check(data, width, height, wf * hf, "GRAY")?;
    let mut frame = VideoFrame::black(w, h, capture_ts_us);
    let wu = w as usize;
    let (yp, _, _) = frame.planes_mut();
    for y in 0..h as usize {
        for x in 0..wu {
            // Full-range grey to limited-range luma.
            yp[y * wu + x] = (16 + (u32::from(data[y * wf + x]) * 219 + 127) / 255) as u8;
        }
    }
    Ok(frame)
}

/// I420 to RGBA (for textures). Works on 2x2 blocks: the chroma terms are computed once for
/// the four pixels that share them.
/// The luma plane (BT.601, limited range) of packed RGB, as `packed_to_i420` computes it.
pub fn rgb_luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| y_of(i32::from(p[0]), i32::from(p[1]), i32::from(p[2])))
        .collect()
}

pub fn i420_to_rgba(frame: &VideoFrame, out: &mut Vec<u8>) {
    let (w, h) = (frame.width as usize, frame.height as usize);
    out.resize(w * h * 4, 255);
    let (yp, up, vp) = (frame.y(), frame.u(), frame.v());
    let cw = w / 2;
    for cy in 0..h / 2 {
        let (u_row, v_row) = (&up[cy * cw..(cy + 1) * cw], &vp[cy * cw..(cy + 1) * cw]);
        for row in [2 * cy, 2 * cy + 1] {
            let y_row = &yp[row * w..(row + 1) * w];
            let o_row = &mut out[row * w * 4..(row + 1) * w * 4];
            for (cx, (&u, &v)) in u_row.iter().zip(v_row).enumerate() {
                let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
                let (r_off, g_off, b_off) =
                    (409 * v + 128, -100 * u - 208 * v + 128, 516 * u + 128);
                for dx in 0..2 {
                    let x = 2 * cx + dx;
                    let yy = 298 * (i32::from(y_row[x]) - 16);
                    let o = &mut o_row[x * 4..x * 4 + 4];
                    o[0] = ((yy + r_off) >> 8).clamp(0, 255) as u8;
                    o[1] = ((yy + g_off) >> 8).clamp(0, 255) as u8;
                    o[2] = ((yy + b_off) >> 8).clamp(0, 255) as u8;
                    o[3] = 255;
                }
            }
        }
    }
}

/// The largest even size within `max_w` x `max_h` with the aspect ratio of `w` x `h`.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w & !1, h & !1);
    }
    let scale = (f64::from(max_w) / f64::from(w)).min(f64::from(max_h) / f64::from(h));
    (
        ((f64::from(w) * scale) as u32 & !1).max(2),
        ((f64::from(h) * scale) as u32 & !1).max(2),
    )
}

fn scale_plane(src: &[u8], sw: usize, sh: usize, dst: &mut [u8], dw: usize, dh: usize) {
    // Area average over the source pixels each destination pixel covers.
    for dy in 0..dh {
        let (y0, y1) = (
            dy * sh / dh,
            ((dy + 1) * sh / dh).max(dy * sh / dh + 1).min(sh),
        );
        for dx in 0..dw {
            let (x0, x1) = (
                dx * sw / dw,
                ((dx + 1) * sw / dw).max(dx * sw / dw + 1).min(sw),
            );
            let mut sum = 0u32;
            for row in y0..y1 {
                sum += src[row * sw + x0..row * sw + x1]
                    .iter()
                    .map(|&p| u32::from(p))
                    .sum::<u32>();
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            dst[dy * dw + dx] = ((sum + n / 2) / n) as u8;
        }
    }
}

/// Downscales (area average) to `width` x `height` (even, not larger than the source).
pub fn scale(frame: &VideoFrame, width: u32, height: u32) -> VideoFrame {
    if (width, height) == (frame.width, frame.height) {
        return frame.clone();
    }
    let mut out = VideoFrame::black(width, height, frame.capture_ts_us);
    scale_into(frame, &mut out);
    out
}

/// `scale` into `out`'s buffer (reused: no allocation once it is big enough); `out` takes the
/// size `width` x `height` and `frame`'s capture time.
pub fn scale_to(frame: &VideoFrame, width: u32, height: u32, out: &mut VideoFrame) {
    out.width = width;
    out.height = height;
    out.capture_ts_us = frame.capture_ts_us;
    out.data.resize(VideoFrame::i420_len(width, height), 0);
    if (width, height) == (frame.width, frame.height) {
        out.data.copy_from_slice(&frame.data);
    } else {
        scale_into(frame, out);
    }
}

/// Area-average downscale of `frame` into `out`, whose size and buffer are set already.
fn scale_into(frame: &VideoFrame, out: &mut VideoFrame) {
    let (width, height) = (out.width, out.height);
    let (sw, sh, dw, dh) = (
        frame.width as usize,
        frame.height as usize,
        width as usize,
        height as usize,
    );
    let (y, u, v) = out.planes_mut();
    scale_plane(frame.y(), sw, sh, y, dw, dh);
    scale_plane(frame.u(), sw / 2, sh / 2, u, dw / 2, dh / 2);
    scale_plane(frame.v(), sw / 2, sh / 2, v, dw / 2, dh / 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rgb = (u8, u8, u8);

    /// (R, G, B) -> expected (Y, U, V), BT.601 limited range.
    const KNOWN: [(Rgb, Rgb); 6] = [
        ((0, 0, 0), (16, 128, 128)),
        ((255, 255, 255), (235, 128, 128)),
        ((255, 0, 0), (82, 90, 240)),
        ((0, 255, 0), (144, 54, 34)),
        ((0, 0, 255), (41, 240, 110)),
        ((128, 128, 128), (126, 128, 128)),
    ];

    fn solid(layout: Packed, (r, g, b): (u8, u8, u8), w: usize, h: usize) -> Vec<u8> {
        let px: Vec<u8> = match layout {
            Packed::Rgb => vec![r, g, b],
            Packed::Bgr => vec![b, g, r],
            Packed::Rgba => vec![r, g, b, 255],
        };
        px.iter().copied().cycle().take(px.len() * w * h).collect()
    }

    #[test]
    fn packed_colours_convert_to_known_yuv() {
        for layout in [Packed::Rgb, Packed::Bgr, Packed::Rgba] {
            for (rgb, (y, u, v)) in KNOWN {
                let data = solid(layout, rgb, 4, 2);
                let f = packed_to_i420(&data, 4, 2, 4 * layout.bytes(), layout, 0).unwrap();
                assert_eq!(
                    (f.y()[0], f.u()[0], f.v()[0]),
                    (y, u, v),
                    "{layout:?} {rgb:?}"
                );
            }
        }
    }

    #[test]
    fn yuyv_nv12_gray() {
        // 4x2 YUYV: Y = 10,20,30,40 / 50,60,70,80; U/V differ per row and are averaged.
        let yuyv = [
            10, 100, 20, 200, 30, 110, 40, 210, 50, 102, 60, 202, 70, 112, 80, 212,
        ];
        let f = yuyv_to_i420(&yuyv, 4, 2, 0).unwrap();
        assert_eq!(f.y(), &[10, 20, 30, 40, 50, 60, 70, 80]);
        assert_eq!(f.u(), &[101, 111]);
        assert_eq!(f.v(), &[201, 211]);
        let nv12 = [1, 2, 3, 4, 5, 6, 7, 8, 100, 200, 101, 201];
        let f = nv12_to_i420(&nv12, 4, 2, 0).unwrap();
        assert_eq!(
            (f.y(), f.u(), f.v()),
            (
                &[1, 2, 3, 4, 5, 6, 7, 8][..],
                &[100, 101][..],
                &[200, 201][..]
            )
        );
        let f = gray_to_i420(&[0, 255, 0, 255], 2, 2, 0).unwrap();
        assert_eq!(f.y(), &[16, 235, 16, 235]);
    }

    #[test]
    fn odd_sizes_crop_and_short_buffers_are_errors() {
        let data = solid(Packed::Rgb, (255, 0, 0), 5, 3);
        let f = packed_to_i420(&data, 5, 3, 15, Packed::Rgb, 0).unwrap();
        assert_eq!((f.width, f.height), (4, 2));
        let err = yuyv_to_i420(&[0; 10], 4, 2, 0).unwrap_err();
        assert_eq!(err.needed, 16);
        assert!(nv12_to_i420(&[0; 8], 4, 2, 0).is_err());
        assert!(packed_to_i420(&[0; 3], 1, 1, 3, Packed::Rgb, 0).is_err());
    }

    #[test]
    fn rgba_round_trip_and_scaling() {
        for (rgb, _) in KNOWN {
            let f =
                packed_to_i420(&solid(Packed::Rgb, rgb, 2, 2), 2, 2, 6, Packed::Rgb, 0).unwrap();
            let mut out = Vec::new();
            i420_to_rgba(&f, &mut out);
            for (got, want) in out[..3].iter().zip([rgb.0, rgb.1, rgb.2]) {
                assert!(got.abs_diff(want) <= 3, "{rgb:?} -> {:?}", &out[..4]);
            }
        }
        assert_eq!(fit(3840, 2160, 1920, 1080), (1920, 1080));
        assert_eq!(fit(2560, 1600, 1920, 1080), (1728, 1080));
        assert_eq!(fit(800, 600, 1920, 1080), (800, 600));
        let big = crate::pattern::render(3, 640, 360, 0);
        let small = scale(&big, 320, 180);
        assert_eq!((small.width, small.height), (320, 180));
        // A 2x box downscale of the pattern keeps its mean brightness.
        let mean = |p: &[u8]| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64;
        assert!((mean(big.y()) - mean(small.y())).abs() < 1.0);
    }
}
