//! Micro-benchmarks of the hot paths: the record format (encode, decode)
//! and an uncontended in-memory lock/release cycle, beside the keyed
//! `tokio::sync::Mutex` map a Rust user would otherwise write.
//!
//! `cargo bench -p ticketlock --bench hot_paths`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ticketlock::{LockStore, Ticket, TicketLock};
use tokio::sync::OwnedMutexGuard;

/// A record as Rasa writes it, with `n` tickets.
fn record(n: u64) -> TicketLock {
    TicketLock::with_tickets(
        "4f1c9d0e-0000-4000-8000-00000000002a",
        (0..n).map(|i| Ticket::new(i, 1_795_892_618.747_127_5 + i as f64)),
    )
}

fn record_format(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    for n in [1, 10] {
        let lock = record(n);
        let json = lock.dumps();
        g.bench_with_input(BenchmarkId::new("encode", n), &lock, |b, l| {
            b.iter(|| black_box(l).dumps())
        });
        g.bench_with_input(BenchmarkId::new("decode", n), &json, |b, j| {
            b.iter(|| TicketLock::from_json(black_box(j.as_bytes())).expect("a valid record"))
        });
    }
    g.finish();
}

/// The baseline: per-key `tokio::sync::Mutex`es in a map, entries removed
/// when unused (as the store removes an empty conversation).
#[derive(Default)]
struct KeyedMutex {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedMutex {
    async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let m = self
            .map
            .lock()
            .expect("not poisoned")
            .entry(key.to_owned())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    fn release(&self, key: &str, guard: OwnedMutexGuard<()>) {
        let mut map = self.map.lock().expect("not poisoned");
        let unused = Arc::strong_count(OwnedMutexGuard::mutex(&guard)) == 2;
        drop(guard);
        if unused {
            map.remove(key);
        }
    }
}

fn lock_release(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let id = "4f1c9d0e-0000-4000-8000-00000000002a";
    let mut g = c.benchmark_group("uncontended_cycle");
    let store = LockStore::in_memory();
    g.bench_function("ticketlock_in_memory", |b| {
        b.to_async(&rt).iter(|| async {
            let guard = store.lock(black_box(id)).await.expect("free lock");
            guard.release().await.expect("held lock");
        })
    });
    let keyed = KeyedMutex::default();
    g.bench_function("keyed_tokio_mutex", |b| {
        b.to_async(&rt).iter(|| async {
            let guard = keyed.lock(black_box(id)).await;
            keyed.release(id, guard);
        })
    });
    g.finish();
}

criterion_group!(benches, record_format, lock_release);
criterion_main!(benches);
