//! The metrics the store records (the `metrics` feature), read back from
//! metrics-util's debugging recorder. Each test installs the recorder for
//! its own thread only and runs a current-thread runtime on it, so every
//! task of the test records there and tests cannot see each other's.

#[path = "redis_store/server.rs"]
#[cfg(feature = "redis")]
mod server;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use ticketlock::metrics as m;
use ticketlock::{Error, LockStore};

/// Everything recorded so far, added up (a snapshot resets the
/// recorder's values, so they are accumulated here).
#[derive(Default)]
struct Seen {
    counters: HashMap<String, u64>,
    gauges: HashMap<String, f64>,
    histograms: HashMap<String, Vec<f64>>,
}

impl Seen {
    fn take(&mut self, s: &Snapshotter) {
        for (key, _, _, value) in s.snapshot().into_vec() {
            let key = key.key();
            let mut name = key.name().to_string();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            if !labels.is_empty() {
                name = format!("{name}{{{}}}", labels.join(","));
            }
            match value {
                DebugValue::Counter(n) => *self.counters.entry(name).or_default() += n,
                DebugValue::Gauge(g) => *self.gauges.entry(name).or_default() += g.into_inner(),
                DebugValue::Histogram(v) => self
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(v.into_iter().map(|x| x.into_inner())),
            }
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str) -> f64 {
        self.gauges.get(name).copied().unwrap_or(0.0)
    }

    fn histogram(&self, name: &str) -> Vec<f64> {
        self.histograms.get(name).cloned().unwrap_or_default()
    }
}

/// Runs `test` on a current-thread runtime (paused time if `paused`) with
/// a debugging recorder installed for this thread.
fn recorded<F, Fut>(paused: bool, test: F)
where
    F: FnOnce(Snapshotter) -> Fut,
    Fut: Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if paused {
        builder.start_paused(true);
    }
    let runtime = builder.build().unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test(snapshotter)));
}

/// Seconds as recorded, to the millisecond (timers resolve to it).
fn approx(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 0.005, "{got:?} vs {want:?}");
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn waits_holds_hand_offs_and_gauges_are_recorded() {
    recorded(true, |s| async move {
        let mut seen = Seen::default();
        let store = LockStore::in_memory();
        let holder = store.lock("c").await.unwrap();
        seen.take(&s);
        assert_eq!(seen.histogram(m::TICKETS_AHEAD), vec![0.0]);
        assert_eq!(
            seen.histogram("ticketlock_wait_seconds{outcome=acquired}")
                .len(),
            1
        );
        assert_eq!(seen.gauge(m::LOCKS_HELD), 1.0);

        let waiter = store.lock("c").wait_time(HOUR).enqueue().await.unwrap();
        let waiting = tokio::spawn(waiter.acquired());
        tokio::task::yield_now().await;
        seen.take(&s);
        assert_eq!(seen.histogram(m::TICKETS_AHEAD), vec![0.0, 1.0]);
        assert_eq!(seen.gauge(m::TICKETS_WAITING), 1.0);

        tokio::time::advance(Duration::from_secs(3)).await;
        holder.release().await.unwrap();
        let second = waiting.await.unwrap().unwrap();
        seen.take(&s);
        approx(&seen.histogram(m::HOLD_SECONDS), &[3.0]);
        assert_eq!(seen.counter("ticketlock_wakeups_total{cause=push}"), 1);
        approx(&seen.histogram(m::HANDOFF_SECONDS), &[0.0]);
        let acquired = seen.histogram("ticketlock_wait_seconds{outcome=acquired}");
        approx(&acquired, &[0.0, 3.0]);
        assert_eq!(seen.gauge(m::TICKETS_WAITING), 0.0);
        assert_eq!(seen.gauge(m::LOCKS_HELD), 1.0);

        // Timed out behind the holder: the whole timeout is the wait.
        let timed_out = store
            .lock("c")
            .wait_time(HOUR)
            .timeout(Duration::from_secs(2))
            .await;
        assert!(matches!(timed_out, Err(Error::Timeout { .. })));
        seen.take(&s);
        approx(
            &seen.histogram("ticketlock_wait_seconds{outcome=timed_out}"),
            &[2.0],
        );
        assert_eq!(seen.gauge(m::TICKETS_WAITING), 0.0);
        drop(second);
        seen.take(&s);
        assert_eq!(seen.gauge(m::LOCKS_HELD), 0.0);
        assert_eq!(seen.histogram(m::HOLD_SECONDS).len(), 2);
    });
}

#[test]
fn wake_ups_are_counted_by_cause() {
    recorded(true, |s| async move {
        let mut seen = Seen::default();
        let store = LockStore::in_memory();
        // A holder that vanished: its waiter looks again when it expires.
        let gone = store
            .lock("expiry")
            .lifetime(Duration::from_secs(1))
            .await
            .unwrap();
        std::mem::forget(gone);
        let next = store.lock("expiry").wait_time(HOUR).await.unwrap();
        seen.take(&s);
        assert_eq!(
            seen.counter("ticketlock_wakeups_total{cause=holder_expiry}"),
            1
        );
        assert_eq!(seen.counter("ticketlock_wakeups_total{cause=push}"), 0);
        next.release().await.unwrap();

        // A holder with a long lease: the waiter looks every wait_time.
        let holder = store.lock("poll").await.unwrap();
        let poller = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .lock("poll")
                    .wait_time(Duration::from_millis(100))
                    .timeout(Duration::from_millis(350))
                    .await
            }
        });
        assert!(matches!(poller.await.unwrap(), Err(Error::Timeout { .. })));
        seen.take(&s);
        assert_eq!(seen.counter("ticketlock_wakeups_total{cause=wait_time}"), 3);
        holder.release().await.unwrap();
    });
}

#[test]
fn renewals_lost_leases_and_try_locks_are_counted() {
    recorded(true, |s| async move {
        let mut seen = Seen::default();
        let store = LockStore::in_memory();
        let guard = store
            .lock("c")
            .lifetime(Duration::from_secs(1))
            .await
            .unwrap();
        guard.renew().await.unwrap();
        assert!(store.try_lock("c").await.unwrap().is_none());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(guard.renew().await, Err(Error::Expired { .. })));
        // Told again: the lease is counted as lost once.
        assert!(!guard.is_held().await.unwrap());
        assert!(matches!(guard.release().await, Err(Error::Expired { .. })));
        let free = store.try_lock("c").await.unwrap().expect("free");
        seen.take(&s);
        assert_eq!(seen.counter(m::RENEWALS_TOTAL), 1);
        assert_eq!(seen.counter(m::RENEWAL_FAILURES_TOTAL), 0);
        assert_eq!(seen.counter(m::LEASES_LOST_TOTAL), 1);
        assert_eq!(seen.counter("ticketlock_try_locks_total{outcome=busy}"), 1);
        assert_eq!(
            seen.counter("ticketlock_try_locks_total{outcome=acquired}"),
            1
        );
        drop(free);
    });
}

#[cfg(feature = "redis")]
#[test]
fn unavailable_errors_and_reconnects_are_counted() {
    use server::RedisServer;
    let Some(server) = RedisServer::start() else {
        return;
    };
    recorded(false, |s| async move {
        let mut seen = Seen::default();
        let mut config = server::config(&server);
        config.socket_timeout = Duration::from_millis(300);
        let store: LockStore = ticketlock::RedisLockStore::connect(&config)
            .await
            .unwrap()
            .into();
        store.lock("c").await.unwrap().release().await.unwrap();
        seen.take(&s);
        assert_eq!(seen.counter(m::UNAVAILABLE_TOTAL), 0);
        // A stalled server: the call times out, and the command
        // connection is replaced.
        server.pause();
        let stalled = store.lock("c").await;
        server.resume();
        assert!(
            matches!(stalled, Err(Error::Unavailable { .. })),
            "{stalled:?}"
        );
        seen.take(&s);
        assert_eq!(seen.counter(m::UNAVAILABLE_TOTAL), 1);
        store.flush().await;

        // A waiter's pub/sub connection is made again after a restart.
        let holder = store.lock("w").await.unwrap();
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { store.lock("w").wait_time(HOUR).await.map(drop) }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while store.stats().waiting == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no waiter");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Subscribed once registered: the watch waits for the confirmation.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            seen.counter("ticketlock_reconnects_total{connection=pubsub}"),
            0
        );
        let mut server = server;
        server.restart();
        loop {
            seen.take(&s);
            if seen.counter("ticketlock_reconnects_total{connection=pubsub}") == 1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline + Duration::from_secs(5),
                "the pub/sub connection was not made again\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        waiter.abort();
        drop(holder);
        store.flush().await;
    });
}
