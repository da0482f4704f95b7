//! `confab join --headless`: a call driven from the command line. Opens the sources the flags
//! name, runs a `Session`, sends the requested chat and files once connected, leaves after
//! `--duration`, and writes `--stats-json`. Exit status 0 only when the call happened as asked;
//! otherwise one line says why.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::call_config::CallConfig;
use crate::cli::JoinArgs;
use confab_devices::y4m::Y4mWriter;
use confab_devices::{AudioSink, CaptureError, EchoReference, VideoSpec};
use confab_engine::data_link::LinkNotice;
use confab_engine::session::{
    Ended, MediaIo, Session, SessionCommand, SessionConfig, SessionEvent, TestHooks,
};
use confab_engine::stats::Direction;
use confab_media::VideoFrame;
use confab_media::VideoOut;

/// Writes received frames to a y4m file.
struct Recorder {
    writer: Mutex<Option<Y4mWriter>>,
}

impl VideoOut for Recorder {
    fn frame(&self, frame: &VideoFrame) {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(writer) = guard.as_mut() {
            if let Err(err) = writer.write(frame) {
                tracing::warn!(%err, "recording stopped");
                *guard = None;
            }
        }
    }
}

/// Plays into one sink and records into a second.
struct Tee(Box<dyn AudioSink>, Box<dyn AudioSink>);

impl AudioSink for Tee {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn write(&mut self, samples: &[f32]) -> Result<(), CaptureError> {
        self.1.write(samples)?;
        self.0.write(samples)
    }
    fn finish(&mut self) -> Result<(), CaptureError> {
        self.1.finish()?;
        self.0.finish()
    }
    fn set_echo_reference(&mut self, reference: EchoReference) -> Option<EchoReference> {
        self.0.set_echo_reference(reference)
    }
    // The speaker's clock paces playout; the recording follows along.
    fn wait_for_room(
        &mut self,
        samples: usize,
        timeout: std::time::Duration,
    ) -> Result<confab_media::Room, CaptureError> {
        self.0.wait_for_room(samples, timeout)
    }
    fn dropped_samples(&self) -> u64 {
        self.0.dropped_samples()
    }
    fn underrun_samples(&self) -> u64 {
        self.0.underrun_samples()
    }
    fn output_delay(&self) -> Option<std::time::Duration> {
        self.0.output_delay()
    }
}

/// A device switch the test hooks (`--test-switch-camera MS:SPEC` and the like) plan: how long
/// after connecting, and what to open.
struct PlannedSwitch {
    after: Duration,
    device: SwitchDevice,
    spec: String,
}

#[derive(Clone, Copy)]
enum SwitchDevice {
    Camera { width: u32, height: u32, fps: u32 },
    Mic,
    Speaker,
}

impl PlannedSwitch {
    fn parse(flag: &str, value: &str, device: SwitchDevice) -> anyhow::Result<Self> {
        let (ms, spec) = value
            .split_once(':')
            .ok_or_else(|| anyhow!("{flag} {value:?}: expected MS:SPEC"))?;
        let ms: u64 = ms
            .parse()
            .map_err(|_| anyhow!("{flag} {value:?}: {ms:?} is not a number of milliseconds"))?;
        Ok(Self {
            after: Duration::from_millis(ms),
            device,
            spec: spec.to_owned(),
        })
    }

    /// Opens the device (blocks: a camera can take seconds) and makes the command that switches
    /// to it.
    fn open(device: SwitchDevice, spec: &str) -> Result<SessionCommand, String> {
        let opened = match device {
            SwitchDevice::Camera { width, height, fps } => {
                confab_devices::open_camera(&VideoSpec::parse(spec), width, height, fps)
                    .map(|c| c.map(SessionCommand::SwitchCamera))
            }
            SwitchDevice::Mic => confab_devices::open_mic(&VideoSpec::parse(spec))
                .map(|m| m.map(SessionCommand::SwitchMic)),
            SwitchDevice::Speaker => {
                confab_devices::open_speaker(spec).map(|s| Some(SessionCommand::SwitchSpeaker(s)))
            }
        };
        match opened {
            Ok(Some(command)) => Ok(command),
            Ok(None) => Err(format!("{spec:?} is no device to switch to")),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// The switches the test hooks ask for, soonest first.
fn planned_switches(args: &JoinArgs, call: &CallConfig) -> anyhow::Result<Vec<PlannedSwitch>> {
    let camera = SwitchDevice::Camera {
        width: call.video.size.width,
        height: call.video.size.height,
        fps: call.video.fps,
    };
    let mut planned = Vec::new();
    for (flag, value, device) in [
        ("--test-switch-camera", &args.test_switch_camera, camera),
        (
            "--test-switch-mic",
            &args.test_switch_mic,
            SwitchDevice::Mic,
        ),
        (
            "--test-switch-speaker",
            &args.test_switch_speaker,
            SwitchDevice::Speaker,
        ),
    ] {
        if let Some(value) = value {
            planned.push(PlannedSwitch::parse(flag, value, device)?);
        }
    }
    planned.sort_by_key(|p| p.after);
    Ok(planned)
}

pub fn run(args: JoinArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let call = CallConfig::from_join_args(&args)?;
    let switches = planned_switches(&args, &call)?;
    for path in &args.send_file {
        if !path.is_file() {
            bail!("--send-file {}: no such file", path.display());
        }
    }

    // Sources that cannot open are reported, and the call goes on with what remains.
    let camera_spec = VideoSpec::parse(&args.camera);
    let camera = confab_devices::open_camera(
        &camera_spec,
        call.video.size.width,
        call.video.size.height,
        call.video.fps,
    )
    .unwrap_or_else(|err| {
        eprintln!("confab: {err}; continuing without video");
        None
    });
    let mic = confab_devices::open_mic(&VideoSpec::parse(&args.mic)).unwrap_or_else(|err| {
        eprintln!("confab: {err}; continuing without microphone");
        None
    });
    let mut speaker: Box<dyn AudioSink> = match confab_devices::open_speaker(&args.speaker) {
        Ok(speaker) => speaker,
        // No speaker is no reason to miss the call: the other person is still heard by the stats.
        Err(err) if args.speaker == "default" => {
            eprintln!("confab: {err}; continuing without a speaker");
            Box::new(confab_devices::wav::NullSink)
        }
        Err(err) => return Err(err.into()),
    };
    let screen = match &args.screen {
        Some(spec) => {
            match confab_devices::open_screen(spec, confab_devices::screen::DEFAULT_FPS) {
                Ok(source) => Some(source),
                Err(err) => {
                    eprintln!("confab: {err}; continuing without screen sharing");
                    None
                }
            }
        }
        None => None,
    };
    if let Some(path) = &args.record_audio {
        speaker = Box::new(Tee(
            speaker,
            Box::new(confab_devices::wav::WavSink::create(path)?),
        ));
    }
    let recorder = match &args.record_video {
        Some(path) => Some(Y4mWriter::create(path, args.fps)?),
        None => None,
    };
    let video_out = Arc::new(Recorder {
        writer: Mutex::new(recorder),
    });

    let mut config = call.session_config(args.server.clone());
    config.test = TestHooks {
        video_delay: Duration::from_millis(args.test_video_delay_ms),
        audio_delay: Duration::from_millis(args.test_audio_delay_ms),
        no_lip_sync: args.no_lip_sync,
        slow_encoder: Duration::from_millis(args.test_slow_encoder_ms),
        slow_decoder: Duration::from_millis(args.test_slow_decoder_ms),
        no_video_limit: args.test_no_video_limit,
    };
    let io = MediaIo {
        camera,
        mic,
        speaker: Some(speaker),
        screen,
        video_out: video_out.clone(),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The headless join is this process's entry point: waiting here is what it is for.
    #[allow(clippy::disallowed_methods)]
    let result = runtime.block_on(drive(&args, config, io, started, switches));
    // A blocking task still running (a media stop that hangs) would hold a plain drop forever.
    runtime.shutdown_timeout(HANGUP_GRACE);
    if let Some(writer) = video_out
        .writer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        writer.finish()?;
    }
    result
}

/// How long a call may take to end after a hang-up before the process leaves without it.
const HANGUP_GRACE: Duration = Duration::from_secs(5);

async fn drive(
    args: &JoinArgs,
    config: SessionConfig,
    io: MediaIo,
    started: Instant,
    mut switches: Vec<PlannedSwitch>,
) -> anyhow::Result<()> {
    let mut session = Session::start(config, io, started);
    let wait = Duration::from_secs_f64(args.wait.max(0.0));
    let mut room = String::new();
    let mut connected_at: Option<Instant> = None;
    let mut peer_seen = false;
    let mut pending_files = args.send_file.len();
    let mut failed_files = Vec::new();
    // When we hung up (Ctrl-C, or the duration was over).
    let mut hung_up: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let result = loop {
        tokio::select! {
            event = session.events.recv() => match event {
                Some(SessionEvent::Joined { room: code, .. }) => {
                    room = code.to_string();
                    // The one line scripts read: the room to share.
                    println!("room {code}");
                }
                Some(SessionEvent::PeerJoined { name }) => {
                    peer_seen = true;
                    eprintln!("confab: {name} is here; connecting");
                }
                Some(SessionEvent::Connected { security_code }) if connected_at.is_none() => {
                    connected_at = Some(Instant::now());
                    match security_code {
                        Some(code) => eprintln!("confab: connected (security code {code})"),
                        None => eprintln!("confab: connected"),
                    }
                    for text in &args.chat {
                        let _ = session.commands.send(SessionCommand::Chat(text.clone())).await;
                    }
                    for (id, path) in (1..).zip(&args.send_file) {
                        let _ = session.commands.send(SessionCommand::SendFile { id, path: path.clone() }).await;
                    }
                }
                Some(SessionEvent::Connected { .. }) => eprintln!("confab: connected again"),
                Some(SessionEvent::Reconnecting) => eprintln!("confab: connection lost; reconnecting"),
                Some(SessionEvent::ScreenSharing(on)) => eprintln!("confab: screen sharing {}", if on { "on" } else { "off" }),
                Some(SessionEvent::PeerLeft) => eprintln!("confab: the other person left"),
                Some(SessionEvent::Data(notice)) => {
                    match &notice {
                        LinkNotice::FileDone(file) if file.direction == Direction::Sent => {
                            pending_files = pending_files.saturating_sub(1);
                        }
                        LinkNotice::TransferFailed { direction: Direction::Sent, name, reason, .. } => {
                            pending_files = pending_files.saturating_sub(1);
                            failed_files.push(format!("{name}: {reason}"));
                        }
                        // Nobody is here to click Accept: without --accept-files, say no.
                        LinkNotice::FileOffered { id, name, .. } => {
                            eprintln!("confab: declining {name} (run with --accept-files to receive files)");
                            let _ = session.commands.send(SessionCommand::DeclineFile(*id)).await;
                        }
                        _ => {}
                    }
                    if !matches!(notice, LinkNotice::Progress { .. }) {
                        eprintln!("confab: {}", notice.describe());
                    }
                }
                Some(SessionEvent::SecurityCode(code)) => eprintln!("confab: security code {code}"),
                Some(SessionEvent::Warning(w)) => eprintln!("confab: {w}"),
                None => {}
            },
            _ = tick.tick() => {
                if connected_at.is_none() && started.elapsed() > wait {
                    break Err(if peer_seen {
                        anyhow!("could not connect to the other person within {} s (ICE did not succeed)", wait.as_secs())
                    } else {
                        anyhow!("nobody joined room {room} within {} s", wait.as_secs())
                    });
                }
                // Test hooks: devices switched mid-call, each opened off the runtime's workers.
                while connected_at.is_some_and(|at| switches.first().is_some_and(|s| at.elapsed() >= s.after)) {
                    let switch = switches.remove(0);
                    let (device, spec) = (switch.device, switch.spec.clone());
                    match tokio::task::spawn_blocking(move || PlannedSwitch::open(device, &spec)).await {
                        Ok(Ok(command)) => {
                            eprintln!("confab: switching to {}", switch.spec);
                            let _ = session.commands.send(command).await;
                        }
                        Ok(Err(err)) => eprintln!("confab: cannot switch to {}: {err}; keeping the old device", switch.spec),
                        Err(err) => eprintln!("confab: cannot switch to {}: {err}", switch.spec),
                    }
                }
                if let (Some(at), Some(duration)) = (connected_at, args.duration) {
                    // Stay until the duration is over and our files are delivered.
                    if hung_up.is_none() && at.elapsed().as_secs_f64() >= duration && pending_files == 0 {
                        hung_up = Some(Instant::now());
                        let _ = session.commands.send(SessionCommand::Hangup).await;
                    }
                }
                // A call that does not end after a hang-up (a device or a worker stuck in its
                // stop) must not keep the process: leave, and say so.
                if hung_up.is_some_and(|at| at.elapsed() > HANGUP_GRACE) {
                    break Err(anyhow!(
                        "the call did not end within {} s of hanging up; leaving anyway",
                        HANGUP_GRACE.as_secs()
                    ));
                }
            }
            _ = tokio::signal::ctrl_c() => {
                let _ = session.commands.send(SessionCommand::Hangup).await;
                hung_up.get_or_insert_with(Instant::now);
            }
            ended = &mut session.task => {
                break match ended {
                    Ok(Ok(Ended::HungUp | Ended::PeerLeft)) if connected_at.is_some() => Ok(()),
                    // The other side gave up first: most often its ICE failed too (no path
                    // between us), which it says on its side; say what we can on ours.
                    Ok(Ok(Ended::PeerLeft)) => Err(anyhow!(
                        "the other person left before the call connected (no network path was found between you; a TURN server may be needed)"
                    )),
                    Ok(Ok(Ended::HungUp)) => Err(anyhow!("the call was hung up before it connected")),
                    Ok(Err(err)) => Err(anyhow!(err)),
                    Err(join) => Err(anyhow!("the call stopped unexpectedly: {join}")),
                };
            }
        }
    };
    let result = result.and_then(|()| {
        if !failed_files.is_empty() {
            bail!("file transfer failed: {}", failed_files.join("; "));
        }
        if pending_files > 0 {
            bail!("{pending_files} file(s) were not delivered before the call ended");
        }
        Ok(())
    });
    if !session.task.is_finished() {
        let _ = session.commands.send(SessionCommand::Hangup).await;
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut session.task).await;
    }
    if let Some(path) = &args.stats_json {
        let stats = session.stats.snapshot();
        let json = serde_json::to_string_pretty(&stats)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    result
}
