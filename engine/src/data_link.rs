//! Chat and file transfer over the two data channels (see `data.rs` for the wire format). Each
//! channel's events are forwarded by a small task to the session loop, which calls into `DataLink`;
//! outgoing files are streamed by their own task, which waits whenever the channel's send buffer is
//! full, so a large file neither floods memory nor starves media. Nothing is written for an
//! offer until it is accepted, within a size cap and the disk's free space; offers waiting for an
//! answer are few; and a transfer that ends without the file leaves no `.part` file behind.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelState};

use super::collector::StatsHandle;
use super::data::{
    check_room, chunk_message, file_sha256, parse_chunk, sanitize_file_name, ControlMessage,
    FileError, IncomingFile, CHUNK_BYTES, CONTROL_LABEL, FILE_LABEL, MAX_CHAT_CHARS,
    MAX_CONTROL_BYTES,
};
use super::security::{SasExchange, SasState};
use super::stats::{Direction, FileStats};

/// What the channel tasks report to the session loop.
pub enum LinkEvent {
    Open(Arc<dyn DataChannel>),
    Control(String),
    Chunk(BytesMut),
    /// An outgoing file was read and hashed (off the event loop), or could not be.
    Hashed {
        id: u32,
        path: PathBuf,
        result: std::io::Result<(u64, String)>,
    },
    /// An outgoing file finished streaming (or failed) on its task.
    SendProgress {
        id: u32,
        sent: u64,
        total: u64,
    },
    SendFailed {
        id: u32,
        error: String,
    },
    Closed(String),
}

/// What the data link tells the person using Confab.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkNotice {
    Chat(String),
    FileOffered {
        id: u32,
        name: String,
        size: u64,
    },
    Progress {
        id: u32,
        name: String,
        incoming: bool,
        done: u64,
        total: u64,
    },
    /// A transfer completed: the file arrived intact, or the other side confirmed it did.
    FileDone(FileStats),
    /// A transfer ended without the file: `id` is the caller's for files sent (see
    /// `SessionCommand::SendFile`) and the peer's for files received.
    TransferFailed {
        id: u32,
        direction: Direction,
        name: String,
        reason: TransferFailure,
    },
}

/// Why a transfer ended without the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferFailure {
    #[error("this transfer id is already in use")]
    IdInUse,
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error("the other person declined it")]
    Declined,
    #[error("sending failed: {0}")]
    SendFailed(String),
    #[error("the other side could not keep it: {0}")]
    Rejected(String),
    #[error("the sender cancelled it")]
    Cancelled,
    #[error("cannot receive it: {0}")]
    ReceiveFailed(String),
}

/// Offers waiting for an answer plus files being received, at most; more are declined.
pub const MAX_PENDING_FILES: usize = 8;

/// The default cap on the size of a received file (`confab join --max-file-mb`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 2048 * 1024 * 1024;

/// What the link does with files the other side offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePolicy {
    /// Accept without asking (`confab join --accept-files`); otherwise each offer is shown and
    /// waits for the person's answer.
    pub auto_accept: bool,
    /// Larger files are declined before anything is written.
    pub max_bytes: u64,
}

impl LinkNotice {
    /// One line for a person to read.
    pub fn describe(&self) -> String {
        match self {
            Self::Chat(text) => format!("chat: {text}"),
            Self::FileOffered { name, size, .. } => format!("{name} ({size} bytes) offered"),
            Self::Progress {
                name, done, total, ..
            } => format!("{name}: {done} of {total} bytes"),
            Self::FileDone(file) => format!(
                "file {} {} ({} bytes)",
                file.name,
                match file.direction {
                    Direction::Sent => "sent",
                    Direction::Received => "received",
                },
                file.bytes
            ),
            Self::TransferFailed {
                direction,
                name,
                reason,
                ..
            } => match direction {
                Direction::Sent => format!("{name} was not sent: {reason}"),
                Direction::Received => format!("{name} was not received: {reason}"),
            },
        }
    }
}

/// Forwards a channel's events to the session loop until it closes.
pub fn watch_channel(dc: Arc<dyn DataChannel>, tx: mpsc::Sender<LinkEvent>) {
    tokio::spawn(async move {
        let label = dc.label().await.unwrap_or_default();
        if label != CONTROL_LABEL && label != FILE_LABEL {
            // Not ours (a newer version's, or a hostile peer opening channel after channel):
            // closed at once, so it holds no stream, buffer or task here. The other side sees
            // it close.
            tracing::debug!(%label, "closing a data channel we do not use");
            if let Err(err) = dc.close().await {
                tracing::debug!(%label, %err, "could not close the data channel");
            }
            return;
        }
        if matches!(dc.ready_state().await, Ok(RTCDataChannelState::Open)) {
            let _ = tx.send(LinkEvent::Open(dc.clone())).await;
        }
        while let Some(event) = dc.poll().await {
            let forward = match event {
                DataChannelEvent::OnOpen => LinkEvent::Open(dc.clone()),
                DataChannelEvent::OnMessage(msg) if label == FILE_LABEL && !msg.is_string => {
                    LinkEvent::Chunk(msg.data)
                }
                DataChannelEvent::OnMessage(msg) if label == CONTROL_LABEL && msg.is_string => {
                    if msg.data.len() > MAX_CONTROL_BYTES {
                        tracing::warn!(
                            bytes = msg.data.len(),
                            "ignoring an oversized control message"
                        );
                        continue;
                    }
                    LinkEvent::Control(String::from_utf8_lossy(&msg.data).into_owned())
                }
                DataChannelEvent::OnMessage(_) => {
                    tracing::debug!(%label, "ignoring a message of the wrong kind");
                    continue;
                }
                DataChannelEvent::OnClose => break,
                _ => continue,
            };
            if tx.send(forward).await.is_err() {
                return;
            }
        }
        let _ = tx.send(LinkEvent::Closed(label)).await;
    });
}

struct Outgoing {
    path: PathBuf,
    name: String,
    size: u64,
    sha256: String,
}

pub struct DataLink {
    control: Option<Arc<dyn DataChannel>>,
    file: Option<Arc<dyn DataChannel>>,
    queued_chat: VecDeque<String>,
    queued_files: VecDeque<(u32, PathBuf)>,
    receive_dir: PathBuf,
    policy: FilePolicy,
    /// Ids of outgoing files being hashed.
    hashing: HashMap<u32, String>,
    outgoing: HashMap<u32, Outgoing>,
    offered: HashMap<u32, (String, u64, String)>,
    incoming: HashMap<u32, IncomingFile>,
    events: mpsc::Sender<LinkEvent>,
    stats: StatsHandle,
    /// The security code's commit-then-reveal exchange.
    sas: SasExchange,
    /// What our decoder asks of the other side's video (pixels a second), and what was last sent
    /// of it (`None`: nothing yet).
    video_limit_wanted: Option<u64>,
    video_limit_sent: Option<Option<u64>>,
    /// What the other side's decoder asked of ours, not yet taken by the session.
    video_limit_received: Option<Option<u64>>,
}

impl DataLink {
    pub fn new(
        receive_dir: PathBuf,
        policy: FilePolicy,
        events: mpsc::Sender<LinkEvent>,
        stats: StatsHandle,
    ) -> Self {
        Self {
            control: None,
            file: None,
            queued_chat: VecDeque::new(),
            queued_files: VecDeque::new(),
            receive_dir,
            policy,
            hashing: HashMap::new(),
            outgoing: HashMap::new(),
            offered: HashMap::new(),
            incoming: HashMap::new(),
            events,
            stats,
            sas: SasExchange::random(),
            video_limit_wanted: None,
            video_limit_sent: None,
            video_limit_received: None,
        }
    }

    /// Asks the other side to send at most `max_pixel_rate` pixels a second (`None`: all it
    /// has), once the control channel is open; a repeat of what was last sent is not sent again.
    pub async fn ask_video_limit(&mut self, max_pixel_rate: Option<u64>) {
        self.video_limit_wanted = max_pixel_rate;
        if self.control.is_none() || self.video_limit_sent == Some(max_pixel_rate) {
            return;
        }
        // Before any ask, "no limit" is what the other side assumes already.
        if self.video_limit_sent.is_none() && max_pixel_rate.is_none() {
            return;
        }
        self.video_limit_sent = Some(max_pixel_rate);
        self.send_control(&ControlMessage::VideoLimit { max_pixel_rate })
            .await;
    }

    /// What the other side last asked of our video, once: `Some(None)` takes its limit back.
    pub fn take_video_limit(&mut self) -> Option<Option<u64>> {
        self.video_limit_received.take()
    }

    /// Where the security code's exchange stands.
    pub fn sas_state(&self) -> &SasState {
        self.sas.state()
    }

    async fn send_control(&self, msg: &ControlMessage) {
        let Some(dc) = &self.control else { return };
        let Ok(text) = serde_json::to_string(msg) else {
            return;
        };
        if let Err(err) = dc.send_text(&text).await {
            tracing::warn!(%err, "could not send on the data channel");
        }
    }

    /// A channel opened: remember it, and send what was waiting for it.
    pub async fn opened(&mut self, dc: Arc<dyn DataChannel>) -> Vec<LinkNotice> {
        let label = dc.label().await.unwrap_or_default();
        let slot = match label.as_str() {
            CONTROL_LABEL => &mut self.control,
            FILE_LABEL => &mut self.file,
            other => {
                tracing::debug!(label = other, "ignoring an unknown data channel");
                return Vec::new();
            }
        };
        match slot {
            // The same channel, reported open twice (open when first looked at, then its event).
            Some(known) if Arc::ptr_eq(known, &dc) => return Vec::new(),
            // Each side creates the pair once per call; a second one means the other peer opened
            // it again. The newer one is used from now on.
            Some(_) => tracing::warn!(%label, "a second data channel with this label opened"),
            None => tracing::info!(%label, "data channel open"),
        }
        *slot = Some(dc);
        let mut notices = Vec::new();
        if self.control.is_some() {
            if let Some(hash) = self.sas.commit() {
                self.send_control(&ControlMessage::SasCommit { hash }).await;
                if let Some(nonce) = self.sas.reveal() {
                    self.send_control(&ControlMessage::SasReveal { nonce })
                        .await;
                }
            }
            while let Some(text) = self.queued_chat.pop_front() {
                self.chat(text).await;
            }
            if self.video_limit_sent.is_none() {
                self.ask_video_limit(self.video_limit_wanted).await;
            }
            if self.file.is_some() {
                while let Some((id, path)) = self.queued_files.pop_front() {
                    notices.extend(self.offer_file(id, &path));
                }
            }
        }
        notices
    }

    pub async fn chat(&mut self, text: String) {
        let text: String = text.chars().take(MAX_CHAT_CHARS).collect();
        if self.control.is_none() {
            self.queued_chat.push_back(text);
            return;
        }
        self.send_control(&ControlMessage::Chat { text }).await;
        self.stats.lock().stats.chat.sent += 1;
    }

    /// Announces a file under the caller's `id`, once it is hashed (on a blocking thread, not the
    /// event loop); it streams once the other side accepts.
    pub fn offer_file(&mut self, id: u32, path: &Path) -> Vec<LinkNotice> {
        let name = path
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        if self.hashing.contains_key(&id)
            || self.outgoing.contains_key(&id)
            || self.queued_files.iter().any(|(queued, _)| *queued == id)
        {
            return vec![LinkNotice::TransferFailed {
                id,
                direction: Direction::Sent,
                name,
                reason: TransferFailure::IdInUse,
            }];
        }
        if self.control.is_none() || self.file.is_none() {
            self.queued_files.push_back((id, path.to_owned()));
            return Vec::new();
        }
        self.hashing.insert(id, name);
        let (path, events) = (path.to_owned(), self.events.clone());
        tokio::spawn(async move {
            let hashed = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || file_sha256(&path)).await
            };
            let result = hashed.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            let _ = events.send(LinkEvent::Hashed { id, path, result }).await;
        });
        Vec::new()
    }

    /// An outgoing file is hashed: offer it.
    pub fn hashed(
        &mut self,
        id: u32,
        path: PathBuf,
        result: std::io::Result<(u64, String)>,
    ) -> Vec<LinkNotice> {
        let Some(name) = self.hashing.remove(&id) else {
            return Vec::new();
        };
        let (size, sha256) = match result {
            Ok(v) => v,
            Err(err) => {
                return vec![LinkNotice::TransferFailed {
                    id,
                    direction: Direction::Sent,
                    name,
                    reason: TransferFailure::Unreadable(err.to_string()),
                }]
            }
        };
        let offer = ControlMessage::FileOffer {
            id,
            name: name.clone(),
            size,
            sha256: sha256.clone(),
        };
        self.outgoing.insert(
            id,
            Outgoing {
                path,
                name,
                size,
                sha256,
            },
        );
        let control = self.control.clone();
        tokio::spawn(async move {
            if let (Some(dc), Ok(text)) = (control, serde_json::to_string(&offer)) {
                let _ = dc.send_text(&text).await;
            }
        });
        Vec::new()
    }

    /// The person accepted (or the link auto-accepts) an offered file.
    pub async fn accept(&mut self, id: u32) -> Vec<LinkNotice> {
        let Some((name, size, sha)) = self.offered.remove(&id) else {
            return Vec::new();
        };
        let created = {
            let (dir, name, max) = (
                self.receive_dir.clone(),
                name.clone(),
                self.policy.max_bytes,
            );
            tokio::task::spawn_blocking(move || {
                check_room(&dir, size, max)?;
                IncomingFile::create(&dir, id, &name, size, &sha)
            })
            .await
            .unwrap_or_else(|e| Err(FileError::Write(String::new(), e.to_string())))
        };
        match created {
            Ok(file) => {
                let empty = size == 0;
                self.incoming.insert(id, file);
                self.send_control(&ControlMessage::FileAccept { id }).await;
                if empty {
                    return self.finish_incoming(id).await;
                }
                Vec::new()
            }
            Err(err) => self.refuse_incoming(id, name, err.to_string()).await,
        }
    }

    pub async fn decline(&mut self, id: u32) {
        if self.offered.remove(&id).is_some() {
            self.send_control(&ControlMessage::FileDecline { id }).await;
        }
    }

    pub async fn on_control(&mut self, text: &str) -> Vec<LinkNotice> {
        let msg = match serde_json::from_str::<ControlMessage>(text) {
            Ok(msg) => msg,
            Err(err) => {
                tracing::warn!(%err, "ignoring an unreadable data-channel message");
                return Vec::new();
            }
        };
        match msg {
            ControlMessage::SasCommit { hash } => {
                if let Some(nonce) = self.sas.on_commit(&hash) {
                    self.send_control(&ControlMessage::SasReveal { nonce })
                        .await;
                }
                Vec::new()
            }
            ControlMessage::SasReveal { nonce } => {
                self.sas.on_reveal(&nonce);
                Vec::new()
            }
            ControlMessage::VideoLimit { max_pixel_rate } => {
                self.video_limit_received = Some(max_pixel_rate);
                Vec::new()
            }
            ControlMessage::Chat { text } => {
                let text: String = text.chars().take(MAX_CHAT_CHARS).collect();
                self.stats.lock().stats.chat.received.push(text.clone());
                vec![LinkNotice::Chat(text)]
            }
            ControlMessage::FileOffer {
                id,
                name,
                size,
                sha256,
            } => {
                if self.offered.contains_key(&id) || self.incoming.contains_key(&id) {
                    return Vec::new();
                }
                // Shown and saved under this name only: no paths, no invisible characters.
                let name = sanitize_file_name(&name);
                if self.offered.len() + self.incoming.len() >= MAX_PENDING_FILES {
                    // Declined without a notice: a flood of offers must not flood the window.
                    tracing::warn!(id, "declining a file offer: too many pending");
                    self.send_control(&ControlMessage::FileDecline { id }).await;
                    return Vec::new();
                }
                if size > self.policy.max_bytes {
                    let reason = FileError::TooLarge {
                        size,
                        max: self.policy.max_bytes,
                    };
                    return self.refuse_incoming(id, name, reason.to_string()).await;
                }
                self.offered.insert(id, (name.clone(), size, sha256));
                if self.policy.auto_accept {
                    self.accept(id).await
                } else {
                    vec![LinkNotice::FileOffered { id, name, size }]
                }
            }
            ControlMessage::FileAccept { id } => {
                self.stream_file(id);
                Vec::new()
            }
            ControlMessage::FileDecline { id } => match self.outgoing.remove(&id) {
                Some(out) => vec![LinkNotice::TransferFailed {
                    id,
                    direction: Direction::Sent,
                    name: out.name,
                    reason: TransferFailure::Declined,
                }],
                None => Vec::new(),
            },
            ControlMessage::FileResult { id, ok, error } => match self.outgoing.remove(&id) {
                Some(out) => {
                    let stats = FileStats {
                        name: out.name.clone(),
                        bytes: out.size,
                        sha256: out.sha256,
                        direction: Direction::Sent,
                        ok,
                        error: error.clone(),
                    };
                    self.stats.lock().file(stats.clone());
                    if ok {
                        vec![LinkNotice::FileDone(stats)]
                    } else {
                        vec![LinkNotice::TransferFailed {
                            id,
                            direction: Direction::Sent,
                            name: out.name,
                            reason: TransferFailure::Rejected(error.unwrap_or_default()),
                        }]
                    }
                }
                None => Vec::new(),
            },
            ControlMessage::FileCancel { id } => {
                if let Some(file) = self.incoming.remove(&id) {
                    let name = file.name.clone();
                    abandon(file).await;
                    return vec![LinkNotice::TransferFailed {
                        id,
                        direction: Direction::Received,
                        name,
                        reason: TransferFailure::Cancelled,
                    }];
                }
                Vec::new()
            }
        }
    }

    fn stream_file(&mut self, id: u32) {
        let (Some(out), Some(dc)) = (self.outgoing.get(&id), self.file.clone()) else {
            return;
        };
        let (path, total) = (out.path.clone(), out.size);
        let events = self.events.clone();
        tokio::spawn(async move {
            let result = async {
                let mut file = tokio::fs::File::open(&path).await?;
                let mut buf = vec![0u8; CHUNK_BYTES];
                let mut sent = 0u64;
                let mut last_report = 0u64;
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    // Waits while more than the channel's buffer limit is unacknowledged.
                    dc.send(BytesMut::from(chunk_message(id, &buf[..n]).as_slice()))
                        .await
                        .map_err(std::io::Error::other)?;
                    sent += n as u64;
                    if sent - last_report >= 256 * 1024 || sent == total {
                        last_report = sent;
                        let _ = events
                            .send(LinkEvent::SendProgress { id, sent, total })
                            .await;
                    }
                }
                std::io::Result::Ok(())
            }
            .await;
            if let Err(err) = result {
                let _ = events
                    .send(LinkEvent::SendFailed {
                        id,
                        error: err.to_string(),
                    })
                    .await;
            }
        });
    }

    pub fn send_progress(&self, id: u32, sent: u64, total: u64) -> Vec<LinkNotice> {
        match self.outgoing.get(&id) {
            Some(out) => vec![LinkNotice::Progress {
                id,
                name: out.name.clone(),
                incoming: false,
                done: sent,
                total,
            }],
            None => Vec::new(),
        }
    }

    pub async fn send_failed(&mut self, id: u32, error: String) -> Vec<LinkNotice> {
        self.send_control(&ControlMessage::FileCancel { id }).await;
        match self.outgoing.remove(&id) {
            Some(out) => vec![LinkNotice::TransferFailed {
                id,
                direction: Direction::Sent,
                name: out.name,
                reason: TransferFailure::SendFailed(error),
            }],
            None => Vec::new(),
        }
    }

    pub async fn on_chunk(&mut self, data: &[u8]) -> Vec<LinkNotice> {
        let Some((id, bytes)) = parse_chunk(data) else {
            return Vec::new();
        };
        let Some(mut file) = self.incoming.remove(&id) else {
            tracing::debug!(id, "chunk for an unknown transfer");
            return Vec::new();
        };
        let before = file.received;
        // Disk writes block: they run on the blocking pool while the loop awaits (chunks of one
        // transfer stay in order, and a slow disk slows the sender through the channel's buffer).
        let bytes = bytes.to_vec();
        let (file, written) = tokio::task::spawn_blocking(move || {
            let written = file.write(&bytes);
            (file, written)
        })
        .await
        .expect("invariant: writing a chunk does not panic");
        self.incoming.insert(id, file);
        let file = self
            .incoming
            .get_mut(&id)
            .expect("invariant: inserted above");
        match written {
            Ok(true) => self.finish_incoming(id).await,
            Ok(false) => {
                let (done, total, name) = (file.received, file.size, file.name.clone());
                if done / (256 * 1024) != before / (256 * 1024) {
                    vec![LinkNotice::Progress {
                        id,
                        name,
                        incoming: true,
                        done,
                        total,
                    }]
                } else {
                    Vec::new()
                }
            }
            Err(err) => {
                let file = self.incoming.remove(&id).expect("invariant: present above");
                let name = file.name.clone();
                abandon(file).await;
                self.refuse_incoming(id, name, err.to_string()).await
            }
        }
    }

    /// The call is over: partial files are removed (on the blocking pool) and offers forgotten.
    pub async fn close(&mut self) {
        self.offered.clear();
        let partial: Vec<IncomingFile> = self.incoming.drain().map(|(_, file)| file).collect();
        if !partial.is_empty() {
            let _ = tokio::task::spawn_blocking(move || drop(partial)).await;
        }
    }

    /// Tells the sender we could not keep file `id`, and the person why.
    async fn refuse_incoming(&self, id: u32, name: String, error: String) -> Vec<LinkNotice> {
        self.send_control(&ControlMessage::FileResult {
            id,
            ok: false,
            error: Some(error.clone()),
        })
        .await;
        vec![LinkNotice::TransferFailed {
            id,
            direction: Direction::Received,
            name,
            reason: TransferFailure::ReceiveFailed(error),
        }]
    }

    async fn finish_incoming(&mut self, id: u32) -> Vec<LinkNotice> {
        let Some(file) = self.incoming.remove(&id) else {
            return Vec::new();
        };
        let (name, size) = (file.name.clone(), file.size);
        let finished = tokio::task::spawn_blocking(move || file.finish())
            .await
            .unwrap_or_else(|e| Err(FileError::Write(String::new(), e.to_string())));
        match finished {
            Ok((path, sha256)) => {
                self.send_control(&ControlMessage::FileResult {
                    id,
                    ok: true,
                    error: None,
                })
                .await;
                let stats = FileStats {
                    name: path
                        .file_name()
                        .map_or(name, |n| n.to_string_lossy().into_owned()),
                    bytes: size,
                    sha256,
                    direction: Direction::Received,
                    ok: true,
                    error: None,
                };
                self.stats.lock().file(stats.clone());
                vec![LinkNotice::FileDone(stats)]
            }
            Err(err) => {
                let stats = FileStats {
                    name: name.clone(),
                    bytes: size,
                    sha256: String::new(),
                    direction: Direction::Received,
                    ok: false,
                    error: Some(err.to_string()),
                };
                self.stats.lock().file(stats);
                self.refuse_incoming(id, name, err.to_string()).await
            }
        }
    }
}

/// Removes a partial file on the blocking pool.
async fn abandon(file: IncomingFile) {
    let _ = tokio::task::spawn_blocking(move || file.abandon()).await;
}

#[cfg(test)]
// `#[tokio::test]` is each test's entry point: it may wait on the runtime it drives.
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::time::Instant;

    use sha2::{Digest as _, Sha256};

    use super::*;

    /// A link whose channels are not open: what it would send goes nowhere, what it writes is
    /// on disk in `dir`.
    fn link(dir: &Path, auto_accept: bool, max_bytes: u64) -> DataLink {
        let (tx, _rx) = mpsc::channel(16);
        DataLink::new(
            dir.to_owned(),
            FilePolicy {
                auto_accept,
                max_bytes,
            },
            tx,
            StatsHandle::new(Instant::now()),
        )
    }

    fn offer(id: u32, name: &str, data: &[u8]) -> String {
        serde_json::to_string(&ControlMessage::FileOffer {
            id,
            name: name.into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        })
        .unwrap()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn failure(notices: &[LinkNotice]) -> Option<&TransferFailure> {
        notices.iter().find_map(|n| match n {
            LinkNotice::TransferFailed { reason, .. } => Some(reason),
            _ => None,
        })
    }

    #[tokio::test]
    async fn an_unaccepted_offer_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut link = link(dir.path(), false, DEFAULT_MAX_FILE_BYTES);
        let notices = link
            .on_control(&offer(1, "x\u{202E}gpj.exe", b"payload"))
            .await;
        // Offered under its safe name, waiting for the person.
        assert_eq!(
            notices,
            vec![LinkNotice::FileOffered {
                id: 1,
                name: "xgpj.exe".into(),
                size: 7
            }]
        );
        assert!(files_in(dir.path()).is_empty());
        // Chunks the sender pushes without an accept go nowhere.
        assert!(link
            .on_chunk(&chunk_message(1, b"payload"))
            .await
            .is_empty());
        link.decline(1).await;
        assert!(link.accept(1).await.is_empty(), "declined offers are gone");
        assert!(files_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn an_oversized_offer_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut link = link(dir.path(), true, 4);
        let notices = link.on_control(&offer(1, "big.bin", b"12345")).await;
        assert_eq!(
            failure(&notices),
            Some(&TransferFailure::ReceiveFailed(
                FileError::TooLarge { size: 5, max: 4 }.to_string()
            ))
        );
        assert!(link.on_chunk(&chunk_message(1, b"12345")).await.is_empty());
        assert!(files_in(dir.path()).is_empty());
        // One that fits is received.
        let notices = link.on_control(&offer(2, "small.bin", b"1234")).await;
        assert_eq!(failure(&notices), None);
        let notices = link.on_chunk(&chunk_message(2, b"1234")).await;
        assert!(matches!(notices.as_slice(), [LinkNotice::FileDone(f)] if f.ok));
        assert_eq!(files_in(dir.path()), vec!["small.bin"]);
    }

    #[tokio::test]
    async fn an_offer_the_disk_cannot_hold_is_refused_even_when_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut link = link(dir.path(), false, u64::MAX);
        let huge = serde_json::to_string(&ControlMessage::FileOffer {
            id: 1,
            name: "huge.bin".into(),
            size: 100 << 40,
            sha256: "0".repeat(64),
        })
        .unwrap();
        assert!(failure(&link.on_control(&huge).await).is_none());
        let notices = link.accept(1).await;
        assert!(
            matches!(failure(&notices), Some(TransferFailure::ReceiveFailed(e)) if e.contains("free")),
            "{notices:?}"
        );
        assert!(files_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn pending_offers_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut link = link(dir.path(), false, DEFAULT_MAX_FILE_BYTES);
        for id in 0..MAX_PENDING_FILES as u32 {
            let notices = link.on_control(&offer(id, "f", b"x")).await;
            assert!(matches!(
                notices.as_slice(),
                [LinkNotice::FileOffered { .. }]
            ));
        }
        let notices = link.on_control(&offer(99, "f", b"x")).await;
        assert!(notices.is_empty(), "declined quietly: {notices:?}");
        assert!(files_in(dir.path()).is_empty());
        assert!(
            link.accept(99).await.is_empty(),
            "the extra offer was not kept"
        );
        // Answering one makes room for another.
        link.decline(0).await;
        let notices = link.on_control(&offer(100, "f", b"x")).await;
        assert!(matches!(
            notices.as_slice(),
            [LinkNotice::FileOffered { .. }]
        ));
    }

    #[tokio::test]
    async fn partial_files_are_removed_on_cancel_error_and_hang_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut link = link(dir.path(), true, DEFAULT_MAX_FILE_BYTES);
        let data = b"0123456789";
        for id in [1, 2, 3] {
            link.on_control(&offer(id, &format!("f{id}.bin"), data))
                .await;
            assert!(link
                .on_chunk(&chunk_message(id, &data[..4]))
                .await
                .is_empty());
        }
        assert_eq!(files_in(dir.path()).len(), 3, "three .part files");
        // Cancelled by the sender.
        let cancel = serde_json::to_string(&ControlMessage::FileCancel { id: 1 }).unwrap();
        let notices = link.on_control(&cancel).await;
        assert_eq!(failure(&notices), Some(&TransferFailure::Cancelled));
        // The sender sends more than it announced.
        let notices = link.on_chunk(&chunk_message(2, &[0; 16])).await;
        assert!(matches!(
            failure(&notices),
            Some(TransferFailure::ReceiveFailed(_))
        ));
        assert_eq!(files_in(dir.path()), vec![".f3.bin.3.part"]);
        // The call ends mid-transfer.
        link.close().await;
        assert!(files_in(dir.path()).is_empty());
    }
}
