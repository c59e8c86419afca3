//! The Rasa layout's spliced writes (`redis/rasa/splice.lua`): on a record
//! nobody else wrote since we did, issue, release, grant and renew edit the
//! record's text instead of decoding and re-encoding its queue. Each write
//! here must leave exactly the record the full path writes (Rasa's bytes,
//! our fields by the same rules), and the cases the splice cannot see (an
//! expired ticket in the queue, the highest number leaving) must still be
//! handled as the full path does.

#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

use std::time::{Duration, Instant};

use server::{RedisServer, assert_canonical, config, connection, get, pttl};
use ticketlock::{LockStore, RedisLockStore, TicketLock};

/// The record at `key`: byte for byte what `TicketLock::dumps` writes for
/// it, with a TTL, and our queue beside it living at least as long.
fn canonical(con: &mut redis::Connection, key: &str) -> TicketLock {
    let lock = assert_canonical(con, key).unwrap_or_else(|| panic!("no record at {key}"));
    let ttl = pttl(con, key);
    let ours = format!("{{{key}}}:{key}:ours");
    let ours_ttl = pttl(con, &ours);
    assert!(
        ours_ttl >= ttl - 5,
        "our queue at {ours} ({ours_ttl} ms) goes before the record ({ttl} ms)"
    );
    lock
}

fn numbers(lock: &TicketLock) -> Vec<u64> {
    lock.tickets().map(|t| t.number).collect()
}

/// The short-lived ticket, and how long it lives.
const SHORT: u64 = 21;
const SHORT_LIFE: Duration = Duration::from_secs(2);

/// The queue is `model`, or `model` without the short-lived ticket once it
/// may have expired (a write that finds it expired drops it, as Rasa does).
fn queue_is(lock: &TicketLock, model: &[u64], short_issued: Instant) {
    let got = numbers(lock);
    if short_issued.elapsed() >= SHORT_LIFE && !got.contains(&SHORT) {
        let without: Vec<u64> = model.iter().copied().filter(|&n| n != SHORT).collect();
        assert_eq!(got, without);
    } else {
        assert_eq!(got, model);
    }
}

fn expires_of(lock: &TicketLock, number: u64) -> f64 {
    lock.tickets()
        .find(|t| t.number == number)
        .unwrap_or_else(|| panic!("no ticket {number}"))
        .expires
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spliced_writes_on_a_deep_queue_leave_the_records_of_the_full_path() {
    let server = server!();
    let store: LockStore = RedisLockStore::connect(&config(&server))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
        .into();
    let key = store.as_redis().unwrap().key_for("c");
    let mut con = connection(&server, 1);
    let minute = Some(Duration::from_secs(60));

    let holder = store.lock("c").await.unwrap();
    let mut model: Vec<u64> = vec![0];
    // Tickets 1 to 30 issued on the queue (21 with a short lifetime), then
    // a waiter of ours: 31.
    let mut short_issued = Instant::now() + Duration::from_secs(3600);
    for n in 1..=30u64 {
        let lifetime = if n == SHORT {
            short_issued = Instant::now();
            Some(SHORT_LIFE)
        } else {
            minute
        };
        assert_eq!(store.issue_ticket("c", lifetime).await.unwrap(), n);
        model.push(n);
        queue_is(&canonical(&mut con, &key), &model, short_issued);
    }
    let waiter = store
        .lock("c")
        .wait_time(Duration::from_secs(3600))
        .enqueue()
        .await
        .unwrap();
    assert_eq!(waiter.ticket(), 31);
    assert!(!waiter.is_served());
    model.push(31);
    let lock = canonical(&mut con, &key);
    queue_is(&lock, &model, short_issued);
    assert_eq!(lock.last_issued(), Some(31));
    let epoch = lock.epoch().expect("our record has an epoch");

    // A ticket out of the middle.
    store.finish_serving("c", 5).await.unwrap();
    model.retain(|&n| n != 5);
    queue_is(&canonical(&mut con, &key), &model, short_issued);

    // The holder's renewal: its ticket, in place, later than before.
    let before = expires_of(&canonical(&mut con, &key), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    holder.renew().await.unwrap();
    let lock = canonical(&mut con, &key);
    queue_is(&lock, &model, short_issued);
    assert!(expires_of(&lock, 0) > before, "the renewal did not extend");
    assert_eq!(lock.epoch(), Some(epoch));
    let token = holder.fencing_token();

    // The head out: the holder's release, then tickets 1 to 4.
    holder.release().await.unwrap();
    for n in 1..=4u64 {
        store.finish_serving("c", n).await.unwrap();
    }
    model.retain(|&n| n > 4);
    queue_is(&canonical(&mut con, &key), &model, short_issued);

    // Ticket 21 expires: the next write drops it with ticket 7.
    tokio::time::sleep(
        SHORT_LIFE.saturating_sub(short_issued.elapsed()) + Duration::from_millis(100),
    )
    .await;
    store.finish_serving("c", 7).await.unwrap();
    model.retain(|&n| n != 7 && n != 21);
    assert_eq!(
        numbers(&canonical(&mut con, &key)),
        model,
        "an expired ticket stayed in the queue"
    );

    // A new tail, then the highest number leaves: `last_issued` tells it.
    assert_eq!(store.issue_ticket("c", minute).await.unwrap(), 32);
    model.push(32);
    assert_eq!(numbers(&canonical(&mut con, &key)), model);
    store.finish_serving("c", 32).await.unwrap();
    model.pop();
    let lock = canonical(&mut con, &key);
    assert_eq!(numbers(&lock), model);
    assert_eq!(
        lock.last_issued(),
        Some(32),
        "last_issued lost with ticket 32"
    );
    assert_eq!(store.issue_ticket("c", minute).await.unwrap(), 33);
    model.push(33);
    let lock = canonical(&mut con, &key);
    assert_eq!(numbers(&lock), model);
    assert_eq!(lock.last_issued(), Some(33));

    // Everything ahead of our waiter goes: it is granted, ahead of 33.
    for n in model.clone() {
        if n < 31 {
            store.finish_serving("c", n).await.unwrap();
        }
    }
    model.retain(|&n| n >= 31);
    assert_eq!(numbers(&canonical(&mut con, &key)), model);
    let guard = waiter.acquired().await.unwrap();
    assert!(guard.fencing_token() > token, "fencing token went back");
    let lock = canonical(&mut con, &key);
    assert_eq!(numbers(&lock), [31, 33]);
    assert!(guard.is_held().await.unwrap());
    guard.release().await.unwrap();
    let lock = canonical(&mut con, &key);
    assert_eq!(numbers(&lock), [33]);
    assert_eq!(lock.epoch(), Some(epoch));
    store.finish_serving("c", 33).await.unwrap();
    assert_eq!(
        get(&mut con, &key),
        None,
        "the record goes with its last ticket"
    );
}
