//! Turning raw media into compressed media and back: H.264 (openh264) for video and Opus for
//! audio. Pure computation on the calling thread: no devices, no network, no threads.

pub mod apm;
pub mod h264;
pub mod opus;

/// A codec could not be set up, or could not encode or decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("H.264 encoder: {0}")]
    H264Encode(String),
    #[error("H.264 decoder: {0}")]
    H264Decode(String),
    #[error("Opus: {0}")]
    Opus(String),
    #[error("audio processing: {0}")]
    AudioProcessing(String),
}
