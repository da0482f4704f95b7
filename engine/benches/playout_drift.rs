//! Benchmark (not a test): audio playout against a sound device whose clock drifts. A synthetic
//! device consumes 0.1% faster than nominal for the first half of the run, then 0.1% slower; the
//! real playout loop (`media_recv::run_playout`) and jitter buffer are fed Opus packets exactly
//! every 20 ms. Prints the audio latency (jitter buffer + device buffer) minute by minute and the
//! 20 ms chunks dropped for overflow (which must be 0).
//!
//! `cargo bench --workspace --bench playout_drift -- --minutes 10` (the default is 10).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use confab_codecs::opus::OpusEncoder;
use confab_engine::audio_jitter::AudioJitterBuffer;
use confab_engine::collector::StatsHandle;
use confab_engine::media_recv::run_playout;
use confab_media::audio::FRAME_SAMPLES;
use confab_media::{AudioSink, CaptureError, Pacer, Room, SAMPLE_RATE_HZ};

/// The synthetic device's period at nominal rate: it takes 480 samples at a time, like a cpal
/// callback; at 48048 Hz those come every 9.99 ms, at 47952 Hz every 10.01 ms.
const PERIOD_SAMPLES: usize = SAMPLE_RATE_HZ as usize / 100;
/// What the sink holds beyond one period before it takes more (as the real speaker does).
const CUSHION_SAMPLES: usize = SAMPLE_RATE_HZ as usize / 50;
/// More than this in the device buffer and a write is dropped (as the real speaker does).
const MAX_BUFFER_SAMPLES: usize = SAMPLE_RATE_HZ as usize / 5;
/// The consumption rates, relative to nominal: 48048/48000, then 47952/48000.
const FAST: f64 = 1.001;
const SLOW: f64 = 0.999;

/// The device side: a buffer a thread drains at the device's own clock.
#[derive(Default)]
struct Device {
    buffer: Mutex<VecDeque<f32>>,
    /// Samples the device took in its latest period.
    period_samples: AtomicUsize,
    underrun_samples: AtomicU64,
}

impl Device {
    fn fill(&self) -> usize {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Takes one period from the buffer every 480 samples of its own clock: `FAST` x 48 kHz of
    /// real time until `switch`, then `SLOW`, until `stop`. Its first period comes 5 ms after
    /// `start`, out of phase with the packets (a real device keeps its own phase).
    fn run(&self, start: Instant, switch: Duration, stop: &AtomicBool) {
        let period_s = PERIOD_SAMPLES as f64 / f64::from(SAMPLE_RATE_HZ);
        let mut due = start + Duration::from_millis(5);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let factor = if due - start < switch { FAST } else { SLOW };
            due += Duration::from_secs_f64(period_s / factor);
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            let had = buffer.len().min(PERIOD_SAMPLES);
            buffer.drain(..had);
            drop(buffer);
            self.period_samples.store(PERIOD_SAMPLES, Ordering::Relaxed);
            self.underrun_samples
                .fetch_add((PERIOD_SAMPLES - had) as u64, Ordering::Relaxed);
        }
    }
}

/// The playout side of the device: the same policy as the real speaker sink.
struct DeviceSink {
    device: Arc<Device>,
    dropped: u64,
}

impl AudioSink for DeviceSink {
    fn name(&self) -> &str {
        "drifting device"
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), CaptureError> {
        let mut buffer = self.device.buffer.lock().unwrap_or_else(|p| p.into_inner());
        if buffer.len() + samples.len() > MAX_BUFFER_SAMPLES {
            self.dropped += samples.len() as u64;
        } else {
            buffer.extend(samples);
        }
        Ok(())
    }

    fn wait_for_room(&mut self, samples: usize, timeout: Duration) -> Result<Room, CaptureError> {
        let deadline = Instant::now() + timeout;
        loop {
            let target =
                self.device.period_samples.load(Ordering::Relaxed) + CUSHION_SAMPLES + samples;
            let occupied = self.device.fill();
            if occupied + samples <= target {
                return Ok(Room::Ready);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Room::Full);
            }
            let excess = (occupied + samples - target) as f64 / f64::from(SAMPLE_RATE_HZ);
            std::thread::sleep(
                Duration::from_secs_f64(excess)
                    .max(Duration::from_millis(1))
                    .min(deadline - now),
            );
        }
    }

    fn dropped_samples(&self) -> u64 {
        self.dropped
    }

    fn underrun_samples(&self) -> u64 {
        self.device.underrun_samples.load(Ordering::Relaxed)
    }
}

/// The network: one Opus packet of a 440 Hz tone every 20 ms, exactly.
fn feed(jitter: &Mutex<AudioJitterBuffer>, stop: &AtomicBool) {
    let mut encoder = OpusEncoder::new(32_000).expect("invariant: Opus accepts 32 kbps");
    let mut pacer = Pacer::new(Duration::from_millis(20));
    let mut pcm = vec![0f32; FRAME_SAMPLES];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        pacer.wait();
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = (n * FRAME_SAMPLES as u64 + i as u64) as f64 / f64::from(SAMPLE_RATE_HZ);
            *s = (0.3 * (std::f64::consts::TAU * 440.0 * t).sin()) as f32;
        }
        let packet = encoder
            .encode(&pcm)
            .expect("invariant: Opus encodes a 20 ms frame");
        let timestamp = (n * FRAME_SAMPLES as u64) as u32;
        jitter.lock().unwrap_or_else(|p| p.into_inner()).push(
            timestamp,
            Bytes::from(packet),
            Instant::now(),
        );
        n += 1;
    }
}

/// Latency samples over one minute (ms).
#[derive(Default)]
struct Minute {
    total: Vec<f64>,
    device: Vec<f64>,
}

fn summary(values: &[f64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    format!("mean {mean:6.1} min {min:6.1} max {max:6.1}")
}

fn minutes_arg() -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--minutes")
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|m| *m > 0.0)
                .unwrap_or_else(|| {
                    eprintln!("--minutes wants a positive number, not {v:?}");
                    std::process::exit(2)
                })
        })
        .unwrap_or(10.0)
}

fn main() {
    let minutes = minutes_arg();
    let run = Duration::from_secs_f64(minutes * 60.0);
    let switch = run / 2;
    println!(
        "playout_drift: {minutes} min; device at {:.0} Hz for the first half, {:.0} Hz after",
        f64::from(SAMPLE_RATE_HZ) * FAST,
        f64::from(SAMPLE_RATE_HZ) * SLOW
    );
    println!(
        "latency = audio held in the jitter buffer + in the device buffer, sampled every 100 ms"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let device = Arc::new(Device::default());
    let jitter = Arc::new(Mutex::new(AudioJitterBuffer::new()));
    let stats = StatsHandle::new(Instant::now());
    let start = Instant::now();
    let threads = [
        {
            let (device, stop) = (device.clone(), stop.clone());
            std::thread::Builder::new()
                .name("fake-device".into())
                .spawn(move || device.run(start, switch, &stop))
        },
        {
            let (jitter, stop) = (jitter.clone(), stop.clone());
            std::thread::Builder::new()
                .name("fake-network".into())
                .spawn(move || feed(&jitter, &stop))
        },
        {
            let (jitter, stats, stop) = (jitter.clone(), stats.clone(), stop.clone());
            let sink = Box::new(DeviceSink {
                device: device.clone(),
                dropped: 0,
            });
            std::thread::Builder::new()
                .name("audio-playout".into())
                .spawn(move || run_playout(&jitter, sink, None, &stats, &stop))
        },
    ]
    .map(|t| t.expect("invariant: the OS can start a thread"));

    // A line per minute (per half for runs of two minutes or less, so both phases show).
    let every = Duration::from_secs(60).min(switch);
    let mut window = Minute::default();
    let mut reports = 1;
    let mut before = stats.snapshot().audio_recv;
    let mut sampler = Pacer::new(Duration::from_millis(100));
    let mut worst = 0f64;
    loop {
        sampler.wait();
        let t = start.elapsed();
        let jitter_ms = jitter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats()
            .buffered_ms;
        let device_ms = device.fill() as f64 * 1000.0 / f64::from(SAMPLE_RATE_HZ);
        // The first second is start-up (the jitter buffer fills to its target).
        if t > Duration::from_secs(1) {
            window.total.push(jitter_ms + device_ms);
            window.device.push(device_ms);
            worst = worst.max(jitter_ms + device_ms);
        }
        if t >= every * reports || t >= run {
            let phase = if every * reports <= switch {
                "fast"
            } else {
                "slow"
            };
            let now = stats.snapshot().audio_recv;
            println!(
                "at {:>5.1} min ({phase}): latency ms {} | device buffer ms {} | concealed {} \
                 stretched {} dropped_latency {} late {} underrun_samples {} overflow_chunks {}",
                (every * reports).as_secs_f64() / 60.0,
                summary(&window.total),
                summary(&window.device),
                now.frames_concealed - before.frames_concealed,
                now.frames_stretched - before.frames_stretched,
                now.frames_dropped_latency - before.frames_dropped_latency,
                now.packets_late - before.packets_late,
                now.speaker_underrun_samples - before.speaker_underrun_samples,
                now.frames_dropped_overflow - before.frames_dropped_overflow,
            );
            before = now;
            window = Minute::default();
            reports += 1;
        }
        if t >= run {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let a = stats.snapshot().audio_recv;
    println!("worst latency ms: {worst:.1}");
    println!(
        "totals: decoded {} concealed {} stretched {} dropped_latency {} packets_late {} \
         underrun_samples {} speaker_samples_dropped {}",
        a.frames_decoded,
        a.frames_concealed,
        a.frames_stretched,
        a.frames_dropped_latency,
        a.packets_late,
        a.speaker_underrun_samples,
        a.speaker_samples_dropped
    );
    println!(
        "20 ms chunks dropped for overflow: {} (must be 0)",
        a.frames_dropped_overflow
    );
}
