//! The in-memory store's clock.
//!
//! Reading the precise monotonic clock costs about 40 ns on a virtual
//! machine (the TSC read behind `clock_gettime(CLOCK_MONOTONIC)`), as much as
//! a sixth of a whole uncontended lock/release cycle, which reads it twice
//! (the lease's deadline at issue, whether it was still live at release).
//! Where the kernel has one, the store reads its coarse monotonic clock
//! instead (`CLOCK_MONOTONIC_COARSE`: the time of the last timer tick, about
//! 7 ns), the same clock at the resolution of a tick (1 to 10 ms).
//!
//! A coarse reading lags the true time by up to one tick, so a deadline is
//! set one tick later than `now + lifetime`: a lease is never shorter than
//! asked, and a vanished holder blocks at most two ticks longer.
//!
//! A store made while tokio's clock is paused (`start_paused` tests, or
//! after `tokio::time::pause`) reads tokio's clock instead, so that such
//! tests can pause and advance time; so does a store on a system without a
//! coarse clock.

use std::time::Duration;

use tokio::time::Instant;

/// Where a store reads the time.
#[derive(Debug, Clone, Copy)]
pub(super) enum Clock {
    /// Tokio's clock, precise (and paused with it).
    Tokio,
    /// The kernel's coarse monotonic clock, as tokio `Instant`s.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    Coarse {
        /// The coarse clock's reading at `base`.
        coarse_base: Duration,
        base: Instant,
        /// How far a reading may lag the true time.
        tick: Duration,
    },
}

impl Clock {
    /// The coarse clock where there is one and tokio's clock is not paused.
    pub(super) fn new() -> Clock {
        if tokio_clock_is_paused() {
            return Clock::Tokio;
        }
        Clock::coarse().unwrap_or(Clock::Tokio)
    }

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    fn coarse() -> Option<Clock> {
        use rustix::time::{ClockId, clock_getres};
        let res = clock_getres(ClockId::MonotonicCoarse);
        let tick = Duration::new(
            u64::try_from(res.tv_sec).ok()?,
            u32::try_from(res.tv_nsec).ok()?,
        );
        // A clock this coarse would stretch short leases too far.
        if tick.is_zero() || tick > Duration::from_millis(20) {
            return None;
        }
        Some(Clock::Coarse {
            coarse_base: coarse_now(),
            base: Instant::now(),
            tick,
        })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    fn coarse() -> Option<Clock> {
        None
    }

    /// The time now, by this clock.
    #[inline]
    pub(super) fn now(&self) -> Instant {
        match *self {
            Clock::Tokio => Instant::now(),
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
            Clock::Coarse {
                coarse_base, base, ..
            } => base + coarse_now().saturating_sub(coarse_base),
        }
    }

    /// The deadline of a lease of `lifetime` from `now` (read from this
    /// clock): never earlier than `lifetime` after the true time.
    #[inline]
    pub(super) fn deadline(&self, now: Instant, lifetime: Duration) -> Instant {
        match *self {
            Clock::Tokio => now + lifetime,
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
            Clock::Coarse { tick, .. } => now + lifetime + tick,
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn coarse_now() -> Duration {
    use rustix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::MonotonicCoarse);
    // A monotonic clock's seconds since boot are never negative.
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Whether tokio's clock stands still (or was advanced) here: then its time
/// is not the system's.
fn tokio_clock_is_paused() -> bool {
    let before = std::time::Instant::now();
    let tokio = Instant::now().into_std();
    let after = std::time::Instant::now();
    tokio < before || tokio > after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_store_made_under_paused_time_follows_tokio_s_clock() {
        let clock = Clock::new();
        assert!(matches!(clock, Clock::Tokio));
        let t = clock.now();
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(clock.now() - t, Duration::from_secs(7));
        assert_eq!(
            clock.deadline(t, Duration::from_secs(1)),
            t + Duration::from_secs(1)
        );
    }

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    #[test]
    fn a_lease_by_the_coarse_clock_lasts_at_least_its_lifetime_in_true_time() {
        let clock = Clock::new();
        assert!(
            matches!(clock, Clock::Coarse { .. }),
            "no coarse clock on this system: {clock:?}"
        );
        let lease = Duration::from_millis(10);
        for _ in 0..5 {
            let issued = clock.now();
            let true_issue = std::time::Instant::now();
            let deadline = clock.deadline(issued, lease);
            // Expired by the store's clock...
            while clock.now() < deadline {
                std::hint::spin_loop();
            }
            // ...only once the lifetime has passed (the true issue was read
            // a few ns after the store's reading: a microsecond of slack).
            let lasted = true_issue.elapsed();
            assert!(lasted + Duration::from_micros(1) >= lease, "{lasted:?}");
        }
    }
}
