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
//! `--repeat` runs. With `--json`, one object per line in the CLI's style
//! (`crate::json`): each throughput run (`kind: "run"`), then the medians
//! (`kind: "median"`) of throughput, hand-off and each queue depth.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
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

/// What the baseline of the throughput measure is, in words.
const BASELINE: &str = "INSERT ... RETURNING + DELETE, 2 transactions per cycle";

/// One line of `--json`: a throughput run or a median.
#[derive(Serialize)]
struct Line<'a> {
    kind: &'static str,
    workload: &'static str,
    store: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rounds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    depth: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cycles_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_cycles_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<&'static str>,
    /// Cost of one cycle at this depth over its cost at depth 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_vs_depth_1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    handoff_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_average: Option<&'a [f64]>,
}

impl Line<'_> {
    fn new(kind: &'static str, workload: &'static str) -> Self {
        Line {
            kind,
            workload,
            store: "postgres",
            run: None,
            runs: None,
            messages: None,
            concurrency: None,
            rounds: None,
            depth: None,
            cycles_per_s: None,
            baseline_cycles_per_s: None,
            ratio: None,
            baseline: None,
            cost_vs_depth_1: None,
            handoff_p50_us: None,
            load_average: None,
        }
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
        work: std::time::Duration::ZERO,
    };
    let json = args.json;
    let load: Vec<f64> = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    if !json {
        println!(
            "postgres bench: {} ({messages} cycles x {repeat} runs, concurrency {concurrency}; \
             load average {})",
            store.describe(),
            load.iter()
                .map(f64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let throughput = |kind, a: f64, b: f64, r: f64| Line {
        messages: Some(messages),
        concurrency: Some(concurrency),
        cycles_per_s: Some(a),
        baseline_cycles_per_s: Some(b),
        ratio: Some(r),
        baseline: Some(BASELINE),
        ..Line::new(kind, "throughput")
    };

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
        if json {
            crate::json::print(&Line {
                run: Some(run + 1),
                ..throughput("run", a, b, a / b)
            })?;
        } else {
            println!(
                "run {}: lock+release {a:.0} cycles/s, bare transactions {b:.0} cycles/s, \
                 ratio {:.3}",
                run + 1,
                a / b
            );
        }
        ours.push(a);
        theirs.push(b);
        ratios.push(a / b);
    }
    let (a, b, r) = (median(ours), median(theirs), median(ratios));
    if json {
        crate::json::print(&Line {
            runs: Some(repeat),
            load_average: Some(&load),
            ..throughput("median", a, b, r)
        })?;
    } else {
        println!(
            "throughput: median {a:.0} cycles/s vs baseline {b:.0} cycles/s (INSERT ... \
             RETURNING + DELETE), median ratio {r:.3}"
        );
    }

    let mut p50s = Vec::new();
    for _ in 0..repeat {
        let side = handoff::run(&store, rounds, fresh_tag(), "handoff", &hidden).await?;
        p50s.push(side.handoff.map_or(f64::NAN, |s| s.p50));
    }
    let p50 = median(p50s);
    if json {
        crate::json::print(&Line {
            runs: Some(repeat),
            rounds: Some(rounds),
            handoff_p50_us: Some(p50),
            ..Line::new("median", "handoff")
        })?;
    } else {
        println!("handoff: median p50 {p50:.0} us ({rounds} rounds x {repeat} runs)");
    }

    let mut per_depth = Vec::new();
    for depth in DEPTHS {
        let rate = depth_rate(&store, depth, messages / 5, repeat).await?;
        per_depth.push(rate);
        let cost = per_depth[0] / rate;
        if json {
            crate::json::print(&Line {
                runs: Some(repeat),
                messages: Some(messages / 5),
                depth: Some(depth),
                cycles_per_s: Some(rate),
                cost_vs_depth_1: Some(cost),
                ..Line::new("median", "queue_depth")
            })?;
        } else {
            println!(
                "queue depth {depth}: {rate:.0} issue+withdraw cycles/s, {cost:.2}x the cost at \
                 depth 1"
            );
        }
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
