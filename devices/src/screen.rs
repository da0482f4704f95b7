//! Screen sharing sources through xcap: a whole monitor, or one window where the platform can
//! capture windows (on X11 this needs a window manager). Frames are converted to I420, scaled
//! down to fit 1920x1080 (text stays legible, the encoder keeps up) and paced at a low frame rate
//! (screens change little; 10 fps by default). On X11 a monitor is read from the X server
//! directly (`X11Region`), for a third (4K) to a half (1080p) of xcap's CPU; `CONFAB_SCREEN_CAPTURE=xcap` turns that off.

use std::time::Duration;

use serde::Serialize;
use xcap::{Monitor, Window};

use confab_media::convert::{fit, packed_to_i420, scale, Packed};
use confab_media::{clock, VideoFrame};
use confab_media::{CaptureError, Pacer, VideoSource};

/// Set to `xcap` to capture monitors through xcap on X11 too (a way around a problem with
/// the direct path, and the benchmark's baseline).
pub const CAPTURE_ENV: &str = "CONFAB_SCREEN_CAPTURE";

/// Largest size sent for a shared screen.
pub const MAX_SIZE: (u32, u32) = confab_media::SCREEN_MAX_SIZE;
/// Frame rate of a shared screen.
pub const DEFAULT_FPS: u32 = confab_media::SCREEN_FPS;

/// What to share: `0`/`1`/... or a monitor name; `window:TITLE` for one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenSpec {
    Monitor(String),
    Window(String),
}

impl ScreenSpec {
    pub fn parse(spec: &str) -> Self {
        match spec.trim().strip_prefix("window:") {
            Some(title) => Self::Window(title.trim().to_owned()),
            None => Self::Monitor(spec.trim().to_owned()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScreenDescription {
    pub index: usize,
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub primary: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowDescription {
    pub title: String,
    pub app: String,
    pub width: u32,
    pub height: u32,
}

fn unavailable(what: impl std::fmt::Display) -> CaptureError {
    CaptureError::Unavailable(what.to_string())
}

/// On Linux, xcap needs an X or Wayland display; without one its error ("error during parsing
/// display string") says little, so say what is missing instead.
fn display_available() -> Result<(), CaptureError> {
    let has = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    if cfg!(target_os = "linux") && !has("DISPLAY") && !has("WAYLAND_DISPLAY") {
        return Err(unavailable(
            "no display to capture (neither DISPLAY nor WAYLAND_DISPLAY is set)",
        ));
    }
    Ok(())
}

fn all_monitors() -> Result<Vec<Monitor>, CaptureError> {
    display_available()?;
    Monitor::all().map_err(|e| unavailable(format!("cannot list screens: {e}")))
}

fn all_windows() -> Result<Vec<Window>, CaptureError> {
    display_available()?;
    Window::all().map_err(|e| unavailable(format!("cannot list windows: {e}")))
}

pub fn screens() -> Result<Vec<ScreenDescription>, CaptureError> {
    let monitors = all_monitors()?;
    Ok(monitors
        .iter()
        .enumerate()
        .map(|(index, m)| ScreenDescription {
            index,
            name: m.name().unwrap_or_default(),
            width: m.width().unwrap_or(0),
            height: m.height().unwrap_or(0),
            primary: m.is_primary().unwrap_or(false),
        })
        .collect())
}

pub fn windows() -> Result<Vec<WindowDescription>, CaptureError> {
    let windows = all_windows()?;
    Ok(windows
        .iter()
        .filter(|w| !w.is_minimized().unwrap_or(false))
        .map(|w| WindowDescription {
            title: w.title().unwrap_or_default(),
            app: w.app_name().unwrap_or_default(),
            width: w.width().unwrap_or(0),
            height: w.height().unwrap_or(0),
        })
        .filter(|w| w.width > 0 && w.height > 0)
        .collect())
}

enum Target {
    Monitor(Monitor),
    Window(Window),
}

/// A monitor read straight from the X server: one connection kept for the whole share, the root
/// window's region taken as the server holds it (32-bit pixels, B G R X in memory) and converted
/// once. xcap connects anew for every frame and copies each pixel into RGBA through a function
/// call, which was 40% of sharing a 4K screen. `None` where this does not apply (Wayland, other
/// pixel formats, other OSes): xcap then does it.
#[cfg(target_os = "linux")]
struct X11Region {
    /// The server writes the image here when it can (MIT-SHM: same machine, extension present);
    /// otherwise the image comes through the socket. Dropped before the connection.
    shm: Option<crate::x11_shm::SharedImage>,
    conn: xcb::Connection,
    root: xcb::x::Window,
    x: i16,
    y: i16,
    width: u16,
    height: u16,
}

#[cfg(target_os = "linux")]
impl X11Region {
    fn open(monitor: &Monitor) -> Option<Self> {
        let var = |name: &str| std::env::var(name).unwrap_or_default().to_lowercase();
        if var(CAPTURE_ENV) == "xcap" {
            return None;
        }
        // As xcap tells Wayland apart: there, X11 sees only XWayland's windows.
        if var("XDG_SESSION_TYPE") == "wayland" || var("WAYLAND_DISPLAY").contains("wayland") {
            return None;
        }
        let (conn, screen) =
            xcb::Connection::connect_with_extensions(None, &[], &[xcb::Extension::Shm]).ok()?;
        let setup = conn.get_setup();
        let root = setup.roots().nth(usize::try_from(screen).ok()?)?;
        let depth = root.root_depth();
        let format = setup.pixmap_formats().iter().find(|f| f.depth() == depth)?;
        if !matches!(depth, 24 | 32)
            || format.bits_per_pixel() != 32
            || setup.image_byte_order() != xcb::x::ImageOrder::LsbFirst
        {
            return None;
        }
        let root = root.root();
        let (width, height) = (monitor.width().ok()?, monitor.height().ok()?);
        let shm = if conn.active_extensions().any(|e| e == xcb::Extension::Shm) {
            crate::x11_shm::SharedImage::attach(&conn, width as usize * height as usize * 4)
                .inspect_err(|err| tracing::debug!(%err, "no shared memory with the X server"))
                .ok()
        } else {
            None
        };
        tracing::debug!(
            shared_memory = shm.is_some(),
            "reading the screen from the X server directly"
        );
        Some(Self {
            shm,
            conn,
            root,
            x: i16::try_from(monitor.x().ok()?).ok()?,
            y: i16::try_from(monitor.y().ok()?).ok()?,
            width: u16::try_from(width).ok()?,
            height: u16::try_from(height).ok()?,
        })
    }

    fn grab(&mut self) -> Result<VideoFrame, String> {
        let (w, h) = (u32::from(self.width), u32::from(self.height));
        let to_i420 = |data: &[u8]| {
            packed_to_i420(data, w, h, w as usize * 4, Packed::Bgra, clock::now_us())
                .map_err(|e| e.to_string())
        };
        if let Some(shm) = &mut self.shm {
            let region = (self.x, self.y, self.width, self.height);
            match shm.get_image(&self.conn, xcb::x::Drawable::Window(self.root), region) {
                Ok(data) => return to_i420(data),
                Err(err) => {
                    tracing::warn!(%err, "reading the screen through shared memory failed; reading it through the socket");
                    self.shm = None;
                }
            }
        }
        let cookie = self.conn.send_request(&xcb::x::GetImage {
            format: xcb::x::ImageFormat::ZPixmap,
            drawable: xcb::x::Drawable::Window(self.root),
            x: self.x,
            y: self.y,
            width: self.width,
            height: self.height,
            plane_mask: u32::MAX,
        });
        let reply = self
            .conn
            .wait_for_reply(cookie)
            .map_err(|e| e.to_string())?;
        to_i420(reply.data())
    }
}

/// A screen or window, captured in real time.
pub struct ScreenSource {
    target: Target,
    #[cfg(target_os = "linux")]
    x11: Option<X11Region>,
    pacer: Pacer,
    name: String,
}

// xcap's handles are plain identifiers plus a connection opened per capture on X11; the source is
// only ever used from the one thread that owns it.
impl ScreenSource {
    pub fn open(spec: &ScreenSpec, fps: u32) -> Result<Self, CaptureError> {
        let (target, name) = match spec {
            ScreenSpec::Monitor(which) => {
                let monitors = all_monitors()?;
                if monitors.is_empty() {
                    return Err(unavailable("no screen to share"));
                }
                let index = match which.as_str() {
                    "" | "default" => monitors
                        .iter()
                        .position(|m| m.is_primary().unwrap_or(false))
                        .unwrap_or(0),
                    n => match n.parse::<usize>() {
                        Ok(i) if i < monitors.len() => i,
                        _ => monitors
                            .iter()
                            .position(|m| m.name().is_ok_and(|name| name.eq_ignore_ascii_case(n)))
                            .ok_or_else(|| {
                                unavailable(format!(
                                    "no screen {n:?}; there are {} (0..{})",
                                    monitors.len(),
                                    monitors.len() - 1
                                ))
                            })?,
                    },
                };
                let monitor = monitors
                    .into_iter()
                    .nth(index)
                    .expect("invariant: index is in range");
                let name = format!("screen {index} ({})", monitor.name().unwrap_or_default());
                (Target::Monitor(monitor), name)
            }
            ScreenSpec::Window(title) => {
                let wanted = title.to_lowercase();
                let window = all_windows()?
                    .into_iter()
                    .find(|w| w.title().is_ok_and(|t| t.to_lowercase().contains(&wanted)))
                    .ok_or_else(|| {
                        unavailable(format!("no window titled {title:?} (see `confab devices`)"))
                    })?;
                let name = format!("window {:?}", window.title().unwrap_or_default());
                (Target::Window(window), name)
            }
        };
        let mut source = Self {
            #[cfg(target_os = "linux")]
            x11: match &target {
                Target::Monitor(monitor) => X11Region::open(monitor),
                Target::Window(_) => None,
            },
            target,
            pacer: Pacer::new(Duration::from_secs(1) / fps.max(1)),
            name,
        };
        // Fail now, not in the middle of the call, when the display cannot be captured.
        source.capture()?;
        Ok(source)
    }

    fn capture(&mut self) -> Result<VideoFrame, CaptureError> {
        #[cfg(target_os = "linux")]
        if let Some(x11) = &mut self.x11 {
            match x11.grab() {
                Ok(frame) => return Ok(fit_to_send(frame)),
                Err(err) => {
                    tracing::warn!(%err, screen = %self.name, "reading the X server directly failed; capturing through xcap");
                    self.x11 = None;
                }
            }
        }
        let image = match &self.target {
            Target::Monitor(m) => m.capture_image(),
            Target::Window(w) => w.capture_image(),
        }
        .map_err(|e| CaptureError::Stopped(format!("{}: {e}", self.name)))?;
        let (w, h) = (image.width(), image.height());
        let frame = packed_to_i420(
            image.as_raw(),
            w,
            h,
            w as usize * 4,
            Packed::Rgba,
            clock::now_us(),
        )
        .map_err(|e| CaptureError::Stopped(format!("{}: {e}", self.name)))?;
        Ok(fit_to_send(frame))
    }
}

/// The frame scaled down to fit `MAX_SIZE` (the same frame when it fits).
fn fit_to_send(frame: VideoFrame) -> VideoFrame {
    let (tw, th) = fit(frame.width, frame.height, MAX_SIZE.0, MAX_SIZE.1);
    if (tw, th) == (frame.width, frame.height) {
        return frame;
    }
    scale(&frame, tw, th)
}

impl VideoSource for ScreenSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_frame(&mut self) -> Result<VideoFrame, CaptureError> {
        self.pacer.wait();
        self.capture()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(ScreenSpec::parse("0"), ScreenSpec::Monitor("0".into()));
        assert_eq!(
            ScreenSpec::parse("window: Terminal "),
            ScreenSpec::Window("Terminal".into())
        );
    }
}
