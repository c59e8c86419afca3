//! The conformance suite: the behaviour every store must have (issue 2,
//! items a-i, and the reference's own test behaviours where they still make
//! sense). Each test is a generic async fn over a [`Harness`];
//! `conformance_tests!` instantiates them all for one backend.
//!
//! No test relies on sleeping and hoping: waiters that must be woken by a
//! push are given a `wait_time` of an hour, so they can only enter through
//! the wake-up under test, and order is fixed by `enqueue`, which returns
//! once the ticket is in the queue.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ticketlock::{Error, LockStore, Ticket, TicketLock};
use tokio::time::{Instant, timeout};

/// Waits that would only end by polling.
pub const HOUR: Duration = Duration::from_secs(3600);
/// Bound on anything that should happen "at once".
pub const PROMPT: Duration = Duration::from_secs(5);

/// A backend under test.
pub trait Harness: Send + Sync + 'static {
    /// A handle on the store under test.
    fn store(&self) -> LockStore;
    /// Another handle on the same data, made the way another process would
    /// make it (a new connection for a remote store).
    fn peer(&self) -> impl Future<Output = LockStore> + Send;
}

#[cfg(feature = "redis")]
/// A Redis store made from a configuration (a cluster, a sentinel group);
/// its peers connect anew, as another process would.
pub struct Configured {
    pub config: ticketlock::RedisConfig,
    pub store: LockStore,
}

#[cfg(feature = "redis")]
impl Configured {
    /// Connects to the deployment `config` names.
    pub async fn connect(config: ticketlock::RedisConfig) -> Configured {
        let store = ticketlock::RedisLockStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
            .into();
        Configured { config, store }
    }
}

#[cfg(feature = "redis")]
impl Harness for Configured {
    fn store(&self) -> LockStore {
        self.store.clone()
    }

    async fn peer(&self) -> LockStore {
        Configured::connect(self.config.clone()).await.store
    }
}

/// Instantiates every conformance test for the harness made by `$make`
/// (an async fn returning `Option<impl Harness>`; `None` skips).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            mutual_exclusion_across_handles,
            fifo_entry_in_ticket_order,
            message_order_is_kept_for_one_sender,
            conversations_proceed_independently,
            ticket_numbers_are_not_reused_after_expiry,
            fencing_tokens_increase_across_record_deletion,
            release_wakes_the_next_waiter_without_polling,
            wait_time_is_only_the_longest_pause,
            waiter_keeps_its_place_longer_than_its_lifetime,
            withdrawn_waiter_leaves_the_queue_at_once,
            vanished_holder_blocks_for_at_most_its_lifetime,
            stale_record_does_not_block,
            waiter_whose_record_is_deleted_gets_expired,
            acquire_timeout_leaves_no_ticket,
            renew_extends_the_lease,
            lease_that_ran_out_is_reported_lost,
            auto_renew_keeps_a_long_task_exclusive,
            dropped_lock_future_lets_the_next_waiter_in,
            dropped_guard_lets_the_next_waiter_in,
            dropped_release_future_still_releases,
            error_kinds_name_the_conversation,
            record_level_api_matches_rasa,
            first_ticket_is_zero_and_now_serving_zero_without_tickets,
            save_lock_round_trips_a_rasa_record,
            save_lock_refuses_tickets_other_clients_cannot_read,
            queue_length_is_bounded,
            try_lock_never_waits_and_leaves_no_ticket,
            stats_count_held_locks_and_waiting_tickets,
        );
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some(harness) = $make().await else { return };
                suite::$name(&harness).await;
            }
        )*
    };
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < PROMPT, "not within {PROMPT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn numbers(store: &LockStore, id: &str) -> Vec<u64> {
    store
        .get_lock(id)
        .await
        .unwrap()
        .map(|l| l.tickets().map(|t| t.number).collect())
        .unwrap_or_default()
}

/// a. At most one holder at a time, across handles (processes) and tasks.
pub async fn mutual_exclusion_across_handles(h: &impl Harness) {
    let stores = [h.store(), h.peer().await];
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = stores[t % 2].clone();
        let (inside, overlaps, counter) = (inside.clone(), overlaps.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let guard = store.lock("mutex").await.unwrap();
                if inside.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                // A non-atomic read-modify-write: loses updates unless exclusive.
                let seen = counter.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                counter.store(seen + 1, Ordering::SeqCst);
                inside.store(false, Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "holders overlapped");
    assert_eq!(counter.load(Ordering::SeqCst), 200, "updates were lost");
    assert_eq!(
        stores[0].get_lock("mutex").await.unwrap(),
        None,
        "record left behind"
    );
}

/// b. Holders enter in ticket order, whatever order the waiting tasks run in.
pub async fn fifo_entry_in_ticket_order(h: &impl Harness) {
    let (a, b) = (h.store(), h.peer().await);
    let holder = a.lock("fifo").await.unwrap();
    let mut queued = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { &a } else { &b };
        queued.push(store.lock("fifo").wait_time(HOUR).enqueue().await.unwrap());
    }
    let tickets: Vec<u64> = queued.iter().map(|q| q.ticket()).collect();
    assert!(tickets.windows(2).all(|w| w[0] < w[1]), "{tickets:?}");
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // Spawned in reverse, so that spawn order cannot explain entry order.
    for q in queued.into_iter().rev() {
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let g = q.acquired().await.unwrap();
            order.lock().unwrap().push(g.ticket());
            tokio::task::yield_now().await;
            g.release().await.unwrap();
        }));
    }
    holder.release().await.unwrap();
    for t in tasks {
        timeout(PROMPT, t)
            .await
            .expect("waiters were not woken")
            .unwrap();
    }
    assert_eq!(*order.lock().unwrap(), tickets);
}

/// Rasa's test: messages of one sender are handled in the order they came.
pub async fn message_order_is_kept_for_one_sender(h: &impl Harness) {
    let store = h.store();
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for message in 0..20u32 {
        // Arrival order is the order tickets are taken.
        let q = store
            .lock("sender")
            .wait_time(HOUR)
            .enqueue()
            .await
            .unwrap();
        let handled = handled.clone();
        tasks.push(tokio::spawn(async move {
            let g = q.acquired().await.unwrap();
            handled.lock().unwrap().push(message);
            g.release().await.unwrap();
        }));
    }
    for t in tasks {
        timeout(PROMPT, t).await.unwrap().unwrap();
    }
    assert_eq!(*handled.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

/// Rasa's test: two conversations do not wait for each other.
pub async fn conversations_proceed_independently(h: &impl Harness) {
    let store = h.store();
    let a = store.lock("conv-a").await.unwrap();
    let b = timeout(PROMPT, store.lock("conv-b").wait_time(HOUR))
        .await
        .expect("conv-b waited for conv-a")
        .unwrap();
    assert_ne!(a.conversation_id(), b.conversation_id());
    a.release().await.unwrap();
    b.release().await.unwrap();
}

/// c. The number of an expired last ticket is not issued again (Rasa
/// issues last live number + 1, and so reuses it).
pub async fn ticket_numbers_are_not_reused_after_expiry(h: &impl Harness) {
    let store = h.store();
    let first = store
        .issue_ticket("reuse", Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let short = store
        .issue_ticket("reuse", Some(Duration::from_millis(150)))
        .await
        .unwrap();
    assert_eq!((first, short), (0, 1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.update_lock("reuse").await.unwrap();
    assert_eq!(numbers(&store, "reuse").await, vec![0]);
    let next = store.issue_ticket("reuse", None).await.unwrap();
    assert_eq!(next, 2, "ticket 1 expired and must not be issued again");
    store.delete_lock("reuse").await.unwrap();
}

/// c. Fencing tokens strictly increase for successive holders, also after the
/// record was deleted (released empty, or deleted by hand) and made again.
pub async fn fencing_tokens_increase_across_record_deletion(h: &impl Harness) {
    let (a, b) = (h.store(), h.peer().await);
    let mut last = 0;
    for i in 0..6 {
        let store = if i % 2 == 0 { &a } else { &b };
        let g = store.lock("fence").await.unwrap();
        assert!(
            g.fencing_token() > last,
            "token {} after {last}",
            g.fencing_token()
        );
        last = g.fencing_token();
        if i == 3 {
            store.delete_lock("fence").await.unwrap();
            drop(g);
        } else {
            g.release().await.unwrap();
        }
        assert_eq!(a.get_lock("fence").await.unwrap(), None);
    }
}

/// d. A release wakes the next waiter at once: with an hour between looks,
/// only the push can let the chain of waiters through.
pub async fn release_wakes_the_next_waiter_without_polling(h: &impl Harness) {
    let (a, b) = (h.store(), h.peer().await);
    let holder = a.lock("push").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = if i % 2 == 0 { b.clone() } else { a.clone() };
        let q = store.lock("push").wait_time(HOUR).enqueue().await.unwrap();
        tasks.push(tokio::spawn(async move {
            q.acquired().await.unwrap().release().await.unwrap();
        }));
    }
    let released = Instant::now();
    holder.release().await.unwrap();
    for t in tasks {
        timeout(PROMPT, t)
            .await
            .expect("a waiter was not woken by the release")
            .unwrap();
    }
    assert!(released.elapsed() < PROMPT);
}

/// d. `wait_time` bounds the pause between looks even with no wake-up: a
/// record emptied behind the store's back (as a Rasa process would do) is
/// noticed within `wait_time`.
pub async fn wait_time_is_only_the_longest_pause(h: &impl Harness) {
    let store = h.store();
    let holder = store.lock("pause").await.unwrap();
    let waiter = store
        .lock("pause")
        .wait_time(Duration::from_millis(100))
        .enqueue()
        .await
        .unwrap();
    let mut record = store.get_lock("pause").await.unwrap().unwrap();
    assert!(record.remove_ticket_for(holder.ticket()));
    // Written the way a foreign writer would: plain SET semantics.
    store.save_lock(&record).await.unwrap();
    let g = timeout(PROMPT, waiter.acquired())
        .await
        .expect("waiter never looked again")
        .unwrap();
    assert!(
        holder.release().await.is_err(),
        "the holder's ticket was removed"
    );
    g.release().await.unwrap();
}

/// e. The lifetime counts from acquisition: a live waiter keeps its place
/// however long it waits, even past its own lifetime.
pub async fn waiter_keeps_its_place_longer_than_its_lifetime(h: &impl Harness) {
    let store = h.store();
    let holder = store
        .lock("keep")
        .lifetime(Duration::from_secs(30))
        .await
        .unwrap();
    let waiter = store
        .lock("keep")
        .lifetime(Duration::from_millis(300))
        .wait_time(HOUR)
        .enqueue()
        .await
        .unwrap();
    let task = tokio::spawn(waiter.acquired());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        numbers(&store, "keep").await.len(),
        2,
        "the waiter lost its place"
    );
    holder.release().await.unwrap();
    let g = timeout(PROMPT, task).await.unwrap().unwrap().unwrap();
    assert!(g.is_held().await.unwrap());
    g.release().await.unwrap();
}

/// e/h. A waiter that gives up leaves the queue at once, and the one behind
/// it is not held up.
pub async fn withdrawn_waiter_leaves_the_queue_at_once(h: &impl Harness) {
    let store = h.store();
    let holder = store.lock("leave").await.unwrap();
    let quitter = store.lock("leave").enqueue().await.unwrap();
    let stayer = store.lock("leave").wait_time(HOUR).enqueue().await.unwrap();
    let (q, s) = (quitter.ticket(), stayer.ticket());
    assert_eq!(numbers(&store, "leave").await, vec![holder.ticket(), q, s]);
    drop(quitter);
    eventually("the withdrawn ticket leaves", || async {
        numbers(&store, "leave").await == vec![holder.ticket(), s]
    })
    .await;
    holder.release().await.unwrap();
    let g = timeout(PROMPT, stayer.acquired()).await.unwrap().unwrap();
    g.release().await.unwrap();
}

/// e. A holder that vanishes (never releases) blocks for its lifetime and no
/// longer; the successor is woken at the expiry, not by polling.
pub async fn vanished_holder_blocks_for_at_most_its_lifetime(h: &impl Harness) {
    let store = h.store();
    let lifetime = Duration::from_millis(400);
    let vanished = store.lock("vanish").lifetime(lifetime).await.unwrap();
    let acquired_at = Instant::now();
    std::mem::forget(vanished);
    let g = timeout(PROMPT, store.lock("vanish").wait_time(HOUR))
        .await
        .expect("successor not let in after the holder's lifetime")
        .unwrap();
    let blocked = acquired_at.elapsed();
    assert!(
        blocked >= lifetime - Duration::from_millis(20),
        "entered after {blocked:?}"
    );
    g.release().await.unwrap();
}

/// e. No livelock on a stale record: a record whose tickets all expired
/// (left by a crashed Rasa process) does not block anyone.
pub async fn stale_record_does_not_block(h: &impl Harness) {
    let store = h.store();
    let past = ticketlock_now() - 100.0;
    let stale =
        TicketLock::with_tickets("stale", [Ticket::new(0, past), Ticket::new(1, past + 1.0)]);
    store.save_lock(&stale).await.unwrap();
    let g = timeout(PROMPT, store.lock("stale").wait_time(HOUR))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.ticket(), 2, "numbers continue after the stale ones");
    g.release().await.unwrap();
    assert_eq!(store.get_lock("stale").await.unwrap(), None);
}

/// e. A waiter whose record disappears learns it (Expired), rather than
/// waiting forever.
pub async fn waiter_whose_record_is_deleted_gets_expired(h: &impl Harness) {
    let store = h.store();
    let _holder = store.lock("deleted").await.unwrap();
    let waiter = store
        .lock("deleted")
        .wait_time(HOUR)
        .enqueue()
        .await
        .unwrap();
    let task = tokio::spawn(waiter.acquired());
    tokio::task::yield_now().await;
    store.delete_lock("deleted").await.unwrap();
    let err = timeout(PROMPT, task)
        .await
        .expect("waiter hung")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, Error::Expired { ref conversation_id, .. } if conversation_id == "deleted"),
        "{err}"
    );
}

/// f. Past the acquire timeout: a distinct error, and no ticket left behind.
pub async fn acquire_timeout_leaves_no_ticket(h: &impl Harness) {
    let store = h.store();
    let holder = store.lock("timeout").await.unwrap();
    let start = Instant::now();
    let err = store
        .lock("timeout")
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    assert!(
        waited >= Duration::from_millis(200) && waited < PROMPT,
        "{waited:?}"
    );
    eventually("the timed-out ticket is withdrawn", || async {
        numbers(&store, "timeout").await == vec![holder.ticket()]
    })
    .await;
    holder.release().await.unwrap();
}

/// g. Renewal extends the lease: a holder that renews keeps waiters out past
/// its original lifetime.
pub async fn renew_extends_the_lease(h: &impl Harness) {
    let store = h.store();
    let g = store
        .lock("renew")
        .lifetime(Duration::from_millis(300))
        .await
        .unwrap();
    let entered = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (store, entered) = (store.clone(), entered.clone());
        tokio::spawn(async move {
            let w = store.lock("renew").wait_time(HOUR).await.unwrap();
            entered.store(true, Ordering::SeqCst);
            w.release().await.unwrap();
        })
    };
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        g.renew().await.unwrap();
    }
    assert!(
        !entered.load(Ordering::SeqCst),
        "waiter entered while the lease was renewed"
    );
    assert!(g.is_held().await.unwrap());
    g.release().await.unwrap();
    timeout(PROMPT, waiter).await.unwrap().unwrap();
    assert!(entered.load(Ordering::SeqCst));
}

/// g. A holder that runs past its lifetime learns it lost the lock.
pub async fn lease_that_ran_out_is_reported_lost(h: &impl Harness) {
    let store = h.store();
    let g = store
        .lock("lost")
        .lifetime(Duration::from_millis(150))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!g.is_held().await.unwrap());
    assert!(g.is_lost());
    assert!(matches!(
        g.renew().await.unwrap_err(),
        Error::Expired { .. }
    ));
    let next = timeout(PROMPT, store.lock("lost")).await.unwrap().unwrap();
    assert!(next.fencing_token() > g.fencing_token());
    let err = g.release().await.unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    assert!(
        next.is_held().await.unwrap(),
        "the late release must not remove the new holder"
    );
    next.release().await.unwrap();
}

/// g. Auto-renewal keeps a task that outlives its lifetime exclusive.
pub async fn auto_renew_keeps_a_long_task_exclusive(h: &impl Harness) {
    let store = h.store();
    let g = store
        .lock("auto")
        .lifetime(Duration::from_millis(300))
        .auto_renew(true)
        .await
        .unwrap();
    let err = store
        .lock("auto")
        .timeout(Duration::from_millis(1200))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "waiter got in: {err}");
    assert!(g.is_held().await.unwrap());
    assert!(!g.is_lost());
    g.release().await.unwrap();
}

/// h. Dropping a waiting lock future withdraws its ticket at once: the waiter
/// behind it is let in by the next release.
pub async fn dropped_lock_future_lets_the_next_waiter_in(h: &impl Harness) {
    let store = h.store();
    let holder = store.lock("cancel").await.unwrap();
    let cancelled = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("cancel").wait_time(HOUR).await })
    };
    eventually("the cancelled waiter queued", || async {
        numbers(&store, "cancel").await.len() == 2
    })
    .await;
    let behind = store
        .lock("cancel")
        .wait_time(HOUR)
        .enqueue()
        .await
        .unwrap();
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    eventually("the cancelled ticket is withdrawn", || async {
        numbers(&store, "cancel").await == vec![holder.ticket(), behind.ticket()]
    })
    .await;
    holder.release().await.unwrap();
    let g = timeout(PROMPT, behind.acquired()).await.unwrap().unwrap();
    g.release().await.unwrap();
}

/// h. Dropping the guard releases and wakes the next waiter.
pub async fn dropped_guard_lets_the_next_waiter_in(h: &impl Harness) {
    let store = h.store();
    let holder = store.lock("drop").await.unwrap();
    let next = store.lock("drop").wait_time(HOUR).enqueue().await.unwrap();
    drop(holder);
    let g = timeout(PROMPT, next.acquired())
        .await
        .expect("drop did not release")
        .unwrap();
    g.release().await.unwrap();
}

/// h'. A release whose future is dropped before it is polled (a `select!`
/// that took another branch, a timeout of zero) still releases: the
/// next waiter gets in.
pub async fn dropped_release_future_still_releases(h: &impl Harness) {
    let store = h.store();
    let holder = store.lock("drop-release").await.unwrap();
    let next = store
        .lock("drop-release")
        .wait_time(HOUR)
        .enqueue()
        .await
        .unwrap();
    drop(holder.release());
    let g = timeout(PROMPT, next.acquired())
        .await
        .expect("a dropped release future did not release")
        .unwrap();
    g.release().await.unwrap();
}

/// i. Errors are of a kind a caller can act on, naming what is at fault.
pub async fn error_kinds_name_the_conversation(h: &impl Harness) {
    let store = h.store();
    let err = store.lock("").await.unwrap_err();
    assert!(matches!(err, Error::InvalidId { .. }), "{err}");
    let err = store.lock("x").lifetime(Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(err, Error::Config { ref key, .. } if key == "lock_lifetime"),
        "{err}"
    );
    let _g = store.lock("named").await.unwrap();
    let err = store
        .lock("named")
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"named\""), "{err}");
}

/// Rasa's record-level API: issue, serve, finish, clean up.
pub async fn record_level_api_matches_rasa(h: &impl Harness) {
    let store = h.store();
    assert!(!store.is_someone_waiting("rasa").await.unwrap());
    let t0 = store.issue_ticket("rasa", None).await.unwrap();
    let t1 = store.issue_ticket("rasa", None).await.unwrap();
    let lock = store.get_lock("rasa").await.unwrap().unwrap();
    assert_eq!(lock.now_serving(), t0);
    assert!(!lock.is_locked(t0));
    assert!(lock.is_locked(t1));
    assert_eq!(lock.last_issued(), Some(t1));
    assert!(store.is_someone_waiting("rasa").await.unwrap());
    store.finish_serving("rasa", t0).await.unwrap();
    assert_eq!(
        store.get_lock("rasa").await.unwrap().unwrap().now_serving(),
        t1
    );
    store.cleanup("rasa", t1).await.unwrap();
    assert_eq!(
        store.get_lock("rasa").await.unwrap(),
        None,
        "cleanup drops the empty record"
    );
    let fresh = store.get_or_create_lock("rasa").await.unwrap();
    assert_eq!(fresh, LockStore::create_lock("rasa"));
    assert_eq!(
        store.get_lock("rasa").await.unwrap(),
        None,
        "get_or_create_lock does not save"
    );
}

/// Rasa's tests: the first ticket is 0; with no tickets `now_serving` is 0.
pub async fn first_ticket_is_zero_and_now_serving_zero_without_tickets(h: &impl Harness) {
    let store = h.store();
    assert_eq!(
        store
            .get_or_create_lock("zero")
            .await
            .unwrap()
            .now_serving(),
        0
    );
    let g = store.lock("zero").await.unwrap();
    assert_eq!(g.ticket(), 0);
    g.release().await.unwrap();
}

/// A record written the way Rasa writes it is read and served.
pub async fn save_lock_round_trips_a_rasa_record(h: &impl Harness) {
    let store = h.store();
    let expires = ticketlock_now() + 30.0;
    let json = format!(
        r#"{{"conversation_id": "rt", "tickets": ["{{\"number\": 4, \"expires\": {expires}}}"]}}"#
    );
    let lock = TicketLock::from_json(json.as_bytes()).unwrap();
    store.save_lock(&lock).await.unwrap();
    let back = store.get_lock("rt").await.unwrap().unwrap();
    assert_eq!(
        back.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![4]
    );
    assert!((back.tickets().next().unwrap().expires - expires).abs() < 0.001);
    let err = store
        .lock("rt")
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { .. }),
        "the Rasa holder must block: {err}"
    );
    let waiter = store.lock("rt").wait_time(HOUR).enqueue().await.unwrap();
    // 5 went to the timed-out attempt and is not issued again.
    assert_eq!(
        waiter.ticket(),
        6,
        "numbering continues after the saved tickets"
    );
    store.finish_serving("rt", 4).await.unwrap();
    let g = timeout(PROMPT, waiter.acquired()).await.unwrap().unwrap();
    g.release().await.unwrap();
    assert_eq!(store.get_lock("rt").await.unwrap(), None);
}

/// A queue holds at most `max_queue_len` live tickets: past that, issue is
/// refused with a transient `QueueFull` and the record is left as it was;
/// the bound is per handle, and expired tickets (also behind a live head)
/// do not count.
pub async fn queue_length_is_bounded(h: &impl Harness) {
    let store = h.store().with_max_queue_len(3);
    let peer = h.peer().await.with_max_queue_len(3);
    assert_eq!(store.max_queue_len(), 3);
    assert_eq!(h.store().max_queue_len(), ticketlock::DEFAULT_MAX_QUEUE_LEN);
    for (i, s) in [&store, &peer, &store].into_iter().enumerate() {
        assert_eq!(s.issue_ticket("full", Some(HOUR)).await.unwrap(), i as u64);
    }
    for s in [&store, &peer] {
        let err = s.issue_ticket("full", Some(HOUR)).await.unwrap_err();
        assert!(
            matches!(err, Error::QueueFull { ref conversation_id, limit: 3 } if conversation_id == "full"),
            "{err:?}"
        );
        assert!(err.is_transient());
        assert!(
            err.to_string().contains("\"full\"") && err.to_string().contains('3'),
            "{err}"
        );
        // lock() fails at once rather than waiting for a place.
        let err = timeout(PROMPT, s.lock("full").wait_time(HOUR))
            .await
            .expect("a full queue must not make lock() wait")
            .unwrap_err();
        assert!(matches!(err, Error::QueueFull { .. }), "{err:?}");
    }
    assert_eq!(
        numbers(&store, "full").await,
        vec![0, 1, 2],
        "nothing was added"
    );
    // Another handle with the default bound is not limited by this one's.
    assert_eq!(h.store().issue_ticket("full", Some(HOUR)).await.unwrap(), 3);
    store.finish_serving("full", 3).await.unwrap();
    // A place freed is a place to take; numbers go on.
    store.finish_serving("full", 0).await.unwrap();
    assert_eq!(store.issue_ticket("full", Some(HOUR)).await.unwrap(), 4);
    assert_eq!(numbers(&store, "full").await, vec![1, 2, 4]);
    for n in [1, 2, 4] {
        store.finish_serving("full", n).await.unwrap();
    }

    // Expired tickets do not count, even behind a live holder.
    let short = Duration::from_millis(50);
    assert_eq!(store.issue_ticket("exp", Some(HOUR)).await.unwrap(), 0);
    assert_eq!(store.issue_ticket("exp", Some(short)).await.unwrap(), 1);
    assert_eq!(store.issue_ticket("exp", Some(short)).await.unwrap(), 2);
    tokio::time::sleep(short * 3).await;
    assert_eq!(store.issue_ticket("exp", Some(HOUR)).await.unwrap(), 3);
    assert_eq!(numbers(&store, "exp").await, vec![0, 3]);
    store.delete_lock("exp").await.unwrap();

    // A limit below 1 means 1: the holder alone.
    let one = h.store().with_max_queue_len(0);
    assert_eq!(one.max_queue_len(), 1);
    let g = one.lock("one").await.unwrap();
    let err = one.issue_ticket("one", None).await.unwrap_err();
    assert!(matches!(err, Error::QueueFull { limit: 1, .. }), "{err:?}");
    g.release().await.unwrap();
}

/// A record that Lua, Python or Rasa could not read back is refused before
/// it is written, on every store alike.
pub async fn save_lock_refuses_tickets_other_clients_cannot_read(h: &impl Harness) {
    let store = h.store();
    let soon = ticketlock_now() + 30.0;
    for bad in [
        Ticket::new(0, f64::NAN),
        Ticket::new(0, f64::INFINITY),
        Ticket::new(1 << 53, soon),
    ] {
        let lock = TicketLock::with_tickets("unreadable", [bad]);
        let err = store.save_lock(&lock).await.unwrap_err();
        assert!(matches!(err, Error::CorruptRecord { .. }), "{bad:?}: {err}");
        assert_eq!(
            store.get_lock("unreadable").await.unwrap(),
            None,
            "{bad:?} was written"
        );
    }
    let fine = TicketLock::with_tickets("unreadable", [Ticket::new((1 << 53) - 1, soon)]);
    store.save_lock(&fine).await.unwrap();
    store.delete_lock("unreadable").await.unwrap();
}

fn ticketlock_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `try_lock` takes a free lock in one step, and answers `None` for a held
/// lock or one with waiters, leaving no ticket behind.
pub async fn try_lock_never_waits_and_leaves_no_ticket(h: &impl Harness) {
    let (store, peer) = (h.store(), h.peer().await);
    let id = "try-lock";
    let first = store.try_lock(id).await.unwrap().expect("a free lock");
    assert!(peer.try_lock(id).await.unwrap().is_none(), "held");
    assert_eq!(numbers(&store, id).await, vec![first.ticket()]);
    let waiter = store.lock(id).wait_time(HOUR).enqueue().await.unwrap();
    let token = first.fencing_token();
    first.release().await.unwrap();
    // The waiter is ahead: busy, though nobody holds the lock this instant.
    assert!(
        peer.try_lock(id).await.unwrap().is_none(),
        "a waiter is ahead"
    );
    let second = timeout(PROMPT, waiter.acquired()).await.unwrap().unwrap();
    assert_eq!(numbers(&store, id).await, vec![second.ticket()]);
    assert!(second.fencing_token() > token);
    let token = second.fencing_token();
    second.release().await.unwrap();
    let third = peer.try_lock(id).await.unwrap().expect("free again");
    assert!(third.fencing_token() > token);
    third.release().await.unwrap();
    assert!(store.get_lock(id).await.unwrap().is_none(), "nothing left");
}

/// `stats()` counts the guards alive and the tickets not served yet.
pub async fn stats_count_held_locks_and_waiting_tickets(h: &impl Harness) {
    let store = h.store();
    let base = store.stats();
    let a = store.lock("stats-a").await.unwrap();
    let b = store.lock("stats-b").await.unwrap();
    let w1 = store
        .lock("stats-a")
        .wait_time(HOUR)
        .enqueue()
        .await
        .unwrap();
    let w2 = store
        .lock("stats-a")
        .wait_time(HOUR)
        .enqueue()
        .await
        .unwrap();
    let now = store.stats();
    assert_eq!(now.held - base.held, 2, "{now:?}");
    assert_eq!(now.waiting - base.waiting, 2, "{now:?}");
    drop(w2);
    a.release().await.unwrap();
    let next = timeout(PROMPT, w1.acquired()).await.unwrap().unwrap();
    let now = store.stats();
    assert_eq!((now.held - base.held, now.waiting - base.waiting), (2, 0));
    next.release().await.unwrap();
    b.release().await.unwrap();
    store.flush().await;
    assert_eq!(store.stats(), base);
}
