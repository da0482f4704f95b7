//! The vocabulary every layer shares: raw video frames (I420), audio blocks, the clock, and the
//! frame stamp that lets a receiver measure latency, loss and quality. No devices, no codecs, no
//! network: everything here is plain data and pure functions.

pub mod audio;
pub mod clock;
pub mod convert;
pub mod frame;
pub mod pattern;
pub mod quality;
pub mod resample;
pub mod stamp;
pub mod stream_resampler;
pub mod test_signal;

pub use audio::SAMPLE_RATE_HZ;
pub use frame::VideoFrame;
