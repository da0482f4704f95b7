//! Cameras through nokhwa. A camera lives on its own thread (`camera`), which picks the format
//! closest to what was asked, converts each frame (MJPEG, YUYV, NV12, RGB, grey) to I420 and puts
//! it in a one-frame slot: the encoder always takes the newest frame, and a slow encoder never
//! makes the camera queue up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, CameraInfo, FrameFormat, RequestedFormat,
    RequestedFormatType, Resolution,
};
use nokhwa::Camera;
use serde::Serialize;

use confab_media::convert::{gray_to_i420, nv12_to_i420, packed_to_i420, yuyv_to_i420, Packed};
use confab_media::{clock, VideoFrame};
use confab_media::{CaptureError, VideoSource};

/// A camera frame that has not come for this long means the camera stopped (unplugged, taken).
const STALL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct CameraDescription {
    pub index: String,
    pub name: String,
    pub description: String,
    /// "WxH@fps FORMAT" entries, when the camera could be opened to ask.
    pub formats: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn unavailable(what: impl std::fmt::Display) -> CaptureError {
    CaptureError::Unavailable(what.to_string())
}

/// The cameras the OS reports (an empty list when there are none).
pub fn list() -> Result<Vec<CameraInfo>, CaptureError> {
    nokhwa::query(ApiBackend::Auto).map_err(|e| unavailable(format!("cannot list cameras: {e}")))
}

/// The cameras with the formats each offers.
pub fn describe() -> Result<Vec<CameraDescription>, CaptureError> {
    Ok(list()?
        .into_iter()
        .map(|info| {
            let (formats, error) = match Camera::new(
                info.index().clone(),
                RequestedFormat::new::<RgbFormat>(RequestedFormatType::None),
            ) {
                Ok(mut camera) => match camera.compatible_camera_formats() {
                    Ok(formats) => (
                        formats
                            .iter()
                            .map(|f| {
                                format!(
                                    "{}x{}@{} {}",
                                    f.width(),
                                    f.height(),
                                    f.frame_rate(),
                                    f.format()
                                )
                            })
                            .collect(),
                        None,
                    ),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                },
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            CameraDescription {
                index: info.index().to_string(),
                name: info.human_name(),
                description: info.description().to_owned(),
                formats,
                error,
            }
        })
        .collect())
}

/// Finds a camera by index (`0`) or by (part of) its name; `default` is the first one.
fn find(spec: &str) -> Result<CameraIndex, CaptureError> {
    let cameras = list()?;
    if cameras.is_empty() {
        return Err(unavailable(
            "no camera found (is one connected, and may Confab use it?)",
        ));
    }
    if spec == "default" {
        return Ok(cameras[0].index().clone());
    }
    if let Ok(n) = spec.parse::<u32>() {
        if let Some(info) = cameras.iter().find(|c| *c.index() == CameraIndex::Index(n)) {
            return Ok(info.index().clone());
        }
    }
    let wanted = spec.to_lowercase();
    cameras
        .iter()
        .find(|c| c.human_name().to_lowercase().contains(&wanted))
        .map(|c| c.index().clone())
        .ok_or_else(|| {
            let names: Vec<String> = cameras
                .iter()
                .map(|c| format!("{} ({})", c.human_name(), c.index()))
                .collect();
            unavailable(format!(
                "no camera matches {spec:?}; cameras: {}",
                names.join(", ")
            ))
        })
}

/// Converts one camera buffer to I420.
pub fn to_i420(
    format: FrameFormat,
    width: u32,
    height: u32,
    data: &[u8],
    capture_ts_us: u64,
) -> Result<VideoFrame, String> {
    let frame = match format {
        FrameFormat::MJPEG => {
            // mozjpeg panics on some corrupt input instead of returning an error.
            let decoded = std::panic::catch_unwind(|| nokhwa::utils::mjpeg_to_rgb(data, false));
            let rgb = decoded
                .map_err(|_| "corrupt MJPEG frame".to_owned())?
                .map_err(|e| e.to_string())?;
            packed_to_i420(
                &rgb,
                width,
                height,
                width as usize * 3,
                Packed::Rgb,
                capture_ts_us,
            )
        }
        FrameFormat::YUYV => yuyv_to_i420(data, width, height, capture_ts_us),
        FrameFormat::NV12 => nv12_to_i420(data, width, height, capture_ts_us),
        FrameFormat::GRAY => gray_to_i420(data, width, height, capture_ts_us),
        FrameFormat::RAWRGB => packed_to_i420(
            data,
            width,
            height,
            width as usize * 3,
            Packed::Rgb,
            capture_ts_us,
        ),
        FrameFormat::RAWBGR => packed_to_i420(
            data,
            width,
            height,
            width as usize * 3,
            Packed::Bgr,
            capture_ts_us,
        ),
    };
    frame.map_err(|e| e.to_string())
}

#[derive(Default)]
struct Slot {
    frame: Option<VideoFrame>,
    error: Option<String>,
}

/// A running camera.
pub struct CameraSource {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    stop: Arc<AtomicBool>,
    name: String,
}

impl CameraSource {
    /// Opens a camera: `default`, an index, or part of a name; at the format closest to the request.
    pub fn open(spec: &str, width: u32, height: u32, fps: u32) -> Result<Self, CaptureError> {
        let index = find(spec)?;
        let slot = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<String, String>>(1);
        {
            let (slot, stop) = (slot.clone(), stop.clone());
            std::thread::Builder::new()
                .name("camera".into())
                .spawn(move || {
                    let wanted =
                        CameraFormat::new(Resolution::new(width, height), FrameFormat::MJPEG, fps);
                    let request =
                        RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
                    let mut camera = match Camera::new(index, request)
                        .and_then(|mut c| c.open_stream().map(|()| c))
                    {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!(
                                "camera cannot be opened (busy, or not permitted?): {e}"
                            )));
                            return;
                        }
                    };
                    let format = camera.camera_format();
                    let _ = ready_tx.send(Ok(format!(
                        "{} {}x{}@{} {}",
                        camera.info().human_name(),
                        format.width(),
                        format.height(),
                        format.frame_rate(),
                        format.format()
                    )));
                    let (lock, ready) = &*slot;
                    while !stop.load(Ordering::Relaxed) {
                        let buffer = match camera.frame() {
                            Ok(buffer) => buffer,
                            Err(e) => {
                                // The device itself failed (unplugged, taken away): stop.
                                lock.lock().unwrap_or_else(|p| p.into_inner()).error =
                                    Some(e.to_string());
                                ready.notify_all();
                                break;
                            }
                        };
                        let res = buffer.resolution();
                        match to_i420(
                            buffer.source_frame_format(),
                            res.width(),
                            res.height(),
                            buffer.buffer(),
                            clock::now_us(),
                        ) {
                            Ok(frame) => {
                                lock.lock().unwrap_or_else(|p| p.into_inner()).frame = Some(frame);
                                ready.notify_all();
                            }
                            // One bad frame is skipped; a camera that sends only bad frames stalls
                            // and is reported by `next_frame`.
                            Err(e) => tracing::debug!(%e, "skipping a camera frame"),
                        }
                    }
                    let _ = camera.stop_stream();
                })
                .map_err(|e| unavailable(format!("cannot start the camera thread: {e}")))?;
        }
        let name = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| unavailable("the camera did not start within 10 s"))?
            .map_err(unavailable)?;
        Ok(Self { slot, stop, name })
    }
}

impl VideoSource for CameraSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_frame(&mut self) -> Result<VideoFrame, CaptureError> {
        let (lock, ready) = &*self.slot;
        let mut slot = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(frame) = slot.frame.take() {
                return Ok(frame);
            }
            if let Some(error) = slot.error.take() {
                return Err(CaptureError::Stopped(format!(
                    "camera {}: {error}",
                    self.name
                )));
            }
            let (guard, timeout) = ready
                .wait_timeout(slot, STALL)
                .unwrap_or_else(|p| p.into_inner());
            slot = guard;
            if timeout.timed_out() && slot.frame.is_none() {
                return Err(CaptureError::Stopped(format!(
                    "camera {} sent no frame for {} s (unplugged?)",
                    self.name,
                    STALL.as_secs()
                )));
            }
        }
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_formats_convert() {
        let yuyv = [
            16u8, 128, 16, 128, 16, 128, 16, 128, 16, 128, 16, 128, 16, 128, 16, 128,
        ];
        let f = to_i420(FrameFormat::YUYV, 4, 2, &yuyv, 1).unwrap();
        assert_eq!(f.y(), &[16; 8]);
        let rgb = [255u8, 0, 0].repeat(8);
        let f = to_i420(FrameFormat::RAWRGB, 4, 2, &rgb, 1).unwrap();
        // Red by BT.601, limited range: Y 81.48, U 90.20, V 240.
        assert_eq!((f.y()[0], f.u()[0], f.v()[0]), (81, 90, 240));
        let bgr = [0u8, 0, 255].repeat(8);
        assert_eq!(
            to_i420(FrameFormat::RAWBGR, 4, 2, &bgr, 1).unwrap().y(),
            f.y()
        );
        assert!(
            to_i420(FrameFormat::MJPEG, 4, 2, b"not a jpeg", 1).is_err(),
            "garbage MJPEG is an error"
        );
        assert!(to_i420(FrameFormat::NV12, 4, 2, &[0; 3], 1).is_err());
    }

    #[test]
    fn a_missing_camera_is_a_clear_error() {
        // This machine has no /dev/video*: opening says so instead of failing obscurely.
        if !list().map(|l| l.is_empty()).unwrap_or(true) {
            return; // a machine with a camera: nothing to check here
        }
        let err = CameraSource::open("default", 640, 360, 30)
            .err()
            .expect("no camera")
            .to_string();
        assert!(err.contains("no camera found"), "{err}");
    }
}
