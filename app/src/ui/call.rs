//! One call as the window sees it: the running `Session`, what happened in it (state, chat, file
//! transfers, warnings), the video slots, and a minute of statistics for the plots. The session
//! wakes the UI when it queues an event; the UI drains the session's bounded event queue with
//! `try_recv` each frame and never waits on the session.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::preview::{CallEnded, DevicesInUse};
use super::video::{VideoSlot, VideoTexture};
use confab_engine::collector::StatsHandle;
use confab_engine::data_link::LinkNotice;
use confab_engine::session::{
    Ended, MediaIo, Session, SessionCommand, SessionConfig, SessionEvent,
};
use confab_engine::stats::{Direction, Limitation};
use confab_engine::CallError;
use confab_media::audio::SPEAKING_DBFS;
use confab_media::VideoSource;

/// The notice when this computer's processor starts holding the picture sent down
/// (`engine::thread_load`).
pub const CPU_LIMITED: &str = "This computer is too busy for the best video: sending less of it";

/// The notice when this computer's decoder starts asking the other side for less video
/// (`engine::thread_load::DecoderAsk`).
pub const ASKING_LESS: &str =
    "This computer is too busy for all of the video it receives: asking for less of it";

/// The notice when the decoder falls behind the video that arrives (frames skipped to the next
/// keyframe), at most once in `DECODER_NOTICE_GAP`.
pub const DECODER_BEHIND: &str = "This computer is too busy to show all of the video it receives";
const DECODER_NOTICE_GAP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub enum CallState {
    Joining,
    Waiting,
    Connecting,
    Connected,
    Reconnecting,
    PeerLeft,
    /// The call is over; with the reason when it failed.
    Ended(Option<String>),
}

impl CallState {
    pub fn label(&self) -> String {
        match self {
            Self::Joining => "Joining…".into(),
            Self::Waiting => "Waiting for the other person…".into(),
            Self::Connecting => "Connecting…".into(),
            Self::Connected => "Connected".into(),
            Self::Reconnecting => "Connection lost, reconnecting…".into(),
            Self::PeerLeft => "The other person left".into(),
            Self::Ended(None) => "Call ended".into(),
            Self::Ended(Some(e)) => format!("Call failed: {e}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatLine {
    pub mine: bool,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransferState {
    /// Offered to us: waiting for Accept or Decline.
    Offered,
    Moving,
    Done,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    pub id: u32,
    pub name: String,
    pub incoming: bool,
    pub done: u64,
    pub total: u64,
    pub state: TransferState,
}

/// Where your own picture is: hidden, or in which corner of the stage (it can be dragged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfViewPlace {
    pub hidden: bool,
    /// 0 top left, 1 top right, 2 bottom left, 3 bottom right.
    pub corner: u8,
}

impl Default for SelfViewPlace {
    fn default() -> Self {
        Self {
            hidden: false,
            corner: 3,
        }
    }
}

/// One sample a second for the statistics plots.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsSample {
    pub t: f64,
    pub send_kbps: f64,
    /// What the congestion controller lets video use (0 before an estimate).
    pub target_kbps: f64,
    pub recv_kbps: f64,
    pub fps: f64,
    pub rtt_ms: f64,
}

/// What the quality bars show, sampled once a second with the history (drawing them every frame
/// must not copy the whole statistics under the lock the media threads write through).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkQuality {
    pub rtt_ms: Option<f64>,
    pub loss_fraction: f64,
    /// The received video bitrate, once video comes in.
    pub recv_kbps: Option<f64>,
}

/// What the window says to someone who speaks while muted.
pub const MUTED_NOTICE: &str = "You are muted. Press M to unmute, or hold Space to talk.";
/// Speech heard without a break this long while muted brings the notice (a cough or a door
/// does not)...
const MUTED_SPEECH_FOR: Duration = Duration::from_secs(1);
/// ... and at most once in this long, however long someone talks into a muted microphone.
const MUTED_NOTICE_EVERY: Duration = Duration::from_secs(20);

/// Whether a muted microphone hears someone talking, as other call apps tell: speech above
/// `SPEAKING_DBFS` (after noise suppression) for `MUTED_SPEECH_FOR`, at most one notice in
/// `MUTED_NOTICE_EVERY`.
#[derive(Debug, Default)]
struct MutedSpeech {
    since: Option<Instant>,
    last_notice: Option<Instant>,
}

impl MutedSpeech {
    /// Takes whether speech is heard while muted now; true when the notice is due.
    fn heard(&mut self, speech: bool, now: Instant) -> bool {
        if !speech {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        let recent = self
            .last_notice
            .is_some_and(|at| now.duration_since(at) < MUTED_NOTICE_EVERY);
        if now.duration_since(since) < MUTED_SPEECH_FOR || recent {
            return false;
        }
        self.last_notice = Some(now);
        true
    }
}

pub struct CallUi {
    pub room: String,
    pub state: CallState,
    pub peer_name: Option<String>,
    pub security_code: Option<String>,
    pub chat: Vec<ChatLine>,
    pub chat_input: String,
    pub unread: usize,
    pub transfers: Vec<Transfer>,
    pub mic_muted: bool,
    pub camera_off: bool,
    pub sharing: bool,
    pub show_chat: bool,
    pub show_stats: bool,
    /// Push-to-talk: Space is held while muted, so the microphone is open for now.
    pub talking: bool,
    /// The other person's voice is above `SPEAKING_DBFS` (the speaking indicator).
    pub remote_speaking: bool,
    /// Our own sent voice is (muted sends silence, so this is off while muted).
    pub self_speaking: bool,
    /// Speech the microphone hears while muted, for the "you are muted" notice.
    muted_speech: MutedSpeech,
    pub self_view: SelfViewPlace,
    pub remote: Arc<VideoSlot>,
    pub local: Arc<VideoSlot>,
    pub remote_texture: Option<VideoTexture>,
    pub local_texture: Option<VideoTexture>,
    pub stats: StatsHandle,
    pub history: VecDeque<StatsSample>,
    pub link: LinkQuality,
    pub warnings: VecDeque<(Instant, String)>,
    /// What the other person did that a desktop notification tells when the window is not in
    /// front (taken each frame by the app).
    pub desktop_notices: Vec<String>,
    pub started: Instant,
    pub connected_at: Option<Instant>,
    commands: mpsc::Sender<SessionCommand>,
    events: mpsc::Receiver<SessionEvent>,
    /// Asks for another frame when events are left over.
    repaint: egui::Context,
    task: Option<tokio::task::JoinHandle<Result<Ended, CallError>>>,
    last_sample: Instant,
    last_frames: u64,
    /// Whether the picture sent was held down by this computer's processor at the last sample
    /// (a notice says so when it starts to be).
    cpu_limited: bool,
    /// Whether our decoder was asking the other side for less video at the last sample.
    asking_less: bool,
    /// Whether the window shows the other person's video (it is not minimized or covered), as
    /// last told to the session.
    video_shown: bool,
    /// Frames the decoder had skipped at the last sample, and when a notice last said so.
    decoder_behind: u64,
    decoder_notice: Option<Instant>,
    /// A screen being opened on a helper thread (opening captures a frame: not on the UI thread).
    screen_opening: Option<std::sync::mpsc::Receiver<Result<Box<dyn VideoSource>, String>>>,
    /// Devices opened on helper threads for a switch (`switch_device`) report here.
    switch_tx: std::sync::mpsc::SyncSender<SwitchOpened>,
    switch_rx: std::sync::mpsc::Receiver<SwitchOpened>,
    /// Devices switched to since the app last looked (it saves them as the next call's choice).
    pub switched: Vec<(DeviceKind, String)>,
    /// The id the next file we send gets (ours to choose, unique within the call).
    next_transfer_id: u32,
}

/// Which device a switch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Mic,
    Camera,
    Speaker,
}

/// Opens a device for a switch (on a helper thread: it may take seconds) and makes the command
/// that switches to it, or says in a short sentence why it could not.
pub type OpenForSwitch = Box<dyn FnOnce() -> Result<SessionCommand, String> + Send>;

/// What a device opened for a switch became: (which, its SPEC, the command or the problem).
type SwitchOpened = (DeviceKind, String, Result<SessionCommand, String>);

/// Devices being opened for a switch at once, at most (more wait to report).
const SWITCHES_OPENING: usize = 4;

/// At most this many session events are applied per frame.
const EVENTS_PER_FRAME: usize = 64;

impl CallUi {
    /// Starts a call on `runtime`; events wake `ctx`.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        ctx: &egui::Context,
        config: SessionConfig,
        io: MediaIo,
        remote: Arc<VideoSlot>,
        local: Arc<VideoSlot>,
    ) -> Self {
        let room = config
            .room
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let _guard = runtime.enter();
        let (switch_tx, switch_rx) = std::sync::mpsc::sync_channel(SWITCHES_OPENING);
        let repaint = ctx.clone();
        let session = Session::start_with_waker(
            config,
            io,
            Instant::now(),
            Some(Arc::new(move || repaint.request_repaint())),
        );
        Self {
            room,
            state: CallState::Joining,
            peer_name: None,
            security_code: None,
            chat: Vec::new(),
            chat_input: String::new(),
            unread: 0,
            transfers: Vec::new(),
            mic_muted: false,
            camera_off: false,
            sharing: false,
            show_chat: false,
            show_stats: false,
            talking: false,
            remote_speaking: false,
            self_speaking: false,
            muted_speech: MutedSpeech::default(),
            self_view: SelfViewPlace::default(),
            remote,
            local,
            remote_texture: None,
            local_texture: None,
            stats: session.stats.clone(),
            history: VecDeque::new(),
            link: LinkQuality::default(),
            warnings: VecDeque::new(),
            desktop_notices: Vec::new(),
            started: Instant::now(),
            connected_at: None,
            commands: session.commands.clone(),
            events: session.events,
            repaint: ctx.clone(),
            task: Some(session.task),
            last_sample: Instant::now(),
            last_frames: 0,
            cpu_limited: false,
            asking_less: false,
            video_shown: true,
            decoder_behind: 0,
            decoder_notice: None,
            screen_opening: None,
            switch_tx,
            switch_rx,
            switched: Vec::new(),
            next_transfer_id: 1,
        }
    }

    pub fn command(&self, command: SessionCommand) {
        // The session is gone when this fails; the state shows it already.
        let _ = self.commands.try_send(command);
    }

    /// The window shows the other person's video, or not (minimized, or covered where the
    /// system says so): while it does not, the session asks the other side for the least video,
    /// which saves both computers most of the video's work.
    pub fn set_video_shown(&mut self, shown: bool) {
        if shown == self.video_shown {
            return;
        }
        self.video_shown = shown;
        tracing::info!(
            shown,
            "the window {} the other person's video",
            if shown { "shows" } else { "no longer shows" }
        );
        self.command(SessionCommand::SetVideoShown(shown));
    }

    /// Opens the screen (or window) `spec` names on a helper thread; sharing starts when it is
    /// open (see `poll`).
    pub fn share_screen(&mut self, spec: String, ctx: &egui::Context) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("open-screen".into())
            .spawn(move || {
                let opened =
                    confab_devices::open_screen(&spec, confab_devices::screen::DEFAULT_FPS)
                        .map_err(|e| format!("cannot share the screen: {e}"));
                let _ = tx.send(opened);
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => self.screen_opening = Some(rx),
            Err(e) => self.warn(format!("cannot share the screen: {e}")),
        }
    }

    /// Switches to the device `open` opens, on a helper thread; the switch happens when it is
    /// open (see `poll`). One that cannot be opened leaves the old one in use, and says why.
    pub fn switch_device(&mut self, kind: DeviceKind, spec: String, open: OpenForSwitch) {
        let tx = self.switch_tx.clone();
        let ctx = self.repaint.clone();
        let spawned = std::thread::Builder::new()
            .name("open-device".into())
            .spawn(move || {
                let opened = open();
                // Nobody listens when the call has ended: the device closes here.
                let _ = tx.send((kind, spec, opened));
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            self.warn(format!("cannot open the device: {e}"));
        }
    }

    pub fn is_over(&self) -> bool {
        matches!(self.state, CallState::Ended(_) | CallState::PeerLeft)
    }

    fn warn(&mut self, text: String) {
        self.warnings.push_back((Instant::now(), text));
        while self.warnings.len() > 4 {
            self.warnings.pop_front();
        }
    }

    fn transfer(&mut self, id: u32, incoming: bool) -> Option<&mut Transfer> {
        self.transfers
            .iter_mut()
            .find(|t| t.id == id && t.incoming == incoming)
    }

    /// Applies what the session reported since the last frame.
    pub fn poll(&mut self) {
        // Bounded per frame: a burst of events never stalls drawing (the rest come next frame).
        for _ in 0..EVENTS_PER_FRAME {
            match self.events.try_recv() {
                Ok(event) => self.apply(event),
                Err(mpsc::error::TryRecvError::Empty) => break,
                // The session ended; its task says how (below).
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        if !self.events.is_empty() {
            self.repaint.request_repaint();
        }
        if let Some(rx) = &self.screen_opening {
            match rx.try_recv() {
                Ok(Ok(source)) => {
                    self.screen_opening = None;
                    self.command(SessionCommand::ShareScreen(Some(source)));
                }
                Ok(Err(problem)) => {
                    self.screen_opening = None;
                    self.warn(problem);
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.screen_opening = None,
            }
        }
        while let Ok((kind, spec, opened)) = self.switch_rx.try_recv() {
            match opened {
                Ok(command) => {
                    self.command(command);
                    self.switched.push((kind, spec));
                }
                Err(problem) => self.warn(problem),
            }
        }
        if let Some(task) = self.task.as_ref().filter(|t| t.is_finished()) {
            let _ = task;
            let task = self.task.take().expect("invariant: checked above");
            let result =
                futures_util::FutureExt::now_or_never(task).unwrap_or(Ok(Ok(Ended::HungUp)));
            match result {
                Ok(Ok(Ended::PeerLeft)) => self.state = CallState::PeerLeft,
                Ok(Ok(Ended::HungUp)) => self.state = CallState::Ended(None),
                Ok(Err(e)) => self.state = CallState::Ended(Some(e.to_string())),
                Err(e) => {
                    self.state =
                        CallState::Ended(Some(format!("the call stopped unexpectedly: {e}")))
                }
            }
        }
        self.update_speaking(Instant::now());
        if self.last_sample.elapsed() >= Duration::from_secs(1) {
            self.sample();
        }
        let now = Instant::now();
        self.warnings
            .retain(|(at, _)| now.duration_since(*at) < Duration::from_secs(8));
    }

    /// Who is speaking now, from the levels the engine measures on what is sent and played; and
    /// a notice for someone who speaks while muted.
    fn update_speaking(&mut self, now: Instant) {
        let speaking = |level: Option<f64>| level.is_some_and(|db| db > SPEAKING_DBFS);
        let c = self.stats.lock();
        self.remote_speaking = speaking(c.stats.audio_recv.level_dbfs);
        self.self_speaking = speaking(c.stats.audio_send.level_dbfs);
        let muted_speech =
            self.mic_muted && !self.talking && speaking(c.stats.audio_send.muted_level_dbfs);
        drop(c);
        if self.muted_speech.heard(muted_speech, now) {
            self.warn(MUTED_NOTICE.to_owned());
        }
    }

    fn sample(&mut self) {
        let elapsed = self.last_sample.elapsed().as_secs_f64();
        self.last_sample = Instant::now();
        let s = self.stats.snapshot();
        let frames = s.video_recv.frames_decoded;
        let fps = (frames.saturating_sub(self.last_frames)) as f64 / elapsed.max(0.001);
        self.last_frames = frames;
        self.link = LinkQuality {
            rtt_ms: s.ice.rtt_ms,
            loss_fraction: s.bwe.loss_fraction,
            recv_kbps: (frames > 0).then_some(s.video_recv.bitrate_kbps),
        };
        self.history.push_back(StatsSample {
            t: self.started.elapsed().as_secs_f64(),
            send_kbps: s.video_send.bitrate_kbps,
            target_kbps: s.video_send.target_kbps,
            recv_kbps: s.video_recv.bitrate_kbps,
            fps,
            rtt_ms: s.ice.rtt_ms.unwrap_or(0.0),
        });
        while self.history.len() > 60 {
            self.history.pop_front();
        }
        let cpu_limited = s.video_send.quality_limitation == Limitation::Cpu;
        if cpu_limited && !self.cpu_limited {
            self.warn(CPU_LIMITED.to_string());
        }
        self.cpu_limited = cpu_limited;
        let asking_less = s.video_recv.asked_max_pixel_rate > 0;
        if asking_less && !self.asking_less {
            self.warn(ASKING_LESS.to_string());
        }
        self.asking_less = asking_less;
        let behind = s.video_recv.frames_dropped_decoder_behind;
        let quiet = self
            .decoder_notice
            .is_none_or(|at| at.elapsed() >= DECODER_NOTICE_GAP);
        if behind > self.decoder_behind && quiet {
            self.warn(DECODER_BEHIND.to_string());
            self.decoder_notice = Some(Instant::now());
        }
        self.decoder_behind = behind;
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Joined { room, .. } => {
                self.room = room.to_string();
                if self.state == CallState::Joining {
                    self.state = CallState::Waiting;
                }
            }
            SessionEvent::PeerJoined { name } => {
                self.desktop_notices.push(format!("{name} joined the call"));
                self.peer_name = Some(name);
                self.state = CallState::Connecting;
            }
            SessionEvent::Connected { security_code } => {
                self.security_code = security_code;
                self.state = CallState::Connected;
                self.connected_at.get_or_insert_with(Instant::now);
            }
            SessionEvent::Reconnecting => self.state = CallState::Reconnecting,
            SessionEvent::PeerLeft => self.state = CallState::PeerLeft,
            SessionEvent::ScreenSharing(on) => self.sharing = on,
            SessionEvent::SecurityCode(code) => self.security_code = Some(code),
            SessionEvent::Warning(w) => self.warn(w),
            SessionEvent::Data(notice) => self.apply_data(notice),
        }
    }

    fn apply_data(&mut self, notice: LinkNotice) {
        match notice {
            LinkNotice::Chat(text) => {
                let who = self.peer_name.as_deref().unwrap_or("They");
                self.desktop_notices.push(format!("{who}: {text}"));
                self.chat.push(ChatLine { mine: false, text });
                if !self.show_chat {
                    self.unread += 1;
                }
            }
            LinkNotice::FileOffered { id, name, size } => self.transfers.push(Transfer {
                id,
                name,
                incoming: true,
                done: 0,
                total: size,
                state: TransferState::Offered,
            }),
            LinkNotice::Progress {
                id,
                name,
                incoming,
                done,
                total,
            } => match self.transfer(id, incoming) {
                Some(t) => {
                    t.done = done;
                    t.total = total;
                    t.state = TransferState::Moving;
                }
                None => self.transfers.push(Transfer {
                    id,
                    name,
                    incoming,
                    done,
                    total,
                    state: TransferState::Moving,
                }),
            },
            LinkNotice::TransferFailed {
                id,
                direction,
                name,
                reason,
            } => {
                let incoming = direction == Direction::Received;
                self.warn(
                    LinkNotice::TransferFailed {
                        id,
                        direction,
                        name: name.clone(),
                        reason: reason.clone(),
                    }
                    .describe(),
                );
                match self.transfer(id, incoming) {
                    Some(t) => t.state = TransferState::Failed(reason.to_string()),
                    None => self.transfers.push(Transfer {
                        id,
                        name,
                        incoming,
                        done: 0,
                        total: 0,
                        state: TransferState::Failed(reason.to_string()),
                    }),
                }
            }
            LinkNotice::FileDone(file) => {
                let incoming = file.direction == Direction::Received;
                let state = if file.ok {
                    TransferState::Done
                } else {
                    TransferState::Failed(file.error.clone().unwrap_or_default())
                };
                let existing = self.transfers.iter_mut().rev().find(|t| {
                    t.incoming == incoming
                        && (t.name == file.name || incoming)
                        && t.state != TransferState::Done
                });
                match existing {
                    Some(t) => {
                        t.done = file.bytes;
                        t.total = file.bytes;
                        t.state = state;
                        t.name = file.name;
                    }
                    None => self.transfers.push(Transfer {
                        id: 0,
                        name: file.name,
                        incoming,
                        done: file.bytes,
                        total: file.bytes,
                        state,
                    }),
                }
            }
        }
    }

    pub fn send_chat(&mut self) {
        let text = self.chat_input.trim().to_owned();
        if text.is_empty() {
            return;
        }
        self.command(SessionCommand::Chat(text.clone()));
        self.chat.push(ChatLine { mine: true, text });
        self.chat_input.clear();
    }

    pub fn send_file(&mut self, path: std::path::PathBuf) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let total = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let id = self.next_transfer_id;
        self.next_transfer_id += 1;
        self.transfers.push(Transfer {
            id,
            name,
            incoming: false,
            done: 0,
            total,
            state: TransferState::Moving,
        });
        self.command(SessionCommand::SendFile { id, path });
    }

    pub fn answer_offer(&mut self, id: u32, accept: bool) {
        if let Some(t) = self.transfer(id, true) {
            t.state = if accept {
                TransferState::Moving
            } else {
                TransferState::Failed("declined".into())
            };
        }
        self.command(if accept {
            SessionCommand::AcceptFile(id)
        } else {
            SessionCommand::DeclineFile(id)
        });
    }

    /// Opens the microphone while Space is held (`on`), closes it again when let go; only
    /// while muted.
    pub fn push_to_talk(&mut self, on: bool) {
        if on && self.mic_muted && !self.talking {
            self.talking = true;
            self.command(SessionCommand::SetMicMuted(false));
        } else if !on && self.talking {
            self.talking = false;
            self.command(SessionCommand::SetMicMuted(self.mic_muted));
        }
    }

    pub fn toggle_mute(&mut self) {
        self.talking = false;
        self.mic_muted = !self.mic_muted;
        self.command(SessionCommand::SetMicMuted(self.mic_muted));
    }

    pub fn toggle_camera(&mut self) {
        self.camera_off = !self.camera_off;
        self.command(SessionCommand::SetCameraOn(!self.camera_off));
    }

    /// A call with no session behind it (commands go nowhere), for the tests of the views.
    #[cfg(test)]
    pub fn bare() -> CallUi {
        Self::wired().0
    }

    /// A call with no session behind it, and the ends a session would hold: what feeds its
    /// events, and what it commands.
    #[cfg(test)]
    pub fn wired() -> (
        CallUi,
        mpsc::Sender<SessionEvent>,
        mpsc::Receiver<SessionCommand>,
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (commands, commands_rx) = mpsc::channel(8);
        let (events_tx, events) = mpsc::channel(8);
        let (switch_tx, switch_rx) = std::sync::mpsc::sync_channel(SWITCHES_OPENING);
        let call = CallUi {
            room: "kfq-wmzt-pxd".into(),
            state: CallState::Joining,
            peer_name: None,
            security_code: None,
            chat: Vec::new(),
            chat_input: String::new(),
            unread: 0,
            transfers: Vec::new(),
            mic_muted: false,
            camera_off: false,
            sharing: false,
            show_chat: false,
            show_stats: false,
            talking: false,
            remote_speaking: false,
            self_speaking: false,
            muted_speech: MutedSpeech::default(),
            self_view: SelfViewPlace::default(),
            remote: VideoSlot::new(None),
            local: VideoSlot::new(None),
            remote_texture: None,
            local_texture: None,
            stats: StatsHandle::default(),
            history: VecDeque::new(),
            link: LinkQuality::default(),
            warnings: VecDeque::new(),
            desktop_notices: Vec::new(),
            started: Instant::now(),
            connected_at: None,
            commands,
            events,
            repaint: egui::Context::default(),
            task: Some(runtime.spawn(std::future::pending())),
            last_sample: Instant::now(),
            last_frames: 0,
            cpu_limited: false,
            asking_less: false,
            video_shown: true,
            decoder_behind: 0,
            decoder_notice: None,
            screen_opening: None,
            switch_tx,
            switch_rx,
            switched: Vec::new(),
            next_transfer_id: 1,
        };
        (call, events_tx, commands_rx)
    }

    pub fn hang_up(&mut self) {
        self.command(SessionCommand::Hangup);
    }

    /// Hangs up; what is returned waits, at most `within`, for the call to have let go of its
    /// devices and its seat in the room (for the next call or preview to wait on), with the
    /// call's end (none when it had already ended).
    pub fn end(
        mut self,
        runtime: &tokio::runtime::Handle,
        within: Duration,
    ) -> (DevicesInUse, Option<CallEnded>) {
        self.hang_up();
        match self.task.take() {
            Some(task) => {
                let (wait, ended) = DevicesInUse::ending_call(runtime, task, within);
                (wait, Some(ended))
            }
            None => (DevicesInUse::default(), None),
        }
    }
}

impl Drop for CallUi {
    fn drop(&mut self) {
        self.command(SessionCommand::Hangup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_engine::stats::FileStats;

    fn bare() -> CallUi {
        CallUi::bare()
    }

    #[test]
    fn the_speaking_indicator_follows_the_measured_levels() {
        let mut call = bare();
        call.update_speaking(Instant::now());
        assert!(!call.remote_speaking && !call.self_speaking, "no audio yet");
        let set = |call: &CallUi, remote: Option<f64>, own: Option<f64>| {
            let mut c = call.stats.lock();
            c.stats.audio_recv.level_dbfs = remote;
            c.stats.audio_send.level_dbfs = own;
        };
        set(&call, Some(-25.0), Some(-90.0));
        call.update_speaking(Instant::now());
        assert!(call.remote_speaking && !call.self_speaking);
        set(&call, Some(-60.0), Some(-30.0));
        call.update_speaking(Instant::now());
        assert!(!call.remote_speaking && call.self_speaking);
    }

    #[test]
    fn speaking_into_a_muted_microphone_brings_a_notice_now_and_then() {
        let mut call = bare();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let notices = |call: &CallUi| notices_saying(call, MUTED_NOTICE);
        call.stats.lock().stats.audio_send.muted_level_dbfs = Some(-25.0);
        call.update_speaking(at(0));
        call.update_speaking(at(1500));
        assert_eq!(
            notices(&call),
            0,
            "not muted: the level is not even measured then"
        );
        call.mic_muted = true;
        call.update_speaking(at(2000));
        call.update_speaking(at(2900));
        assert_eq!(notices(&call), 0, "under a second of it");
        call.update_speaking(at(3000));
        assert_eq!(notices(&call), 1);
        for ms in (3000..23_000).step_by(100) {
            call.update_speaking(at(ms));
        }
        assert_eq!(notices(&call), 1, "once in 20 s, however long it goes on");
        call.update_speaking(at(23_000));
        assert_eq!(notices(&call), 2);
        // A pause starts the second over; quiet is no speech; push-to-talk is talking.
        call.stats.lock().stats.audio_send.muted_level_dbfs = Some(-60.0);
        call.update_speaking(at(45_000));
        call.stats.lock().stats.audio_send.muted_level_dbfs = Some(-25.0);
        call.update_speaking(at(45_500));
        call.update_speaking(at(46_400));
        assert_eq!(notices(&call), 2);
        call.talking = true;
        call.update_speaking(at(47_000));
        assert_eq!(notices(&call), 2, "Space held: the microphone is open");
        call.talking = false;
        call.update_speaking(at(47_100));
        call.update_speaking(at(48_200));
        assert_eq!(notices(&call), 3);
    }

    #[test]
    fn states_follow_the_session() {
        let mut call = bare();
        let room = confab_protocol::RoomCode::parse("kfq-wmzt-pxd").unwrap();
        call.apply(SessionEvent::Joined {
            room,
            me: confab_protocol::PeerId(1),
        });
        assert_eq!(call.state, CallState::Waiting);
        call.apply(SessionEvent::PeerJoined { name: "Bob".into() });
        assert_eq!(call.state, CallState::Connecting);
        assert_eq!(call.desktop_notices, vec!["Bob joined the call".to_owned()]);
        call.apply(SessionEvent::Connected {
            security_code: Some("1234 5678 9012".into()),
        });
        assert_eq!(call.state, CallState::Connected);
        call.apply(SessionEvent::Reconnecting);
        assert_eq!(call.state.label(), "Connection lost, reconnecting…");
        call.apply(SessionEvent::PeerLeft);
        assert!(call.is_over());
    }

    #[test]
    fn the_session_hears_when_the_video_stops_and_starts_being_shown_once_each() {
        let (mut call, _events, mut commands) = CallUi::wired();
        let mut told = || {
            let mut shown = Vec::new();
            while let Ok(command) = commands.try_recv() {
                if let SessionCommand::SetVideoShown(s) = command {
                    shown.push(s);
                }
            }
            shown
        };
        // Every frame says so; the session hears only the changes.
        call.set_video_shown(true);
        assert_eq!(told(), Vec::<bool>::new());
        call.set_video_shown(false);
        call.set_video_shown(false);
        assert_eq!(told(), [false]);
        call.set_video_shown(true);
        call.set_video_shown(true);
        assert_eq!(told(), [true]);
    }

    /// How many of the call's notices say `text`.
    fn notices_saying(call: &CallUi, text: &str) -> usize {
        call.warnings.iter().filter(|(_, w)| w == text).count()
    }

    #[test]
    fn a_notice_says_when_the_processor_starts_holding_the_picture_down() {
        let mut call = bare();
        let limit = |call: &CallUi, l: Limitation| {
            call.stats.lock().stats.video_send.quality_limitation = l;
        };
        let notices = |call: &CallUi| notices_saying(call, CPU_LIMITED);
        limit(&call, Limitation::Bandwidth);
        call.sample();
        assert_eq!(
            notices(&call),
            0,
            "the network's limits are not this computer's"
        );
        limit(&call, Limitation::Cpu);
        call.sample();
        call.sample();
        assert_eq!(notices(&call), 1, "once, when it starts");
        limit(&call, Limitation::None);
        call.sample();
        limit(&call, Limitation::Cpu);
        call.sample();
        assert_eq!(notices(&call), 2, "again when it comes back");
    }

    #[test]
    fn a_notice_says_when_the_decoder_starts_asking_for_less() {
        let mut call = bare();
        let ask = |call: &CallUi, max: u64| {
            call.stats.lock().stats.video_recv.asked_max_pixel_rate = max;
        };
        let notices = |call: &CallUi| notices_saying(call, ASKING_LESS);
        call.sample();
        assert_eq!(notices(&call), 0);
        ask(&call, 16_000_000);
        call.sample();
        ask(&call, 9_000_000);
        call.sample();
        assert_eq!(notices(&call), 1, "once, when it starts (not for each ask)");
        ask(&call, 0);
        call.sample();
        ask(&call, 9_000_000);
        call.sample();
        assert_eq!(notices(&call), 2, "again when it starts again");
    }

    #[test]
    fn a_notice_says_when_the_decoder_falls_behind_at_most_once_a_minute() {
        let mut call = bare();
        let skipped = |call: &CallUi, n: u64| {
            call.stats
                .lock()
                .stats
                .video_recv
                .frames_dropped_decoder_behind = n;
        };
        let notices = |call: &CallUi| notices_saying(call, DECODER_BEHIND);
        call.sample();
        assert_eq!(notices(&call), 0);
        skipped(&call, 3);
        call.sample();
        assert_eq!(notices(&call), 1);
        skipped(&call, 9);
        call.sample();
        assert_eq!(notices(&call), 1, "not again within the minute");
        call.decoder_notice = Some(Instant::now() - DECODER_NOTICE_GAP);
        call.sample();
        assert_eq!(notices(&call), 1, "nothing new skipped");
        skipped(&call, 10);
        call.sample();
        assert_eq!(notices(&call), 2, "a minute later, again");
    }

    #[test]
    fn chat_unread_and_transfers() {
        let mut call = bare();
        call.apply(SessionEvent::Data(LinkNotice::Chat("hi".into())));
        assert_eq!(call.unread, 1);
        assert_eq!(call.desktop_notices, vec!["They: hi".to_owned()]);
        call.apply(SessionEvent::Data(LinkNotice::FileOffered {
            id: 4,
            name: "a.pdf".into(),
            size: 10,
        }));
        call.apply(SessionEvent::Data(LinkNotice::Progress {
            id: 4,
            name: "a.pdf".into(),
            incoming: true,
            done: 5,
            total: 10,
        }));
        assert_eq!(call.transfers[0].state, TransferState::Moving);
        call.apply(SessionEvent::Data(LinkNotice::FileDone(FileStats {
            name: "a.pdf".into(),
            bytes: 10,
            sha256: "x".into(),
            direction: Direction::Received,
            ok: true,
            error: None,
        })));
        assert_eq!(call.transfers.len(), 1);
        assert_eq!(
            (call.transfers[0].done, &call.transfers[0].state),
            (10, &TransferState::Done)
        );
        call.chat_input = "  hello  ".into();
        call.send_chat();
        assert_eq!(
            call.chat.last(),
            Some(&ChatLine {
                mine: true,
                text: "hello".into()
            })
        );
        assert!(call.chat_input.is_empty());
    }
}
