//! `ticketlock bench --postgres URL`: the PostgreSQL store against the
//! cheapest transactions the same server can do, in the same run.
//!
//! - Throughput: lock-then-release cycles, each on its own conversation,
//!   at `--concurrency`; the baseline does the same number of bare
//!   transactions, one `INSERT ... RETURNING` and one `DELETE` per cycle,
//!   over as many connections as the store's pool, each one round trip
//!   (extended protocol, no named statement) as the store's are.
//! - Hand-off: one holder, one parked waiter; time from the release call to
//!   the waiter's entry (a NOTIFY delivered at commit).
//! - Queue depth: the cost of a newcomer's issue and withdrawal on
//!   conversations already holding 1, 100 and 1,000 live tickets.
//!
//! Runs alternate which side goes first; each figure is the median of
//! `--repeat` runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use super::cycles::{self, Cycles};
use super::handoff;
use super::locker::Locker;
use super::progress::Progress;
use super::{BenchArgs, fresh_tag};
use ticketlock::{LockStore, LockStoreConfig};

/// Connections of the baseline: as many as the store's pool.
const BASELINE_CONNECTIONS: usize = 4;
/// Queue depths measured.
const DEPTHS: [u64; 3] = [1, 100, 1000];
/// Conversations (and tasks) of the depth measure.
const DEPTH_CONVERSATIONS: u64 = 4;

/// The bare-transaction baseline: a pool of plain clients.
#[derive(Clone)]
struct BareTx {
    clients: Arc<Vec<Client>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

impl BareTx {
    async fn open(url: &str) -> anyhow::Result<BareTx> {
        let mut clients = Vec::new();
        for _ in 0..BASELINE_CONNECTIONS {
            let (client, connection) = tokio_postgres::connect(url, NoTls)
                .await
                .context("bench: the baseline cannot connect (it speaks plain TCP only)")?;
            tokio::spawn(connection);
            clients.push(client);
        }
        clients[0]
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS ticketlock_bench_baseline \
                 (n bigserial PRIMARY KEY, id text NOT NULL)",
            )
            .await?;
        Ok(BareTx {
            clients: Arc::new(clients),
            next: Arc::default(),
        })
    }

    fn client(&self) -> &Client {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }

    async fn drop_table(&self) {
        let _ = self.clients[0]
            .batch_execute("DROP TABLE IF EXISTS ticketlock_bench_baseline")
            .await;
    }
}

impl Locker for BareTx {
    type Guard = i64;

    async fn lock(&self, id: &str) -> anyhow::Result<i64> {
        let row = self
            .client()
            .query_typed_one(
                "INSERT INTO ticketlock_bench_baseline (id) VALUES ($1) RETURNING n",
                &[(&id, Type::TEXT)],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn release(&self, _: &str, n: i64) -> anyhow::Result<()> {
        self.client()
            .query_typed(
                "DELETE FROM ticketlock_bench_baseline WHERE n = $1",
                &[(&n, Type::INT8)],
            )
            .await?;
        Ok(())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the PostgreSQL bench and prints its figures.
pub(crate) async fn run(args: &BenchArgs, url: &str) -> anyhow::Result<()> {
    let LockStoreConfig::Postgres(_) = LockStoreConfig::from_url(url)? else {
        return Err(crate::exit::coded(
            crate::exit::USAGE,
            "bench: --postgres needs a postgresql:// URL",
        ));
    };
    let store = LockStore::create(LockStoreConfig::from_url(url)?).await?;
    let base = BareTx::open(url).await?;
    let messages = args.messages.unwrap_or(5_000);
    let concurrency = args.concurrency.unwrap_or(32) as usize;
    let rounds = args.rounds.unwrap_or(1_000);
    let repeat = args.repeat.unwrap_or(super::DEFAULT_REPEAT) as usize;
    let hidden = Progress::hidden();
    let plan = Cycles {
        messages,
        concurrency,
        conversations: None,
        record_waits: false,
        record_handoffs: false,
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "postgres bench: {} ({messages} cycles x {repeat} runs, concurrency {concurrency}; \
         load average {})",
        store.describe(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Warm both sides up.
    let warm = Cycles {
        messages: (messages / 10).max(1),
        ..plan
    };
    cycles::run(&store, warm, fresh_tag(), "warmup", &hidden).await?;
    cycles::run(&base, warm, fresh_tag(), "warmup", &hidden).await?;

    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..repeat {
        let (a, b) = if run % 2 == 0 {
            let a = cycles::run(&store, plan, fresh_tag(), "ticketlock", &hidden).await?;
            let b = cycles::run(&base, plan, fresh_tag(), "baseline", &hidden).await?;
            (a, b)
        } else {
            let b = cycles::run(&base, plan, fresh_tag(), "baseline", &hidden).await?;
            let a = cycles::run(&store, plan, fresh_tag(), "ticketlock", &hidden).await?;
            (a, b)
        };
        let (a, b) = (a.cycles_per_s(), b.cycles_per_s());
        println!(
            "run {}: lock+release {a:.0} cycles/s, bare transactions {b:.0} cycles/s, ratio {:.3}",
            run + 1,
            a / b
        );
        ours.push(a);
        theirs.push(b);
        ratios.push(a / b);
    }
    println!(
        "throughput: median {:.0} cycles/s vs baseline {:.0} cycles/s (INSERT ... RETURNING + \
         DELETE), median ratio {:.3}",
        median(ours),
        median(theirs),
        median(ratios)
    );

    let mut p50s = Vec::new();
    for _ in 0..repeat {
        let side = handoff::run(&store, rounds, fresh_tag(), "handoff", &hidden).await?;
        p50s.push(side.handoff.map_or(f64::NAN, |s| s.p50));
    }
    println!(
        "handoff: median p50 {:.0} us ({rounds} rounds x {repeat} runs)",
        median(p50s)
    );

    let mut per_depth = Vec::new();
    for depth in DEPTHS {
        let rate = depth_rate(&store, depth, messages / 5, repeat).await?;
        per_depth.push(rate);
        println!(
            "queue depth {depth}: {rate:.0} issue+withdraw cycles/s, {:.2}x the cost at depth 1",
            per_depth[0] / rate
        );
    }
    base.drop_table().await;
    store.flush().await;
    Ok(())
}

/// Median newcomer cycles (issue a ticket, withdraw it) per second on
/// conversations holding `depth` live tickets, one task per conversation.
async fn depth_rate(
    store: &LockStore,
    depth: u64,
    cycles: u64,
    repeat: usize,
) -> anyhow::Result<f64> {
    // Room for the queue and the newcomer.
    let store = &store.clone().with_max_queue_len(depth as usize + 1);
    let tag = fresh_tag();
    let ids: Vec<String> = (0..DEPTH_CONVERSATIONS)
        .map(|n| cycles::id(tag, n))
        .collect();
    let lifetime = Some(Duration::from_secs(3600));
    for id in &ids {
        for _ in 0..depth {
            store.issue_ticket(id, lifetime).await?;
        }
    }
    let per_task = (cycles / DEPTH_CONVERSATIONS).max(1);
    let mut rates = Vec::new();
    for _ in 0..repeat {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids.clone() {
            let store = store.clone();
            tasks.spawn(async move {
                for _ in 0..per_task {
                    let n = store.issue_ticket(&id, lifetime).await?;
                    store.finish_serving(&id, n).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        rates.push((per_task * DEPTH_CONVERSATIONS) as f64 / started.elapsed().as_secs_f64());
    }
    for id in &ids {
        let live = store
            .get_lock(id)
            .await?
            .map_or(0, |l| l.tickets().len() as u64);
        anyhow::ensure!(
            live == depth,
            "bench: {id} holds {live} tickets, not {depth}"
        );
        store.delete_lock(id).await?;
    }
    Ok(median(rates))
}
