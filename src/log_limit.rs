//! Log lines that a client can cause (failed auth, a limiter backend down, proxy errors) are
//! limited to one per call site per second, with the count of those suppressed, so an
//! unauthenticated client cannot control the log volume. Metrics still count every event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One call site's budget: a line per second.
pub(crate) struct LogLimit {
    second: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for LogLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl LogLimit {
    pub(crate) const fn new() -> LogLimit {
        LogLimit {
            second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last one)` when a line may be written now.
    pub(crate) fn permit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.permit_at(now)
    }

    fn permit_at(&self, now: u64) -> Option<u64> {
        let last = self.second.load(Ordering::Relaxed);
        if now != last
            && self
                .second
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// `log::log!` limited to one line per second at this call site; the next line written says
/// how many were suppressed in between.
#[macro_export]
macro_rules! limited_log {
    ($lvl:expr, $($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::LogLimit = $crate::log_limit::LogLimit::new();
        if log::log_enabled!($lvl) {
            match LIMIT.permit() {
                Some(0) => log::log!($lvl, $($arg)+),
                Some(n) => log::log!($lvl, "{} ({n} similar lines suppressed)", format_args!($($arg)+)),
                None => {}
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::LogLimit;

    #[test]
    fn one_line_per_second_with_the_suppressed_count() {
        let l = LogLimit::new();
        assert_eq!(l.permit_at(100), Some(0));
        assert_eq!(l.permit_at(100), None);
        assert_eq!(l.permit_at(100), None);
        assert_eq!(l.permit_at(101), Some(2));
        assert_eq!(l.permit_at(101), None);
        assert_eq!(l.permit_at(105), Some(1));
    }
}
