//! FFmpeg's H.264 decoder, loaded at run time from the system's libavcodec when it is there.
//!
//! It decodes a call's 720p stream in 25-40% less CPU time than openh264 (NOTES.md, "H.264
//! decoders"), and it is the decoder Chromium ships. Nothing links against FFmpeg: the libraries
//! are opened with `dlopen` (`libloading`), so the app and its installers run without them, and
//! `H264Decoder` falls back to openh264 when they are missing or of a version not known here.
//!
//! Only FFmpeg's stable entry points are called. Two structs are read or written in place, and
//! only their first fields, which have had the same layout in every major version accepted here
//! (libavcodec 58-61, FFmpeg 4.0-7.1): `AVPacket` (`buf, pts, dts, data, size`) and `AVFrame`
//! (`data[8], linesize[8], extended_data, width, height, nb_samples, format`). Everything else is
//! set through `av_opt_set*`, by name. Everything unsafe about FFmpeg is in this file.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::ptr::null_mut;
use std::sync::OnceLock;

use libloading::Library;

use crate::CodecError;
use confab_media::VideoFrame;

/// libavcodec majors and the libavutil major each was released with.
const VERSIONS: [(u32, u32); 4] = [(61, 59), (60, 58), (59, 57), (58, 56)];

/// FFmpeg reads up to this many bytes past a packet's end (`AV_INPUT_BUFFER_PADDING_SIZE`: 32
/// before 4.0, 64 since); they must be zero.
const INPUT_PADDING: usize = 64;

/// The largest picture the decoder allocates (8K UHD): a hostile stream's SPS cannot make it
/// allocate more.
const MAX_PIXELS: i64 = 7680 * 4320;

const AV_PIX_FMT_YUV420P: c_int = 0;
/// Full-range I420 ("JPEG" range); the planes are laid out the same.
const AV_PIX_FMT_YUVJ420P: c_int = 12;
const AV_LOG_QUIET: c_int = -8;

#[cfg(not(target_os = "macos"))]
const EAGAIN: c_int = 11;
#[cfg(target_os = "macos")]
const EAGAIN: c_int = 35;

/// The first fields of `AVPacket`.
#[repr(C)]
struct PacketHead {
    buf: *mut c_void,
    pts: i64,
    dts: i64,
    data: *mut u8,
    size: c_int,
}

/// The first fields of `AVFrame`.
#[repr(C)]
struct FrameHead {
    data: [*mut u8; 8],
    linesize: [c_int; 8],
    extended_data: *mut *mut u8,
    width: c_int,
    height: c_int,
    nb_samples: c_int,
    format: c_int,
}

type Ctx = c_void;

/// The entry points used, resolved once.
struct Api {
    find_decoder_by_name: unsafe extern "C" fn(*const c_char) -> *const c_void,
    alloc_context3: unsafe extern "C" fn(*const c_void) -> *mut Ctx,
    open2: unsafe extern "C" fn(*mut Ctx, *const c_void, *mut *mut c_void) -> c_int,
    free_context: unsafe extern "C" fn(*mut *mut Ctx),
    send_packet: unsafe extern "C" fn(*mut Ctx, *const PacketHead) -> c_int,
    receive_frame: unsafe extern "C" fn(*mut Ctx, *mut FrameHead) -> c_int,
    packet_alloc: unsafe extern "C" fn() -> *mut PacketHead,
    packet_free: unsafe extern "C" fn(*mut *mut PacketHead),
    frame_alloc: unsafe extern "C" fn() -> *mut FrameHead,
    frame_free: unsafe extern "C" fn(*mut *mut FrameHead),
    frame_unref: unsafe extern "C" fn(*mut FrameHead),
    opt_set: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, c_int) -> c_int,
    opt_set_int: unsafe extern "C" fn(*mut c_void, *const c_char, i64, c_int) -> c_int,
    /// "FFmpeg 5.1.9-0+deb12u1" and the like.
    version: String,
    // The libraries stay loaded for the life of the process (the pointers above point into them).
    _avcodec: Library,
    _avutil: Library,
}

/// The names a library goes by on this OS, most likely first.
fn candidates(base: &str, major: u32) -> Vec<String> {
    if cfg!(target_os = "windows") {
        vec![format!("{base}-{major}.dll")]
    } else if cfg!(target_os = "macos") {
        ["", "/opt/homebrew/lib/", "/usr/local/lib/"]
            .iter()
            .map(|dir| format!("{dir}lib{base}.{major}.dylib"))
            .collect()
    } else {
        vec![format!("lib{base}.so.{major}")]
    }
}

fn open(base: &str, major: u32) -> Option<Library> {
    candidates(base, major).into_iter().find_map(|name| {
        // SAFETY: loading FFmpeg runs its libraries' initializers, which only set up tables.
        unsafe { Library::new(name) }.ok()
    })
}

impl Api {
    fn load() -> Result<Self, String> {
        let (avcodec, avutil, major) = VERSIONS
            .iter()
            .find_map(|&(codec, util)| {
                Some((open("avcodec", codec)?, open("avutil", util)?, codec))
            })
            .ok_or("no libavcodec 58-61 with its libavutil was found")?;
        macro_rules! sym {
            ($lib:expr, $name:literal) => {
                // SAFETY: the symbol's type is its C prototype in FFmpeg's headers for every
                // version in VERSIONS.
                *unsafe { $lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{}: {e}", $name))?
            };
        }
        let avcodec_version: unsafe extern "C" fn() -> c_uint = sym!(avcodec, "avcodec_version");
        // SAFETY: takes nothing, returns a number.
        let found = unsafe { avcodec_version() } >> 16;
        if found != major {
            return Err(format!("libavcodec.{major} says it is version {found}"));
        }
        let version_info: unsafe extern "C" fn() -> *const c_char = sym!(avutil, "av_version_info");
        // SAFETY: returns a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr(version_info()) }
            .to_string_lossy()
            .into_owned();
        let log_set_level: unsafe extern "C" fn(c_int) = sym!(avutil, "av_log_set_level");
        // Its messages about a broken stream would go to stderr; errors come back as codes.
        // SAFETY: sets a global integer.
        unsafe { log_set_level(AV_LOG_QUIET) };
        Ok(Self {
            find_decoder_by_name: sym!(avcodec, "avcodec_find_decoder_by_name"),
            alloc_context3: sym!(avcodec, "avcodec_alloc_context3"),
            open2: sym!(avcodec, "avcodec_open2"),
            free_context: sym!(avcodec, "avcodec_free_context"),
            send_packet: sym!(avcodec, "avcodec_send_packet"),
            receive_frame: sym!(avcodec, "avcodec_receive_frame"),
            packet_alloc: sym!(avcodec, "av_packet_alloc"),
            packet_free: sym!(avcodec, "av_packet_free"),
            frame_alloc: sym!(avutil, "av_frame_alloc"),
            frame_free: sym!(avutil, "av_frame_free"),
            frame_unref: sym!(avutil, "av_frame_unref"),
            opt_set: sym!(avutil, "av_opt_set"),
            opt_set_int: sym!(avutil, "av_opt_set_int"),
            version: format!("FFmpeg {version}"),
            _avcodec: avcodec,
            _avutil: avutil,
        })
    }
}

/// FFmpeg, loaded on first use; why not, when it cannot be.
fn api() -> Result<&'static Api, &'static str> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    match API.get_or_init(Api::load) {
        Ok(api) => Ok(api),
        Err(why) => Err(why.as_str()),
    }
}

/// Which FFmpeg this process would decode with, or why it cannot.
pub(crate) fn availability() -> Result<&'static str, &'static str> {
    api().map(|api| api.version.as_str())
}

/// One FFmpeg H.264 decoder: one thread, low delay (a picture for every access unit, as WebRTC
/// streams have no reordering).
pub struct FfmpegDecoder {
    api: &'static Api,
    ctx: *mut Ctx,
    packet: *mut PacketHead,
    frame: *mut FrameHead,
    /// The access unit being sent, with its zeroed padding.
    input: Vec<u8>,
}

// SAFETY: the decoder's FFmpeg objects are owned by it alone and used by one thread at a time
// (every method takes `&mut self`); FFmpeg allows a codec context to move between threads.
unsafe impl Send for FfmpegDecoder {}

impl FfmpegDecoder {
    pub fn new() -> Result<Self, CodecError> {
        let api = api().map_err(|why| CodecError::H264Decode(format!("FFmpeg: {why}")))?;
        let fail = |what: &str| CodecError::H264Decode(format!("FFmpeg: {what}"));
        // SAFETY: each call is FFmpeg's documented sequence: find, allocate, set options, open.
        // Pointers are checked before use and owned by `Self`, whose Drop frees them, also when
        // a later step fails (the fields start null and the free functions accept null).
        unsafe {
            let codec = (api.find_decoder_by_name)(c"h264".as_ptr());
            if codec.is_null() {
                return Err(fail("this build has no H.264 decoder"));
            }
            let decoder = Self {
                api,
                ctx: (api.alloc_context3)(codec),
                packet: (api.packet_alloc)(),
                frame: (api.frame_alloc)(),
                input: Vec::new(),
            };
            if decoder.ctx.is_null() || decoder.packet.is_null() || decoder.frame.is_null() {
                return Err(fail("out of memory"));
            }
            let ctx = decoder.ctx;
            for (name, value) in [(c"threads", 1), (c"max_pixels", MAX_PIXELS)] {
                if (api.opt_set_int)(ctx, name.as_ptr(), value, 0) < 0 {
                    return Err(fail(&format!("the option {name:?} was refused")));
                }
            }
            // Replaces the default flags: a picture as soon as it is decoded, and none that may
            // be corrupt (a P frame whose references are missing), so that the caller asks for
            // a keyframe instead of showing garbage.
            if (api.opt_set)(ctx, c"flags".as_ptr(), c"low_delay".as_ptr(), 0) < 0 {
                return Err(fail("the low-delay flag was refused"));
            }
            let opened = (api.open2)(ctx, codec, null_mut());
            if opened < 0 {
                return Err(fail(&format!("opening the decoder failed ({opened})")));
            }
            Ok(decoder)
        }
    }

    /// Which FFmpeg this is.
    pub fn version(&self) -> &'static str {
        &self.api.version
    }

    /// Decodes one access unit (Annex-B); `None` when it made no picture.
    pub fn decode(&mut self, annexb: &[u8]) -> Result<Option<VideoFrame>, CodecError> {
        let len = c_int::try_from(annexb.len())
            .map_err(|_| CodecError::H264Decode("an access unit over 2 GB".into()))?;
        self.input.clear();
        self.input.extend_from_slice(annexb);
        self.input.resize(annexb.len() + INPUT_PADDING, 0);
        // SAFETY: the packet points at `input`, which outlives the call and is padded as FFmpeg
        // requires; with no `buf` FFmpeg copies what it keeps. The pointer is cleared before
        // anything else can use the packet.
        let sent = unsafe {
            (*self.packet).data = self.input.as_mut_ptr();
            (*self.packet).size = len;
            let sent = (self.api.send_packet)(self.ctx, self.packet);
            (*self.packet).data = null_mut();
            (*self.packet).size = 0;
            sent
        };
        // Whatever FFmpeg made of it, its pictures are taken out, so that it never holds any
        // when the next unit comes (it would refuse that unit with EAGAIN).
        let mut picture = None;
        loop {
            // SAFETY: `frame` is ours; FFmpeg unreferences it before filling it in.
            let received = unsafe { (self.api.receive_frame)(self.ctx, self.frame) };
            if received < 0 {
                break;
            }
            // A low-delay stream gives one picture per access unit; were there more, the last
            // is the one to show.
            picture = Some(self.copy_out()?);
        }
        if sent < 0 {
            let why = if sent == -EAGAIN {
                "it still held pictures"
            } else {
                "a broken stream"
            };
            return Err(CodecError::H264Decode(format!(
                "FFmpeg refused the access unit: {why} ({sent})"
            )));
        }
        Ok(picture)
    }

    /// The decoded picture in `frame`, copied into a packed I420 frame.
    fn copy_out(&mut self) -> Result<VideoFrame, CodecError> {
        // SAFETY: `frame` holds a picture FFmpeg just decoded; each plane is valid for its rows
        // at its line size, and is only read before the frame is unreferenced below.
        unsafe {
            let f = &*self.frame;
            let result = if f.format != AV_PIX_FMT_YUV420P && f.format != AV_PIX_FMT_YUVJ420P {
                Err(format!("a picture in pixel format {} (not I420)", f.format))
            } else if f.width <= 0 || f.height <= 0 {
                Err(format!("a {}x{} picture", f.width, f.height))
            } else if f.linesize[..3].iter().any(|&s| s <= 0)
                || f.linesize[0] < f.width
                || f.linesize[1] < (f.width + 1) / 2
                || f.linesize[2] < (f.width + 1) / 2
                || f.data[..3].iter().any(|p| p.is_null())
            {
                Err("a picture with planes it cannot read".to_string())
            } else {
                let (w, h) = (f.width as usize, f.height as usize);
                let stride = |i: usize| f.linesize[i] as usize;
                // Exactly the bytes the rows cover: the last row need not be padded to its
                // stride (a cropped picture's last row can end at its buffer's end).
                let plane = |i: usize, rows: usize, width: usize| {
                    let len = stride(i) * (rows - 1) + width;
                    std::slice::from_raw_parts(f.data[i] as *const u8, len)
                };
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                Ok(VideoFrame::from_strided(
                    w as u32,
                    h as u32,
                    (plane(0, h, w), plane(1, ch, cw), plane(2, ch, cw)),
                    (stride(0), stride(1), stride(2)),
                    0,
                ))
            };
            (self.api.frame_unref)(self.frame);
            result.map_err(|why| CodecError::H264Decode(format!("FFmpeg decoded {why}")))
        }
    }
}

impl Drop for FfmpegDecoder {
    fn drop(&mut self) {
        // SAFETY: each pointer was allocated by FFmpeg for this decoder (or is null, which the
        // free functions accept), and is freed once, here.
        unsafe {
            (self.api.frame_free)(&mut self.frame);
            (self.api.packet_free)(&mut self.packet);
            (self.api.free_context)(&mut self.ctx);
        }
    }
}
