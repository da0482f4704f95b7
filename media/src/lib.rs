//! The vocabulary every layer shares: raw video frames (I420), audio blocks, the clock, and the
//! frame stamp that lets a receiver measure latency, loss and quality. No devices, no codecs, no
//! network: everything here is plain data and pure functions.

pub mod audio;
pub mod clock;
pub mod convert;
mod error;
pub mod frame;
mod io;
mod pacer;
pub mod pattern;
pub mod quality;
pub mod resample;
pub mod stamp;
pub mod stream_resampler;
pub mod test_signal;

pub use audio::SAMPLE_RATE_HZ;
pub use error::CaptureError;
pub use frame::VideoFrame;
pub use io::{AudioSink, AudioSource, EchoReference, Room, VideoOut, VideoSource};
pub use pacer::Pacer;

/// A shared screen (or window) is scaled to fit this size...
pub const SCREEN_MAX_SIZE: (u32, u32) = (1920, 1080);
/// ...and captured at this rate: text stays sharp, and a screen changes less often than a face.
pub const SCREEN_FPS: u32 = 10;
