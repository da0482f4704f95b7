//! Tells when the call's async runtime stops running tasks. Everything on the network goes
//! through that runtime (ICE, DTLS, RTP in and out, signaling), so a task that blocks its
//! workers stops the call in both directions at once, and from the other side it looks like the
//! network went away. A thread of its own hands the runtime an empty task every `PROBE` and
//! times how long the task waits to run, and how much longer than asked its own sleep between
//! probes lasts (a stall of the whole process: stopped, swapped out, a paused machine); either
//! of `STALL` or more is reported (logged and counted in the stats), so a frozen call says
//! whether this process stalled or the network did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the runtime is probed.
const PROBE: Duration = Duration::from_millis(250);
/// A wait for the runtime this long or longer is a stall. Well above what a busy two-core
/// machine delays a task by (a few ms), well below ICE's 5 s to call a path disconnected.
pub const STALL: Duration = Duration::from_millis(500);

/// Probes the runtime it was started on until dropped.
pub struct RuntimeWatchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RuntimeWatchdog {
    /// Watches `runtime`; `stalled` gets each stall's length once the runtime runs the probe
    /// again (on the watchdog's thread: it must not wait on the runtime).
    pub fn start(
        runtime: tokio::runtime::Handle,
        stalled: impl Fn(Duration) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("runtime-watchdog".into())
            .spawn({
                let stop = stop.clone();
                move || watch(&runtime, &stop, &stalled)
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for RuntimeWatchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // It wakes within `PROBE`, or as soon as the probe runs; not joined when dropped
            // from the runtime while it is stalled, which would wait for the stall to end.
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

fn watch(runtime: &tokio::runtime::Handle, stop: &AtomicBool, stalled: &dyn Fn(Duration)) {
    while !stop.load(Ordering::Relaxed) {
        let (ran_tx, ran) = mpsc::sync_channel(1);
        let sent = Instant::now();
        // The task is dropped unrun when the runtime shuts down: `ran` then disconnects.
        drop(runtime.spawn(async move {
            let _ = ran_tx.send(());
        }));
        // Said once while it lasts, then again with its length once it is over.
        let mut warned = false;
        let waited = loop {
            match ran.recv_timeout(STALL) {
                Ok(()) => break sent.elapsed(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !warned {
                        tracing::warn!(
                            "the network runtime has run no task for {} ms: this process is \
                             stalled, not the network",
                            sent.elapsed().as_millis()
                        );
                        warned = true;
                    }
                }
            }
        };
        if waited >= STALL {
            tracing::warn!(
                ms = waited.as_millis() as u64,
                "the network runtime was stalled"
            );
            stalled(waited);
        }
        // A stall of the whole process (stopped, swapped out, a paused machine) holds this
        // thread too, and is seen as a sleep that lasted that much longer.
        let asleep = Instant::now();
        std::thread::sleep(PROBE);
        let overslept = asleep.elapsed().saturating_sub(PROBE);
        if overslept >= STALL {
            tracing::warn!(
                ms = overslept.as_millis() as u64,
                "the network runtime was stalled (the whole process was)"
            );
            stalled(overslept);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A runtime whose one worker is blocked for `block` right after the watchdog starts, then
    /// free: what the watchdog reported.
    fn stalls_seen(block: Duration) -> Vec<Duration> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let watchdog = RuntimeWatchdog::start(runtime.handle().clone(), {
            let seen = seen.clone();
            move |d| seen.lock().unwrap().push(d)
        })
        .unwrap();
        // A task that blocks its worker, as blocking code on the runtime would.
        runtime.spawn(async move { std::thread::sleep(block) });
        std::thread::sleep(block + PROBE * 4);
        drop(watchdog);
        let seen = seen.lock().unwrap().clone();
        seen
    }

    #[test]
    fn a_blocked_runtime_is_reported_with_how_long_it_stalled() {
        let seen = stalls_seen(Duration::from_millis(1_200));
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0] >= STALL && seen[0] <= Duration::from_millis(1_300),
            "{seen:?}"
        );
    }

    #[test]
    fn a_runtime_that_runs_is_not_reported() {
        assert_eq!(
            stalls_seen(Duration::from_millis(100)),
            Vec::<Duration>::new()
        );
    }

    #[test]
    fn it_stops_when_the_runtime_is_gone() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let watchdog = RuntimeWatchdog::start(runtime.handle().clone(), |_| {}).unwrap();
        drop(runtime);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !watchdog.thread.as_ref().unwrap().is_finished() {
            assert!(
                Instant::now() < deadline,
                "the watchdog outlived its runtime"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
