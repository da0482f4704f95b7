//! The lobby's camera preview and microphone level meter, each on its own thread. Stopping a
//! preview never waits on the UI thread: `stop` hands its threads to whoever opens the devices
//! next (they join them first, so the devices are free), and a dropped preview is reaped by a
//! named thread.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::hooks::{OpenCamera, OpenMic};
use super::video::VideoSlot;
use confab_devices::VideoSpec;
use confab_media::audio::{rms_dbfs, BLOCK_SAMPLES};

pub struct Preview {
    pub camera: Arc<VideoSlot>,
    /// Microphone level in dBFS (f32 bits); -inf when none.
    level: Arc<AtomicU32>,
    pub camera_error: Arc<std::sync::Mutex<Option<String>>>,
    pub mic_error: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The threads of a stopped preview: joining them waits until its devices are released.
#[must_use = "the devices are free only once these threads are joined"]
pub struct PreviewThreads(Vec<JoinHandle<()>>);

impl PreviewThreads {
    /// Waits for the threads (which may take as long as a camera takes to open); never call
    /// this on the UI thread.
    pub fn join(self) {
        for thread in self.0 {
            let _ = thread.join();
        }
    }
}

/// Joins `previous` once, holding the lock meanwhile so that every thread waiting on it waits
/// until the devices are free.
fn wait_for(previous: &std::sync::Mutex<Option<PreviewThreads>>) {
    let mut guard = previous.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(threads) = guard.take() {
        threads.join();
    }
}

impl Preview {
    /// Starts the preview of `camera` and `mic` (device specs); its threads first wait for
    /// `previous` (an earlier preview's) to let go of the devices.
    pub fn start(
        ctx: &egui::Context,
        camera: &str,
        mic: &str,
        open_camera: &OpenCamera,
        open_mic: &OpenMic,
        previous: Option<PreviewThreads>,
    ) -> Self {
        let previous = Arc::new(std::sync::Mutex::new(previous));
        let slot = VideoSlot::new(Some(ctx.clone()));
        let level = Arc::new(AtomicU32::new(f32::NEG_INFINITY.to_bits()));
        let stop = Arc::new(AtomicBool::new(false));
        let camera_error = Arc::new(std::sync::Mutex::new(None));
        let mic_error = Arc::new(std::sync::Mutex::new(None));
        let mut threads = Vec::new();
        let camera_spec = VideoSpec::parse(camera);
        if camera_spec != VideoSpec::None {
            let (slot, stop, error) = (slot.clone(), stop.clone(), camera_error.clone());
            let (open_camera, previous) = (open_camera.clone(), previous.clone());
            threads.extend(
                std::thread::Builder::new()
                    .name("preview-camera".into())
                    .spawn(move || {
                        wait_for(&previous);
                        match open_camera(&camera_spec, 640, 360, 30) {
                            Ok(Some(mut source)) => {
                                while !stop.load(Ordering::Relaxed) {
                                    match source.next_frame() {
                                        Ok(frame) => {
                                            slot.put_scaled(&frame, (640, 360));
                                        }
                                        Err(e) => {
                                            *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                                Some(e.to_string());
                                            break;
                                        }
                                    }
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(e.to_string())
                            }
                        }
                    })
                    .ok(),
            );
        }
        let mic_spec = VideoSpec::parse(mic);
        if mic_spec != VideoSpec::None {
            let (level, stop, error, ctx) =
                (level.clone(), stop.clone(), mic_error.clone(), ctx.clone());
            let previous = previous.clone();
            let open_mic = open_mic.clone();
            threads.extend(
                std::thread::Builder::new()
                    .name("preview-mic".into())
                    .spawn(move || {
                        wait_for(&previous);
                        match open_mic(&mic_spec) {
                            Ok(Some(mut source)) => {
                                let mut block = vec![0f32; BLOCK_SAMPLES * 5];
                                while !stop.load(Ordering::Relaxed) {
                                    if let Err(e) = source.read(&mut block) {
                                        *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                            Some(e.to_string());
                                        break;
                                    }
                                    level.store(
                                        (rms_dbfs(&block) as f32).to_bits(),
                                        Ordering::Relaxed,
                                    );
                                    ctx.request_repaint_after(Duration::from_millis(50));
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(e.to_string())
                            }
                        }
                    })
                    .ok(),
            );
        }
        Self {
            camera: slot,
            level,
            camera_error,
            mic_error,
            stop,
            threads,
        }
    }

    pub fn level_dbfs(&self) -> f32 {
        f32::from_bits(self.level.load(Ordering::Relaxed))
    }
}

impl Preview {
    /// Stops the preview at once; the returned threads end when the devices are released.
    pub fn stop(mut self) -> PreviewThreads {
        self.stop.store(true, Ordering::Relaxed);
        PreviewThreads(std::mem::take(&mut self.threads))
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = PreviewThreads(std::mem::take(&mut self.threads));
        if threads.0.is_empty() {
            return;
        }
        // Opening a camera can take seconds: a named thread waits for it, not the UI.
        let reaper = std::thread::Builder::new()
            .name("preview-reaper".into())
            .spawn(move || threads.join());
        if let Err(err) = reaper {
            tracing::warn!(%err, "cannot reap the preview threads; they end on their own");
        }
    }
}
