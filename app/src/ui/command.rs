//! `UiCommand`: what the person asked for in one frame. Views read state and return these;
//! `ConfabApp::apply` is the one place that carries them out.

use std::path::PathBuf;

use confab_protocol::RoomCode;

use crate::link::JoinLink;

#[derive(Debug, Clone, PartialEq)]
pub enum UiCommand {
    /// Join `room` (a new room when `None`) with the lobby's settings.
    StartCall(Option<RoomCode>),
    /// Stop opening the devices for a call and go back to the lobby.
    CancelStart,
    /// Join the room a pasted `confab://` link names (on its server when it names one).
    OpenLink(JoinLink),
    /// The lobby's microphone toggle: start the next call muted or not.
    ToggleLobbyMic,
    /// The lobby's camera toggle: start the next call with the camera off or on.
    ToggleLobbyCamera,
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
    /// Push-to-talk: unmute while Space is held (`true`), mute again when it is let go.
    PushToTalk(bool),
    /// A device chosen in the call's menus (a SPEC): opened and switched to during the call, and
    /// saved for the next one.
    ChooseMic(String),
    ChooseCamera(String),
    ChooseSpeaker(String),
    /// Show or hide your own picture.
    ToggleSelfView,
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
