//! The blocking API: threads take locks without an async runtime of
//! their own; fairness and exclusion are the async store's.

#[cfg(feature = "redis")]
#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ticketlock::LockOptions;
use ticketlock::blocking::LockStore;

/// Threads contending for one conversation hold it one at a time, and
/// enter in the order their tickets were issued.
fn threads_take_turns(store: &LockStore) {
    let first = store.lock("c").unwrap();
    assert!(store.try_lock("c").unwrap().is_none(), "held");
    let inside = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (mine, inside, order) = (store.clone(), inside.clone(), order.clone());
            let t = std::thread::spawn(move || {
                let store = mine;
                let mut options = LockOptions::new(Duration::from_secs(60));
                options.wait_time = Duration::from_secs(3600);
                let guard = store.lock_with("c", options).unwrap();
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                order.lock().unwrap().push(i);
                std::thread::sleep(Duration::from_millis(5));
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().unwrap();
            });
            // The next thread asks only once this one waits.
            while store.stats().waiting < i as u64 + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            t
        })
        .collect();
    assert_eq!(store.stats().held, 1);
    first.release().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    // Dropping a guard releases it at once.
    drop(store.lock("c").unwrap());
    assert!(store.try_lock("c").unwrap().is_some());
    assert_eq!(store.stats().held + store.stats().waiting, 0);
}

#[test]
fn in_memory_threads_take_turns_in_ticket_order() {
    threads_take_turns(&LockStore::in_memory().unwrap());
}

#[cfg(feature = "redis")]
#[test]
fn redis_threads_take_turns_in_ticket_order() {
    use server::RedisServer;
    let server = server!();
    let config = ticketlock::LockStoreConfig::Redis(server::config(&server));
    let store = LockStore::create(config).unwrap();
    threads_take_turns(&store);
}
