//! Microphones and speakers through cpal, at whatever rate, channel count and sample format the
//! device offers. The cpal callbacks only copy (converting the sample type) into lock-free SPSC
//! rings; downmixing, resampling to 48 kHz and back happen on our own audio threads. Each stream
//! lives on a small `audio-device` thread that owns it (cpal streams are not `Send` everywhere).
//! The speaker's ring also sets the pace of playout: `wait_for_room` lets the playout loop write
//! only when the device has played down to its target fill, so the device clock drives playout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{Device, FromSample, Sample as _, SampleFormat, SizedSample, StreamConfig};
use ringbuf::traits::{Consumer as _, Observer as _, Producer as _, Split as _};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use serde::Serialize;

use confab_media::stream_resampler::StreamResampler;
use confab_media::{clock, SAMPLE_RATE_HZ};
use confab_media::{AudioSink, AudioSource, CaptureError, EchoReference, Room};

/// A device that delivers nothing for this long has stopped (unplugged).
const STALL: Duration = Duration::from_secs(2);
/// Audio buffered towards the speaker at most; more is dropped (the device clock is slower).
/// A caller that waits for room never gets near it; it bounds one that writes blindly.
const MAX_SPEAKER_BUFFER: Duration = Duration::from_millis(200);
/// What the speaker's ring holds beyond one device period before it takes more: time for the
/// playout thread to wake up, decode and write before the device would run dry. Every
/// millisecond of it is a millisecond of mouth to ear (NOTES.md, "Through the devices").
const SPEAKER_CUSHION: Duration = Duration::from_millis(10);
/// The microphone's period asked of a PulseAudio server, in 48 kHz frames: 10 ms, the capture
/// blocks' length.
const PULSE_CAPTURE_PERIOD_FRAMES: u32 = SAMPLE_RATE_HZ / 100;
/// The speaker's: 5 ms, so the server's playback buffer (two periods) is 10 ms, as Chromium's
/// own PulseAudio output asks. Against 10 ms periods it takes 12 ms off the speaker's delay and
/// costs no CPU a call can measure since the protocol client stopped zeroing 1 MiB per read
/// (NOTES.md, "Through the devices").
const PULSE_PLAYBACK_PERIOD_FRAMES: u32 = SAMPLE_RATE_HZ / 200;

#[derive(Debug, Clone, Serialize)]
pub struct AudioDeviceDescription {
    pub index: usize,
    pub name: String,
    /// What its audio system calls it (PulseAudio: the sink's or source's name; ALSA: the PCM),
    /// which stays the same while devices come and go, where `index` may not; empty when the
    /// system gives none. Either names the device in a SPEC.
    pub id: String,
    pub default: bool,
    pub sample_rate_hz: Option<u32>,
    pub channels: Option<u16>,
    pub sample_format: Option<String>,
}

impl AudioDeviceDescription {
    /// The SPEC that names this device for `--mic` / `--speaker` and in saved settings: its
    /// system's name for it, unless that name would read as something else in a SPEC (ALSA has
    /// PCMs called `default` and `null`; a number is a place in the list; `none`, `test` and
    /// `file:` mean sources of their own); then its place in the list.
    pub fn spec(&self) -> String {
        let id = self.id.as_str();
        let means_something_else = id.trim() != id
            || matches!(id, "default" | "null")
            || id.parse::<usize>().is_ok()
            || crate::VideoSpec::parse(id) != crate::VideoSpec::Device(id.to_owned());
        if means_something_else {
            self.index.to_string()
        } else {
            id.to_owned()
        }
    }
}

/// ALSA prints its complaints (a machine without a sound card has many) straight to stderr;
/// while the returned guard lives, this thread's are collected instead, for the debug log.
#[cfg(target_os = "linux")]
fn quiet_alsa() -> impl Drop {
    struct Guard(Option<std::rc::Rc<std::cell::RefCell<alsa::Output>>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(output) = &self.0 {
                let text = output.borrow().to_string();
                if !text.trim().is_empty() {
                    tracing::debug!(alsa = %text.trim(), "ALSA said");
                }
            }
        }
    }
    Guard(alsa::Output::local_error_handler().ok())
}

#[cfg(not(target_os = "linux"))]
fn quiet_alsa() -> impl Drop {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {}
    }
    Guard
}

fn unavailable(what: impl std::fmt::Display) -> CaptureError {
    CaptureError::Unavailable(what.to_string())
}

fn device_name(device: &Device) -> String {
    device
        .description()
        .map(|d| d.to_string())
        .or_else(|_| device.id().map(|id| id.to_string()))
        .unwrap_or_else(|_| "unknown device".to_owned())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Input,
    Output,
}

impl Direction {
    fn noun(self) -> &'static str {
        match self {
            Self::Input => "microphone",
            Self::Output => "speaker",
        }
    }
}

/// Names the audio system to use instead of cpal's choice (`alsa`, `pulseaudio`, `jack`,
/// `wasapi`...): for a PulseAudio server that misbehaves, and for the tests of the ALSA path.
pub const HOST_ENV: &str = "CONFAB_AUDIO_HOST";

/// The audio system the devices are reached through: on Linux PulseAudio's protocol when a
/// PulseAudio or PipeWire pulse server runs, ALSA otherwise; `CONFAB_AUDIO_HOST` overrides.
fn audio_host() -> cpal::Host {
    if let Some(wanted) = std::env::var(HOST_ENV)
        .ok()
        .filter(|h| !h.trim().is_empty())
    {
        match wanted
            .trim()
            .parse::<cpal::HostId>()
            .and_then(cpal::host_from_id)
        {
            Ok(host) => return host,
            Err(err) => {
                static TOLD: std::sync::Once = std::sync::Once::new();
                TOLD.call_once(|| {
                    let here: Vec<String> = cpal::available_hosts()
                        .iter()
                        .map(|h| h.to_string())
                        .collect();
                    tracing::warn!(
                        "{HOST_ENV}={wanted:?} cannot be used ({err}); this system has: {}; \
                         using the default",
                        here.join(", ")
                    );
                });
            }
        }
    }
    let host = cpal::default_host();
    if !is_pulse(&host) && cpal::available_hosts().into_iter().any(is_pulse_host) {
        static TOLD: std::sync::Once = std::sync::Once::new();
        TOLD.call_once(|| {
            tracing::info!(
                "a PulseAudio server runs but did not take our connection (no client cookie in \
                 ~/.config/pulse?); audio devices go through ALSA, with more delay"
            );
        });
    }
    host
}

/// Whether `host` is PulseAudio's native protocol (cpal prefers it on Linux when a PulseAudio or
/// PipeWire pulse server runs; ALSA otherwise).
fn is_pulse(host: &cpal::Host) -> bool {
    is_pulse_host(host.id())
}

#[cfg(target_os = "linux")]
fn is_pulse_host(id: cpal::HostId) -> bool {
    id == cpal::HostId::PulseAudio
}

#[cfg(not(target_os = "linux"))]
fn is_pulse_host(_id: cpal::HostId) -> bool {
    false
}

/// The device a PulseAudio client plays to or records from when it names none: the server's
/// default, unless `PULSE_SINK` / `PULSE_SOURCE` name another, as libpulse's clients honour
/// (and ALSA's pulse plugin did for us before the native host).
fn pulse_default_override(direction: Direction) -> Option<String> {
    let var = match direction {
        Direction::Input => "PULSE_SOURCE",
        Direction::Output => "PULSE_SINK",
    };
    std::env::var(var)
        .ok()
        .filter(|name| !name.trim().is_empty())
}

/// A device's name as its host knows it (PulseAudio: the sink's or source's name, such as
/// `alsa_output.pci-0000_00_1f.3.analog-stereo`); empty when the host gives none.
fn device_id(device: &Device) -> String {
    device.id().map(|id| id.id().to_owned()).unwrap_or_default()
}

fn devices(host: &cpal::Host, direction: Direction) -> Result<Vec<Device>, CaptureError> {
    let list = match direction {
        Direction::Input => host.input_devices(),
        Direction::Output => host.output_devices(),
    };
    Ok(list
        .map_err(|e| unavailable(format!("cannot list audio devices: {e}")))?
        .collect())
}

pub fn describe(input: bool) -> Result<Vec<AudioDeviceDescription>, CaptureError> {
    let _quiet = quiet_alsa();
    let direction = if input {
        Direction::Input
    } else {
        Direction::Output
    };
    let host = audio_host();
    let default = default_device(&host, direction)
        .ok()
        .map(|d| device_name(&d));
    // Devices that cannot say how they would run (ALSA lists every PCM plugin installed, most of
    // them unusable here) are left out; indices stay those `find` understands.
    Ok(devices(&host, direction)?
        .iter()
        .enumerate()
        .filter_map(|(index, device)| {
            if is_idle_jack(device) {
                return None;
            }
            let config = match direction {
                Direction::Input => device.default_input_config(),
                Direction::Output => device.default_output_config(),
            }
            .ok()?;
            let name = device_name(device);
            Some(AudioDeviceDescription {
                index,
                default: default.as_deref() == Some(name.as_str()),
                name,
                id: device_id(device),
                sample_rate_hz: Some(config.sample_rate()),
                channels: Some(config.channels()),
                sample_format: Some(config.sample_format().to_string()),
            })
        })
        .collect())
}

/// ALSA's `jack` plugin: asking it for a configuration makes libjack try to reach (and start) a
/// JACK server, and it prints its failures straight to stderr. It is only worth asking while a
/// JACK server runs: JACK2 keeps its sockets in /dev/shm as `jack_SERVER_UID_N`, JACK1 under
/// `jack-UID/`; `jack_db-UID` is libjack's own metadata, left behind by any client.
fn is_idle_jack(device: &Device) -> bool {
    let is_jack = device.id().is_ok_and(|id| id.id() == "jack");
    is_jack && !jack_server_running()
}

fn jack_server_running() -> bool {
    std::fs::read_dir("/dev/shm").is_ok_and(|entries| {
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .any(|name| name.starts_with("jack") && !name.starts_with("jack_db"))
    })
}

/// The system's default microphone or speaker.
fn default_device(host: &cpal::Host, direction: Direction) -> Result<Device, CaptureError> {
    if let Some(name) = is_pulse(host)
        .then(|| pulse_default_override(direction))
        .flatten()
    {
        let list = devices(host, direction)?;
        let ids: Vec<String> = list.iter().map(device_id).collect();
        return list
            .into_iter()
            .find(|d| device_id(d) == name)
            .ok_or_else(|| {
                unavailable(format!(
                    "the environment asks for the {} {name:?} (PULSE_SINK / PULSE_SOURCE), \
                     which PulseAudio does not have; it has: {}",
                    direction.noun(),
                    ids.join(", ")
                ))
            });
    }
    match direction {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    }
    .ok_or_else(|| unavailable(format!("no {} found", direction.noun())))
}

/// `default`, an index, the host's name for it, or part of the name people see.
fn find(spec: &str, direction: Direction) -> Result<Device, CaptureError> {
    let _quiet = quiet_alsa();
    let host = audio_host();
    if spec == "default" {
        return default_device(&host, direction);
    }
    let list = devices(&host, direction)?;
    if let Ok(i) = spec.parse::<usize>() {
        if let Some(device) = list.get(i) {
            return Ok(device.clone());
        }
    }
    // The host's own name for it, exactly (a PulseAudio sink's or source's name), or part of
    // the name people see.
    if let Some(i) = list.iter().position(|d| device_id(d) == spec) {
        return Ok(list[i].clone());
    }
    let wanted = spec.to_lowercase();
    let names: Vec<String> = list.iter().map(device_name).collect();
    list.into_iter()
        .find(|d| device_name(d).to_lowercase().contains(&wanted))
        .ok_or_else(|| {
            unavailable(format!(
                "no {} matches {spec:?}; there are: {}",
                direction.noun(),
                names.join(", ")
            ))
        })
}

/// Shared between a stream's callbacks and its owner.
#[derive(Default)]
struct StreamState {
    /// A fatal error: the device is gone.
    error: Mutex<Option<String>>,
    /// Samples the device delivered (input) or asked for (output).
    frames: AtomicU64,
    /// Passing problems (under/overruns, a backend hiccup) the stream survived.
    glitches: AtomicU64,
    /// Output: samples the device asked for that the ring did not have (played as silence).
    underrun_samples: AtomicU64,
    /// Samples the device asked for (output) or delivered (input) in its latest callback: its
    /// period.
    request_samples: AtomicU64,
    /// Input: samples the device delivered that the ring had no room for (lost).
    overrun_samples: AtomicU64,
    /// The device's own buffering at its latest callback, µs. Input: how long before the
    /// callback the newest sample it delivered was captured. Output: from the callback until
    /// the first sample it took is played.
    device_us: AtomicU64,
    /// Output: when (wall clock, µs) the latest callback took its samples.
    callback_us: AtomicU64,
    /// Input: the thread reading the ring, woken by each callback instead of polling for it.
    reader: std::sync::OnceLock<std::thread::Thread>,
}

impl StreamState {
    /// Sorts a stream error: the device going away ends the stream; everything else (an xrun,
    /// an I/O hiccup that ALSA's pulse plugin reports while starting) is counted and survived.
    fn report(&self, e: &cpal::Error) {
        use cpal::ErrorKind as K;
        match e.kind() {
            K::DeviceNotAvailable
            | K::HostUnavailable
            | K::StreamInvalidated
            | K::PermissionDenied => {
                *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
            _ => {
                if self.glitches.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::debug!(%e, "audio stream glitch (continuing)");
                }
            }
        }
    }
}

/// Starts a stream on its own thread; returns once it plays (or why it cannot).
fn run_stream(
    name: String,
    stop: Arc<AtomicBool>,
    state: Arc<StreamState>,
    build: impl FnOnce() -> Result<cpal::Stream, String> + Send + 'static,
) -> Result<(), CaptureError> {
    let what = name.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    std::thread::Builder::new()
        .name("audio-device".into())
        .spawn(move || {
            let _quiet = quiet_alsa();
            let stream = match build().and_then(|s| s.play().map(|()| s).map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut told = false;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if !told && state.frames.load(Ordering::Relaxed) > 0 {
                    told = true;
                    tracing::debug!(
                        stream = what,
                        period_samples = state.request_samples.load(Ordering::Relaxed),
                        device_ms = state.device_us.load(Ordering::Relaxed) as f64 / 1000.0,
                        "audio stream running"
                    );
                }
            }
            drop(stream);
        })
        .map_err(|e| unavailable(format!("cannot start an audio thread: {e}")))?;
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| unavailable(format!("{name} did not start within 10 s")))?
        .map_err(|e| unavailable(format!("{name} cannot be opened: {e}")))
}

fn input_stream<T>(
    device: &Device,
    config: StreamConfig,
    mut ring: HeapProd<f32>,
    state: Arc<StreamState>,
) -> Result<cpal::Stream, String>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let err_state = state.clone();
    let channels = usize::from(config.channels.max(1));
    let rate = f64::from(config.sample_rate.max(1));
    device
        .build_input_stream(
            config,
            move |data: &[T], info: &cpal::InputCallbackInfo| {
                // The device's timestamps say when the first of these samples was captured; the
                // newest is younger by the buffer's length.
                let ts = info.timestamp();
                let span = Duration::from_secs_f64((data.len() / channels) as f64 / rate);
                let age = ts.callback.duration_since(ts.capture).saturating_sub(span);
                state
                    .device_us
                    .store(age.as_micros() as u64, Ordering::Relaxed);
                state
                    .request_samples
                    .store(data.len() as u64, Ordering::Relaxed);
                // Only copy: convert the sample type into the ring, and count what did not fit.
                let lost = push_frames(&mut ring, data, channels);
                state.frames.fetch_add(data.len() as u64, Ordering::Relaxed);
                if let Some(reader) = state.reader.get() {
                    reader.unpark();
                }
                if lost > 0 {
                    state.overrun_samples.fetch_add(lost, Ordering::Relaxed);
                }
            },
            move |e| err_state.report(&e),
            None,
        )
        .map_err(|e| e.to_string())
}

/// Pushes the whole frames (one sample per channel) of `data` that fit into `ring`, converted;
/// returns how many samples did not fit. A frame is never split: the reader takes whole frames,
/// and half of one would shift every channel (and lose a sample) from then on.
fn push_frames<T>(ring: &mut HeapProd<f32>, data: &[T], channels: usize) -> u64
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let fit = (ring.vacant_len() / channels * channels).min(data.len() / channels * channels);
    // One write index update for the lot: the reader sees all of these samples or none.
    let pushed = ring.push_iter(data[..fit].iter().map(|&s| f32::from_sample(s)));
    (data.len() - pushed) as u64
}

/// Pops the whole frames waiting in `ring` into `out` (as many as fit); returns the samples
/// popped, a multiple of `channels`. The device pushes while we read, so the ring may hold part
/// of a frame; it stays there until the rest comes.
fn pop_frames(ring: &mut HeapCons<f32>, out: &mut [f32], channels: usize) -> usize {
    let whole = (ring.occupied_len().min(out.len()) / channels) * channels;
    ring.pop_slice(&mut out[..whole])
}

fn output_stream<T>(
    device: &Device,
    config: StreamConfig,
    (mut ring, mut tap): (HeapCons<f32>, EchoTap),
    state: Arc<StreamState>,
) -> Result<cpal::Stream, String>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let err_state = state.clone();
    let channels = usize::from(config.channels.max(1));
    device
        .build_output_stream(
            config,
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
                let ts = info.timestamp();
                let delay = ts.playback.duration_since(ts.callback);
                state
                    .device_us
                    .store(delay.as_micros() as u64, Ordering::Relaxed);
                state.callback_us.store(clock::now_us(), Ordering::Relaxed);
                let mut missing = 0;
                for out in data.iter_mut() {
                    *out = T::from_sample(ring.try_pop().unwrap_or_else(|| {
                        missing += 1;
                        0.0
                    }));
                }
                let n = data.len() as u64;
                state.frames.fetch_add(n, Ordering::Relaxed);
                state.request_samples.store(n, Ordering::Relaxed);
                if missing > 0 {
                    state.underrun_samples.fetch_add(missing, Ordering::Relaxed);
                }
                // The ring runs out at the end of a period: what it had first, then silence.
                let frames = data.len() / channels;
                let silent = (missing as usize).div_ceil(channels).min(frames);
                tap.took(frames - silent, silent);
            },
            move |e| err_state.report(&e),
            None,
        )
        .map_err(|e| e.to_string())
}

macro_rules! by_format {
    ($format:expr, $f:ident, $($arg:expr),*) => {
        match $format {
            SampleFormat::I16 => $f::<i16>($($arg),*),
            SampleFormat::I32 => $f::<i32>($($arg),*),
            SampleFormat::U16 => $f::<u16>($($arg),*),
            SampleFormat::F32 => $f::<f32>($($arg),*),
            SampleFormat::F64 => $f::<f64>($($arg),*),
            SampleFormat::U8 => $f::<u8>($($arg),*),
            SampleFormat::I8 => $f::<i8>($($arg),*),
            other => Err(format!("sample format {other} is not supported")),
        }
    };
}

/// A device and the configuration it runs at (its default one).
struct DeviceConfig {
    device: Device,
    direction: Direction,
    name: String,
    /// The audio system it is reached through (PulseAudio, ALSA, WASAPI, CoreAudio...).
    host: &'static str,
    config: StreamConfig,
    rate: u32,
    channels: u16,
    format: SampleFormat,
}

impl DeviceConfig {
    fn find(spec: &str, direction: Direction) -> Result<Self, CaptureError> {
        let device = find(spec, direction)?;
        let name = device_name(&device);
        let supported = match direction {
            Direction::Input => device.default_input_config(),
            Direction::Output => device.default_output_config(),
        }
        .map_err(|e| unavailable(format!("{} {name}: {e}", direction.noun())))?;
        let (mut rate, channels, mut format) = (
            supported.sample_rate(),
            supported.channels(),
            supported.sample_format(),
        );
        let mut config: StreamConfig = supported.into();
        let host = device.id().ok().map(|id| id.host());
        if host.is_some_and(is_pulse_host) {
            // The server converts and resamples for its clients, so take the calls' own rate
            // and float samples (its sinks may be 24-bit), in short periods: a microphone's in
            // the capture blocks' 10 ms, a speaker's in 5 ms (a playback buffer of two of them).
            // Left to itself it would buffer up to 2 s (NOTES.md, "Through the devices").
            (rate, format) = (SAMPLE_RATE_HZ, SampleFormat::F32);
            config.sample_rate = rate;
            config.buffer_size = cpal::BufferSize::Fixed(match direction {
                Direction::Input => PULSE_CAPTURE_PERIOD_FRAMES,
                Direction::Output => PULSE_PLAYBACK_PERIOD_FRAMES,
            });
        }
        Ok(Self {
            device,
            direction,
            name,
            host: host.map_or("an unknown host", |h| h.name()),
            config,
            rate,
            channels,
            format,
        })
    }

    /// One second of raw device audio.
    fn ring(&self) -> HeapRb<f32> {
        HeapRb::<f32>::new(self.rate as usize * usize::from(self.channels.max(1)))
    }

    /// Builds the stream with `build` on its own thread and starts it.
    fn start(
        self,
        build: impl FnOnce(
                &Device,
                StreamConfig,
                SampleFormat,
                Arc<StreamState>,
            ) -> Result<cpal::Stream, String>
            + Send
            + 'static,
    ) -> Result<(Arc<StreamState>, Arc<AtomicBool>), CaptureError> {
        let state = Arc::new(StreamState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let what = format!("{} {}", self.direction.noun(), self.name);
        let (host, period) = (self.host, self.config.buffer_size);
        let callback_state = state.clone();
        run_stream(what.clone(), stop.clone(), state.clone(), move || {
            build(&self.device, self.config, self.format, callback_state)
        })?;
        tracing::info!(device = what, host, ?period, "audio device open");
        Ok((state, stop))
    }
}

/// A microphone, delivering mono 48 kHz.
pub struct MicSource {
    ring: HeapCons<f32>,
    channels: usize,
    resampler: StreamResampler,
    raw: Vec<f32>,
    mono: Vec<f32>,
    state: Arc<StreamState>,
    stop: Arc<AtomicBool>,
    name: String,
}

impl MicSource {
    pub fn open(spec: &str) -> Result<Self, CaptureError> {
        let dc = DeviceConfig::find(spec, Direction::Input)?;
        let (prod, cons) = dc.ring().split();
        let (name, rate, channels, format, host) =
            (dc.name.clone(), dc.rate, dc.channels, dc.format, dc.host);
        let (state, stop) = dc.start(move |device, config, format, state| {
            by_format!(format, input_stream, device, config, prod, state)
        })?;
        Ok(Self {
            ring: cons,
            channels: usize::from(channels.max(1)),
            resampler: StreamResampler::new(rate, SAMPLE_RATE_HZ).map_err(unavailable)?,
            raw: vec![0.0; 4096],
            mono: Vec::new(),
            state,
            stop,
            name: format!("{name} ({rate} Hz, {channels} ch, {format}, {host})"),
        })
    }
}

impl AudioSource for MicSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn read(&mut self, out: &mut [f32]) -> Result<u64, CaptureError> {
        let started = Instant::now();
        loop {
            if let Some(e) = self
                .state
                .error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                return Err(CaptureError::Stopped(format!(
                    "microphone {}: {e}",
                    self.name
                )));
            }
            // Whole frames only, so channels never slip and no sample is left behind.
            let n = pop_frames(&mut self.ring, &mut self.raw, self.channels);
            if n > 0 {
                self.mono.clear();
                self.mono.extend(
                    self.raw[..n]
                        .chunks_exact(self.channels)
                        .map(|f| f.iter().sum::<f32>() / self.channels as f32),
                );
                self.resampler.push(&self.mono);
                continue;
            }
            if self.resampler.pop(out) {
                // The newest of these samples reached the ring about now, as old as the
                // device's buffering made it (each callback wakes us).
                let span_us = (out.len() + self.resampler.available()) as u64 * 1_000_000
                    / u64::from(SAMPLE_RATE_HZ);
                let device_us = self.state.device_us.load(Ordering::Relaxed);
                return Ok(clock::now_us().saturating_sub(span_us + device_us));
            }
            if started.elapsed() > STALL {
                return Err(CaptureError::Stopped(format!(
                    "microphone {} delivered nothing for {} s (unplugged?)",
                    self.name,
                    STALL.as_secs()
                )));
            }
            // The next callback wakes us (a MicSource is read by one thread: the first to read
            // it); the timeout only paces the stall check when the device goes quiet.
            if self.state.reader.get().is_none() {
                let _ = self.state.reader.set(std::thread::current());
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    fn dropped_samples(&self) -> u64 {
        self.state.overrun_samples.load(Ordering::Relaxed) / self.channels as u64
    }

    fn capture_delay(&self) -> Option<Duration> {
        (self.state.frames.load(Ordering::Relaxed) > 0)
            .then(|| Duration::from_micros(self.state.device_us.load(Ordering::Relaxed)))
    }
}

impl Drop for MicSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A speaker, fed mono 48 kHz.
pub struct SpeakerSink {
    ring: HeapProd<f32>,
    channels: usize,
    rate: u32,
    resampler: StreamResampler,
    converted: Vec<f32>,
    interleaved: Vec<f32>,
    state: Arc<StreamState>,
    stop: Arc<AtomicBool>,
    /// Device samples (all channels) written but discarded: the ring was over its limit.
    dropped: u64,
    /// (device frames played, when that count last moved), to notice a speaker that stopped.
    progress: (u64, Instant),
    name: String,
    /// The stream's underrun count already acted on.
    underruns_seen: u64,
    /// The stream's underrun count at the first write: the silence it played before there was
    /// anything to play is no glitch.
    underruns_before_first_write: Option<u64>,
    echo: EchoFeed,
}

/// How far ahead of the device the echo canceller is told what it plays: AEC3 pairs each
/// microphone block with the far end it was told of before it, and cancels nothing when an echo
/// comes less than ~5 ms after its far end by that count (unit test in `confab_codecs::apm`).
/// Told when the device takes it, a PulseAudio monitor's echo came 0-4 ms after it.
const ECHO_LEAD: Duration = Duration::from_millis(20);

/// Tells the echo canceller what the speaker will play, from the device's callback: up to
/// `ECHO_LEAD` ahead of what the device takes, never further, and the silence it plays when it
/// runs dry where it plays it. Told at write time instead (as before 2026-12-05), a playout
/// thread that woke late ran the canceller's far end dry and then told it everything at once:
/// the far end fell behind its echo by AEC3's count for the rest of the call, and the canceller
/// never converged (NOTES.md, "The echo test").
struct EchoTap {
    /// The 48 kHz mono samples written, queued before the device ring has them.
    ring: HeapCons<f32>,
    /// Set once playout hands over the canceller's far end (`set_echo_reference`).
    reference: Arc<Mutex<Option<EchoReference>>>,
    /// Samples queued and then dropped before the device: passed over.
    skip: Arc<AtomicU64>,
    /// The device frames taken, in 48 kHz samples.
    taken: At48k,
    /// 48 kHz samples told minus those the device took (or played as silence).
    ahead: i64,
    lead: i64,
    buf: Vec<f32>,
}

impl EchoTap {
    fn new(
        ring: HeapCons<f32>,
        reference: Arc<Mutex<Option<EchoReference>>>,
        skip: Arc<AtomicU64>,
        rate: u32,
    ) -> Self {
        Self {
            ring,
            reference,
            skip,
            taken: At48k::new(rate),
            ahead: 0,
            lead: (ECHO_LEAD.as_secs_f64() * f64::from(SAMPLE_RATE_HZ)) as i64,
            // Periods longer than a second are cut to one (a device never asks for that much).
            buf: Vec::with_capacity(SAMPLE_RATE_HZ as usize),
        }
    }

    /// The device took `played` frames from its ring and then played `silent` frames of silence.
    fn took(&mut self, played: usize, silent: usize) {
        let skip = self.skip.swap(0, Ordering::Relaxed) as usize;
        let skipped = self.ring.skip(skip.min(self.ring.occupied_len()));
        if skipped < skip {
            self.skip
                .fetch_add((skip - skipped) as u64, Ordering::Relaxed);
        }
        let (played, silent) = (self.taken.samples(played), self.taken.samples(silent));
        self.ahead -= (played + silent) as i64;
        // The device ran dry where what was told so far ends: its silence goes on from there.
        let silent = silent.min(self.buf.capacity());
        self.buf.clear();
        self.buf.resize(silent, 0.0);
        self.ahead += silent as i64;
        // Then what it will play next, up to the lead.
        let want = (self.lead - self.ahead).clamp(0, (self.buf.capacity() - silent) as i64);
        self.buf.resize(silent + want as usize, 0.0);
        let popped = self.ring.pop_slice(&mut self.buf[silent..]);
        self.buf.truncate(silent + popped);
        self.ahead += popped as i64;
        if self.buf.is_empty() {
            return;
        }
        let mut reference = self.reference.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reference) = reference.as_mut() {
            reference(&self.buf);
        }
    }
}

/// Device frames as 48 kHz samples, the fraction carried from one count to the next (no drift).
struct At48k {
    rate: u64,
    /// Device frames not yet counted as a whole sample, times 48 kHz.
    remainder: u64,
}

impl At48k {
    fn new(rate: u32) -> Self {
        Self {
            rate: u64::from(rate.max(1)),
            remainder: 0,
        }
    }

    fn samples(&mut self, frames: usize) -> usize {
        let scaled = frames as u64 * u64::from(SAMPLE_RATE_HZ) + self.remainder;
        self.remainder = scaled % self.rate;
        (scaled / self.rate) as usize
    }
}

/// The writing side of an `EchoTap`.
struct EchoFeed {
    ring: HeapProd<f32>,
    reference: Arc<Mutex<Option<EchoReference>>>,
    /// 48 kHz samples queued that the device will never play, for the tap to pass over.
    skip: Arc<AtomicU64>,
    /// The device frames dropped or padded, in 48 kHz samples.
    counted: At48k,
}

impl EchoFeed {
    /// A tap for the device's callback and the feed that fills it.
    fn pair(rate: u32) -> (Self, EchoTap) {
        let (prod, cons) = HeapRb::<f32>::new(SAMPLE_RATE_HZ as usize).split();
        let reference = Arc::new(Mutex::new(None));
        let skip = Arc::new(AtomicU64::new(0));
        let tap = EchoTap::new(cons, reference.clone(), skip.clone(), rate);
        let feed = Self {
            ring: prod,
            reference,
            skip,
            counted: At48k::new(rate),
        };
        (feed, tap)
    }

    /// 48 kHz samples written, of which the newest `dropped` device frames' worth will not be
    /// played (the device ring had no room).
    fn queued(&mut self, samples: &[f32], dropped: usize) {
        let dropped = self.counted.samples(dropped);
        let kept = samples.len().saturating_sub(dropped);
        self.ring.push_slice(&samples[..kept]);
        if dropped > samples.len() {
            // More than this write (the resampler held some of it back last time): the oldest
            // queued are passed over instead, which puts the far end a little ahead for a moment.
            self.skip
                .fetch_add((dropped - samples.len()) as u64, Ordering::Relaxed);
        }
    }

    /// `frames` device frames of silence go into the device ring ahead of what comes next.
    fn silence(&mut self, frames: usize) {
        let n = self.counted.samples(frames);
        self.ring.push_iter(std::iter::repeat_n(0.0, n));
    }

    fn set(&self, reference: Option<EchoReference>) {
        *self.reference.lock().unwrap_or_else(|p| p.into_inner()) = reference;
    }
}

impl SpeakerSink {
    pub fn open(spec: &str) -> Result<Self, CaptureError> {
        let dc = DeviceConfig::find(spec, Direction::Output)?;
        let (prod, cons) = dc.ring().split();
        let (name, rate, channels, format, host) =
            (dc.name.clone(), dc.rate, dc.channels, dc.format, dc.host);
        let (echo, tap) = EchoFeed::pair(rate);
        let (state, stop) = dc.start(move |device, config, format, state| {
            by_format!(format, output_stream, device, config, (cons, tap), state)
        })?;
        Ok(Self {
            ring: prod,
            channels: usize::from(channels.max(1)),
            rate,
            resampler: StreamResampler::new(SAMPLE_RATE_HZ, rate).map_err(unavailable)?,
            converted: Vec::new(),
            interleaved: Vec::new(),
            state,
            stop,
            dropped: 0,
            progress: (0, Instant::now()),
            name: format!("{name} ({rate} Hz, {channels} ch, {format}, {host})"),
            underruns_seen: 0,
            underruns_before_first_write: None,
            echo,
        })
    }
}

impl AudioSink for SpeakerSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), CaptureError> {
        self.check_playing()?;
        if self.underruns_before_first_write.is_none() {
            self.underruns_before_first_write =
                Some(self.state.underrun_samples.load(Ordering::Relaxed));
        }
        self.keep_fed();
        self.resampler.push(samples);
        self.converted.resize(self.resampler.available(), 0.0);
        // The tap is told of the samples before the device ring has them (the device may take
        // them at once), all of them: what the resampler holds back reaches the device a few
        // samples later, so the canceller hears the far end ahead of the device, as it must.
        if !self.resampler.pop(&mut self.converted) {
            self.echo.queued(samples, 0);
            return Ok(());
        }
        self.interleaved.clear();
        for &s in &self.converted {
            self.interleaved
                .extend(std::iter::repeat_n(s, self.channels));
        }
        let limit =
            (MAX_SPEAKER_BUFFER.as_secs_f64() * f64::from(self.rate)) as usize * self.channels;
        if self.ring.occupied_len() + self.interleaved.len() > limit {
            // The device plays slower than we deliver: drop rather than let delay grow (nor is
            // the echo canceller told of them).
            self.dropped += self.interleaved.len() as u64;
            self.echo.queued(samples, self.converted.len());
            return Ok(());
        }
        let fit = self.ring.vacant_len().min(self.interleaved.len()) / self.channels;
        self.echo.queued(samples, self.converted.len() - fit);
        let pushed = self
            .ring
            .push_slice(&self.interleaved[..fit * self.channels]);
        self.dropped += (self.interleaved.len() - pushed) as u64;
        Ok(())
    }

    fn wait_for_room(&mut self, samples: usize, timeout: Duration) -> Result<Room, CaptureError> {
        let deadline = Instant::now() + timeout;
        // The samples as the ring holds them: at the device rate, one per channel.
        let needed = (samples as u64 * u64::from(self.rate)).div_ceil(u64::from(SAMPLE_RATE_HZ))
            as usize
            * self.channels;
        loop {
            self.check_playing()?;
            let fill = RingFill {
                occupied: self.ring.occupied_len(),
                period: self.state.request_samples.load(Ordering::Relaxed) as usize,
                channels: self.channels,
                rate: self.rate,
            };
            let Some(wait) = fill.wait_before(needed) else {
                return Ok(Room::Ready);
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Room::Full);
            }
            // The callback only copies; it does not wake us, so we sleep the time it takes the
            // device to play the excess (at least 1 ms, so that we do not spin).
            std::thread::sleep(wait.max(Duration::from_millis(1)).min(deadline - now));
        }
    }

    fn dropped_samples(&self) -> u64 {
        self.dropped / self.channels as u64
    }

    fn underrun_samples(&self) -> u64 {
        self.underruns_before_first_write.map_or(0, |before| {
            self.state
                .underrun_samples
                .load(Ordering::Relaxed)
                .saturating_sub(before)
                / self.channels as u64
        })
    }

    fn output_delay(&self) -> Option<Duration> {
        let callback_us = self.state.callback_us.load(Ordering::Relaxed);
        (callback_us > 0).then(|| {
            let queue = OutputQueue {
                callback_us,
                device_us: self.state.device_us.load(Ordering::Relaxed),
                period: self.state.request_samples.load(Ordering::Relaxed) as usize,
                occupied: self.ring.occupied_len(),
                channels: self.channels,
                rate: self.rate,
            };
            queue.delay_at(clock::now_us())
        })
    }

    fn set_echo_reference(&mut self, reference: EchoReference) -> Option<EchoReference> {
        self.echo.set(Some(reference));
        None
    }
}

/// Where the speaker's queue stood: the device's latest callback and what the ring holds; all
/// counts in device samples (all channels).
#[derive(Debug, Clone, Copy)]
struct OutputQueue {
    /// When the latest callback took a period from the ring (wall clock, µs).
    callback_us: u64,
    /// From that callback until the first sample it took is played, by the device (µs).
    device_us: u64,
    /// What that callback took.
    period: usize,
    /// What the ring holds behind it.
    occupied: usize,
    channels: usize,
    rate: u32,
}

impl OutputQueue {
    /// From `now_us` until a sample written now is heard: it plays after the period the device
    /// took and everything the ring holds.
    fn delay_at(&self, now_us: u64) -> Duration {
        let frames = (self.period + self.occupied) / self.channels.max(1);
        let queued_us = frames as u64 * 1_000_000 / u64::from(self.rate.max(1));
        let heard_us = self.callback_us + self.device_us + queued_us;
        Duration::from_micros(heard_us.saturating_sub(now_us))
    }
}

/// The speaker ring as the playout side sees it; all counts in device samples (all channels).
#[derive(Debug, Clone, Copy)]
struct RingFill {
    occupied: usize,
    /// What the device takes per callback (0 before its first one).
    period: usize,
    channels: usize,
    rate: u32,
}

impl RingFill {
    /// How long until the ring can take `needed` more without holding more than one device
    /// period, the cushion and those samples; `None`: now.
    fn wait_before(&self, needed: usize) -> Option<Duration> {
        let cushion = (SPEAKER_CUSHION.as_secs_f64() * f64::from(self.rate)) as usize;
        let target = self.period + cushion * self.channels + needed;
        let excess = (self.occupied + needed).checked_sub(target)?;
        if excess == 0 {
            return None;
        }
        let excess_frames = excess.div_ceil(self.channels);
        Some(Duration::from_secs_f64(
            excess_frames as f64 / f64::from(self.rate),
        ))
    }
}

impl SpeakerSink {
    /// Fails when the device reported a fatal error or stopped asking for samples.
    fn check_playing(&mut self) -> Result<(), CaptureError> {
        if let Some(e) = self
            .state
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(CaptureError::Stopped(format!("speaker {}: {e}", self.name)));
        }
        let played = self.state.frames.load(Ordering::Relaxed);
        if played != self.progress.0 {
            self.progress = (played, Instant::now());
        } else if self.progress.1.elapsed() > STALL + Duration::from_secs(2) {
            // Allow for PulseAudio's slow start; after that a silent device is a stopped one.
            return Err(CaptureError::Stopped(format!(
                "speaker {} stopped playing",
                self.name
            )));
        }
        Ok(())
    }

    /// After the device ran dry (it played silence, which shifts everything after it), tops the
    /// ring up to one device period plus the cushion so that the next periods find audio
    /// waiting (the echo canceller hears that silence as the device plays it).
    fn keep_fed(&mut self) {
        let underruns = self.state.underrun_samples.load(Ordering::Relaxed);
        let missed = underruns.saturating_sub(self.underruns_seen);
        self.underruns_seen = underruns;
        if missed > 0 {
            tracing::debug!(
                ms = (missed / self.channels as u64) as f64 * 1000.0 / f64::from(self.rate),
                "speaker ran dry"
            );
        }
        if missed == 0 && self.ring.occupied_len() > 0 {
            return;
        }
        let period = self.state.request_samples.load(Ordering::Relaxed) as usize;
        let cushion = period
            + (SPEAKER_CUSHION.as_secs_f64() * f64::from(self.rate)) as usize * self.channels;
        let pad = cushion.saturating_sub(self.ring.occupied_len()) / self.channels * self.channels;
        if pad == 0 {
            return;
        }
        let pad = pad.min(self.ring.vacant_len() / self.channels * self.channels);
        self.interleaved.clear();
        self.interleaved.resize(pad, 0.0);
        self.echo.silence(pad / self.channels);
        self.ring.push_slice(&self.interleaved);
    }
}

impl Drop for SpeakerSink {
    fn drop(&mut self) {
        if self.dropped > 0 {
            tracing::debug!(
                samples = self.dropped,
                "speaker: dropped samples to bound latency"
            );
        }
        if self.underruns_seen > 0 {
            tracing::debug!(
                samples = self.underruns_seen,
                "speaker: ran dry (played silence)"
            );
        }
        // The stream may take a last period before its thread stops it: not for the canceller,
        // which the next speaker (a switch mid-call) tells from now on.
        self.echo.set(None);
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(index: usize, id: &str) -> AudioDeviceDescription {
        AudioDeviceDescription {
            index,
            name: "Built-in Audio Analog Stereo".into(),
            id: id.into(),
            default: false,
            sample_rate_hz: Some(48_000),
            channels: Some(2),
            sample_format: Some("f32".into()),
        }
    }

    #[test]
    fn a_device_is_named_by_its_systems_name_unless_that_means_something_else() {
        let id = "alsa_output.pci-0000_00_1f.3.analog-stereo";
        assert_eq!(described(3, id).spec(), id);
        assert_eq!(
            described(3, "hw:CARD=PCH,DEV=0").spec(),
            "hw:CARD=PCH,DEV=0"
        );
        // ALSA's `null` PCM is not "no sound", its `default` not the system's choice, and a
        // number is a place in the list: such devices are named by their place.
        for taken in [
            "",
            "null",
            "default",
            "none",
            "test",
            "test:2",
            "file:x.wav",
            "7",
            " a",
        ] {
            assert_eq!(described(4, taken).spec(), "4", "{taken:?}");
        }
    }

    #[test]
    fn the_microphone_reader_leaves_half_a_frame_for_later() {
        // The device callback is halfway through a stereo frame when the reader looks.
        let (mut prod, mut cons) = HeapRb::<f32>::new(16).split();
        for s in [1.0, 1.5, 2.0] {
            prod.try_push(s).unwrap();
        }
        let mut out = [0.0; 8];
        assert_eq!(pop_frames(&mut cons, &mut out, 2), 2);
        assert_eq!(&out[..2], &[1.0, 1.5]);
        prod.try_push(2.5).unwrap();
        assert_eq!(pop_frames(&mut cons, &mut out, 2), 2);
        assert_eq!(
            &out[..2],
            &[2.0, 2.5],
            "the frame came out whole, nothing was lost"
        );
        // Never more than fits.
        for s in 0..6 {
            prod.try_push(s as f32).unwrap();
        }
        assert_eq!(pop_frames(&mut cons, &mut out[..3], 2), 2);
        assert_eq!(cons.occupied_len(), 4);
    }

    #[test]
    fn a_full_microphone_ring_drops_whole_frames() {
        let (mut prod, mut cons) = HeapRb::<f32>::new(5).split();
        let lost = push_frames(&mut prod, &[0.25f32, 0.25, 0.5, 0.5, 0.75, 0.75], 2);
        assert_eq!(lost, 2, "the frame that did not fit is lost whole");
        assert_eq!(cons.occupied_len(), 4);
        // Integer samples are converted on the way in.
        let lost = push_frames(&mut prod, &[i16::MAX, i16::MAX], 2);
        assert_eq!(lost, 2, "one vacant sample is not a frame");
        let mut out = [0.0; 8];
        assert_eq!(pop_frames(&mut cons, &mut out, 2), 4);
        assert_eq!(push_frames(&mut prod, &[i16::MIN, 0], 2), 0);
        assert_eq!(pop_frames(&mut cons, &mut out, 2), 2);
        assert_eq!(&out[..2], &[-1.0, 0.0]);
    }

    /// A feed and its tap at `rate`, and what the tap tells the canceller.
    fn tapped(rate: u32) -> (EchoFeed, EchoTap, Arc<Mutex<Vec<f32>>>) {
        let (feed, tap) = EchoFeed::pair(rate);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        feed.set(Some(Box::new(move |s: &[f32]| {
            sink.lock().unwrap().extend_from_slice(s)
        })));
        (feed, tap, heard)
    }

    #[test]
    fn the_canceller_hears_what_the_device_plays_just_ahead_of_it() {
        let (mut feed, mut tap, heard) = tapped(48_000);
        feed.queued(&(0..48_000).map(|i| i as f32).collect::<Vec<_>>(), 0);
        // Nothing is told before the device's first period; then up to the lead ahead of it.
        assert!(heard.lock().unwrap().is_empty());
        tap.took(240, 0);
        let lead = 960; // 20 ms
        assert_eq!(heard.lock().unwrap().len(), 240 + lead);
        tap.took(240, 0);
        tap.took(240, 0);
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 720 + lead, "never further ahead than the lead");
        assert!(
            heard.iter().enumerate().all(|(i, &s)| s == i as f32),
            "in order"
        );
    }

    #[test]
    fn the_silence_of_a_device_that_ran_dry_is_heard_where_it_played() {
        let (mut feed, mut tap, heard) = tapped(48_000);
        let written: Vec<f32> = (1..=960).map(|i| i as f32).collect();
        feed.queued(&written[..480], 0);
        tap.took(240, 0);
        assert_eq!(*heard.lock().unwrap(), written[..480]);
        // The ring runs out 240 frames into a period: 120 frames of silence after them.
        tap.took(240, 120);
        feed.queued(&written[480..], 0);
        tap.took(240, 0);
        let heard = heard.lock().unwrap();
        assert_eq!(heard[..480], written[..480]);
        assert!(
            heard[480..600].iter().all(|&s| s == 0.0),
            "the silence, where it played"
        );
        assert_eq!(heard[600..], written[480..], "what came after it, after it");
    }

    #[test]
    fn dropped_samples_are_passed_over_and_padding_is_heard_as_silence() {
        let (mut feed, mut tap, heard) = tapped(48_000);
        feed.silence(100);
        let written: Vec<f32> = (1..=300).map(|i| i as f32).collect();
        // The last 100 frames did not fit in the device's ring.
        feed.queued(&written, 100);
        tap.took(300, 0);
        assert!(heard.lock().unwrap()[..100].iter().all(|&s| s == 0.0));
        assert_eq!(heard.lock().unwrap()[100..], written[..200]);
        // Dropped beyond this write: the oldest still queued are passed over.
        feed.queued(&written[..50], 0);
        feed.queued(&written[200..], 150);
        tap.took(10, 0);
        assert_eq!(
            heard.lock().unwrap().len(),
            300,
            "nothing queued is left to tell"
        );
    }

    #[test]
    fn a_device_at_another_rate_is_heard_at_48k_without_drift() {
        let (mut feed, mut tap, heard) = tapped(44_100);
        feed.queued(&vec![0.5; 48_000], 0);
        // Half a second of 44.1 kHz periods in uneven pieces.
        let pieces = [441usize, 1, 99, 1000, 7, 1452];
        let mut total = 0;
        while total < 22_050 {
            for &p in &pieces {
                let p = p.min(22_050 - total);
                tap.took(p, 0);
                total += p;
            }
        }
        assert_eq!(
            heard.lock().unwrap().len(),
            24_000 + 960,
            "half a second and the lead"
        );
    }

    #[test]
    fn without_a_canceller_the_tap_keeps_in_step() {
        let (mut feed, mut tap) = EchoFeed::pair(48_000);
        feed.queued(&[1.0; 480], 0);
        tap.took(240, 0);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        feed.set(Some(Box::new(move |s: &[f32]| {
            sink.lock().unwrap().extend_from_slice(s)
        })));
        feed.queued(&[2.0; 480], 0);
        tap.took(480, 0);
        assert_eq!(*heard.lock().unwrap(), [2.0; 480]);
        // A speaker being dropped lets go: the next one tells the canceller from then on.
        feed.set(None);
        feed.queued(&[3.0; 480], 0);
        tap.took(240, 0);
        assert_eq!(heard.lock().unwrap().len(), 480);
    }

    #[test]
    fn the_ring_takes_more_once_the_device_has_played_down_to_its_target() {
        // 48 kHz stereo, a 10 ms period (480 frames = 960 samples), a 20 ms chunk to write.
        let ms = |frames: usize| Duration::from_secs_f64(frames as f64 / 48_000.0);
        let chunk = 960 * 2;
        let fill = |occupied| RingFill {
            occupied,
            period: 960,
            channels: 2,
            rate: 48_000,
        };
        // Empty, or down to one period plus the 10 ms cushion: room now.
        assert_eq!(fill(0).wait_before(chunk), None);
        assert_eq!(fill(960 + 960).wait_before(chunk), None);
        // One frame more: wait one frame's time.
        assert_eq!(fill(960 + 960 + 2).wait_before(chunk), Some(ms(1)));
        // Full up with a period, the cushion and a chunk: wait for 20 ms to be played.
        assert_eq!(fill(960 + 960 + chunk).wait_before(chunk), Some(ms(960)));
        // At 44.1 kHz mono, before the first callback (no period known yet): 10 ms is 441.
        let cd = |occupied| RingFill {
            occupied,
            period: 0,
            channels: 1,
            rate: 44_100,
        };
        assert_eq!(cd(441).wait_before(882), None);
        assert_eq!(
            cd(442).wait_before(882),
            Some(Duration::from_secs_f64(1.0 / 44_100.0))
        );
    }

    #[test]
    fn a_sample_written_now_is_heard_after_the_device_period_and_the_ring() {
        // 48 kHz stereo: the device took a 10 ms period at t = 1 s and said it plays it 15 ms
        // later; the ring holds 20 ms behind it.
        let queue = OutputQueue {
            callback_us: 1_000_000,
            device_us: 15_000,
            period: 960,
            occupied: 1920,
            channels: 2,
            rate: 48_000,
        };
        let ms = Duration::from_millis;
        assert_eq!(queue.delay_at(1_000_000), ms(45), "at the callback");
        assert_eq!(queue.delay_at(1_004_000), ms(41), "4 ms later");
        // Long after the callback (the device stalled), never below zero.
        assert_eq!(queue.delay_at(2_000_000), Duration::ZERO);
        // At 44.1 kHz mono, 441 frames are 10 ms.
        let mono = OutputQueue {
            period: 441,
            occupied: 0,
            channels: 1,
            rate: 44_100,
            device_us: 0,
            ..queue
        };
        assert_eq!(mono.delay_at(1_000_000), ms(10));
    }
}
