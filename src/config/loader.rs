//! The one long-lived thread that builds every snapshot of a running gateway (the load at start
//! and each reload) and frees every snapshot a reload replaced.
//!
//! Why one thread for both: mimalloc gives memory back to the system only from the thread that
//! allocated it. A block freed by another thread waits on its owner's list, and a huge block
//! (a table sized for a million keys) freed by another thread is only reset with `MADV_FREE`,
//! which leaves it counted in RSS until the kernel wants it. Loads used to run on a thread that
//! ended (or on the main thread, which then sleeps in the server) and replaced configs were
//! freed on a third: measured with 1M consumers, RSS settled 104 MB above the RSS after start
//! after the first reload (`LazyFree` 94 MB in `/proc/PID/smaps_rollup`), and every later
//! reload peaked at 1.9x that RSS. With the tables allocated and freed on this thread, the
//! memory of a replaced config goes back at once.
//!
//! The thread keeps the normal priority (measured on 2 cores saturated by wrk, nice 10 or 19
//! made a 1M reload take 16 or 32 s instead of 10 s and no request was faster), and a replaced
//! config is freed between jobs, when no request holds it any more (or after a minute, when
//! whoever holds it last frees it).

use std::any::Any;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::warn;

/// Hands heap memory freed by a config load (the raw YAML tree) back to the system. The binary's
/// allocator is mimalloc (`src/main.rs`): `mi_collect(true)` purges its free pages now rather than
/// after its purge delay. glibc's `malloc_trim` still runs for what C code and a binary built
/// without mimalloc (tests, benches) hold: with glibc alone, measured with 200 000 consumers,
/// 1.08 GB resident before, 221 MB after.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; it has no preconditions and is a
    // cheap no-op when mimalloc is not the allocator in use.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the thread is asked to do.
enum Job {
    Run(Box<dyn FnOnce() + Send>),
    /// Free this once nothing else holds it.
    Retire(Arc<dyn Any + Send + Sync>),
}

/// How long a replaced config may stay held by requests before the thread lets go of it (the
/// last holder then frees it).
const RETIRE_WAIT: Duration = Duration::from_secs(60);

/// The sender of the thread, started at the first job; None when it could not be started.
fn sender() -> Option<Sender<Job>> {
    static TX: Mutex<Option<Sender<Job>>> = Mutex::new(None);
    let mut tx = TX.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if tx.is_none() {
        let (t, rx) = channel::<Job>();
        match std::thread::Builder::new()
            .name("tollgate-loader".into())
            .spawn(move || work(rx))
        {
            Ok(_) => *tx = Some(t),
            Err(e) => {
                warn!("Cannot start the config loader thread ({e}): loading in place.");
                return None;
            }
        }
    }
    tx.clone()
}

fn work(rx: Receiver<Job>) {
    let mut retiring: Vec<(Instant, Arc<dyn Any + Send + Sync>)> = Vec::new();
    loop {
        let job = if retiring.is_empty() {
            match rx.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        match job {
            // A panic ends the job (its caller sees its result channel closed), not the thread.
            Some(Job::Run(f)) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))),
            Some(Job::Retire(old)) => retiring.push((Instant::now(), old)),
            None => {}
        }
        let before = retiring.len();
        retiring.retain(|(since, old)| Arc::strong_count(old) > 1 && since.elapsed() < RETIRE_WAIT);
        if retiring.len() < before {
            release_free_memory();
        }
    }
}

/// Runs `job` on the loader thread (here, when the thread cannot be started).
pub(crate) fn spawn(job: impl FnOnce() + Send + 'static) {
    let job: Box<dyn FnOnce() + Send> = Box::new(job);
    match sender() {
        Some(s) => {
            if let Err(e) = s.send(Job::Run(job))
                && let Job::Run(job) = e.0
            {
                job();
            }
        }
        None => job(),
    }
}

/// Runs `f` on the loader thread and waits for its result (None if `f` panicked).
pub(crate) fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv().ok()
}

/// Frees `old` on the loader thread once nothing else holds it (freed in place if the thread
/// cannot be started).
pub(crate) fn retire(old: Arc<dyn Any + Send + Sync>) {
    if let Some(s) = sender() {
        let _ = s.send(Job::Retire(old));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_one_thread_and_retired_values_are_freed_when_let_go() {
        let a = run(|| std::thread::current().id()).unwrap();
        let b = run(|| std::thread::current().id()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, std::thread::current().id());
        // A panicking job closes its channel; the thread goes on.
        assert!(run::<()>(|| panic!("boom")).is_none());
        assert_eq!(run(|| 7), Some(7));
        let held = Arc::new(5u32);
        let weak = Arc::downgrade(&held);
        retire(held.clone());
        // Still held here: not freed.
        assert_eq!(run(|| ()), Some(()));
        assert!(weak.upgrade().is_some());
        drop(held);
        // The thread looks every 20 ms; wait for it by running jobs (each turn looks again).
        let start = Instant::now();
        while weak.upgrade().is_some() {
            assert!(start.elapsed() < Duration::from_secs(10), "not freed");
            run(|| std::thread::sleep(Duration::from_millis(5)));
        }
    }
}
