//! A fixed amount of work for instruction counting: `N` uncontended
//! lock/release cycles (or record encodings) on a current-thread runtime,
//! all inside `measured`, so that callgrind can count that function alone:
//!
//! ```sh
//! cargo build --release -p ticketlock --example cycle_cost
//! valgrind --tool=callgrind --toggle-collect='cycle_cost::measured*' \
//!     $CARGO_TARGET_DIR/release/examples/cycle_cost ticketlock 100000
//! ```
//!
//! Instructions collected divided by `N` is the cost of one cycle; unlike a
//! timing it does not move with the load of a shared machine. Modes:
//! `ticketlock` (the in-memory store), `keyed` (the keyed `tokio::sync::Mutex`
//! map of the bench's baseline), `encode1` and `encode10` (a record with 1 or
//! 10 tickets), `float` (one `Ticket::dumps`), `redis` and `redis-queued`
//! (cycles on the Redis store at `TICKETLOCK_REDIS`, free or handed over),
//! `wire` (the client side of the bench's Redis baseline).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use ticketlock::{LockStore, Ticket, TicketLock};
use tokio::sync::OwnedMutexGuard;

/// Writes the 36-character id of conversation `n` (as the bench does).
fn write_id(buf: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"4f1c9d0e-0000-4000-8000-000000000000";
    for (i, c) in out[24..].iter_mut().enumerate() {
        *c = HEX[(n >> (44 - 4 * i) & 0xf) as usize];
    }
    buf.clear();
    buf.push_str(std::str::from_utf8(&out).unwrap_or_default());
}

type Map = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

async fn keyed_cycle(map: &Mutex<Map>, key: &str) {
    let m = {
        let mut map = map.lock().expect("not poisoned");
        match map.get(key) {
            Some(m) => m.clone(),
            None => map.entry(key.to_owned()).or_default().clone(),
        }
    };
    let guard = m.lock_owned().await;
    let mut map = map.lock().expect("not poisoned");
    let unused = Arc::strong_count(OwnedMutexGuard::mutex(&guard)) == 2;
    drop(guard);
    if unused {
        map.remove(key);
    }
}

/// The counted run (callgrind's `--toggle-collect` names it).
#[inline(never)]
fn measured(rt: &tokio::runtime::Runtime, mode: &str, n: u64) {
    work(rt, mode, n);
}

#[inline(never)]
fn work(rt: &tokio::runtime::Runtime, mode: &str, n: u64) {
    let mut buf = String::with_capacity(40);
    match mode {
        "ticketlock" => {
            let store = LockStore::in_memory();
            rt.block_on(async {
                for i in 0..n {
                    write_id(&mut buf, i);
                    let guard = store.lock(black_box(&buf)).await.expect("a free lock");
                    guard.release().await.expect("a held lock");
                }
            });
        }
        "redis" | "redis-queued" => {
            // The client's side of Redis cycles (the server's is counted by
            // running redis-server itself under callgrind). `redis-queued`
            // keeps a holder on each conversation, so that every issue
            // queues behind it and every release hands over.
            let url = std::env::var("TICKETLOCK_REDIS").unwrap_or_else(|_| {
                eprintln!("set TICKETLOCK_REDIS=redis://host:port/db");
                std::process::exit(2);
            });
            let queued = mode == "redis-queued";
            rt.block_on(async {
                let config = ticketlock::LockStoreConfig::from_url(&url).expect("a valid URL");
                let store = LockStore::create(config).await.expect("a reachable Redis");
                for i in 0..n {
                    write_id(&mut buf, i);
                    if queued {
                        let holder = store.lock(&buf).await.expect("a free lock");
                        let waiter = store.lock(&buf).enqueue().await.expect("a ticket");
                        holder.release().await.expect("a held lock");
                        let guard = waiter.acquired().await.expect("handed over");
                        guard.release().await.expect("a held lock");
                    } else {
                        let guard = store.lock(black_box(&buf)).await.expect("a free lock");
                        guard.release().await.expect("a held lock");
                    }
                }
            });
        }
        "wire" => {
            // The Redis baseline's client side: two EVALSHA of `return 1`
            // per cycle on one multiplexed connection.
            let url = std::env::var("TICKETLOCK_REDIS").unwrap_or_else(|_| {
                eprintln!("set TICKETLOCK_REDIS=redis://host:port/db");
                std::process::exit(2);
            });
            rt.block_on(async {
                let client = redis::Client::open(url.as_str()).expect("a valid URL");
                let mut con = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("a reachable Redis");
                let script = redis::Script::new("return 1");
                for i in 0..n {
                    write_id(&mut buf, i);
                    for _ in 0..2 {
                        let one: i64 = script
                            .key(black_box(&buf))
                            .invoke_async(&mut con)
                            .await
                            .expect("a reply");
                        black_box(one);
                    }
                }
            });
        }
        "keyed" => {
            let map = Mutex::new(Map::new());
            rt.block_on(async {
                for i in 0..n {
                    write_id(&mut buf, i);
                    keyed_cycle(&map, black_box(&buf)).await;
                }
            });
        }
        "encode1" | "encode10" => {
            let k = if mode == "encode1" { 1 } else { 10 };
            let lock = TicketLock::with_tickets(
                "4f1c9d0e-0000-4000-8000-00000000002a",
                (0..k).map(|i| Ticket::new(i, 1_795_892_618.747_127_5 + i as f64 * 0.001)),
            );
            for _ in 0..n {
                black_box(black_box(&lock).dumps());
            }
        }
        "float" => {
            for i in 0..n {
                black_box(Ticket::new(0, 1_795_892_618.747_127_5 + i as f64 * 1e-6).dumps());
            }
        }
        other => {
            eprintln!("unknown mode {other:?}: use ticketlock, keyed, encode1, encode10 or float");
            std::process::exit(2);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "ticketlock".into());
    let n: u64 = match args.next().map(|s| s.parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("N must be a whole number: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // Warm up outside the measured function: first allocations, lazy statics.
    work(&rt, &mode, n / 10);
    measured(&rt, &mode, n);
}
