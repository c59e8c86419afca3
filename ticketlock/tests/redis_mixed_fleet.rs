//! A Rasa process's stale writes on a record of ours (Rasa layout): Rasa
//! rewrites the whole record from what it read, so it can drop a ticket of
//! ours, bring back one we released, or give its own ticket the number of
//! one of ours. Our queue beside the record (`redis/rasa/ours.lua`) repairs
//! each, and our holders stay exclusive among themselves.

#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use server::{RedisServer, config, connection};
use ticketlock::{LockStore, RedisLockStore, Ticket, TicketLock};

async fn store(server: &RedisServer) -> LockStore {
    RedisLockStore::connect(&config(server))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
        .into()
}

fn record(con: &mut redis::Connection, key: &str) -> TicketLock {
    let raw: Vec<u8> = redis::cmd("GET").arg(key).query(con).unwrap();
    TicketLock::from_json(&raw).unwrap()
}

fn numbers(lock: &TicketLock) -> Vec<u64> {
    lock.tickets().map(|t| t.number).collect()
}

/// What Rasa's save_lock writes: its layout without our fields.
fn rasa_write(con: &mut redis::Connection, key: &str, tickets: Vec<Ticket>) {
    let lock = TicketLock::with_tickets("c", tickets);
    redis::cmd("SET")
        .arg(key)
        .arg(lock.dumps())
        .exec(con)
        .unwrap();
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_write_that_drops_our_holder_lets_no_waiter_of_ours_in() {
    let server = server!();
    let store = store(&server).await;
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let a = store.lock("c").await.unwrap();
    let b = store
        .lock("c")
        .wait_time(Duration::from_millis(20))
        .enqueue()
        .await
        .unwrap();
    assert!(!b.is_served());
    // Rasa writes back a queue without our holder (say it read the record
    // as it was before, and removed its own ticket since).
    let stale: Vec<Ticket> = record(&mut con, &key)
        .tickets()
        .copied()
        .filter(|t| t.number != a.ticket())
        .collect();
    rasa_write(&mut con, &key, stale);
    assert_eq!(numbers(&record(&mut con, &key)), [1]);

    let released = Arc::new(AtomicBool::new(false));
    let waiter = {
        let released = released.clone();
        tokio::spawn(async move {
            let guard = b.acquired().await.unwrap();
            (released.load(Ordering::SeqCst), guard)
        })
    };
    // Its looks repair the record (our holder first again) and find it held.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(a.is_held().await.unwrap(), "our holder lost its lease");
    a.renew().await.unwrap();
    let repaired = record(&mut con, &key);
    assert_eq!(numbers(&repaired), [0, 1]);
    assert_eq!(repaired.epoch(), Some(a.fencing_token()), "epoch put back");
    let token = a.fencing_token();
    released.store(true, Ordering::SeqCst);
    a.release().await.unwrap();
    let (after_release, guard) = waiter.await.unwrap();
    assert!(after_release, "our waiter entered while our holder held");
    assert!(guard.fencing_token() > token);
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_released_ticket_brought_back_by_a_stale_write_is_dropped() {
    let server = server!();
    let store = store(&server).await;
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let a = store.lock("c").await.unwrap();
    let b = store.lock("c").enqueue().await.unwrap();
    // What a Rasa process reads now and writes back after our release.
    let read: Vec<Ticket> = record(&mut con, &key).tickets().copied().collect();
    let waiter = tokio::spawn(b.acquired());
    a.release().await.unwrap();
    let b = waiter.await.unwrap().unwrap();
    rasa_write(&mut con, &key, read);
    assert_eq!(numbers(&record(&mut con, &key)), [0, 1]);

    // Our next call drops ticket 0 again: b still holds, and a newcomer
    // queues behind b alone.
    store.update_lock("c").await.unwrap();
    assert_eq!(numbers(&record(&mut con, &key)), [1]);
    assert!(b.is_held().await.unwrap());
    let c = store.lock("c").enqueue().await.unwrap();
    assert!(!c.is_served());
    assert_eq!(numbers(&record(&mut con, &key)), [1, 2]);
    let token = b.fencing_token();
    let waiter = tokio::spawn(c.acquired());
    b.release().await.unwrap();
    let c = waiter.await.unwrap().unwrap();
    assert!(c.fencing_token() > token);
    c.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rasa_ticket_numbered_like_ours_is_kept_apart_and_served_first() {
    let server = server!();
    let store = store(&server).await;
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("c");
    let a = store.lock("c").await.unwrap();
    // What a Rasa process reads before our second ticket comes.
    let read: Vec<Ticket> = record(&mut con, &key).tickets().copied().collect();
    let b = store
        .lock("c")
        .lifetime(Duration::from_secs(5))
        .wait_time(Duration::from_millis(20))
        .enqueue()
        .await
        .unwrap();
    assert_eq!(b.ticket(), 1);
    // Rasa's issue_ticket from that read: last + 1 = 1, a minute's lifetime;
    // its write drops our ticket 1.
    let mut rasa = read;
    let rasa_expires = unix_now() + 60.0;
    rasa.push(Ticket::new(1, rasa_expires));
    rasa_write(&mut con, &key, rasa);

    // Our next call puts ours back: Rasa's 1 first (ours is not served yet).
    store.update_lock("c").await.unwrap();
    let repaired = record(&mut con, &key);
    assert_eq!(numbers(&repaired), [0, 1, 1]);
    let tickets: Vec<Ticket> = repaired.tickets().copied().collect();
    assert_eq!(tickets[1].expires, rasa_expires);
    assert!(tickets[2].expires < rasa_expires - 30.0, "{tickets:?}");

    // Rasa's ticket comes first after our holder: ours waits until Rasa's
    // finish_serving removes it (the first ticket numbered 1).
    let rasa_done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let rasa_done = rasa_done.clone();
        tokio::spawn(async move {
            let guard = b.acquired().await.unwrap();
            (rasa_done.load(Ordering::SeqCst), guard)
        })
    };
    a.release().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = record(&mut con, &key);
    assert_eq!(seen.tickets().next().unwrap().expires, rasa_expires);
    rasa_done.store(true, Ordering::SeqCst);
    assert!(seen.remove_ticket_for(1));
    rasa_write(&mut con, &key, seen.tickets().copied().collect());
    let (after_rasa, guard) = waiter.await.unwrap();
    assert!(
        after_rasa,
        "ours entered while Rasa's ticket 1 headed the queue"
    );
    guard.release().await.unwrap();
}
