//! Time is injected: `core` never reads the clock itself, so tests can move it.

use time::OffsetDateTime;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// Truncates to microseconds, the precision both databases keep, so values round-trip exactly.
pub fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

/// Real time plus an offset that only grows: for tests that jump ahead (a code expiring, a
/// lock ending) while everything else keeps running in real time.
#[derive(Debug, Default)]
pub struct AdjustableClock {
    offset_us: std::sync::atomic::AtomicI64,
}

impl AdjustableClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock forward by `by`.
    pub fn advance(&self, by: time::Duration) {
        let us = i64::try_from(by.whole_microseconds()).unwrap_or(i64::MAX);
        self.offset_us
            .fetch_add(us.max(0), std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> OffsetDateTime {
        let offset = self.offset_us.load(std::sync::atomic::Ordering::SeqCst);
        OffsetDateTime::now_utc() + time::Duration::microseconds(offset)
    }
}
