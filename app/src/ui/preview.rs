//! The lobby's camera preview and microphone level meter, each on its own thread, stopped (and
//! its device released) when the preview is dropped: the call opens the devices afresh.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::video::VideoSlot;
use confab_devices::VideoSpec;
use confab_media::audio::{rms_dbfs, BLOCK_SAMPLES};
use confab_media::convert::{fit, scale};

pub struct Preview {
    pub camera: Arc<VideoSlot>,
    /// Microphone level in dBFS (f32 bits); -inf when none.
    level: Arc<AtomicU32>,
    pub camera_error: Arc<std::sync::Mutex<Option<String>>>,
    pub mic_error: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Preview {
    pub fn start(ctx: &egui::Context, camera: &str, mic: &str) -> Self {
        let slot = VideoSlot::new(Some(ctx.clone()));
        let level = Arc::new(AtomicU32::new(f32::NEG_INFINITY.to_bits()));
        let stop = Arc::new(AtomicBool::new(false));
        let camera_error = Arc::new(std::sync::Mutex::new(None));
        let mic_error = Arc::new(std::sync::Mutex::new(None));
        let mut threads = Vec::new();
        let camera_spec = VideoSpec::parse(camera);
        if camera_spec != VideoSpec::None {
            let (slot, stop, error) = (slot.clone(), stop.clone(), camera_error.clone());
            threads.extend(
                std::thread::Builder::new()
                    .name("preview-camera".into())
                    .spawn(
                        move || match confab_devices::open_camera(&camera_spec, 640, 360, 30) {
                            Ok(Some(mut source)) => {
                                while !stop.load(Ordering::Relaxed) {
                                    match source.next_frame() {
                                        Ok(frame) => {
                                            let (w, h) = fit(frame.width, frame.height, 640, 360);
                                            slot.put(&scale(&frame, w, h));
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
                        },
                    )
                    .ok(),
            );
        }
        let mic_spec = VideoSpec::parse(mic);
        if mic_spec != VideoSpec::None {
            let (level, stop, error, ctx) =
                (level.clone(), stop.clone(), mic_error.clone(), ctx.clone());
            threads.extend(
                std::thread::Builder::new()
                    .name("preview-mic".into())
                    .spawn(move || match confab_devices::open_mic(&mic_spec) {
                        Ok(Some(mut source)) => {
                            let mut block = vec![0f32; BLOCK_SAMPLES * 5];
                            while !stop.load(Ordering::Relaxed) {
                                if let Err(e) = source.read(&mut block) {
                                    *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                        Some(e.to_string());
                                    break;
                                }
                                level.store((rms_dbfs(&block) as f32).to_bits(), Ordering::Relaxed);
                                ctx.request_repaint_after(Duration::from_millis(50));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string())
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

impl Drop for Preview {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The devices must be free before the call opens them.
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
