//! The lobby's camera preview and microphone level meter, each on its own thread. Stopping a
//! preview never waits on the UI thread: `stop` hands its threads to whoever opens the devices
//! next (they join them first, so the devices are free), and a dropped preview is reaped by a
//! named thread.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// Whoever may still hold the devices: a stopped preview's threads, a call that is ending (its
/// session's task ends once its media threads have closed the devices and it has left the room).
/// Whoever opens the devices next waits for these first, on its own thread, never the UI's: a
/// camera is opened by one program at a time, and a call joining the room it is leaving needs
/// its seat.
#[must_use = "the devices are free only once these are waited for"]
#[derive(Default)]
pub struct DevicesInUse(Vec<Box<dyn FnOnce() + Send>>);

impl DevicesInUse {
    fn threads(threads: Vec<JoinHandle<()>>) -> Self {
        Self(
            threads
                .into_iter()
                .map(|thread| {
                    Box::new(move || {
                        let _ = thread.join();
                    }) as Box<dyn FnOnce() + Send>
                })
                .collect(),
        )
    }

    /// A call's session, hung up and ending on `runtime`; waited for at most `within`. Also
    /// returns its end, for whoever else must wait for it (the app, before it exits). (No timer
    /// of the runtime's: one that is shutting down, the app exiting, ends the wait at once.)
    pub fn ending_call<T: Send + 'static>(
        runtime: &tokio::runtime::Handle,
        task: tokio::task::JoinHandle<T>,
        within: Duration,
    ) -> (Self, CallEnded) {
        let ended = CallEnded::default();
        // Set when the task ends, or when the runtime drops this future unfinished.
        let set_on_drop = SetOnDrop(ended.clone());
        runtime.spawn(async move {
            let _set_on_drop = set_on_drop;
            let _ = task.await;
        });
        let waiter = ended.clone();
        let wait = Self(vec![Box::new(move || {
            waiter.wait_until(Instant::now() + within);
        })]);
        (wait, ended)
    }

    /// These and `other`.
    pub fn and(mut self, other: Self) -> Self {
        self.0.extend(other.0);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Waits for every one of them (as long as a camera takes to open, or a call to end); never
    /// call this on the UI thread.
    pub fn wait(self) {
        for wait in self.0 {
            wait();
        }
    }
}

/// Set once a call's session has ended, or can no longer run (its runtime went away).
#[derive(Clone, Default)]
pub struct CallEnded(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl CallEnded {
    fn set(&self) {
        let (done, changed) = &*self.0;
        *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        changed.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until it is set or `deadline` passes.
    pub fn wait_until(&self, deadline: Instant) {
        let (done, changed) = &*self.0;
        let mut set = done.lock().unwrap_or_else(|p| p.into_inner());
        while !*set {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            set = changed
                .wait_timeout(set, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

struct SetOnDrop(CallEnded);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Waits once for `previous`, holding the lock meanwhile so that every thread waiting on it
/// waits until the devices are free.
fn wait_for(previous: &std::sync::Mutex<Option<DevicesInUse>>) {
    let mut guard = previous.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(in_use) = guard.take() {
        in_use.wait();
    }
}

impl Preview {
    /// Starts the preview of `camera` and `mic` (device specs); its threads first wait for
    /// `previous` (an earlier preview, a call that is ending) to let go of the devices.
    pub fn start(
        ctx: &egui::Context,
        camera: &str,
        mic: &str,
        open_camera: &OpenCamera,
        open_mic: &OpenMic,
        previous: DevicesInUse,
    ) -> Self {
        let previous = Arc::new(std::sync::Mutex::new(Some(previous)));
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
    pub fn stop(mut self) -> DevicesInUse {
        self.stop.store(true, Ordering::Relaxed);
        DevicesInUse::threads(std::mem::take(&mut self.threads))
    }
}

impl Drop for Preview {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = DevicesInUse::threads(std::mem::take(&mut self.threads));
        if threads.is_empty() {
            return;
        }
        // Opening a camera can take seconds: a named thread waits for it, not the UI.
        let reaper = std::thread::Builder::new()
            .name("preview-reaper".into())
            .spawn(move || threads.wait());
        if let Err(err) = reaper {
            tracing::warn!(%err, "cannot reap the preview threads; they end on their own");
        }
    }
}
