//! Local fixed windows: one window per counter key, starting at that key's first request
//! (APISIX's local behaviour), in 64 mutex-guarded shards so no lock is global.
//!
//! Memory stays bounded by the live keys: inserting into a shard that has doubled since its last
//! sweep first drops its expired windows (amortised O(1) per insert), and
//! [`crate::limiter::Limiter::sweep`] drops them everywhere from the background task.

use std::sync::{Mutex, MutexGuard, PoisonError};

use ahash::AHashMap;

use super::{CounterKey, Quota};

const SHARDS: usize = 64;
/// A shard is not swept on insert below this many entries.
const MIN_SWEEP: usize = 1024;

/// An entry that ends at some point of the limiter's clock.
pub(crate) trait Expiring {
    fn expired(&self, now_ms: u64) -> bool;
}

pub(crate) struct Shard<V> {
    pub(crate) map: AHashMap<CounterKey, V>,
    /// Keys whose entry has something to push (only `sync_interval` entries use it).
    pub(crate) dirty: Vec<CounterKey>,
    sweep_at: usize,
}

impl<V: Expiring> Shard<V> {
    /// Call before looking up `key` for insertion: when `key` is new and the shard doubled
    /// since its last sweep, sweeps it first. One map probe at most, and only when due.
    pub(crate) fn make_room_for(&mut self, key: CounterKey, now_ms: u64) {
        if self.map.len() >= self.sweep_at && !self.map.contains_key(&key) {
            self.sweep(now_ms);
        }
    }

    fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, v| !v.expired(now_ms));
        let len = self.map.len();
        self.sweep_at = MIN_SWEEP.max(2 * len);
        if self.map.capacity() > 4 * self.sweep_at {
            self.map.shrink_to(self.sweep_at);
        }
        if self.dirty.capacity() > 4 * self.sweep_at {
            self.dirty.shrink_to(self.sweep_at);
        }
        before - len
    }
}

/// Cache-line padding so neighbouring shard locks do not share a line.
#[repr(align(128))]
struct Padded<T>(T);

/// A map from counter keys to entries, split over [`SHARDS`] locks by the key's low bits.
pub(crate) struct Sharded<V> {
    shards: Box<[Padded<Mutex<Shard<V>>>]>,
}

impl<V: Expiring> Sharded<V> {
    pub(crate) fn new() -> Sharded<V> {
        Sharded {
            shards: (0..SHARDS)
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        map: AHashMap::new(),
                        dirty: Vec::new(),
                        sweep_at: MIN_SWEEP,
                    }))
                })
                .collect(),
        }
    }

    /// The shard holding `key`. A poisoned lock is taken over: entries are plain numbers, and a
    /// panic elsewhere must not turn every later request into one.
    pub(crate) fn lock(&self, key: CounterKey) -> MutexGuard<'_, Shard<V>> {
        let i = (key.0 as usize) % SHARDS;
        self.shards[i]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard<V>>> {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn sweep(&self, now_ms: u64) -> usize {
        self.shards().map(|mut s| s.sweep(now_ms)).sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards().map(|s| s.map.len()).sum()
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    end_ms: u64,
    count: u64,
}

impl Expiring for Window {
    fn expired(&self, now_ms: u64) -> bool {
        self.end_ms <= now_ms
    }
}

/// Fixed windows counted in this process.
pub(crate) struct LocalCounters {
    windows: Sharded<Window>,
}

impl Default for LocalCounters {
    fn default() -> Self {
        LocalCounters::new()
    }
}

impl LocalCounters {
    pub(crate) fn new() -> LocalCounters {
        LocalCounters {
            windows: Sharded::new(),
        }
    }

    /// Admits the request when the key's window has room; a rejected request is not counted.
    pub(crate) fn acquire(
        &self,
        key: CounterKey,
        limit: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Quota {
        let mut guard = self.windows.lock(key);
        let shard = &mut *guard;
        let fresh = Window {
            end_ms: now_ms + window_ms,
            count: 0,
        };
        shard.make_room_for(key, now_ms);
        let w = shard.map.entry(key).or_insert(fresh);
        if w.expired(now_ms) {
            *w = fresh;
        }
        let allowed = w.count < limit;
        if allowed {
            w.count += 1;
        }
        Quota::new(limit, w.count, allowed, w.end_ms - now_ms)
    }

    /// Drops expired windows; returns how many.
    pub(crate) fn sweep(&self, now_ms: u64) -> usize {
        self.windows.sweep(now_ms)
    }

    pub(crate) fn len(&self) -> usize {
        self.windows.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: u64, remaining: u64, reset_secs: u64, allowed: bool) -> Quota {
        Quota {
            limit,
            remaining,
            reset_secs,
            allowed,
        }
    }

    #[test]
    fn fixed_window_from_first_request() {
        let c = LocalCounters::new();
        let k = CounterKey(1);
        // Window of 5 s starting at t = 1000 ms.
        assert_eq!(c.acquire(k, 3, 5000, 1000), q(3, 2, 5, true));
        assert_eq!(
            c.acquire(k, 3, 5000, 1001),
            q(3, 1, 5, true),
            "4999 ms left rounds up to 5"
        );
        assert_eq!(c.acquire(k, 3, 5000, 2000), q(3, 0, 4, true));
        assert_eq!(c.acquire(k, 3, 5000, 2001), q(3, 0, 4, false));
        assert_eq!(
            c.acquire(k, 3, 5000, 5999),
            q(3, 0, 1, false),
            "1 ms left is 1 s"
        );
        // The window ends at exactly 6000: a new one starts there, at the request.
        assert_eq!(c.acquire(k, 3, 5000, 6000), q(3, 2, 5, true));
        assert_eq!(
            c.acquire(k, 3, 5000, 6500),
            q(3, 1, 5, true),
            "4500 ms left rounds up"
        );
        // Other keys are independent.
        assert_eq!(c.acquire(CounterKey(2), 3, 5000, 6500), q(3, 2, 5, true));
        assert_eq!(
            c.acquire(CounterKey(1 + 64), 1, 5000, 6500),
            q(1, 0, 5, true),
            "same shard"
        );
        assert_eq!(
            c.acquire(CounterKey(1 + 64), 1, 5000, 6500),
            q(1, 0, 5, false)
        );
    }

    #[test]
    fn rejected_requests_are_not_counted() {
        let c = LocalCounters::new();
        let k = CounterKey(9);
        assert!(c.acquire(k, 1, 1000, 0).allowed);
        for t in 1..100 {
            assert!(!c.acquire(k, 1, 1000, t).allowed);
        }
        assert_eq!(c.acquire(k, 1, 1000, 1000), q(1, 0, 1, true));
    }

    #[test]
    fn sweep_drops_expired_only() {
        let c = LocalCounters::new();
        for i in 0..100u128 {
            let _ = c.acquire(CounterKey(i), 10, if i % 2 == 0 { 1000 } else { 5000 }, 0);
        }
        assert_eq!(c.len(), 100);
        assert_eq!(c.sweep(999), 0);
        assert_eq!(c.sweep(1000), 50);
        assert_eq!(c.len(), 50);
        assert_eq!(c.sweep(5000), 50);
        assert!(c.is_empty());
    }

    #[test]
    fn memory_stays_bounded_without_background_sweeps() {
        // A million distinct keys, each used once, with 1 s windows and time moving on: the
        // sweep on insert keeps only about the last second's keys plus slack.
        let c = LocalCounters::new();
        let per_ms = 100u64;
        let mut peak = 0;
        for t in 0..10_000u64 {
            for j in 0..per_ms {
                let _ = c.acquire(
                    CounterKey(u128::from(t * per_ms + j) * 0x9e37_79b9_7f4a_7c15),
                    5,
                    1000,
                    t,
                );
            }
            if t % 500 == 0 {
                peak = peak.max(c.len());
            }
        }
        let live = (1000 * per_ms) as usize;
        assert!(
            peak <= 4 * live + SHARDS * MIN_SWEEP,
            "peak {peak} for {live} live keys"
        );
    }

    #[test]
    fn contended_counts_are_exact() {
        let c = LocalCounters::new();
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if c.acquire(CounterKey(42), 25_000, 60_000, 0).allowed {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 25_000);
    }
}
