//! Microphone and speaker changed mid-call: `SwappableMic` and `SwappableSpeaker` stand in for
//! the device a media thread owns, and take over a newly opened one (handed in through a
//! `SwapSlot`) between two blocks, so the thread, its encoder or decoder and its clocks never stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use confab_media::{AudioSink, AudioSource, CaptureError, EchoReference, Room};

/// Where the session leaves the next device for a media thread; the newest one wins (a device
/// chosen twice before the thread looks is opened twice, and the first one closes unused).
pub struct SwapSlot<T: ?Sized>(Arc<Mutex<Option<Box<T>>>>);

impl<T: ?Sized> Clone for SwapSlot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized> Default for SwapSlot<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<T: ?Sized> SwapSlot<T> {
    /// Hands `device` over; returns the one still waiting there, if any (to be closed by the
    /// caller).
    pub fn put(&self, device: Box<T>) -> Option<Box<T>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(device)
    }

    fn take(&self) -> Option<Box<T>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The call's microphone, which another one can replace between two reads. The sender counts
/// RTP time in samples read, so the stream's timestamps go on without a jump; only the capture
/// times (lip sync's anchor) follow the new device.
pub struct SwappableMic {
    current: Box<dyn AudioSource>,
    next: SwapSlot<dyn AudioSource>,
    /// Samples the microphones replaced so far lost (`dropped_samples` never goes back).
    dropped_before: u64,
}

impl SwappableMic {
    pub fn new(source: Box<dyn AudioSource>) -> (Self, SwapSlot<dyn AudioSource>) {
        let next = SwapSlot::default();
        let mic = Self {
            current: source,
            next: next.clone(),
            dropped_before: 0,
        };
        (mic, next)
    }
}

impl AudioSource for SwappableMic {
    fn name(&self) -> &str {
        self.current.name()
    }

    fn read(&mut self, out: &mut [f32]) -> Result<u64, CaptureError> {
        if let Some(source) = self.next.take() {
            tracing::info!(
                from = self.current.name(),
                to = source.name(),
                "microphone switched"
            );
            self.dropped_before += self.current.dropped_samples();
            // The old device closes here, on the send thread, never on the session's.
            self.current = source;
        }
        self.current.read(out)
    }

    fn dropped_samples(&self) -> u64 {
        self.dropped_before + self.current.dropped_samples()
    }

    fn capture_delay(&self) -> Option<Duration> {
        self.current.capture_delay()
    }
}

/// The echo canceller's far end, shared by whichever sink plays now.
type SharedReference = Arc<Mutex<EchoReference>>;

/// The call's speaker, which another one can replace between two writes. The one it replaces is
/// finished (a recording is complete). The echo canceller keeps hearing what is played: a sink
/// that knows what its device plays is given the reference, and what the others are given is
/// passed on as written.
pub struct SwappableSpeaker {
    current: Box<dyn AudioSink>,
    next: SwapSlot<dyn AudioSink>,
    reference: Option<SharedReference>,
    /// The current sink handed the reference back: this feeds it on `write`.
    feeds_reference: bool,
    /// Counts of the sinks replaced so far.
    dropped_before: u64,
    underrun_before: u64,
}

impl SwappableSpeaker {
    pub fn new(sink: Box<dyn AudioSink>) -> (Self, SwapSlot<dyn AudioSink>) {
        let next = SwapSlot::default();
        let speaker = Self {
            current: sink,
            next: next.clone(),
            reference: None,
            feeds_reference: false,
            dropped_before: 0,
            underrun_before: 0,
        };
        (speaker, next)
    }

    /// Gives `sink` a way to tell the shared reference; whether it handed it back.
    fn lend_reference(sink: &mut dyn AudioSink, reference: &SharedReference) -> bool {
        let shared = reference.clone();
        let proxy: EchoReference = Box::new(move |samples: &[f32]| {
            (shared.lock().unwrap_or_else(|p| p.into_inner()))(samples)
        });
        sink.set_echo_reference(proxy).is_some()
    }

    /// Takes over the sink waiting in the slot, if any.
    fn adopt_next(&mut self) {
        let Some(mut sink) = self.next.take() else {
            return;
        };
        tracing::info!(
            from = self.current.name(),
            to = sink.name(),
            "speaker switched"
        );
        if let Some(reference) = &self.reference {
            self.feeds_reference = Self::lend_reference(sink.as_mut(), reference);
        }
        let mut old = std::mem::replace(&mut self.current, sink);
        self.dropped_before += old.dropped_samples();
        self.underrun_before += old.underrun_samples();
        if let Err(err) = old.finish() {
            tracing::warn!(%err, speaker = old.name(), "could not finish the old speaker");
        }
    }
}

impl AudioSink for SwappableSpeaker {
    fn name(&self) -> &str {
        self.current.name()
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), CaptureError> {
        self.adopt_next();
        if self.feeds_reference {
            if let Some(reference) = &self.reference {
                (reference.lock().unwrap_or_else(|p| p.into_inner()))(samples);
            }
        }
        self.current.write(samples)
    }

    /// Always keeps the reference (it outlives the sink that plays now).
    fn set_echo_reference(&mut self, reference: EchoReference) -> Option<EchoReference> {
        let reference = Arc::new(Mutex::new(reference));
        self.feeds_reference = Self::lend_reference(self.current.as_mut(), &reference);
        self.reference = Some(reference);
        None
    }

    fn wait_for_room(&mut self, samples: usize, timeout: Duration) -> Result<Room, CaptureError> {
        self.adopt_next();
        self.current.wait_for_room(samples, timeout)
    }

    fn dropped_samples(&self) -> u64 {
        self.dropped_before + self.current.dropped_samples()
    }

    fn underrun_samples(&self) -> u64 {
        self.underrun_before + self.current.underrun_samples()
    }

    fn output_delay(&self) -> Option<Duration> {
        self.current.output_delay()
    }

    fn finish(&mut self) -> Result<(), CaptureError> {
        // A sink handed over after the last write is finished too (it may be a file).
        self.adopt_next();
        self.current.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of constant `value`, counting from its own clock.
    struct Constant {
        value: f32,
        at_us: u64,
        dropped: u64,
    }

    impl AudioSource for Constant {
        fn name(&self) -> &str {
            "constant"
        }
        fn read(&mut self, out: &mut [f32]) -> Result<u64, CaptureError> {
            out.fill(self.value);
            let at = self.at_us;
            self.at_us += 10_000;
            Ok(at)
        }
        fn dropped_samples(&self) -> u64 {
            self.dropped
        }
    }

    #[test]
    fn a_switched_mic_is_read_from_the_next_block_on() {
        let first = Constant {
            value: 0.1,
            at_us: 1_000,
            dropped: 3,
        };
        let (mut mic, slot) = SwappableMic::new(Box::new(first));
        let mut block = [0f32; 480];
        assert_eq!(mic.read(&mut block).unwrap(), 1_000);
        assert!(block.iter().all(|&s| s == 0.1));
        let second = Constant {
            value: 0.7,
            at_us: 50_000,
            dropped: 2,
        };
        assert!(slot.put(Box::new(second)).is_none());
        assert_eq!(
            mic.read(&mut block).unwrap(),
            50_000,
            "the new device's time"
        );
        assert!(block.iter().all(|&s| s == 0.7));
        assert_eq!(
            mic.dropped_samples(),
            5,
            "the old device's losses stay counted"
        );
    }

    /// What a recording sink saw, shared with the test.
    #[derive(Default, Clone)]
    struct Log {
        written: Arc<Mutex<Vec<f32>>>,
        finished: Arc<Mutex<bool>>,
    }

    /// A sink that records what it is given; `keeps_reference`: like a device, it tells the
    /// reference itself (here: everything written, doubled, to tell it apart).
    struct Recording {
        log: Log,
        keeps_reference: bool,
        reference: Option<EchoReference>,
    }

    impl AudioSink for Recording {
        fn name(&self) -> &str {
            "recording"
        }
        fn write(&mut self, samples: &[f32]) -> Result<(), CaptureError> {
            self.log.written.lock().unwrap().extend_from_slice(samples);
            if let Some(reference) = &mut self.reference {
                let doubled: Vec<f32> = samples.iter().map(|s| s * 2.0).collect();
                reference(&doubled);
            }
            Ok(())
        }
        fn set_echo_reference(&mut self, reference: EchoReference) -> Option<EchoReference> {
            if self.keeps_reference {
                self.reference = Some(reference);
                None
            } else {
                Some(reference)
            }
        }
        fn finish(&mut self) -> Result<(), CaptureError> {
            *self.log.finished.lock().unwrap() = true;
            Ok(())
        }
    }

    fn recording(keeps_reference: bool) -> (Box<Recording>, Log) {
        let log = Log::default();
        let sink = Recording {
            log: log.clone(),
            keeps_reference,
            reference: None,
        };
        (Box::new(sink), log)
    }

    #[test]
    fn a_switched_speaker_plays_on_and_the_echo_canceller_keeps_hearing_it() {
        for (first_keeps, second_keeps) in [(false, true), (true, false), (false, false)] {
            let (first, first_log) = recording(first_keeps);
            let (mut speaker, slot) = SwappableSpeaker::new(first);
            let heard = Arc::new(Mutex::new(Vec::new()));
            let reference: EchoReference = {
                let heard = heard.clone();
                Box::new(move |s: &[f32]| heard.lock().unwrap().extend_from_slice(s))
            };
            assert!(
                speaker.set_echo_reference(reference).is_none(),
                "the wrapper keeps the reference, whatever the sink does"
            );
            speaker.write(&[0.25; 4]).unwrap();
            let (second, second_log) = recording(second_keeps);
            slot.put(second);
            assert_eq!(
                speaker.wait_for_room(4, Duration::ZERO).unwrap(),
                Room::Unclocked
            );
            assert!(
                *first_log.finished.lock().unwrap(),
                "the old one is finished"
            );
            speaker.write(&[0.5; 4]).unwrap();
            assert_eq!(*first_log.written.lock().unwrap(), vec![0.25; 4]);
            assert_eq!(*second_log.written.lock().unwrap(), vec![0.5; 4]);
            // Each sample reached the reference once: from the sink that keeps it (doubled) or
            // as written.
            let expect = |keeps: bool, s: f32| vec![if keeps { s * 2.0 } else { s }; 4];
            let mut expected = expect(first_keeps, 0.25);
            expected.extend(expect(second_keeps, 0.5));
            assert_eq!(
                *heard.lock().unwrap(),
                expected,
                "{first_keeps} -> {second_keeps}"
            );
            assert!(!*second_log.finished.lock().unwrap());
            speaker.finish().unwrap();
            assert!(*second_log.finished.lock().unwrap());
        }
    }

    #[test]
    fn a_speaker_handed_over_after_the_last_write_is_finished_too() {
        let (first, _) = recording(false);
        let (mut speaker, slot) = SwappableSpeaker::new(first);
        let (second, second_log) = recording(false);
        slot.put(second);
        speaker.finish().unwrap();
        assert!(*second_log.finished.lock().unwrap());
    }
}
