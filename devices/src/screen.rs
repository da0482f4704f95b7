//! Screen sharing sources through xcap: a whole monitor, or one window where the platform can
//! capture windows (on X11 this needs a window manager). Frames are converted to I420, scaled
//! down to fit 1920x1080 (text stays legible, the encoder keeps up) and paced at a low frame rate
//! (screens change little; 10 fps by default). On X11 a monitor or a window is read from the X
//! server directly (`X11Region`), for a third (4K) to a half (1080p) of xcap's CPU;
//! `CONFAB_SCREEN_CAPTURE=xcap` turns that off.

use std::time::Duration;

use serde::Serialize;
use xcap::{Monitor, Window};

use confab_media::convert::{fit, packed_to_i420_into, scale, Packed};
use confab_media::{clock, VideoFrame};
use confab_media::{CaptureError, Pacer, VideoSource};

/// Set to `xcap` to capture monitors through xcap on X11 too (a way around a problem with
/// the direct path, and the benchmark's baseline).
pub const CAPTURE_ENV: &str = "CONFAB_SCREEN_CAPTURE";

/// Largest size sent for a shared screen.
pub const MAX_SIZE: (u32, u32) = confab_media::SCREEN_MAX_SIZE;
/// Frame rate of a shared screen.
pub const DEFAULT_FPS: u32 = confab_media::SCREEN_FPS;

/// What to share: `0`/`1`/... or a monitor name; `window:TITLE` for one window (by title, else by
/// application name).
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

impl WindowDescription {
    /// What names this window: its title, or its application's when it has no title.
    pub fn name(&self) -> &str {
        if self.title.is_empty() {
            &self.app
        } else {
            &self.title
        }
    }
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

/// A region of a drawable: x, y, width, height (X11's types).
type Rect = (i16, i16, u16, u16);

/// What an `X11Region` reads.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy)]
enum X11Target {
    /// A monitor's region of the root window.
    Monitor {
        x: i16,
        y: i16,
        width: u16,
        height: u16,
    },
    /// A window's own pixels (not its frame), wherever it is: its size and the part of it on the
    /// screen are asked for every frame, since it may move or be resized.
    Window(xcb::x::Window),
}

/// A monitor or a window read straight from the X server: one connection kept for the whole
/// share, the pixels taken as the server holds them (32-bit, B G R X in memory) and converted
/// once. xcap connects anew for every frame (three times for a window) and copies each pixel into
/// RGBA through a function call, which was 40% of sharing a 4K screen. `None` where this does not
/// apply (Wayland, other pixel formats, other OSes): xcap then does it.
#[cfg(target_os = "linux")]
struct X11Region {
    /// The server writes the image here when it can (MIT-SHM: same machine, extension present);
    /// otherwise the image comes through the socket. Dropped before the connection.
    shm: Option<crate::x11_shm::SharedImage>,
    conn: xcb::Connection,
    root: xcb::x::Window,
    /// The root window's size: no part of a window outside it can be read.
    screen: (u16, u16),
    target: X11Target,
}

#[cfg(target_os = "linux")]
impl X11Region {
    fn monitor(monitor: &Monitor) -> Option<Self> {
        let target = X11Target::Monitor {
            x: i16::try_from(monitor.x().ok()?).ok()?,
            y: i16::try_from(monitor.y().ok()?).ok()?,
            width: u16::try_from(monitor.width().ok()?).ok()?,
            height: u16::try_from(monitor.height().ok()?).ok()?,
        };
        Self::open(target, "screen")
    }

    fn window(window: &Window) -> Option<Self> {
        Self::open(
            X11Target::Window(xcb::XidNew::new(window.id().ok()?)),
            "window",
        )
    }

    fn open(target: X11Target, what: &str) -> Option<Self> {
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
        let depth = match target {
            X11Target::Monitor { .. } => root.root_depth(),
            X11Target::Window(window) => {
                let cookie = conn.send_request(&xcb::x::GetGeometry {
                    drawable: xcb::x::Drawable::Window(window),
                });
                conn.wait_for_reply(cookie).ok()?.depth()
            }
        };
        let format = setup.pixmap_formats().iter().find(|f| f.depth() == depth)?;
        if !matches!(depth, 24 | 32)
            || format.bits_per_pixel() != 32
            || setup.image_byte_order() != xcb::x::ImageOrder::LsbFirst
        {
            return None;
        }
        let screen = (root.width_in_pixels(), root.height_in_pixels());
        let root = root.root();
        // A window's visible part is at most the screen, wherever it moves.
        let (width, height) = match target {
            X11Target::Monitor { width, height, .. } => (width, height),
            X11Target::Window(_) => screen,
        };
        let shm = if conn.active_extensions().any(|e| e == xcb::Extension::Shm) {
            let len = usize::from(width) * usize::from(height) * 4;
            crate::x11_shm::SharedImage::attach(&conn, len)
                .inspect_err(|err| tracing::debug!(%err, "no shared memory with the X server"))
                .ok()
        } else {
            None
        };
        tracing::debug!(
            shared_memory = shm.is_some(),
            "reading the {what} from the X server directly"
        );
        Some(Self {
            shm,
            conn,
            root,
            screen,
            target,
        })
    }

    /// The drawable to read and the region of it, in its own coordinates.
    fn region(&self) -> Result<(xcb::x::Drawable, Rect), String> {
        let window = match self.target {
            X11Target::Monitor {
                x,
                y,
                width,
                height,
            } => return Ok((xcb::x::Drawable::Window(self.root), (x, y, width, height))),
            X11Target::Window(window) => window,
        };
        // Both questions go out before either answer is awaited: one round trip.
        let geometry = self.conn.send_request(&xcb::x::GetGeometry {
            drawable: xcb::x::Drawable::Window(window),
        });
        let origin = self.conn.send_request(&xcb::x::TranslateCoordinates {
            src_window: window,
            dst_window: self.root,
            src_x: 0,
            src_y: 0,
        });
        let geometry = self
            .conn
            .wait_for_reply(geometry)
            .map_err(|e| e.to_string())?;
        let origin = self
            .conn
            .wait_for_reply(origin)
            .map_err(|e| e.to_string())?;
        let visible = visible_part(
            (i32::from(origin.dst_x()), i32::from(origin.dst_y())),
            (geometry.width(), geometry.height()),
            self.screen,
        )
        .ok_or("the window is not on the screen")?;
        Ok((xcb::x::Drawable::Window(window), visible))
    }

    /// Reads the target into `out`.
    fn grab(&mut self, out: &mut VideoFrame) -> Result<(), String> {
        let (drawable, region) = self.region()?;
        let (w, h) = (u32::from(region.2), u32::from(region.3));
        let mut to_i420 = |data: &[u8]| {
            let image = (data, w, h, w as usize * 4, Packed::Bgra);
            packed_to_i420_into(image, clock::now_us(), out).map_err(|e| e.to_string())
        };
        if let Some(shm) = &mut self.shm {
            match shm.get_image(&self.conn, drawable, region) {
                Ok(data) => return to_i420(data),
                Err(err) => {
                    tracing::warn!(%err, "reading the X server through shared memory failed; reading it through the socket");
                    self.shm = None;
                }
            }
        }
        let cookie = self.conn.send_request(&xcb::x::GetImage {
            format: xcb::x::ImageFormat::ZPixmap,
            drawable,
            x: region.0,
            y: region.1,
            width: region.2,
            height: region.3,
            plane_mask: u32::MAX,
        });
        let reply = self
            .conn
            .wait_for_reply(cookie)
            .map_err(|e| e.to_string())?;
        to_i420(reply.data())
    }
}

/// The part of a `size` window whose top-left corner is at `origin` on a `screen`-sized root that
/// is on the screen, in the window's coordinates (X11 reads no pixel of a window off the screen);
/// `None` when less than 2x2 of it is.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn visible_part(
    (ox, oy): (i32, i32),
    (width, height): (u16, u16),
    (screen_w, screen_h): (u16, u16),
) -> Option<Rect> {
    let (x0, y0) = ((-ox).max(0), (-oy).max(0));
    let x1 = i32::from(width).min(i32::from(screen_w) - ox);
    let y1 = i32::from(height).min(i32::from(screen_h) - oy);
    if x1 - x0 < 2 || y1 - y0 < 2 {
        return None;
    }
    Some((
        i16::try_from(x0).ok()?,
        i16::try_from(y0).ok()?,
        u16::try_from(x1 - x0).ok()?,
        u16::try_from(y1 - y0).ok()?,
    ))
}

/// A screen or window, captured in real time.
pub struct ScreenSource {
    target: Target,
    #[cfg(target_os = "linux")]
    x11: Option<X11Region>,
    /// The last capture at full size: kept for the next one when it was scaled down to be sent.
    full: VideoFrame,
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
                if title.is_empty() {
                    return Err(unavailable(
                        "`window:` needs a window's title or its application's name (see `confab devices`)",
                    ));
                }
                // By title, else by application (some windows have no title xcap can read).
                let wanted = title.to_lowercase();
                let has = |text: xcap::XCapResult<String>| {
                    text.is_ok_and(|t| t.to_lowercase().contains(&wanted))
                };
                let mut windows = all_windows()?;
                let found = match windows.iter().position(|w| has(w.title())) {
                    Some(i) => Some(i),
                    None => windows.iter().position(|w| has(w.app_name())),
                };
                let window = found.map(|i| windows.swap_remove(i)).ok_or_else(|| {
                    unavailable(format!(
                        "no window titled {title:?}, nor of an application of that name (see `confab devices`)"
                    ))
                })?;
                let name = format!("window {:?}", window.title().unwrap_or_default());
                (Target::Window(window), name)
            }
        };
        let mut source = Self {
            #[cfg(target_os = "linux")]
            x11: match &target {
                Target::Monitor(monitor) => X11Region::monitor(monitor),
                Target::Window(window) => X11Region::window(window),
            },
            target,
            full: VideoFrame::default(),
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
            match x11.grab(&mut self.full) {
                Ok(()) => return Ok(self.fit_to_send()),
                Err(err) => {
                    tracing::warn!(%err, source = %self.name, "reading the X server directly failed; capturing through xcap");
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
        let rgba = (
            image.as_raw().as_slice(),
            w,
            h,
            w as usize * 4,
            Packed::Rgba,
        );
        packed_to_i420_into(rgba, clock::now_us(), &mut self.full)
            .map_err(|e| CaptureError::Stopped(format!("{}: {e}", self.name)))?;
        Ok(self.fit_to_send())
    }

    /// The capture scaled down to fit `MAX_SIZE` (its full-size buffer kept for the next), or
    /// the capture itself when it fits.
    fn fit_to_send(&mut self) -> VideoFrame {
        let full = &self.full;
        let (tw, th) = fit(full.width, full.height, MAX_SIZE.0, MAX_SIZE.1);
        if (tw, th) == (full.width, full.height) {
            return std::mem::take(&mut self.full);
        }
        scale(full, tw, th)
    }
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

    #[test]
    fn a_window_is_named_by_its_title_or_else_its_application() {
        let window = |title: &str| WindowDescription {
            title: title.into(),
            app: "Display-im6.q16".into(),
            width: 480,
            height: 270,
        };
        assert_eq!(window("slides").name(), "slides");
        assert_eq!(window("").name(), "Display-im6.q16");
        // `window:` alone would match every title: it is an error, before any display is asked.
        let err = ScreenSource::open(&ScreenSpec::parse("window: "), 10).err();
        assert!(
            matches!(&err, Some(CaptureError::Unavailable(m)) if m.contains("needs a window's title")),
            "{err:?}"
        );
    }

    #[test]
    fn only_the_part_of_a_window_on_the_screen_is_read() {
        let screen = (1920, 1080);
        for (origin, size, want) in [
            ((100, 50), (640, 480), Some((0, 0, 640, 480))),
            // Hanging off the left and top edges: the part from the edge on.
            ((-100, -30), (640, 480), Some((100, 30, 540, 450))),
            // Off the right and bottom edges, and larger than the screen.
            ((1800, 1000), (640, 480), Some((0, 0, 120, 80))),
            ((-10, -10), (4000, 3000), Some((10, 10, 1920, 1080))),
            // Gone from the screen, or a sliver of one pixel: nothing to read.
            ((2000, 0), (640, 480), None),
            ((1919, 0), (640, 480), None),
            ((0, -480), (640, 480), None),
        ] {
            assert_eq!(
                visible_part(origin, size, screen),
                want,
                "{origin:?} {size:?}"
            );
        }
    }
}
