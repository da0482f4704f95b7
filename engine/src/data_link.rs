//! Chat and file transfer over the two data channels (see `data.rs` for the wire format). Each
//! channel's events are forwarded by a small task to the session loop, which calls into `DataLink`;
//! outgoing files are streamed by their own task, which waits whenever the channel's send buffer is
//! full, so a large file neither floods memory nor starves media.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelState};

use super::collector::StatsHandle;
use super::data::{
    chunk_message, file_sha256, parse_chunk, ControlMessage, IncomingFile, CHUNK_BYTES,
    CONTROL_LABEL, FILE_LABEL, MAX_CHAT_CHARS, MAX_CONTROL_BYTES,
};
use super::stats::FileStats;

/// What the channel tasks report to the session loop.
pub enum LinkEvent {
    Open(Arc<dyn DataChannel>),
    Control(String),
    Chunk(BytesMut),
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
    FileDone(FileStats),
    Problem(String),
}

/// Forwards a channel's events to the session loop until it closes.
pub fn watch_channel(dc: Arc<dyn DataChannel>, tx: mpsc::Sender<LinkEvent>) {
    tokio::spawn(async move {
        let label = dc.label().await.unwrap_or_default();
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
    queued_files: VecDeque<PathBuf>,
    receive_dir: PathBuf,
    auto_accept: bool,
    next_id: u32,
    outgoing: HashMap<u32, Outgoing>,
    offered: HashMap<u32, (String, u64, String)>,
    incoming: HashMap<u32, IncomingFile>,
    events: mpsc::Sender<LinkEvent>,
    stats: StatsHandle,
}

impl DataLink {
    pub fn new(
        receive_dir: PathBuf,
        auto_accept: bool,
        events: mpsc::Sender<LinkEvent>,
        stats: StatsHandle,
    ) -> Self {
        Self {
            control: None,
            file: None,
            queued_chat: VecDeque::new(),
            queued_files: VecDeque::new(),
            receive_dir,
            auto_accept,
            next_id: 1,
            outgoing: HashMap::new(),
            offered: HashMap::new(),
            incoming: HashMap::new(),
            events,
            stats,
        }
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
        match dc.label().await.unwrap_or_default().as_str() {
            CONTROL_LABEL => self.control = Some(dc),
            FILE_LABEL => self.file = Some(dc),
            other => tracing::debug!(label = other, "ignoring an unknown data channel"),
        }
        let mut notices = Vec::new();
        if self.control.is_some() {
            while let Some(text) = self.queued_chat.pop_front() {
                self.chat(text).await;
            }
            if self.file.is_some() {
                while let Some(path) = self.queued_files.pop_front() {
                    notices.extend(self.offer_file(&path));
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

    /// Announces a file; it streams once the other side accepts.
    pub fn offer_file(&mut self, path: &Path) -> Vec<LinkNotice> {
        if self.control.is_none() || self.file.is_none() {
            self.queued_files.push_back(path.to_owned());
            return Vec::new();
        }
        let (size, sha256) = match file_sha256(path) {
            Ok(v) => v,
            Err(err) => {
                return vec![LinkNotice::Problem(format!(
                    "cannot send {}: {err}",
                    path.display()
                ))]
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let name = path
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let offer = ControlMessage::FileOffer {
            id,
            name: name.clone(),
            size,
            sha256: sha256.clone(),
        };
        self.outgoing.insert(
            id,
            Outgoing {
                path: path.to_owned(),
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
        match IncomingFile::create(&self.receive_dir, id, &name, size, &sha) {
            Ok(file) => {
                let empty = size == 0;
                self.incoming.insert(id, file);
                self.send_control(&ControlMessage::FileAccept { id }).await;
                if empty {
                    return self.finish_incoming(id).await;
                }
                Vec::new()
            }
            Err(err) => {
                self.send_control(&ControlMessage::FileResult {
                    id,
                    ok: false,
                    error: Some(err.to_string()),
                })
                .await;
                vec![LinkNotice::Problem(format!("cannot receive {name}: {err}"))]
            }
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
                self.offered.insert(id, (name.clone(), size, sha256));
                if self.auto_accept {
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
                Some(out) => vec![LinkNotice::Problem(format!("{} was declined", out.name))],
                None => Vec::new(),
            },
            ControlMessage::FileResult { id, ok, error } => match self.outgoing.remove(&id) {
                Some(out) => {
                    let stats = FileStats {
                        name: out.name,
                        bytes: out.size,
                        sha256: out.sha256,
                        direction: "sent",
                        ok,
                        error,
                    };
                    self.stats.lock().file(stats.clone());
                    vec![LinkNotice::FileDone(stats)]
                }
                None => Vec::new(),
            },
            ControlMessage::FileCancel { id } => {
                if let Some(file) = self.incoming.remove(&id) {
                    let name = file.name.clone();
                    file.abandon();
                    return vec![LinkNotice::Problem(format!(
                        "{name} was cancelled by the sender"
                    ))];
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
            Some(out) => vec![LinkNotice::Problem(format!(
                "sending {} failed: {error}",
                out.name
            ))],
            None => Vec::new(),
        }
    }

    pub async fn on_chunk(&mut self, data: &[u8]) -> Vec<LinkNotice> {
        let Some((id, bytes)) = parse_chunk(data) else {
            return Vec::new();
        };
        let Some(file) = self.incoming.get_mut(&id) else {
            tracing::debug!(id, "chunk for an unknown transfer");
            return Vec::new();
        };
        let before = file.received;
        match file.write(bytes) {
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
                file.abandon();
                self.send_control(&ControlMessage::FileResult {
                    id,
                    ok: false,
                    error: Some(err.to_string()),
                })
                .await;
                vec![LinkNotice::Problem(format!(
                    "receiving {name} failed: {err}"
                ))]
            }
        }
    }

    async fn finish_incoming(&mut self, id: u32) -> Vec<LinkNotice> {
        let Some(file) = self.incoming.remove(&id) else {
            return Vec::new();
        };
        let (name, size) = (file.name.clone(), file.size);
        match file.finish() {
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
                    direction: "received",
                    ok: true,
                    error: None,
                };
                self.stats.lock().file(stats.clone());
                vec![LinkNotice::FileDone(stats)]
            }
            Err(err) => {
                self.send_control(&ControlMessage::FileResult {
                    id,
                    ok: false,
                    error: Some(err.to_string()),
                })
                .await;
                let stats = FileStats {
                    name,
                    bytes: size,
                    sha256: String::new(),
                    direction: "received",
                    ok: false,
                    error: Some(err.to_string()),
                };
                self.stats.lock().file(stats.clone());
                vec![LinkNotice::FileDone(stats)]
            }
        }
    }
}
