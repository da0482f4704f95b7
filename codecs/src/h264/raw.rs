//! openh264's encoder through its C API (`openh264-sys2`), for what the `openh264` crate's
//! `Encoder` does not let a caller choose: it always turns the deblocking filter on. Everything
//! unsafe about the encoder is in this file; `H264Encoder` builds on it.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_void};
use std::ptr::{addr_of_mut, null_mut};

use openh264_sys2::{
    DynamicAPI, ISVCEncoder, ISVCEncoderVtbl, SEncParamExt, SEncoderStatistics, SFrameBSInfo,
    SSourcePicture, API, DEBLOCKING_IDC_0, DEBLOCKING_IDC_1, ENCODER_OPTION,
    ENCODER_OPTION_DATAFORMAT, ENCODER_OPTION_GET_STATISTICS, ENCODER_OPTION_TRACE_LEVEL,
    SM_SINGLE_SLICE, WELS_LOG_QUIET,
};

use crate::CodecError;
use confab_media::VideoFrame;

/// What the encoder made of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coded {
    /// Skipped by rate control (or nothing came out).
    Skipped,
    Keyframe,
    Delta,
}

/// The encoder's functions, checked present once.
#[derive(Clone, Copy)]
struct Vtbl {
    initialize_ext: unsafe extern "C" fn(*mut ISVCEncoder, *const SEncParamExt) -> c_int,
    get_default_params: unsafe extern "C" fn(*mut ISVCEncoder, *mut SEncParamExt) -> c_int,
    uninitialize: unsafe extern "C" fn(*mut ISVCEncoder) -> c_int,
    encode_frame:
        unsafe extern "C" fn(*mut ISVCEncoder, *const SSourcePicture, *mut SFrameBSInfo) -> c_int,
    force_intra_frame: unsafe extern "C" fn(*mut ISVCEncoder, bool) -> c_int,
    set_option: unsafe extern "C" fn(*mut ISVCEncoder, ENCODER_OPTION, *mut c_void) -> c_int,
    get_option: unsafe extern "C" fn(*mut ISVCEncoder, ENCODER_OPTION, *mut c_void) -> c_int,
}

impl Vtbl {
    fn of(table: &ISVCEncoderVtbl) -> Option<Self> {
        Some(Self {
            initialize_ext: table.InitializeExt?,
            get_default_params: table.GetDefaultParams?,
            uninitialize: table.Uninitialize?,
            encode_frame: table.EncodeFrame?,
            force_intra_frame: table.ForceIntraFrame?,
            set_option: table.SetOption?,
            get_option: table.GetOption?,
        })
    }
}

/// The parameters `RawEncoder::new` takes beyond openh264's defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub width: u32,
    pub height: u32,
    pub bitrate_bps: u32,
    pub max_fps: f32,
    pub usage_type: c_int,
    pub rc_mode: c_int,
    pub complexity: c_int,
    pub threads: u16,
    pub scene_change_detect: bool,
    pub background_detection: bool,
    pub adaptive_quantization: bool,
    pub deblocking: bool,
}

/// One initialized openh264 encoder, destroyed on drop.
pub(crate) struct RawEncoder {
    api: DynamicAPI,
    encoder: *mut ISVCEncoder,
    vtbl: Vtbl,
    info: SFrameBSInfo,
}

// SAFETY: the encoder is used from one thread at a time (`&mut self` for every call that reaches
// it) and holds no thread-local state; openh264's encoder has no thread affinity.
unsafe impl Send for RawEncoder {}

fn failed(what: &str, status: c_int) -> CodecError {
    CodecError::H264Encode(format!("openh264 {what} failed (status {status})"))
}

impl RawEncoder {
    pub fn new(p: Params) -> Result<Self, CodecError> {
        let api = DynamicAPI::from_source();
        let mut encoder: *mut ISVCEncoder = null_mut();
        // SAFETY: WelsCreateSVCEncoder writes a new encoder's pointer through `encoder` (a
        // valid local) and returns non-zero when it could not make one.
        let status = unsafe { api.WelsCreateSVCEncoder(&mut encoder) };
        if status != 0 || encoder.is_null() {
            return Err(failed("encoder creation", status));
        }
        // SAFETY: a created encoder points at its vtable pointer, which points at the vtable,
        // both alive until WelsDestroySVCEncoder.
        let vtbl = unsafe { (*encoder).as_ref() }.and_then(Vtbl::of);
        let Some(vtbl) = vtbl else {
            // SAFETY: `encoder` was created above and is destroyed once, here.
            unsafe { api.WelsDestroySVCEncoder(encoder) };
            return Err(CodecError::H264Encode(
                "openh264's encoder lacks a function".into(),
            ));
        };
        let mut raw = Self {
            api,
            encoder,
            vtbl,
            info: SFrameBSInfo::default(),
        };
        raw.initialize(p)?;
        Ok(raw)
    }

    fn initialize(&mut self, p: Params) -> Result<(), CodecError> {
        let mut params = SEncParamExt::default();
        // SAFETY: GetDefaultParams fills the `SEncParamExt` it is given (a valid local).
        let status = unsafe { (self.vtbl.get_default_params)(self.encoder, &mut params) };
        if status != 0 {
            return Err(failed("default parameters", status));
        }
        let (width, height) = (p.width as c_int, p.height as c_int);
        let bitrate = c_int::try_from(p.bitrate_bps).unwrap_or(c_int::MAX);
        params.iUsageType = p.usage_type;
        params.iPicWidth = width;
        params.iPicHeight = height;
        params.iTargetBitrate = bitrate;
        params.iRCMode = p.rc_mode;
        params.fMaxFrameRate = p.max_fps;
        params.iComplexityMode = p.complexity;
        params.iMultipleThreadIdc = p.threads;
        params.bEnableSceneChangeDetect = p.scene_change_detect;
        params.bEnableBackgroundDetection = p.background_detection;
        params.bEnableAdaptiveQuant = p.adaptive_quantization;
        // openh264 only holds the bitrate when it may skip frames.
        params.bEnableFrameSkip = true;
        params.bEnableDenoise = false;
        params.bEnableLongTermReference = false;
        params.eSpsPpsIdStrategy = openh264_sys2::CONSTANT_ID;
        params.iMinQp = 0;
        params.iMaxQp = 51;
        // Keyframes only when asked for.
        params.uiIntraPeriod = 0;
        params.iLoopFilterDisableIdc = if p.deblocking {
            DEBLOCKING_IDC_0
        } else {
            DEBLOCKING_IDC_1
        } as c_int;
        params.iSpatialLayerNum = 1;
        params.iTemporalLayerNum = 1;
        let layer = &mut params.sSpatialLayers[0];
        layer.iVideoWidth = width;
        layer.iVideoHeight = height;
        layer.fFrameRate = p.max_fps;
        layer.iSpatialBitrate = bitrate;
        layer.iMaxSpatialBitrate = bitrate;
        layer.sSliceArgument.uiSliceMode = SM_SINGLE_SLICE;
        layer.sSliceArgument.uiSliceNum = 1;
        // SAFETY: InitializeExt reads the parameters during the call; `params` is a valid local.
        let status = unsafe { (self.vtbl.initialize_ext)(self.encoder, &params) };
        if status != 0 {
            return Err(failed("initialization", status));
        }
        let mut quiet: c_int = WELS_LOG_QUIET as c_int;
        let mut i420: c_int = openh264_sys2::videoFormatI420 as c_int;
        self.set_option(ENCODER_OPTION_TRACE_LEVEL, addr_of_mut!(quiet).cast())?;
        self.set_option(ENCODER_OPTION_DATAFORMAT, addr_of_mut!(i420).cast())
    }

    /// SetOption with an option whose value `value` points at, for the duration of the call.
    pub fn set_option(
        &mut self,
        option: ENCODER_OPTION,
        value: *mut c_void,
    ) -> Result<(), CodecError> {
        // SAFETY: the encoder is initialized; callers pass the value type `option` takes
        // (openh264's codec_api.h), alive for the call.
        let status = unsafe { (self.vtbl.set_option)(self.encoder, option, value) };
        if status == 0 {
            Ok(())
        } else {
            Err(failed(&format!("option {option}"), status))
        }
    }

    /// The mean quantizer of the last encoded frame (0-51).
    pub fn last_qp(&mut self) -> Option<u32> {
        let mut stats = SEncoderStatistics::default();
        // SAFETY: GET_STATISTICS writes one `SEncoderStatistics` through the pointer.
        let status = unsafe {
            (self.vtbl.get_option)(
                self.encoder,
                ENCODER_OPTION_GET_STATISTICS,
                addr_of_mut!(stats).cast(),
            )
        };
        (status == 0).then_some(stats.uiAverageFrameQP)
    }

    pub fn force_intra_frame(&mut self) {
        // SAFETY: the encoder is initialized; the call takes no pointers.
        unsafe { (self.vtbl.force_intra_frame)(self.encoder, true) };
    }

    /// Encodes `frame` (of the size it was initialized with), appending the Annex-B NAL units to
    /// `out`.
    pub fn encode(&mut self, frame: &VideoFrame, out: &mut Vec<u8>) -> Result<Coded, CodecError> {
        // openh264 reads whole planes by the size given: a short buffer must not reach it.
        let len = VideoFrame::i420_len(frame.width, frame.height);
        if frame.data.len() != len {
            return Err(CodecError::H264Encode(format!(
                "a {}x{} I420 frame has {len} bytes, this one {}",
                frame.width,
                frame.height,
                frame.data.len()
            )));
        }
        let w = frame.width as c_int;
        let (y, u, v) = (frame.y(), frame.u(), frame.v());
        let source = SSourcePicture {
            iColorFormat: openh264_sys2::videoFormatI420 as c_int,
            iStride: [w, w / 2, w / 2, 0],
            // openh264 only reads the planes.
            pData: [
                y.as_ptr().cast_mut(),
                u.as_ptr().cast_mut(),
                v.as_ptr().cast_mut(),
                null_mut(),
            ],
            iPicWidth: w,
            iPicHeight: frame.height as c_int,
            uiTimeStamp: 0,
            bPsnrY: false,
            bPsnrU: false,
            bPsnrV: false,
        };
        // SAFETY: the planes are as large as the strides and size say (the length was checked
        // above) and outlive the call; `info` is ours and written by the call.
        let status = unsafe { (self.vtbl.encode_frame)(self.encoder, &source, &mut self.info) };
        if status != 0 {
            return Err(failed("encoding", status));
        }
        let coded = match self.info.eFrameType {
            openh264_sys2::videoFrameTypeIDR | openh264_sys2::videoFrameTypeI => Coded::Keyframe,
            openh264_sys2::videoFrameTypeP | openh264_sys2::videoFrameTypeIPMixed => Coded::Delta,
            _ => return Ok(Coded::Skipped),
        };
        let before = out.len();
        let layers = usize::try_from(self.info.iLayerNum).unwrap_or(0);
        for layer in self.info.sLayerInfo.iter().take(layers) {
            let nals = usize::try_from(layer.iNalCount).unwrap_or(0);
            if nals == 0 || layer.pNalLengthInByte.is_null() || layer.pBsBuf.is_null() {
                continue;
            }
            // SAFETY: after EncodeFrame a layer's `pNalLengthInByte` holds `iNalCount` lengths
            // and `pBsBuf` their NAL units back to back, valid until the next call.
            let lengths = unsafe { std::slice::from_raw_parts(layer.pNalLengthInByte, nals) };
            let total: usize = lengths
                .iter()
                .map(|&n| usize::try_from(n).unwrap_or(0))
                .sum();
            // SAFETY: as above: `total` bytes from `pBsBuf` are the layer's NAL units.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(layer.pBsBuf, total) });
        }
        Ok(if out.len() == before {
            Coded::Skipped
        } else {
            coded
        })
    }
}

impl Drop for RawEncoder {
    fn drop(&mut self) {
        // SAFETY: the encoder was created and initialized in `new` and is destroyed once, here.
        unsafe {
            (self.vtbl.uninitialize)(self.encoder);
            self.api.WelsDestroySVCEncoder(self.encoder);
        }
    }
}
