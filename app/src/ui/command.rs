//! `UiCommand`: what the person asked for in one frame. Views read state and return these;
//! `ConfabApp::apply` is the one place that carries them out.

use std::path::PathBuf;

use confab_protocol::RoomCode;

#[derive(Debug, Clone, PartialEq)]
pub enum UiCommand {
    /// Join `room` (a new room when `None`) with the lobby's settings.
    StartCall(Option<RoomCode>),
    /// Stop opening the devices for a call and go back to the lobby.
    CancelStart,
    /// Make a new room code to share (not joined yet).
    NewRoom,
    /// Show a problem in the lobby.
    ShowError(String),
    /// The camera or microphone choice changed: save, and restart the preview.
    DevicesChanged,
    /// The server choice changed: save, and start the hosted server if it is now wanted.
    ServerModeChanged,
    ToggleMic,
    ToggleCamera,
    /// Open or close the menu of screens and windows to share.
    ToggleShareMenu,
    CloseShareMenu,
    /// Share this screen or window (a SPEC as `--screen` takes it).
    ShareScreen(String),
    StopSharing,
    ToggleChat,
    ToggleStats,
    CloseStats,
    SendChat,
    /// Ask for a file to send (a native dialog, on its own thread).
    PickFile,
    SendFile(PathBuf),
    AnswerOffer {
        id: u32,
        accept: bool,
    },
    ToggleFullscreen,
    /// Leave the call (or the ended call's view) for the lobby.
    Hangup,
}
