//! H.264: openh264's real-time encoder (constrained baseline, as WebRTC peers expect, one
//! thread, keyframes on request, deblocking while it pays), and a decoder: FFmpeg's when the
//! system has libavcodec (`ffmpeg.rs`, loaded at run time), otherwise openh264's. All work in
//! Annex-B byte streams.

mod ffmpeg;
mod raw;

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use openh264_sys2::{
    SBitrateInfo, ENCODER_OPTION_BITRATE, ENCODER_OPTION_MAX_BITRATE, SPATIAL_LAYER_0,
    SPATIAL_LAYER_ALL,
};
use std::os::raw::c_int;

use super::CodecError;
use confab_media::VideoFrame;
use ffmpeg::FfmpegDecoder;
use raw::{Coded, Params, RawEncoder};

/// What the encoder is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderSettings {
    pub bitrate_bps: u32,
    pub max_fps: f32,
    /// Screen content (sharp text, little motion) rather than camera.
    pub screen: bool,
}

/// openh264's motion search and mode decision effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Complexity {
    Low,
    Medium,
    High,
}

impl Complexity {
    fn to_c(self) -> c_int {
        (match self {
            Self::Low => openh264_sys2::LOW_COMPLEXITY,
            Self::Medium => openh264_sys2::MEDIUM_COMPLEXITY,
            Self::High => openh264_sys2::HIGH_COMPLEXITY,
        }) as c_int
    }
}

/// When the encoder runs H.264's in-loop deblocking filter (and so the far end's decoder too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deblocking {
    On,
    Off,
    /// On while the quantizer is coarse enough for block edges to show (`DeblockingPolicy`).
    ByQuantizer,
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
    pub deblocking: Deblocking,
}

impl Default for EncoderTuning {
    fn default() -> Self {
        Self {
            complexity: Complexity::Low,
            threads: 1,
            scene_change_detect: true,
            background_detection: true,
            adaptive_quantization: true,
            deblocking: Deblocking::ByQuantizer,
        }
    }
}

/// Whether deblocking pays, from the quantizers of the frames encoded. The filter smooths block
/// edges, which show at coarse quantizers; at fine ones its thresholds (alpha and beta of H.264's
/// table 8-16) let almost nothing through, yet it still costs ~10% of the encoder's CPU and ~30% of
/// the decoder's (`h264_tuning` bench: at QP 19 luma PSNR is 0.5 dB *higher* without it; at QP 42,
/// 0.2-0.5 dB lower). x264's `fastdecode` tune turns it off for the same reason. Turning it on or
/// off needs a new encoder (openh264 sets it at initialization), so a keyframe: the quantizer is
/// judged over a window of frames with a gap between the thresholds, and on a link short of bits
/// the change waits (`H264Encoder::allow_own_keyframes`).
#[derive(Debug, Clone)]
pub struct DeblockingPolicy {
    on: bool,
    qp_sum: u64,
    frames: u32,
}

impl DeblockingPolicy {
    /// Frames whose mean quantizer is judged (2 s at 30 fps).
    pub const WINDOW: u32 = 60;
    /// Off when a window's mean quantizer is at most this (alpha <= 12, beta <= 4 of 255).
    pub const OFF_AT_MOST: f64 = 24.0;
    /// On again when it is at least this.
    pub const ON_FROM: f64 = 28.0;

    /// Starts with the filter on: nothing is known of the content yet.
    pub fn new() -> Self {
        Self {
            on: true,
            qp_sum: 0,
            frames: 0,
        }
    }

    /// Whether the filter should be on now.
    pub fn wants_on(&self) -> bool {
        self.on
    }

    /// One encoded frame's mean quantizer.
    pub fn observe(&mut self, qp: u32) {
        self.qp_sum += u64::from(qp);
        self.frames += 1;
        if self.frames < Self::WINDOW {
            return;
        }
        let mean = self.qp_sum as f64 / f64::from(self.frames);
        if mean <= Self::OFF_AT_MOST {
            self.on = false;
        } else if mean >= Self::ON_FROM {
            self.on = true;
        }
        self.qp_sum = 0;
        self.frames = 0;
    }
}

impl Default for DeblockingPolicy {
    fn default() -> Self {
        Self::new()
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
    /// The frame's mean quantizer (0-51), when the encoder tells it.
    pub qp: Option<u32>,
    /// Whether it was deblocked.
    pub deblocking: bool,
}

pub struct H264Encoder {
    /// Made on the first frame, and again when the frame size or the deblocking changes.
    encoder: Option<RawEncoder>,
    params: Params,
    tuning: EncoderTuning,
    policy: DeblockingPolicy,
    /// Whether a deblocking change may make a keyframe of its own (the link has room for one),
    /// or must wait for a new size (a new encoder).
    own_keyframes: bool,
    keyframe_requested: bool,
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
        let params = Params {
            width: 0,
            height: 0,
            bitrate_bps: settings.bitrate_bps.clamp(50_000, 20_000_000),
            max_fps: settings.max_fps,
            usage_type: (if settings.screen {
                openh264_sys2::SCREEN_CONTENT_REAL_TIME
            } else {
                openh264_sys2::CAMERA_VIDEO_REAL_TIME
            }) as c_int,
            rc_mode: openh264_sys2::RC_BITRATE_MODE as c_int,
            complexity: tuning.complexity.to_c(),
            threads: tuning.threads,
            scene_change_detect: tuning.scene_change_detect,
            background_detection: tuning.background_detection,
            adaptive_quantization: tuning.adaptive_quantization,
            deblocking: tuning.deblocking != Deblocking::Off,
        };
        Ok(Self {
            encoder: None,
            params,
            tuning,
            policy: DeblockingPolicy::new(),
            own_keyframes: true,
            keyframe_requested: false,
        })
    }

    /// Goes on with what an earlier encoder learned of the content (a sender makes a new encoder
    /// for each new size): its first keyframe is deblocked as the policy says.
    pub fn with_policy(mut self, policy: DeblockingPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> &DeblockingPolicy {
        &self.policy
    }

    /// Whether a change of deblocking may send a keyframe of its own (default: yes). A sender
    /// whose link is short of bits says no: the change then waits for the link to have room, or
    /// for a new size (the new encoder starts as the policy says).
    pub fn allow_own_keyframes(&mut self, allowed: bool) {
        self.own_keyframes = allowed;
    }

    pub fn bitrate_bps(&self) -> u32 {
        self.params.bitrate_bps
    }

    /// Whether the frames encoded now are deblocked.
    pub fn deblocking(&self) -> bool {
        self.params.deblocking
    }

    /// The next frame will be a keyframe (a receiver lost the picture).
    pub fn request_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Changes the target bitrate from the next frame on, without a keyframe (the rate controller
    /// adapts its quantizer; the stream stays decodable). Bitrates are clamped to 50 kbit/s..20
    /// Mbit/s. Changing the resolution needs a new encoder (and so a keyframe).
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), CodecError> {
        let bps = bitrate_bps.clamp(50_000, 20_000_000);
        if let Some(encoder) = &mut self.encoder {
            apply_bitrate(encoder, self.params.bitrate_bps, bps)?;
        }
        self.params.bitrate_bps = bps;
        Ok(())
    }

    /// Whether the encoder must be made anew for this frame.
    fn needs_new_encoder(&mut self, frame: &VideoFrame) -> bool {
        let resized = (frame.width, frame.height) != (self.params.width, self.params.height);
        if self.encoder.is_none() || resized {
            self.params.width = frame.width;
            self.params.height = frame.height;
            return true;
        }
        // Not even at a keyframe the call needs anyway: a new encoder starts its rate control
        // cold, and its first keyframe is larger than a running one's.
        self.tuning.deblocking == Deblocking::ByQuantizer
            && self.policy.wants_on() != self.params.deblocking
            && self.own_keyframes
    }

    /// Encodes one frame; `None` when the encoder skipped it.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Option<EncodedFrame>, CodecError> {
        if frame.width % 2 == 1 || frame.height % 2 == 1 || frame.width < 16 || frame.height < 16 {
            return Err(CodecError::H264Encode(format!(
                "cannot encode a {}x{} frame (even sizes of at least 16x16 only)",
                frame.width, frame.height
            )));
        }
        if self.needs_new_encoder(frame) {
            if self.tuning.deblocking == Deblocking::ByQuantizer {
                self.params.deblocking = self.policy.wants_on();
            }
            // A new encoder starts with a keyframe.
            self.keyframe_requested = false;
            self.encoder = None;
            self.encoder = Some(RawEncoder::new(self.params)?);
        }
        let encoder = self
            .encoder
            .as_mut()
            .expect("invariant: made above when missing");
        if std::mem::take(&mut self.keyframe_requested) {
            encoder.force_intra_frame();
        }
        let mut data = Vec::new();
        let keyframe = match encoder.encode(frame, &mut data)? {
            Coded::Skipped => return Ok(None),
            Coded::Keyframe => true,
            Coded::Delta => false,
        };
        let qp = encoder.last_qp();
        if let Some(qp) = qp {
            self.policy.observe(qp);
        }
        Ok(Some(EncodedFrame {
            data,
            keyframe,
            qp,
            deblocking: self.params.deblocking,
        }))
    }
}

/// Sets a running encoder's target bitrate from `from` to `to` bit/s.
fn apply_bitrate(encoder: &mut RawEncoder, from: u32, to: u32) -> Result<(), CodecError> {
    let bps = to as c_int;
    // openh264 refuses a layer target above the layer's maximum (encoder_ext.cpp): raise the
    // maximum (of spatial layer 0, the one we encode) before the target, lower it after.
    let max = (
        ENCODER_OPTION_MAX_BITRATE,
        SPATIAL_LAYER_0,
        "maximum bitrate",
    );
    let target = (ENCODER_OPTION_BITRATE, SPATIAL_LAYER_ALL, "bitrate");
    let order = if to > from {
        [max, target]
    } else {
        [target, max]
    };
    for (option, layer, what) in order {
        let mut info = SBitrateInfo {
            iLayer: layer,
            iBitrate: bps,
        };
        // ENCODER_OPTION_(MAX_)BITRATE reads one `SBitrateInfo` during the call.
        encoder
            .set_option(option, std::ptr::addr_of_mut!(info).cast())
            .map_err(|err| {
                CodecError::H264Encode(format!("a {what} of {to} bit/s was refused: {err}"))
            })?;
    }
    Ok(())
}

/// Which H.264 decoder a [`H264Decoder`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderBackend {
    /// FFmpeg's, from the system's libavcodec (`ffmpeg.rs`): 25-40% less CPU than openh264's.
    Ffmpeg,
    OpenH264,
}

/// Names the decoder to use instead of the default (FFmpeg when the system has it, otherwise
/// openh264): `ffmpeg` or `openh264`. For comparing them, and for a stream one of them gets
/// wrong.
pub const DECODER_ENV: &str = "CONFAB_H264_DECODER";

/// The decoder [`DECODER_ENV`] asks for, if it names one (a name it does not know is logged
/// once and ignored).
fn asked_for() -> Option<DecoderBackend> {
    static SAID: std::sync::Once = std::sync::Once::new();
    match std::env::var(DECODER_ENV).as_deref() {
        Ok("ffmpeg") => Some(DecoderBackend::Ffmpeg),
        Ok("openh264") => Some(DecoderBackend::OpenH264),
        Ok(other) if !other.is_empty() => {
            SAID.call_once(|| {
                tracing::warn!(
                    "{DECODER_ENV}={other:?} is not a decoder (\"ffmpeg\" or \"openh264\"); ignored"
                )
            });
            None
        }
        _ => None,
    }
}

/// The decoder [`H264Decoder::new`] picks: the one [`DECODER_ENV`] names, else FFmpeg when the
/// system has it, else openh264 (why is logged once).
fn preferred_backend() -> DecoderBackend {
    static SAID: std::sync::Once = std::sync::Once::new();
    asked_for().unwrap_or_else(|| match ffmpeg::availability() {
        Ok(_) => DecoderBackend::Ffmpeg,
        Err(why) => {
            SAID.call_once(|| tracing::info!(why, "H.264 is decoded with openh264"));
            DecoderBackend::OpenH264
        }
    })
}

/// Loads FFmpeg on a thread of its own, unless openh264 is asked for: opening libavcodec and
/// the ~100 libraries it needs takes 50-100 ms, which would otherwise delay the first remote
/// picture. Call it when a call starts; the decoder then finds FFmpeg loaded (or waits for it).
pub fn load_decoder_in_background() {
    if asked_for() == Some(DecoderBackend::OpenH264) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ffmpeg-load".into())
        .spawn(|| {
            let _ = ffmpeg::availability();
        });
    if let Err(err) = spawned {
        tracing::debug!(%err, "FFmpeg loads when the first picture comes instead");
    }
}

pub struct H264Decoder(Backend);

enum Backend {
    Ffmpeg(FfmpegDecoder),
    OpenH264(Decoder),
}

impl H264Decoder {
    /// The one [`DECODER_ENV`] names, else FFmpeg's when the system has it, else openh264's;
    /// openh264's also when FFmpeg's will not start.
    pub fn new() -> Result<Self, CodecError> {
        match preferred_backend() {
            DecoderBackend::Ffmpeg => Self::with_backend(DecoderBackend::Ffmpeg).or_else(|err| {
                tracing::warn!(%err, "FFmpeg's H.264 decoder did not start; using openh264");
                Self::with_backend(DecoderBackend::OpenH264)
            }),
            DecoderBackend::OpenH264 => Self::with_backend(DecoderBackend::OpenH264),
        }
    }

    pub fn with_backend(backend: DecoderBackend) -> Result<Self, CodecError> {
        Ok(Self(match backend {
            DecoderBackend::Ffmpeg => Backend::Ffmpeg(FfmpegDecoder::new()?),
            DecoderBackend::OpenH264 => Backend::OpenH264(
                Decoder::new().map_err(|e| CodecError::H264Decode(e.to_string()))?,
            ),
        }))
    }

    /// "FFmpeg 5.1.9" or "openh264", for the stats.
    pub fn name(&self) -> &'static str {
        match &self.0 {
            Backend::Ffmpeg(d) => d.version(),
            Backend::OpenH264(_) => "openh264",
        }
    }

    /// Decodes one access unit (Annex-B); `None` when it produced no picture yet.
    pub fn decode(&mut self, annexb: &[u8]) -> Result<Option<VideoFrame>, CodecError> {
        let decoder = match &mut self.0 {
            Backend::Ffmpeg(d) => return d.decode(annexb),
            Backend::OpenH264(d) => d,
        };
        let decoded = decoder
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
        // Deblocking fixed: turning it off by quantizer makes a keyframe of its own.
        let mut encoder = H264Encoder::with_tuning(
            EncoderSettings {
                bitrate_bps: 600_000,
                max_fps: 30.0,
                screen: false,
            },
            EncoderTuning {
                deblocking: Deblocking::On,
                ..EncoderTuning::default()
            },
        )
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
        // A frame whose buffer is shorter than its size says: an error, not a read past it.
        let mut short = pattern::render(5, 320, 180, 0);
        short.data.truncate(short.data.len() - 1);
        let err = encoder.encode(&short).unwrap_err().to_string();
        assert!(err.contains("320x180"), "{err}");
        assert!(encoder.encode(&pattern::render(6, 320, 180, 0)).is_ok());
    }

    #[test]
    fn deblocking_goes_off_after_a_window_of_fine_quantizers_and_on_after_one_of_coarse() {
        let mut policy = DeblockingPolicy::new();
        assert!(policy.wants_on(), "nothing known yet: on");
        for _ in 0..DeblockingPolicy::WINDOW - 1 {
            policy.observe(18);
        }
        assert!(policy.wants_on(), "judged on whole windows only");
        policy.observe(18);
        assert!(!policy.wants_on(), "a window at QP 18: off");
        // Between the thresholds nothing changes, either way.
        for _ in 0..DeblockingPolicy::WINDOW {
            policy.observe(26);
        }
        assert!(!policy.wants_on());
        for qp in [20, 36]
            .into_iter()
            .cycle()
            .take(DeblockingPolicy::WINDOW as usize)
        {
            policy.observe(qp);
        }
        assert!(policy.wants_on(), "a window averaging QP 28: on");
        for _ in 0..DeblockingPolicy::WINDOW {
            policy.observe(26);
        }
        assert!(policy.wants_on());
        for _ in 0..DeblockingPolicy::WINDOW {
            policy.observe(24);
        }
        assert!(!policy.wants_on(), "a window averaging QP 24: off");
    }

    /// Encodes frames `range` of the 360p pattern (noisy if asked), checks each decodes with its
    /// stamp, and returns the indexes of the keyframes and the decoded pictures.
    fn encode_decoded(
        (encoder, decoder): (&mut H264Encoder, &mut H264Decoder),
        range: std::ops::Range<u32>,
        noisy: bool,
    ) -> (Vec<u32>, Vec<VideoFrame>) {
        let (mut keyframes, mut pictures) = (Vec::new(), Vec::new());
        for i in range {
            let mut source = pattern::render(i, 640, 360, u64::from(i) * 33_333);
            if noisy {
                pattern::add_sensor_noise(&mut source, i);
            }
            let Some(encoded) = encoder.encode(&source).unwrap() else {
                continue;
            };
            if encoded.keyframe {
                keyframes.push(i);
            }
            let picture = decoder
                .decode(&encoded.data)
                .unwrap()
                .expect("a picture per frame");
            assert_eq!(stamp::read(&picture).map(|s| s.index), Some(i));
            pictures.push(picture);
        }
        (keyframes, pictures)
    }

    fn settings(bitrate_bps: u32) -> EncoderSettings {
        EncoderSettings {
            bitrate_bps,
            max_fps: 30.0,
            screen: false,
        }
    }

    #[test]
    fn fine_quantizers_turn_deblocking_off_with_one_keyframe_and_coarse_ones_keep_it() {
        // The clean pattern at 1 Mbit/s (360p): QP ~20.
        let mut fine = H264Encoder::new(settings(1_000_000)).unwrap();
        assert!(fine.deblocking(), "starts on");
        let window = DeblockingPolicy::WINDOW;
        let (keyframes, _) = encode_decoded(
            (&mut fine, &mut H264Decoder::new().unwrap()),
            0..2 * window,
            false,
        );
        assert!(!fine.deblocking(), "fine quantizers: off");
        assert_eq!(
            keyframes,
            [0, window],
            "the switch is one keyframe, right after the first window"
        );
        // Noisy content at 150 kbit/s: QP ~40.
        let mut coarse = H264Encoder::new(settings(150_000)).unwrap();
        let (keyframes, _) = encode_decoded(
            (&mut coarse, &mut H264Decoder::new().unwrap()),
            0..2 * window,
            true,
        );
        assert!(coarse.deblocking(), "coarse quantizers: on");
        assert_eq!(keyframes, [0]);
    }

    #[test]
    fn on_a_link_short_of_bits_a_deblocking_change_waits_for_room_or_a_new_size() {
        // Without scene-change detection, which at low bitrates takes the noise for new scenes and
        // sends keyframes of its own.
        let tuning = EncoderTuning {
            scene_change_detect: false,
            ..EncoderTuning::default()
        };
        let mut encoder = H264Encoder::with_tuning(settings(1_000_000), tuning).unwrap();
        let mut decoder = H264Decoder::new().unwrap();
        let window = DeblockingPolicy::WINDOW;
        encoder.allow_own_keyframes(false);
        let (keyframes, _) = encode_decoded((&mut encoder, &mut decoder), 0..2 * window, false);
        assert_eq!(keyframes, [0], "no keyframe of its own");
        assert!(encoder.deblocking(), "still on, waiting");
        encoder.allow_own_keyframes(true);
        let (keyframes, _) = encode_decoded(
            (&mut encoder, &mut decoder),
            2 * window..2 * window + 1,
            false,
        );
        assert_eq!(keyframes, [2 * window], "room: at once");
        assert!(!encoder.deblocking());
        // The link gets poor and the content busy: the quantizer coarse.
        encoder.allow_own_keyframes(false);
        encoder.set_bitrate(250_000).unwrap();
        let (start, end) = (2 * window + 1, 5 * window);
        let (keyframes, _) = encode_decoded((&mut encoder, &mut decoder), start..end, true);
        assert!(
            keyframes.is_empty(),
            "no keyframe of its own: {keyframes:?}"
        );
        assert!(encoder.policy().wants_on());
        // A receiver's request is answered by the running encoder, which stays as it is.
        encoder.request_keyframe();
        let (keyframes, _) = encode_decoded((&mut encoder, &mut decoder), end..end + 1, true);
        assert_eq!(keyframes, [end], "the requested keyframe");
        assert!(!encoder.deblocking(), "still off, waiting");
        // A new encoder (a new size) goes on with what this one learned.
        let mut next = H264Encoder::with_tuning(settings(250_000), tuning)
            .unwrap()
            .with_policy(encoder.policy().clone());
        next.allow_own_keyframes(false);
        encode_decoded((&mut next, &mut H264Decoder::new().unwrap()), 0..1, true);
        assert!(next.deblocking(), "a new encoder starts as the policy says");
    }

    #[test]
    fn deblocking_reaches_the_stream() {
        // At coarse quantizers the filter changes the decoded picture; off, the decoder must
        // show the blocks as coded.
        let tuning = |deblocking| EncoderTuning {
            deblocking,
            ..EncoderTuning::default()
        };
        let mut on = H264Encoder::with_tuning(settings(150_000), tuning(Deblocking::On)).unwrap();
        let mut off = H264Encoder::with_tuning(settings(150_000), tuning(Deblocking::Off)).unwrap();
        assert!(on.deblocking() && !off.deblocking());
        let (_, with) = encode_decoded((&mut on, &mut H264Decoder::new().unwrap()), 0..10, true);
        let (_, without) =
            encode_decoded((&mut off, &mut H264Decoder::new().unwrap()), 0..10, true);
        let differ = with
            .iter()
            .zip(&without)
            .filter(|(a, b)| a.data != b.data)
            .count();
        assert_eq!(differ, with.len(), "every picture differs with the filter");
        // And the filter's own effect: blocking shows as luma steps on the 4x4 grid. Off, the
        // steps across block edges are larger than those inside blocks by more than on.
        let edge_ratio = |picture: &VideoFrame| {
            let (w, y) = (picture.width as usize, picture.y());
            let (mut edge, mut inner) = (0u64, 0u64);
            for row in y.chunks_exact(w) {
                for x in 1..w {
                    let step = u64::from(row[x].abs_diff(row[x - 1]));
                    if x % 4 == 0 {
                        edge += step;
                    } else {
                        inner += step;
                    }
                }
            }
            (edge as f64 / (w / 4) as f64) / (inner as f64 / (w - w / 4 - 1) as f64)
        };
        let mean = |pictures: &[VideoFrame]| {
            pictures.iter().map(edge_ratio).sum::<f64>() / pictures.len() as f64
        };
        let (with, without) = (mean(&with), mean(&without));
        assert!(
            without > with,
            "block-edge steps vs inner steps: {without:.3} off, {with:.3} on"
        );
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

    fn ffmpeg() -> H264Decoder {
        H264Decoder::with_backend(DecoderBackend::Ffmpeg).unwrap_or_else(|err| {
            panic!("FFmpeg's decoder is part of the test setup (scripts/setup.sh): {err}")
        })
    }

    /// Frames `range` of a 1280x720 pattern at `bitrate_bps`, with sensor-like noise (so the
    /// quantizer is coarse and the deblocking filter has work), as access units.
    fn noisy_stream(bitrate_bps: u32, frames: u32, tuning: EncoderTuning) -> Vec<EncodedFrame> {
        let mut encoder = H264Encoder::with_tuning(settings(bitrate_bps), tuning).unwrap();
        let mut seed = 0x2545_f491_u32;
        (0..frames)
            .filter_map(|i| {
                let mut frame = pattern::render(i, 1280, 720, u64::from(i) * 33_333);
                for px in frame.data.iter_mut().step_by(3) {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    *px = px.saturating_add((seed % 9) as u8);
                }
                encoder.encode(&frame).unwrap()
            })
            .collect()
    }

    #[test]
    fn ffmpeg_and_openh264_decode_the_same_pictures() {
        // H.264 decoding is exact: any conforming decoder makes the same pixels. Two streams:
        // the filter on at a coarse quantizer, and the calls' policy (which turns it off
        // on a fine one).
        let on = EncoderTuning {
            deblocking: Deblocking::On,
            ..EncoderTuning::default()
        };
        for (bitrate, tuning) in [(300_000, on), (3_000_000, EncoderTuning::default())] {
            let stream = noisy_stream(bitrate, 75, tuning);
            let (mut ffmpeg, mut openh264) = (
                ffmpeg(),
                H264Decoder::with_backend(DecoderBackend::OpenH264).unwrap(),
            );
            assert!(ffmpeg.name().starts_with("FFmpeg "), "{}", ffmpeg.name());
            for (i, unit) in stream.iter().enumerate() {
                // Low delay: the picture of an access unit comes out with it.
                let a = ffmpeg
                    .decode(&unit.data)
                    .unwrap()
                    .expect("FFmpeg: a picture");
                let b = openh264
                    .decode(&unit.data)
                    .unwrap()
                    .expect("openh264: a picture");
                assert_eq!((a.width, a.height), (1280, 720));
                assert!(
                    a.data == b.data,
                    "{bitrate} bit/s, frame {i}: the decoders disagree"
                );
            }
        }
    }

    #[test]
    fn ffmpeg_shows_no_picture_whose_references_are_missing() {
        let stream = noisy_stream(600_000, 5, EncoderTuning::default());
        assert!(stream[0].keyframe && !stream[2].keyframe);
        let mut decoder = ffmpeg();
        // P frames without their keyframe: nothing to show (the receiver then asks for one).
        for unit in &stream[2..] {
            assert!(matches!(decoder.decode(&unit.data), Ok(None) | Err(_)));
        }
        let picture = decoder.decode(&stream[0].data).unwrap();
        assert!(picture.is_some(), "a keyframe starts it");
    }

    #[test]
    fn ffmpeg_survives_garbage_and_decodes_afterwards() {
        let stream = noisy_stream(600_000, 3, EncoderTuning::default());
        let mut decoder = ffmpeg();
        let mut seed = 7u32;
        for round in 0..200 {
            // Random bytes after a start code and each NAL type's header; then a real keyframe
            // truncated, and one with its bytes flipped.
            let mut unit = vec![0, 0, 0, 1, (round % 32) as u8 | 0x60];
            unit.extend((0..(round * 13 % 3000)).map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            }));
            let _ = decoder.decode(&unit);
            let key = &stream[0].data;
            let _ = decoder.decode(&key[..key.len() * (round % 10) / 10]);
            let mut flipped = key.clone();
            for i in (40..flipped.len()).step_by(97 + round) {
                flipped[i] ^= 0x5a;
            }
            if let Ok(Some(picture)) = decoder.decode(&flipped) {
                assert_eq!(picture.data.len(), VideoFrame::i420_len(1280, 720));
            }
        }
        let picture = decoder
            .decode(&stream[0].data)
            .unwrap()
            .expect("a keyframe");
        assert_eq!((picture.width, picture.height), (1280, 720));
        for unit in &stream[1..] {
            assert!(decoder.decode(&unit.data).unwrap().is_some());
        }
    }
}
