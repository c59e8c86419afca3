//! The run's clock: nanoseconds of `CLOCK_MONOTONIC`, one clock for every
//! process on the host, so that the times workers and fault injectors
//! write can be compared.

use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

/// Now, in nanoseconds of `CLOCK_MONOTONIC`.
pub fn now_ns() -> u64 {
    // clock_gettime fails only for an unknown clock or a bad pointer,
    // neither of which can happen here.
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec()).unwrap_or(0)
    })
}

/// A duration in nanoseconds, saturating.
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Milliseconds from nanoseconds, for the figures.
pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_with_the_monotonic_clock() {
        let a = now_ns();
        std::thread::sleep(Duration::from_millis(5));
        let b = now_ns();
        assert!(b - a >= 5_000_000, "{a} -> {b}");
        assert!(b - a < 5_000_000_000, "{a} -> {b}");
    }
}
