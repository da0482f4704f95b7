//! Pixel-format conversion and scaling into I420 (BT.601, limited range, as H.264 peers expect):
//! packed RGB/BGR/RGBA/BGRA (screens, decoded MJPEG), YUYV and NV12 (cameras), grey; and back to
//! RGBA for display. Odd sizes are cropped to even; chroma is the average of each 2x2 block.

use std::cell::RefCell;

use yuvutils_rs::{
    BufferStoreMut, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix,
};

use super::VideoFrame;

/// A frame of this size whose bytes the caller overwrites all of: zeroed by the allocator (fresh
/// pages for a large frame), not filled with black first.
fn unfilled(width: u32, height: u32, capture_ts_us: u64) -> VideoFrame {
    VideoFrame {
        width,
        height,
        data: vec![0; VideoFrame::i420_len(width, height)],
        capture_ts_us,
    }
}

/// Byte layout of a packed RGB-family pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    Rgb,
    Bgr,
    Rgba,
    /// B, G, R, then a byte ignored (X11's 32-bit pixels, least significant byte first).
    Bgra,
}

impl Packed {
    fn bytes(self) -> usize {
        match self {
            Self::Rgb | Self::Bgr => 3,
            Self::Rgba | Self::Bgra => 4,
        }
    }
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
    let mut frame = VideoFrame::default();
    let image = (data, width, height, stride, layout);
    packed_to_i420_into(image, capture_ts_us, &mut frame)?;
    Ok(frame)
}

/// As `packed_to_i420`, into `out`, whose buffer is reused when it is large enough: a large
/// screen's full-size frame, which only lives until it is scaled down, then costs no allocation
/// and no fresh pages (clearing 12 MB of them a 4K frame was 4% of a 4K share). `out` is left
/// as it was when the image's size is wrong; its pixels are undefined if the conversion fails.
pub fn packed_to_i420_into(
    (data, width, height, stride, layout): (&[u8], u32, u32, usize, Packed),
    capture_ts_us: u64,
    out: &mut VideoFrame,
) -> Result<(), SizeError> {
    let bpp = layout.bytes();
    let needed = stride * (height as usize).saturating_sub(1) + width as usize * bpp;
    let (w, h) = check(
        data,
        width,
        height,
        needed.max(stride.min(data.len())),
        "RGB",
    )?;
    // Rows that overlap (a device's stride shorter than its row) are not an image.
    let short_rows = || SizeError {
        width,
        height,
        format: "RGB with rows a stride apart",
        needed: width as usize * bpp * height as usize,
        got: data.len().min(stride * height as usize),
    };
    let stride32 = u32::try_from(stride).map_err(|_| short_rows())?;
    if stride < width as usize * bpp {
        return Err(short_rows());
    }
    let len = VideoFrame::i420_len(w, h);
    let mut buffer = std::mem::take(&mut out.data);
    if buffer.capacity() < len {
        // Too small to reuse: a fresh zeroed allocation (fresh pages need no filling).
        buffer = vec![0; len];
    } else {
        buffer.resize(len, 0);
    }
    let mut frame = VideoFrame {
        width: w,
        height: h,
        data: buffer,
        capture_ts_us,
    };
    let hu = h as usize;
    let (yp, up, vp) = frame.planes_mut();
    let mut planes = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(yp),
        y_stride: w,
        u_plane: BufferStoreMut::Borrowed(up),
        u_stride: w / 2,
        v_plane: BufferStoreMut::Borrowed(vp),
        v_stride: w / 2,
        width: w,
        height: h,
    };
    // The library takes whole strides (it skips a pair of rows that is short); a last row
    // without its padding is padded here.
    let full = stride * hu;
    let padded: Vec<u8>;
    let rows = if data.len() >= full {
        &data[..full]
    } else {
        padded = [data, &vec![0; full - data.len()]].concat();
        &padded
    };
    let convert = match layout {
        Packed::Rgb => yuvutils_rs::rgb_to_yuv420,
        Packed::Bgr => yuvutils_rs::bgr_to_yuv420,
        Packed::Rgba => yuvutils_rs::rgba_to_yuv420,
        Packed::Bgra => yuvutils_rs::bgra_to_yuv420,
    };
    let converted = convert(
        &mut planes,
        rows,
        stride32,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        // Rounded to the nearest level; the default mode errs by up to 1.14 levels (tests).
        YuvConversionMode::Professional,
    )
    .map_err(|err| {
        tracing::warn!(%err, "RGB image not converted");
        short_rows()
    });
    *out = frame;
    converted
}

/// YUYV 4:2:2 (Y0 U Y1 V) to I420: chroma is the rounded-up average of each two rows'.
///
/// Whole rows at a time: the two rows averaged in one pass (a vector average), then the bytes
/// picked out with `even_bytes`; 720p in 0.54-0.59 ms where picking pixel by pixel took 1.60-1.70
/// (`cargo bench -p confab-media --bench convert`). yuvutils-rs has a SIMD YUYV to I420, but it
/// takes chroma from every other row only.
pub fn yuyv_to_i420(
    data: &[u8],
    width: u32,
    height: u32,
    capture_ts_us: u64,
) -> Result<VideoFrame, SizeError> {
    let stride = width as usize * 2;
    let (w, h) = check(data, width, height, stride * height as usize, "YUYV")?;
    let mut frame = unfilled(w, h, capture_ts_us);
    let (wu, hu) = (w as usize, h as usize);
    let row = |y: usize| &data[y * stride..y * stride + wu * 2];
    let (yp, up, vp) = frame.planes_mut();
    for (y, luma) in yp.chunks_exact_mut(wu).enumerate() {
        even_bytes(luma, row(y));
    }
    let rows = up.chunks_exact_mut(wu / 2).zip(vp.chunks_exact_mut(wu / 2));
    let (mut avg, mut uv) = (vec![0u8; wu * 2], vec![0u8; wu]);
    for (y, (u, v)) in rows.take(hu / 2).enumerate() {
        for ((m, a), b) in avg.iter_mut().zip(row(2 * y)).zip(row(2 * y + 1)) {
            *m = ((u16::from(*a) + u16::from(*b) + 1) >> 1) as u8;
        }
        // Y U Y V -> U V -> U and V.
        even_bytes(&mut uv, &avg[1..]);
        even_bytes(u, &uv);
        even_bytes(v, &uv[1..]);
    }
    Ok(frame)
}

/// Every other byte of `src` into `dst` (YUYV's luma): eight bytes at a time as a word whose
/// even bytes are squeezed together (the compiler leaves a byte gather scalar), then the rest.
fn even_bytes(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(8)) {
        let mut x = u64::from_le_bytes(s.try_into().expect("8 bytes")) & 0x00ff_00ff_00ff_00ff;
        x = (x | x >> 8) & 0x0000_ffff_0000_ffff;
        x = (x | x >> 16) & 0xffff_ffff;
        d.copy_from_slice(&(x as u32).to_le_bytes());
    }
    let done = (dst.len() / 4).min(src.len() / 8) * 4;
    for (d, s) in dst[done..]
        .iter_mut()
        .zip(src.iter().skip(done * 2).step_by(2))
    {
        *d = *s;
    }
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
    let mut frame = unfilled(w, h, capture_ts_us);
    let (wu, hu) = (w as usize, h as usize);
    let (yp, up, vp) = frame.planes_mut();
    for (dst, src) in yp.chunks_exact_mut(wu).zip(data.chunks(wf)) {
        dst.copy_from_slice(&src[..wu]);
    }
    let uv_rows = data[wf * hf..].chunks(wf).take(hu / 2);
    let rows = up.chunks_exact_mut(wu / 2).zip(vp.chunks_exact_mut(wu / 2));
    for ((u, v), src) in rows.zip(uv_rows) {
        even_bytes(u, src);
        even_bytes(v, &src[1..]);
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

/// The luma plane (BT.601, limited range) of packed RGB, as `packed_to_i420` computes it.
pub fn rgb_luma(rgb: &[u8]) -> Vec<u8> {
    let n = rgb.len() / 3;
    if n == 0 {
        return Vec::new();
    }
    // Through the conversion itself: the row twice (a frame is two rows at least), with a pixel
    // more when it is odd (a frame's width is even).
    let width = (n + 1) & !1;
    let mut row = rgb[..n * 3].to_vec();
    row.resize(width * 3, 0);
    let two_rows = [&row[..], &row[..]].concat();
    let width = u32::try_from(width).expect("fewer than 4G pixels");
    let frame = packed_to_i420(&two_rows, width, 2, width as usize * 3, Packed::Rgb, 0)
        .expect("two whole rows");
    frame.y()[..n].to_vec()
}

/// I420 to RGBA (for textures). Works on 2x2 blocks: the chroma terms are computed once for
/// the four pixels that share them.
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

/// Fixed-point weights: each output sample's weights sum to `ONE` (2^`ONE_BITS`).
const ONE_BITS: u32 = 14;
const ONE: u32 = 1 << ONE_BITS;
/// Fractional bits the vertical pass keeps for the horizontal one.
const MID_SHIFT: u32 = 6;

/// How the output samples along one axis (`to` of them, from `from` source samples) take their
/// source samples: output `d` covers `taps` samples from `first[d]`, weighted by
/// `weights[d * taps..][..taps]`: the share of each sample it covers (fractional at the edges) in
/// `ONE`ths, summing to `ONE` (zero for the taps past its area).
struct Axis {
    from: usize,
    to: usize,
    taps: usize,
    first: Vec<usize>,
    weights: Vec<u32>,
}

impl Axis {
    fn new(from: usize, to: usize) -> Self {
        let ratio = from as f64 / to as f64;
        let spans: Vec<(usize, Vec<u32>)> = (0..to)
            .map(|d| {
                let (lo, hi) = (d as f64 * ratio, ((d + 1) as f64 * ratio).min(from as f64));
                let first = (lo.floor() as usize).min(from - 1);
                let last = (hi.ceil() as usize).clamp(first + 1, from);
                let mut weights: Vec<u32> = (first..last)
                    .map(|i| {
                        let cover = hi.min(i as f64 + 1.0) - lo.max(i as f64);
                        (cover.max(0.0) / (hi - lo) * f64::from(ONE)).round() as u32
                    })
                    .collect();
                // Rounding may leave the sum a unit off: the largest weight takes the difference.
                let sum: u32 = weights.iter().sum();
                let largest = (0..weights.len())
                    .max_by_key(|&i| weights[i])
                    .expect("at least one sample");
                weights[largest] = (weights[largest] + ONE).saturating_sub(sum);
                (first, weights)
            })
            .collect();
        let taps = spans.iter().map(|(_, w)| w.len()).max().unwrap_or(1);
        let mut weights = Vec::with_capacity(to * taps);
        for (_, w) in &spans {
            weights.extend_from_slice(w);
            weights.resize(weights.len() + taps - w.len(), 0);
        }
        Self {
            from,
            to,
            taps,
            first: spans.iter().map(|&(first, _)| first).collect(),
            weights,
        }
    }
}

/// The axes scaled lately (a frame's luma and chroma planes, both ways), kept between frames.
#[derive(Default)]
struct Scaler {
    axes: Vec<std::rc::Rc<Axis>>,
    /// The vertical pass's output row (and `taps` zeros past it, for the last outputs' unused
    /// taps).
    mid: Vec<u32>,
}

impl Scaler {
    fn axis(&mut self, from: usize, to: usize) -> std::rc::Rc<Axis> {
        if let Some(axis) = self.axes.iter().find(|a| (a.from, a.to) == (from, to)) {
            return axis.clone();
        }
        if self.axes.len() >= 8 {
            self.axes.remove(0);
        }
        let axis = std::rc::Rc::new(Axis::new(from, to));
        self.axes.push(axis.clone());
        axis
    }
}

thread_local! {
    static SCALER: RefCell<Scaler> = RefCell::new(Scaler::default());
}

/// One output row of the horizontal pass with `TAPS` taps (a constant, so that the sum unrolls).
fn horizontal<const TAPS: usize>(mid: &[u32], cols: &Axis, out: &mut [u8], shift: u32) {
    for ((o, &first), weights) in out
        .iter_mut()
        .zip(&cols.first)
        .zip(cols.weights.chunks_exact(TAPS))
    {
        let m = &mid[first..first + TAPS];
        let sum: u32 = (0..TAPS).map(|k| weights[k] * m[k]).sum();
        *o = ((sum + (1 << (shift - 1))) >> shift) as u8;
    }
}

/// Box filter: each destination pixel is the average of the source area it covers (fractional
/// at the edges). The vertical pass runs first, over whole rows (the loop the compiler
/// vectorizes), keeping `MID_SHIFT` fractional bits; then the horizontal one on the fewer rows.
/// A 2:1 halving comes out as the rounded average of each 2x2 block.
fn scale_plane(src: &[u8], sw: usize, sh: usize, dst: &mut [u8], dw: usize, dh: usize) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 {
        return;
    }
    if (sw, sh) == (2 * dw, 2 * dh) {
        // Halving (a 4K screen to 1080p, a rung of half the size): each 2x2 block's rounded
        // average, the same as the weights give, in one pass.
        for (out, rows) in dst.chunks_exact_mut(dw).zip(src.chunks_exact(2 * sw)) {
            let (a, b) = rows.split_at(sw);
            for ((o, a), b) in out.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)) {
                let sum = u16::from(a[0]) + u16::from(a[1]) + u16::from(b[0]) + u16::from(b[1]);
                *o = ((sum + 2) >> 2) as u8;
            }
        }
        return;
    }
    SCALER.with_borrow_mut(|scaler| {
        let (rows, cols) = (scaler.axis(sh, dh), scaler.axis(sw, dw));
        let mid = &mut scaler.mid;
        mid.resize(sw + cols.taps, 0);
        // 255 * ONE >> MID_SHIFT, times ONE, fits in u32.
        let shift = 2 * ONE_BITS - MID_SHIFT;
        for ((&first, weights), out) in rows
            .first
            .iter()
            .zip(rows.weights.chunks_exact(rows.taps))
            .zip(dst.chunks_exact_mut(dw))
        {
            let acc = &mut mid[..sw];
            acc.fill(0);
            for (k, &w) in weights.iter().enumerate().filter(|&(_, &w)| w > 0) {
                let row = &src[(first + k) * sw..(first + k + 1) * sw];
                for (m, &p) in acc.iter_mut().zip(row) {
                    *m += w * u32::from(p);
                }
            }
            for m in acc.iter_mut() {
                *m >>= MID_SHIFT;
            }
            match cols.taps {
                1 => horizontal::<1>(mid, &cols, out, shift),
                2 => horizontal::<2>(mid, &cols, out, shift),
                3 => horizontal::<3>(mid, &cols, out, shift),
                4 => horizontal::<4>(mid, &cols, out, shift),
                5 => horizontal::<5>(mid, &cols, out, shift),
                taps => {
                    for ((o, &first), weights) in out
                        .iter_mut()
                        .zip(&cols.first)
                        .zip(cols.weights.chunks_exact(taps))
                    {
                        let sum: u32 = weights
                            .iter()
                            .zip(&mid[first..])
                            .map(|(&w, &m)| w * m)
                            .sum();
                        *o = ((sum + (1 << (shift - 1))) >> shift) as u8;
                    }
                }
            }
        }
    });
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

    const KNOWN: [Rgb; 6] = [
        (0, 0, 0),
        (255, 255, 255),
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
        (128, 128, 128),
    ];

    /// (Y, U, V) of an RGB colour by BT.601's definition, limited range, unrounded.
    fn bt601((r, g, b): Rgb) -> (f64, f64, f64) {
        let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
        (
            16.0 + 219.0 / 255.0 * (0.299 * r + 0.587 * g + 0.114 * b),
            128.0 + 224.0 / 255.0 * (-0.168_736 * r - 0.331_264 * g + 0.5 * b),
            128.0 + 224.0 / 255.0 * (0.5 * r - 0.418_688 * g - 0.081_312 * b),
        )
    }

    fn solid(layout: Packed, (r, g, b): (u8, u8, u8), w: usize, h: usize) -> Vec<u8> {
        let px: Vec<u8> = match layout {
            Packed::Rgb => vec![r, g, b],
            Packed::Bgr => vec![b, g, r],
            Packed::Rgba => vec![r, g, b, 255],
            Packed::Bgra => vec![b, g, r, 0],
        };
        px.iter().copied().cycle().take(px.len() * w * h).collect()
    }

    #[test]
    fn packed_colours_convert_to_known_yuv() {
        for layout in [Packed::Rgb, Packed::Bgr, Packed::Rgba, Packed::Bgra] {
            for rgb in KNOWN {
                let data = solid(layout, rgb, 4, 2);
                let f = packed_to_i420(&data, 4, 2, 4 * layout.bytes(), layout, 0).unwrap();
                let got = [f.y()[0], f.u()[0], f.v()[0]];
                let (y, u, v) = bt601(rgb);
                // Rounded to the nearest level: red's luma is 81 (81.48), not libyuv's 82.
                for (got, want) in got.into_iter().zip([y, u, v]) {
                    assert!(
                        (f64::from(got) - want).abs() <= 0.5,
                        "{layout:?} {rgb:?}: {got:?} against {:?}",
                        (y, u, v)
                    );
                }
                assert!(f.y().iter().all(|&l| l == got[0]), "{layout:?} {rgb:?}");
            }
        }
        let luma = rgb_luma(&solid(Packed::Rgb, (255, 0, 0), 7, 1));
        assert_eq!(luma, [81; 7], "rgb_luma agrees with the conversion");
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
        // A stride shorter than a row (a broken device) is an error, not a panic.
        let err = packed_to_i420(&[0; 64], 4, 4, 8, Packed::Rgba, 0).unwrap_err();
        assert_eq!(err.needed, 64);
    }

    #[test]
    fn a_conversion_into_a_frame_reuses_its_buffer() {
        let big = solid(Packed::Bgra, (200, 30, 90), 64, 36);
        let small = solid(Packed::Bgra, (10, 220, 40), 32, 18);
        let mut out = VideoFrame::default();
        packed_to_i420_into((&big, 64, 36, 256, Packed::Bgra), 1, &mut out).unwrap();
        assert_eq!(
            out,
            packed_to_i420(&big, 64, 36, 256, Packed::Bgra, 1).unwrap()
        );
        let buffer = out.data.as_ptr();
        // A smaller image and then the same size again: no new allocation, the same pixels as
        // a fresh conversion gives.
        packed_to_i420_into((&small, 32, 18, 128, Packed::Bgra), 2, &mut out).unwrap();
        assert_eq!(
            out,
            packed_to_i420(&small, 32, 18, 128, Packed::Bgra, 2).unwrap()
        );
        packed_to_i420_into((&big, 64, 36, 256, Packed::Bgra), 3, &mut out).unwrap();
        assert_eq!(
            out,
            packed_to_i420(&big, 64, 36, 256, Packed::Bgra, 3).unwrap()
        );
        assert_eq!(out.data.as_ptr(), buffer);
        // An image of the wrong size leaves the frame as it was.
        let before = out.clone();
        let err = packed_to_i420_into((&small, 64, 36, 256, Packed::Bgra), 4, &mut out);
        assert!(err.is_err());
        assert_eq!(out, before);
    }

    #[test]
    fn rgba_round_trip_and_scaling() {
        for rgb in KNOWN {
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

    proptest::proptest! {
        /// Any size (odd ones crop), any row padding, any pixels: every luma sample is BT.601's
        /// value rounded to the nearest level (0.507 of a level at worst over all 2^24 colours in the
        /// library's precise mode; its default "balanced" mode is off by up to 1.14, worse than
        /// libyuv's 8-bit formula's 0.76), and every chroma sample that of its 2x2 block's
        /// average colour, within a level (the library averages in two rounded steps). The SIMD
        /// paths work in chunks of 8-32 pixels; these sizes cover their remainders.
        #[test]
        fn packed_pixels_convert_as_bt601_defines(
            width in 2u32..77,
            height in 2u32..9,
            pad in 0usize..9,
            layout in proptest::sample::select(vec![Packed::Rgb, Packed::Bgr, Packed::Rgba, Packed::Bgra]),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let bpp = layout.bytes();
            let stride = width as usize * bpp + pad;
            let mut state = seed | 1;
            let data: Vec<u8> = (0..stride * height as usize)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 32) as u8
                })
                .collect();
            let f = packed_to_i420(&data, width, height, stride, layout, 0).unwrap();
            let (w, h) = (f.width as usize, f.height as usize);
            let rgb_at = |x: usize, y: usize| {
                let p = &data[y * stride + x * bpp..];
                match layout {
                    Packed::Rgb | Packed::Rgba => (p[0], p[1], p[2]),
                    Packed::Bgr | Packed::Bgra => (p[2], p[1], p[0]),
                }
            };
            for y in 0..h {
                for x in 0..w {
                    let want = bt601(rgb_at(x, y)).0;
                    let got = f64::from(f.y()[y * w + x]);
                    proptest::prop_assert!((got - want).abs() <= 0.51, "Y at {x},{y}: {got} against {want}");
                }
            }
            for cy in 0..h / 2 {
                for cx in 0..w / 2 {
                    let block = [(0, 0), (1, 0), (0, 1), (1, 1)].map(|(dx, dy)| rgb_at(2 * cx + dx, 2 * cy + dy));
                    let avg = |c: fn(&Rgb) -> u8| {
                        (block.iter().map(|p| u32::from(c(p))).sum::<u32>() as f64 / 4.0).round() as u8
                    };
                    let (_, u, v) = bt601((avg(|p| p.0), avg(|p| p.1), avg(|p| p.2)));
                    let c = cy * (w / 2) + cx;
                    let (gu, gv) = (f64::from(f.u()[c]), f64::from(f.v()[c]));
                    proptest::prop_assert!((gu - u).abs() <= 1.5 && (gv - v).abs() <= 1.5,
                        "chroma at {cx},{cy}: {gu},{gv} against {u},{v}");
                }
            }
        }

        /// Halving any even-sized frame averages each 2x2 block (within a level: the filter rounds
        /// after its horizontal pass and after its vertical one); any other downscale keeps the
        /// picture's mean level and stays within the range of the source area it covers.
        #[test]
        fn a_downscale_averages_the_area_each_pixel_covers(
            half_w in 1u32..60,
            half_h in 1u32..20,
            seed in proptest::prelude::any::<u32>(),
            to_w in 1u32..60,
            to_h in 1u32..20,
        ) {
            let (w, h) = (half_w * 4, half_h * 4);
            let mut frame = VideoFrame::black(w, h, 0);
            let mut state = seed | 1;
            for b in frame.data.iter_mut() {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = state as u8;
            }
            let half = scale(&frame, w / 2, h / 2);
            let (sy, hy) = (frame.y(), half.y());
            for y in 0..(h / 2) as usize {
                for x in 0..(w / 2) as usize {
                    let at = |dx: usize, dy: usize| f64::from(sy[(2 * y + dy) * w as usize + 2 * x + dx]);
                    let want = (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1)) / 4.0;
                    let got = f64::from(hy[y * (w / 2) as usize + x]);
                    proptest::prop_assert!((got - want).abs() <= 0.5, "{x},{y}: {got} against {want}");
                }
            }
            let (tw, th) = ((to_w * 2).min(w), (to_h * 2).min(h));
            let small = scale(&frame, tw, th);
            proptest::prop_assert_eq!((small.width, small.height), (tw, th));
            let mean = |p: &[u8]| p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64;
            proptest::prop_assert!((mean(frame.y()) - mean(small.y())).abs() < 4.0);
            let (lo, hi) = (sy.iter().min().copied().unwrap(), sy.iter().max().copied().unwrap());
            proptest::prop_assert!(small.y().iter().all(|&v| (lo..=hi).contains(&v)));
        }

        /// Any size (odd ones crop) and any bytes: YUYV's luma is its Y samples and its chroma
        /// each 2x2 block's two samples averaged, rounding up; NV12's planes are its own, split.
        /// The sizes cover the vectorized loops' remainders.
        #[test]
        fn camera_formats_split_into_planes(
            width in 2u32..77,
            height in 2u32..9,
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 76 * 8 * 2),
        ) {
            let (wf, hf) = (width as usize, height as usize);
            let data = &bytes[..wf * hf * 2];
            let (w, h) = (wf & !1, hf & !1);
            let (cw, ch) = (w / 2, h / 2);

            let f = yuyv_to_i420(data, width, height, 7).unwrap();
            proptest::prop_assert_eq!((f.width as usize, f.height as usize, f.capture_ts_us), (w, h, 7));
            let at = |x: usize, y: usize| data[y * wf * 2 + x];
            for y in 0..h {
                for x in 0..w {
                    proptest::prop_assert_eq!(f.y()[y * w + x], at(2 * x, y), "Y at {},{}", x, y);
                }
            }
            for cy in 0..ch {
                for cx in 0..cw {
                    let avg = |o: usize| ((u16::from(at(4 * cx + o, 2 * cy)) + u16::from(at(4 * cx + o, 2 * cy + 1))).div_ceil(2)) as u8;
                    proptest::prop_assert_eq!((f.u()[cy * cw + cx], f.v()[cy * cw + cx]), (avg(1), avg(3)), "chroma at {},{}", cx, cy);
                }
            }

            let f = nv12_to_i420(data, width, height, 7).unwrap();
            proptest::prop_assert_eq!((f.width as usize, f.height as usize), (w, h));
            for y in 0..h {
                proptest::prop_assert_eq!(&f.y()[y * w..(y + 1) * w], &data[y * wf..y * wf + w]);
            }
            let uv = &data[wf * hf..];
            for cy in 0..ch {
                for cx in 0..cw {
                    let want = (uv[cy * wf + 2 * cx], uv[cy * wf + 2 * cx + 1]);
                    proptest::prop_assert_eq!((f.u()[cy * cw + cx], f.v()[cy * cw + cx]), want, "chroma at {},{}", cx, cy);
                }
            }
        }
    }
}
