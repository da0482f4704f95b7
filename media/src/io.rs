//! The device traits every layer speaks: where frames and samples come from (`VideoSource`,
//! `AudioSource`), where received audio and video go (`AudioSink`, `VideoOut`). Real devices
//! implement them in `confab-devices`; the call engine only ever sees these traits.

use std::time::Duration;

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
    /// Samples (per channel, at the device's rate) lost before `read` could take them: the
    /// device delivered faster than they were read and its buffer was full. 0 for sources that
    /// cannot lose any.
    fn dropped_samples(&self) -> u64 {
        0
    }
    /// How old the newest samples were when the device handed them over: its own and the
    /// operating system's buffering, which `read`'s capture times already allow for. `None` for
    /// sources without a device.
    fn capture_delay(&self) -> Option<Duration> {
        None
    }
}

/// What `AudioSink::wait_for_room` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// The sink has no clock of its own (a file, nothing): the caller paces itself in real time.
    Unclocked,
    /// A device has room for the samples now: write them.
    Ready,
    /// The device is still playing what it holds (the wait timed out): ask again.
    Full,
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
    /// Waits (at most `timeout`) until a device sink can take `samples` more without holding more
    /// than it needs to play smoothly, so that the device's own clock paces playout. A sink
    /// without a clock answers `Room::Unclocked` at once and the caller keeps time. An error
    /// means the device is gone, as from `write`.
    fn wait_for_room(&mut self, samples: usize, timeout: Duration) -> Result<Room, CaptureError> {
        let _ = (samples, timeout);
        Ok(Room::Unclocked)
    }
    /// Samples (per channel, at the device's rate) written but discarded because the device's
    /// buffer was full (it plays slower than it was fed). 0 for sinks that keep everything.
    fn dropped_samples(&self) -> u64 {
        0
    }
    /// Samples (per channel, at the device's rate) the device played as silence because it had
    /// run dry, since the first samples were written to it (the silence before is no glitch).
    /// 0 for sinks without a device.
    fn underrun_samples(&self) -> u64 {
        0
    }
    /// How long from now until the first of the samples written next is heard: what the sink
    /// still holds and the device's own buffering. `None` for sinks without a device (or before
    /// the device first asked for audio).
    fn output_delay(&self) -> Option<Duration> {
        None
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
