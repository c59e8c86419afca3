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
//! Times are [`Stamp`]s: nanoseconds since the store's clock was made, one
//! `u64` (a tokio `Instant` takes 16 bytes, and its arithmetic checks for
//! overflow at every step: the conversions and additions were half of what
//! the two readings of a cycle cost).
//!
//! A store made while tokio's clock is paused (`start_paused` tests, or
//! after `tokio::time::pause`) reads tokio's clock instead, so that such
//! tests can pause and advance time; so does a store on a system without a
//! coarse clock.

use std::time::Duration;

use tokio::time::Instant;

/// A time by a store's clock: nanoseconds since the clock was made, plus
/// [`Stamp::ORIGIN`], so that times up to 146 years before it (from records
/// that were saved with them) can be told apart too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Stamp(u64);

impl Stamp {
    /// The stamp of the moment the clock was made.
    const ORIGIN: u64 = 1 << 62;

    /// How long from `earlier` to this time; zero if `earlier` is later.
    pub(super) fn since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Seconds since the clock was made, negative before (for the record
    /// view).
    pub(super) fn as_secs_f64(self) -> f64 {
        (i128::from(self.0) - i128::from(Stamp::ORIGIN)) as f64 / 1e9
    }

    /// The time `secs` seconds after the clock was made (before, if
    /// negative); beyond what a stamp holds, the earliest or latest stamp.
    pub(super) fn from_secs_f64(secs: f64) -> Stamp {
        // `as` saturates (and NaN gives 0).
        let offset = (secs * 1e9) as i64;
        Stamp(Stamp::ORIGIN.saturating_add_signed(offset))
    }
}

/// Where a store reads the time.
#[derive(Debug, Clone, Copy)]
pub(super) enum Clock {
    /// Tokio's clock, precise (and paused with it).
    Tokio {
        /// Stamp zero.
        base: Instant,
    },
    /// The kernel's coarse monotonic clock.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    Coarse {
        /// The coarse clock's reading at stamp zero, in nanoseconds.
        base_ns: u64,
        /// How far a reading may lag the true time, in nanoseconds.
        tick_ns: u64,
    },
}

impl Clock {
    /// The coarse clock where there is one and tokio's clock is not paused.
    pub(super) fn new() -> Clock {
        if tokio_clock_is_paused() {
            return Clock::tokio();
        }
        Clock::coarse().unwrap_or_else(Clock::tokio)
    }

    fn tokio() -> Clock {
        Clock::Tokio {
            base: Instant::now(),
        }
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
            base_ns: coarse_now_ns(),
            tick_ns: nanos(tick),
        })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    fn coarse() -> Option<Clock> {
        None
    }

    /// The time now, by this clock.
    #[inline]
    pub(super) fn now(&self) -> Stamp {
        match *self {
            Clock::Tokio { base } => {
                Stamp(Stamp::ORIGIN + nanos(Instant::now().saturating_duration_since(base)))
            }
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
            Clock::Coarse { base_ns, .. } => {
                Stamp(Stamp::ORIGIN + coarse_now_ns().saturating_sub(base_ns))
            }
        }
    }

    /// The deadline of a lease of `lifetime` from `now` (read from this
    /// clock): never earlier than `lifetime` after the true time.
    #[inline]
    pub(super) fn deadline(&self, now: Stamp, lifetime: Duration) -> Stamp {
        let slack = match *self {
            Clock::Tokio { .. } => 0,
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
            Clock::Coarse { tick_ns, .. } => tick_ns,
        };
        Stamp(now.0.saturating_add(nanos(lifetime)).saturating_add(slack))
    }
}

/// A duration in nanoseconds, saturating (at 585 years).
#[inline]
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[inline]
fn coarse_now_ns() -> u64 {
    use rustix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::MonotonicCoarse);
    // A monotonic clock's seconds since boot are never negative.
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
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
        assert!(matches!(clock, Clock::Tokio { .. }));
        let t = clock.now();
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(clock.now().since(t), Duration::from_secs(7));
        assert_eq!(
            clock.deadline(t, Duration::from_secs(1)).since(t),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn stamps_saturate_instead_of_overflowing() {
        let clock = Clock::Tokio {
            base: Instant::now(),
        };
        let far = clock.deadline(Stamp(u64::MAX - 1), Duration::MAX);
        assert_eq!(far, Stamp(u64::MAX));
        assert_eq!(Stamp(5).since(Stamp(9)), Duration::ZERO);
        assert_eq!(Stamp::from_secs_f64(-3.0).as_secs_f64(), -3.0);
        assert_eq!(Stamp::from_secs_f64(1.5).as_secs_f64(), 1.5);
        assert_eq!(Stamp::from_secs_f64(-1e12), Stamp(0));
        assert!(Stamp::from_secs_f64(f64::INFINITY) > Stamp::from_secs_f64(1e9));
        assert!(Stamp(u64::MAX).as_secs_f64() > 1e10);
        assert!(Stamp::from_secs_f64(-3.0) < Stamp::from_secs_f64(0.0));
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
