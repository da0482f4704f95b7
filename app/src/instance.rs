//! One Confab per user: the first window listens on a local socket (a Unix socket in the user's
//! runtime directory); a later launch with a link hands the link over there and exits. The
//! listener checks each link again, and passes it on through a bounded channel.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::link::{JoinLink, MAX_LEN};

/// Overrides where the socket is (tests give each run its own).
pub const SOCKET_ENV: &str = "CONFAB_INSTANCE_SOCKET";
/// Links waiting for the app to look at them; more than a person clicks between two frames.
const INBOX_LEN: usize = 8;
/// A peer that says nothing for this long is dropped (the listener serves one at a time).
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Called when a link arrives (the window asks for a repaint, so it looks at its inbox).
pub type Waker = Arc<OnceLock<Box<dyn Fn() + Send + Sync>>>;

/// Links handed over by later launches; the socket goes when this is dropped.
pub struct Inbox {
    pub links: Receiver<JoinLink>,
    pub waker: Waker,
    _socket: SocketFile,
}

/// Removes the socket file when dropped.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a launch is: the first one (listening, when it could) or a later one.
pub enum Claim {
    /// No Confab was listening: this process is the one (with `None`, it could not listen, and
    /// goes on alone).
    First(Option<Listener>),
    /// The running Confab took the link.
    HandedOver,
}

/// The listening socket (removed when the `Inbox` it becomes is dropped).
pub struct Listener {
    #[cfg(unix)]
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("the running Confab refused the link: {0}")]
    Refused(String),
    #[error("cannot reach the running Confab: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the socket lives: `$CONFAB_INSTANCE_SOCKET`, else the user's runtime directory (private
/// to the user), else the app's cache directory in the home folder.
pub fn socket_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SOCKET_ENV) {
        return Some(path.into());
    }
    let dirs = directories::ProjectDirs::from("app", "confab", "Confab")?;
    let dir = dirs
        .runtime_dir()
        .unwrap_or_else(|| dirs.cache_dir())
        .to_owned();
    Some(dir.join("instance.sock"))
}

/// Becomes the first instance, or hands `link` (when given) to the one already running.
/// Without a link a later launch goes on as a window of its own, not listening.
pub fn claim(link: Option<&JoinLink>) -> Result<Claim, InstanceError> {
    let Some(path) = socket_path() else {
        return Ok(Claim::First(None));
    };
    claim_at(path, link)
}

#[cfg(unix)]
fn claim_at(path: PathBuf, link: Option<&JoinLink>) -> Result<Claim, InstanceError> {
    use std::os::unix::net::{UnixListener, UnixStream};
    // Without a place to listen, this launch goes on alone rather than failing.
    if let Some(Err(err)) = path.parent().map(create_private_dir) {
        tracing::warn!(path = %path.display(), %err, "cannot listen for links");
        return Ok(Claim::First(None));
    }
    // Binding is atomic: of two launches at once, one binds and the other finds it.
    for _ in 0..2 {
        match UnixListener::bind(&path) {
            Ok(listener) => return Ok(Claim::First(Some(Listener { listener, path }))),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), err = %e, "cannot listen for links");
                return Ok(Claim::First(None));
            }
        }
        match UnixStream::connect(&path) {
            Ok(stream) => {
                return match link {
                    Some(link) => hand_over(stream, link).map(|()| Claim::HandedOver),
                    None => Ok(Claim::First(None)),
                };
            }
            // Left behind by a Confab that crashed: nobody answers; take its place.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), err = %e, "cannot reach a running Confab");
                return Ok(Claim::First(None));
            }
        }
    }
    Ok(Claim::First(None))
}

#[cfg(not(unix))]
fn claim_at(_path: PathBuf, _link: Option<&JoinLink>) -> Result<Claim, InstanceError> {
    // Windows (a named pipe) is not done yet: every launch is a window of its own.
    Ok(Claim::First(None))
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sends `open LINK`, and waits for `ok` (or the reason it was refused).
#[cfg(unix)]
fn hand_over(
    mut stream: std::os::unix::net::UnixStream,
    link: &JoinLink,
) -> Result<(), InstanceError> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(format!("open {link}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_LEN as u64)).read_line(&mut answer)?;
    match answer.trim_end() {
        "ok" => Ok(()),
        other => Err(InstanceError::Refused(
            other.strip_prefix("error: ").unwrap_or(other).to_owned(),
        )),
    }
}

impl Listener {
    /// Serves later launches on a thread of its own, for as long as the process runs; their
    /// links come out of the returned inbox.
    pub fn serve(self) -> std::io::Result<Inbox> {
        let (tx, links) = std::sync::mpsc::sync_channel(INBOX_LEN);
        let waker: Waker = Arc::new(OnceLock::new());
        let wake = waker.clone();
        let socket = SocketFile(self.path.clone());
        std::thread::Builder::new()
            .name("instance-listener".into())
            .spawn(move || self.run(&tx, &wake))?;
        Ok(Inbox {
            links,
            waker,
            _socket: socket,
        })
    }

    #[cfg(unix)]
    fn run(self, tx: &SyncSender<JoinLink>, wake: &Waker) {
        for stream in self.listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(err) = serve_one(stream, tx, wake) {
                        tracing::debug!(%err, "a later launch hung up");
                    }
                }
                Err(err) => tracing::warn!(%err, "cannot accept a later launch"),
            }
        }
    }

    #[cfg(not(unix))]
    fn run(self, _tx: &SyncSender<JoinLink>, _wake: &Waker) {}
}

/// Reads one `open LINK` line and answers it.
#[cfg(unix)]
fn serve_one(
    stream: std::os::unix::net::UnixStream,
    tx: &SyncSender<JoinLink>,
    wake: &Waker,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_LEN as u64 + 8)).read_line(&mut line)?;
    let answer = match answer(&line, tx) {
        Ok(()) => {
            if let Some(wake) = wake.get() {
                wake();
            }
            "ok".to_owned()
        }
        Err(e) => format!("error: {e}"),
    };
    (&stream).write_all(format!("{answer}\n").as_bytes())
}

/// What the listener makes of one request.
fn answer(line: &str, tx: &SyncSender<JoinLink>) -> Result<(), String> {
    let text = line
        .strip_suffix('\n')
        .ok_or("the request was cut short")?
        .strip_prefix("open ")
        .ok_or("unknown request")?;
    let link = JoinLink::parse(text).map_err(|e| e.to_string())?;
    tracing::info!(room = %link.room, "a link from a later launch");
    tx.try_send(link).map_err(|e| match e {
        TrySendError::Full(_) => "busy: too many links at once".to_owned(),
        TrySendError::Disconnected(_) => "the app is closing".to_owned(),
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn link(code: &str) -> JoinLink {
        JoinLink::parse(&format!("confab://join/{code}?server=ws://127.0.0.1:9"))
            .expect("invariant: a valid link")
    }

    #[test]
    fn a_second_launch_hands_its_link_to_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/instance.sock");
        let Ok(Claim::First(Some(listener))) = claim_at(path.clone(), None) else {
            panic!("the first launch listens");
        };
        let inbox = listener.serve().expect("listener thread");
        let (woken_tx, woken) = std::sync::mpsc::sync_channel(4);
        let _ = inbox.waker.set(Box::new(move || {
            let _ = woken_tx.try_send(());
        }));
        let sent = link("kfq-wmzt-pxd");
        assert!(matches!(
            claim_at(path.clone(), Some(&sent)),
            Ok(Claim::HandedOver)
        ));
        assert_eq!(inbox.links.recv_timeout(IO_TIMEOUT), Ok(sent));
        assert_eq!(woken.recv_timeout(IO_TIMEOUT), Ok(()));
        // Without a link a later launch is a window of its own, and hands nothing over.
        assert!(matches!(
            claim_at(path.clone(), None),
            Ok(Claim::First(None))
        ));
        assert!(inbox.links.try_recv().is_err());
    }

    #[test]
    fn a_socket_left_behind_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("instance.sock");
        // A socket file nobody listens on, as a crashed Confab leaves it.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        assert!(path.exists());
        assert!(matches!(
            claim_at(path.clone(), Some(&link("kfq-wmzt-pxd"))),
            Ok(Claim::First(Some(_)))
        ));
    }

    #[test]
    fn a_launch_with_nowhere_to_listen_goes_on_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").expect("write");
        assert!(matches!(
            claim_at(file.join("instance.sock"), Some(&link("kfq-wmzt-pxd"))),
            Ok(Claim::First(None))
        ));
    }

    #[test]
    fn the_listener_refuses_what_is_not_a_link() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        assert_eq!(
            answer("open confab://join/nope\n", &tx).map_err(|e| e.contains("10 letters")),
            Err(true)
        );
        assert_eq!(answer("close\n", &tx), Err("unknown request".into()));
        assert_eq!(
            answer("open confab://join/kfq-wmzt-pxd", &tx),
            Err("the request was cut short".into())
        );
        assert_eq!(answer("open confab://join/kfq-wmzt-pxd\n", &tx), Ok(()));
        assert!(
            answer("open confab://join/kfq-wmzt-pxd\n", &tx).is_err_and(|e| e.starts_with("busy"))
        );
        assert_eq!(rx.try_recv().map(|l| l.server), Ok(None));
    }
}
