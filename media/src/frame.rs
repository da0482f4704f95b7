//! Raw video: one I420 (YUV 4:2:0 planar) image with its capture time.

/// An I420 frame: a full-resolution Y plane followed by quarter-size U and V planes, no padding.
/// The default is an empty (0x0) frame.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VideoFrame {
    pub width: u32,
    pub height: u32,
    /// Y, then U, then V; `width` and `height` are even.
    pub data: Vec<u8>,
    /// Wall-clock microseconds when the frame was captured (see `media::clock`).
    pub capture_ts_us: u64,
}

impl std::fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VideoFrame({}x{} @ {} us)",
            self.width, self.height, self.capture_ts_us
        )
    }
}

impl VideoFrame {
    /// Bytes of an I420 image of this size.
    pub fn i420_len(width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        w * h + 2 * (w / 2) * (h / 2)
    }

    /// A black frame.
    pub fn black(width: u32, height: u32, capture_ts_us: u64) -> Self {
        let luma = (width * height) as usize;
        let mut data = vec![128u8; Self::i420_len(width, height)];
        data[..luma].fill(16);
        Self {
            width,
            height,
            data,
            capture_ts_us,
        }
    }

    pub fn y(&self) -> &[u8] {
        &self.data[..(self.width * self.height) as usize]
    }

    pub fn u(&self) -> &[u8] {
        let luma = (self.width * self.height) as usize;
        let chroma = luma / 4;
        &self.data[luma..luma + chroma]
    }

    pub fn v(&self) -> &[u8] {
        let luma = (self.width * self.height) as usize;
        let chroma = luma / 4;
        &self.data[luma + chroma..]
    }

    /// The three planes, mutable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = (self.width * self.height) as usize;
        let chroma = luma / 4;
        let (y, uv) = self.data.split_at_mut(luma);
        let (u, v) = uv.split_at_mut(chroma);
        (y, u, v)
    }

    /// Copies planes with row strides (as decoders hand them out) into a packed frame.
    pub fn from_strided(
        width: u32,
        height: u32,
        (y, u, v): (&[u8], &[u8], &[u8]),
        (y_stride, u_stride, v_stride): (usize, usize, usize),
        capture_ts_us: u64,
    ) -> Self {
        let (w, h) = (width as usize, height as usize);
        let mut data = Vec::with_capacity(Self::i420_len(width, height));
        for row in 0..h {
            data.extend_from_slice(&y[row * y_stride..row * y_stride + w]);
        }
        for (plane, stride) in [(u, u_stride), (v, v_stride)] {
            for row in 0..h / 2 {
                data.extend_from_slice(&plane[row * stride..row * stride + w / 2]);
            }
        }
        Self {
            width,
            height,
            data,
            capture_ts_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_and_strides() {
        let frame = VideoFrame::black(4, 2, 7);
        assert_eq!(frame.data.len(), 12);
        assert_eq!(frame.y(), &[16; 8]);
        assert_eq!(frame.u(), &[128; 2]);
        assert_eq!(frame.v(), &[128; 2]);
        let y: Vec<u8> = (0..12).collect(); // stride 6, width 4
        let u = [1, 2, 0, 0];
        let v = [3, 4, 0, 0];
        let packed = VideoFrame::from_strided(4, 2, (&y, &u, &v), (6, 4, 4), 0);
        assert_eq!(packed.y(), &[0, 1, 2, 3, 6, 7, 8, 9]);
        assert_eq!(packed.u(), &[1, 2]);
        assert_eq!(packed.v(), &[3, 4]);
    }
}
