//! The device traits every layer speaks: where frames and samples come from (`VideoSource`,
//! `AudioSource`), where received audio and video go (`AudioSink`, `VideoOut`). Real devices
//! implement them in `confab-devices`; the call engine only ever sees these traits.

use crate::{CaptureError, VideoFrame};

/// Frames from a camera, a screen, a file or a pattern.
pub trait VideoSource: Send {
    /// What this source is, for logs and the UI.
    fn name(&self) -> &str;
    /// Blocks until the next frame is due and returns it.
    fn next_frame(&mut self) -> Result<VideoFrame, CaptureError>;
}

/// Mono samples at 48 kHz from a microphone, a file or a generator.
pub trait AudioSource: Send {
    fn name(&self) -> &str;
    /// Blocks until `out.len()` samples are available, fills `out`, and returns the wall-clock
    /// time (µs) of the first sample.
    fn read(&mut self, out: &mut [f32]) -> Result<u64, CaptureError>;
}

/// Told the mono 48 kHz audio a speaker plays, in the order it plays it, silence included: the far
/// end an echo canceller needs.
pub type EchoReference = Box<dyn FnMut(&[f32]) + Send>;

/// Where received audio goes: a speaker, a file, or nowhere.
pub trait AudioSink: Send {
    fn name(&self) -> &str;
    /// Plays (or stores) mono 48 kHz samples; must not block for long.
    fn write(&mut self, samples: &[f32]) -> Result<(), CaptureError>;
    /// A sink that knows what it really plays (a speaker inserts silence when it runs dry) keeps
    /// `reference` and tells it; the others hand it back, and the caller passes on what it
    /// writes.
    fn set_echo_reference(&mut self, reference: EchoReference) -> Option<EchoReference> {
        Some(reference)
    }
    /// Flushes what is buffered (files are finalized); called once at the end.
    fn finish(&mut self) -> Result<(), CaptureError> {
        Ok(())
    }
}

/// Where decoded remote video goes (the window, a recorder, statistics).
pub trait VideoOut: Send + Sync {
    fn frame(&self, frame: &VideoFrame);
}
