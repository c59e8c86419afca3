//! What each task does with each of its messages, drawn from the run's
//! seed: every worker (and the checker, should it need to) computes the
//! same plan without talking.

use std::time::Duration;

/// The plan of a run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seed: u64,
    pub conversations: u32,
    pub work_min: Duration,
    pub work_max: Duration,
    pub overrun_percent: u32,
}

/// One message of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// The conversation, `0..conversations`.
    pub conv: u32,
    /// How long handling it takes.
    pub work: Duration,
    /// Whether its section outlives its lease on purpose.
    pub overrun: bool,
}

impl Plan {
    /// Message `seq` of task `task` of worker `worker`.
    pub fn message(&self, worker: u32, task: u32, seq: u64) -> Message {
        let key = self.key(worker, task, seq);
        let conv = below(mix(key ^ 1), u64::from(self.conversations)) as u32;
        let (lo, hi) = (
            micros(self.work_min),
            micros(self.work_max).max(micros(self.work_min)),
        );
        let work = Duration::from_micros(lo + below(mix(key ^ 2), hi - lo + 1));
        let overrun = below(mix(key ^ 3), 100) < u64::from(self.overrun_percent);
        Message {
            conv,
            work,
            overrun,
        }
    }

    /// A pause before retry `attempt` (1 after the first failure) of a
    /// message: doubling from 25 ms to at most 400 ms, with jitter so that
    /// tasks do not retry in lockstep.
    pub fn backoff(&self, worker: u32, task: u32, seq: u64, attempt: u32) -> Duration {
        let base = 25u64 << attempt.saturating_sub(1).min(4);
        let jitter = below(
            mix(self.key(worker, task, seq) ^ (0x100 + u64::from(attempt))),
            base,
        );
        Duration::from_millis(base + jitter / 2)
    }

    fn key(&self, worker: u32, task: u32, seq: u64) -> u64 {
        mix(mix(mix(self.seed) ^ u64::from(worker)) ^ (u64::from(task) << 32) ^ seq)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2)
}

pub use crate::rng::{Rng, fresh_seed};
use crate::rng::{mix, scale as below};

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(overrun_percent: u32) -> Plan {
        Plan {
            seed: 7,
            conversations: 5,
            work_min: Duration::from_millis(2),
            work_max: Duration::from_millis(9),
            overrun_percent,
        }
    }

    #[test]
    fn the_plan_is_fixed_by_the_seed_and_spreads_over_every_conversation() {
        let p = plan(0);
        let a: Vec<Message> = (0..200).map(|m| p.message(1, 2, m)).collect();
        let b: Vec<Message> = (0..200).map(|m| p.message(1, 2, m)).collect();
        assert_eq!(a, b);
        let other: Vec<Message> = (0..200).map(|m| p.message(1, 3, m)).collect();
        assert_ne!(a, other, "tasks must not share a plan");
        let mut seen = [0u32; 5];
        for m in &a {
            seen[m.conv as usize] += 1;
            assert!(m.work >= Duration::from_millis(2) && m.work <= Duration::from_millis(9));
            assert!(!m.overrun);
        }
        assert!(seen.iter().all(|&n| n > 20), "{seen:?}");
    }

    #[test]
    fn overruns_come_at_about_the_asked_rate() {
        let p = plan(10);
        let n = (0..10_000).filter(|&m| p.message(0, 0, m).overrun).count();
        assert!((800..1200).contains(&n), "{n}");
        assert_eq!(
            (0..1000)
                .filter(|&m| plan(100).message(0, 0, m).overrun)
                .count(),
            1000
        );
    }

    #[test]
    fn backoff_doubles_and_stays_bounded() {
        let p = plan(0);
        for attempt in 1..20 {
            let b = p.backoff(0, 0, 0, attempt);
            let base = 25u64 << (attempt - 1).min(4);
            assert!(b >= Duration::from_millis(base), "{attempt}: {b:?}");
            assert!(
                b < Duration::from_millis(base * 3 / 2 + 1),
                "{attempt}: {b:?}"
            );
        }
    }

    #[test]
    fn the_rng_reaches_every_value() {
        let mut rng = Rng::new(3);
        let mut seen = [false; 7];
        for _ in 0..500 {
            seen[rng.below(7) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.below(0), 0);
    }
}
