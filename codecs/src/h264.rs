//! H.264 with openh264: a real-time encoder (constrained baseline, as WebRTC peers expect, one
//! thread, keyframes on request) and a decoder. Both work in Annex-B byte streams.

use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType,
};
use openh264::formats::YUVSource;
use openh264::OpenH264API;
use openh264_sys2::{
    SBitrateInfo, ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0,
    SPATIAL_LAYER_ALL,
};
use std::os::raw::c_int;

use super::CodecError;
use confab_media::VideoFrame;

/// What the encoder is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    pub bitrate_bps: u32,
    pub max_fps: f32,
    /// Screen content (sharp text, little motion) rather than camera.
    pub screen: bool,
}

/// openh264's knobs that trade CPU for quality. `Default` is what calls use, chosen by measurement
/// (`cargo bench -p confab-codecs --bench h264_tuning`, numbers in NOTES.md).
#[derive(Debug, Clone, Copy)]
pub struct EncoderTuning {
    pub complexity: Complexity,
    /// Encoder threads (0: openh264 picks; 1: the sending thread only).
    pub threads: u16,
    /// An IDR when the scene changes.
    pub scene_change_detect: bool,
    /// Skips static background blocks.
    pub background_detection: bool,
    /// Quantizes flat areas more finely.
    pub adaptive_quantization: bool,
}

impl Default for EncoderTuning {
    fn default() -> Self {
        Self {
            complexity: Complexity::Low,
            threads: 1,
            scene_change_detect: true,
            background_detection: true,
            adaptive_quantization: true,
        }
    }
}

/// A default bitrate for a resolution and rate: about 0.07 bits per pixel, within 150 kbps..4 Mbps
/// (about 1.9 Mbps for 720p30, 480 kbps for 360p30).
pub fn default_bitrate_bps(width: u32, height: u32, fps: u32) -> u32 {
    let bps = f64::from(width) * f64::from(height) * f64::from(fps) * 0.07;
    bps.clamp(150_000.0, 4_000_000.0) as u32
}

/// One encoded picture.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// Annex-B NAL units (with start codes); SPS and PPS precede every keyframe.
    pub data: Vec<u8>,
    pub keyframe: bool,
}

struct I420<'a>(&'a VideoFrame);

impl YUVSource for I420<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width as usize, self.0.height as usize)
    }
    fn strides(&self) -> (usize, usize, usize) {
        let w = self.0.width as usize;
        (w, w / 2, w / 2)
    }
    fn y(&self) -> &[u8] {
        self.0.y()
    }
    fn u(&self) -> &[u8] {
        self.0.u()
    }
    fn v(&self) -> &[u8] {
        self.0.v()
    }
}

pub use openh264::encoder::Complexity;

pub struct H264Encoder {
    encoder: Encoder,
    keyframe_requested: bool,
    bitrate_bps: u32,
}

impl H264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<Self, CodecError> {
        Self::with_tuning(settings, EncoderTuning::default())
    }

    /// An encoder with other CPU/quality trade-offs than calls use (for measuring them).
    pub fn with_tuning(
        settings: EncoderSettings,
        tuning: EncoderTuning,
    ) -> Result<Self, CodecError> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(settings.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(settings.max_fps))
            .usage_type(if settings.screen {
                UsageType::ScreenContentRealTime
            } else {
                UsageType::CameraVideoRealTime
            })
            .rate_control_mode(RateControlMode::Bitrate)
            .complexity(tuning.complexity)
            .scene_change_detect(tuning.scene_change_detect)
            .background_detection(tuning.background_detection)
            .adaptive_quantization(tuning.adaptive_quantization)
            // openh264 only holds the bitrate when it may skip frames.
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .num_threads(tuning.threads);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| CodecError::H264Encode(e.to_string()))?;
        Ok(Self {
            encoder,
            keyframe_requested: false,
            bitrate_bps: settings.bitrate_bps,
        })
    }

    /// Changes the target bitrate from the next frame on, without a keyframe (the rate controller
    /// adapts its quantizer; the stream stays decodable). Bitrates are clamped to 50 kbit/s..20
    /// Mbit/s. Changing the resolution needs a new encoder (and so a keyframe).
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        let bps = bitrate_bps.clamp(50_000, 20_000_000) as c_int;
        // openh264 refuses a layer target above the layer's maximum (encoder_ext.cpp): raise the
        // maximum (of spatial layer 0, the one we encode) before the target, lower it after.
        let max = (
            ENCODER_OPTION_MAX_BITRATE,
            SPATIAL_LAYER_0,
            "maximum bitrate",
        );
        let target = (ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL, "bitrate");
        let order = if bps as u32 > self.bitrate_bps {
            [max, target]
        } else {
            [target, max]
        };
        for (option, layer, what) in order {
            let mut info = SBitrateInfo {
                iLayer: layer,
                iBitrate: bps,
            };
            // SAFETY: `set_option` with ENCODER_OPTION_(MAX_)BITRATE reads one `SBitrateInfo`
            // through the pointer during the call (openh264's welsEncoderExt.cpp); `info` lives
            // on this stack frame for the whole call, and the encoder is initialized (the
            // `Encoder` exists). Neither option changes anything the Rust wrapper relies on.
            #[allow(unsafe_code)]
            let status = unsafe {
                self.encoder
                    .raw_api()
                    .set_option(option, std::ptr::addr_of_mut!(info).cast())
            };
            if status != 0 {
                return Err(CodecError::H264Encode(format!(
                    "openh264 refused a {what} of {bps} bit/s (status {status})"
                )));
            }
        }
        self.bitrate_bps = bps as u32;
        Ok(())
    }

    /// The target bitrate in force.
    pub fn bitrate_bps(&self) -> u32 {
        self.bitrate_bps
    }

    /// The next frame will be a keyframe (a receiver lost the picture).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Encodes one frame; `None` when the encoder skipped it.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Option<EncodedFrame>, CodecError> {
        if frame.width % 2 == 1 || frame.height % 2 == 1 || frame.width < 16 || frame.height < 16 {
            return Err(CodecError::H264Encode(format!(
                "cannot encode a {}x{} frame (even sizes of at least 16x16 only)",
                frame.width, frame.height
            )));
        }
        if std::mem::take(&mut self.keyframe_requested) {
            self.encoder.force_intra_frame();
        }
        let bitstream = self
            .encoder
            .encode(&I420(frame))
            .map_err(|e| CodecError::H264Encode(e.to_string()))?;
        let keyframe = match bitstream.frame_type() {
            FrameType::Skip | FrameType::Invalid => return Ok(None),
            FrameType::IDR | FrameType::I => true,
            FrameType::P | FrameType::IPMixed => false,
        };
        let data = bitstream.to_vec();
        if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(EncodedFrame { data, keyframe }))
    }
}

pub struct H264Decoder {
    decoder: Decoder,
}

impl H264Decoder {
    pub fn new() -> Result<Self, CodecError> {
        let decoder = Decoder::new().map_err(|e| CodecError::H264Decode(e.to_string()))?;
        Ok(Self { decoder })
    }

    /// Decodes one access unit (Annex-B); `None` when it produced no picture yet.
    pub fn decode(&mut self, annexb: &[u8]) -> Result<Option<VideoFrame>, CodecError> {
        let decoded = self
            .decoder
            .decode(annexb)
            .map_err(|e| CodecError::H264Decode(e.to_string()))?;
        Ok(decoded.map(|yuv| {
            let (w, h) = yuv.dimensions();
            VideoFrame::from_strided(
                w as u32,
                h as u32,
                (yuv.y(), yuv.u(), yuv.v()),
                yuv.strides(),
                0,
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::{pattern, quality, stamp};

    #[test]
    fn stamps_survive_a_low_bitrate_round_trip() {
        let (w, h) = (640, 360);
        let mut encoder = H264Encoder::new(EncoderSettings {
            bitrate_bps: 250_000,
            max_fps: 30.0,
            screen: false,
        })
        .unwrap();
        let mut decoder = H264Decoder::new().unwrap();
        let mut psnr = Vec::new();
        let mut skipped = 0;
        for i in 0..30u32 {
            let ts = 1_790_000_000_000_000 + u64::from(i) * 33_333;
            let source = pattern::render(i, w, h, ts);
            let Some(encoded) = encoder.encode(&source).unwrap() else {
                skipped += 1;
                continue;
            };
            assert_eq!(
                encoded.keyframe,
                i == 0,
                "frame {i}: only the first is a keyframe"
            );
            assert!(encoded.data.starts_with(&[0, 0, 0, 1]), "Annex-B");
            let decoded = decoder
                .decode(&encoded.data)
                .unwrap()
                .expect("a picture per frame");
            assert_eq!((decoded.width, decoded.height), (w, h));
            let read = stamp::read(&decoded).expect("stamp readable");
            assert_eq!(
                read,
                stamp::Stamp {
                    index: i,
                    capture_ts_us: ts
                }
            );
            psnr.push(quality::psnr_y(&source, &decoded).unwrap());
        }
        assert!(skipped <= 3, "rate control skipped {skipped} of 30 frames");
        let mean = psnr.iter().sum::<f64>() / psnr.len() as f64;
        assert!(mean > 28.0, "mean PSNR at 250 kbps: {mean}");
    }

    /// Bits per second the encoder produced for frames `range` of the pattern (30 fps), checking
    /// that each decodes and none is a keyframe.
    fn encode_span(
        encoder: &mut H264Encoder,
        decoder: &mut H264Decoder,
        range: std::ops::Range<u32>,
    ) -> f64 {
        let frames = range.len() as f64;
        let mut bits = 0usize;
        for i in range {
            let source =
                pattern::render(i, 640, 360, 1_790_000_000_000_000 + u64::from(i) * 33_333);
            if let Some(encoded) = encoder.encode(&source).unwrap() {
                assert!(
                    !encoded.keyframe,
                    "frame {i}: a bitrate change made a keyframe"
                );
                bits += encoded.data.len() * 8;
                if let Err(err) = decoder.decode(&encoded.data) {
                    panic!(
                        "frame {i} ({} bytes) does not decode: {err}",
                        encoded.data.len()
                    );
                }
            }
        }
        bits as f64 / (frames / 30.0)
    }

    #[test]
    fn the_bitrate_changes_at_runtime_without_a_keyframe() {
        let mut encoder = H264Encoder::new(EncoderSettings {
            bitrate_bps: 600_000,
            max_fps: 30.0,
            screen: false,
        })
        .unwrap();
        let mut decoder = H264Decoder::new().unwrap();
        let first = encoder
            .encode(&pattern::render(0, 640, 360, 1_790_000_000_000_000))
            .unwrap()
            .expect("a first frame");
        assert!(first.keyframe);
        decoder.decode(&first.data).unwrap();
        let high = encode_span(&mut encoder, &mut decoder, 1..90);
        encoder.set_bitrate(200_000).unwrap();
        assert_eq!(encoder.bitrate_bps(), 200_000);
        // Give the rate controller a second to settle, then measure two.
        encode_span(&mut encoder, &mut decoder, 90..120);
        let low = encode_span(&mut encoder, &mut decoder, 120..180);
        encoder.set_bitrate(1_500_000).unwrap();
        encode_span(&mut encoder, &mut decoder, 180..210);
        let back = encode_span(&mut encoder, &mut decoder, 210..270);
        println!("high {high:.0} bit/s, low {low:.0} bit/s, back {back:.0} bit/s");
        assert!(
            low < 0.5 * high,
            "lowering the target: {high:.0} -> {low:.0} bit/s"
        );
        assert!(low < 300_000.0, "a 200 kbit/s target gave {low:.0} bit/s");
        assert!(
            back > 2.0 * low,
            "raising it again: {low:.0} -> {back:.0} bit/s"
        );
    }

    #[test]
    fn keyframe_on_request_and_bad_sizes_refused() {
        let mut encoder = H264Encoder::new(EncoderSettings {
            bitrate_bps: 300_000,
            max_fps: 30.0,
            screen: false,
        })
        .unwrap();
        for i in 0..3 {
            encoder.encode(&pattern::render(i, 320, 180, 0)).unwrap();
        }
        encoder.request_keyframe();
        let frame = encoder
            .encode(&pattern::render(3, 320, 180, 0))
            .unwrap()
            .unwrap();
        assert!(frame.keyframe);
        assert!(
            !encoder
                .encode(&pattern::render(4, 320, 180, 0))
                .unwrap()
                .unwrap()
                .keyframe
        );
        assert!(encoder.encode(&VideoFrame::black(8, 8, 0)).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut decoder = H264Decoder::new().unwrap();
        let mut garbage = vec![0, 0, 0, 1, 0x65];
        garbage.extend((0..2000u32).map(|i| (i * 7919 % 251) as u8));
        // Either an error or no picture; never a panic.
        let _ = decoder.decode(&garbage);
        assert!(decoder.decode(&[]).map(|f| f.is_none()).unwrap_or(true));
    }
}
