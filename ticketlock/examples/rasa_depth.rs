//! Hand-offs per second on one hot conversation of the Redis store (Rasa
//! layout) with `D` waiters queued, and what each script call costs the
//! server, for each depth `D` given:
//!
//! ```sh
//! redis-server --port 6390 --save '' --appendonly no &
//! cargo run --release -p ticketlock --example rasa_depth -- \
//!     redis://127.0.0.1:6390 1,10,100,500,999 10
//! ```
//!
//! `D` tasks each take the lock, release it and queue again, for the given
//! seconds (after one second of warm-up); every hand-off passes the lock to
//! the next in line while the others wait with the library's own waiting.
//! The server's figures are from `INFO commandstats` and `INFO cpu` over the
//! measured seconds (`CONFIG RESETSTAT` at the start).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ticketlock::{LockStore, LockStoreConfig};

/// `field` of an `INFO` section line such as `cmdstat_evalsha:calls=3,usec=9,...`.
fn stat(info: &str, line: &str, field: &str) -> f64 {
    info.lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| {
            l.split([':', ','])
                .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

fn cpu_of(info: &str) -> f64 {
    let value = |name: &str| {
        info.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    value("used_cpu_user") + value("used_cpu_sys")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6390".into());
    let depths: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,10,100,500,999".into())
        .split(',')
        .map(|d| d.parse())
        .collect::<Result<_, _>>()?;
    let secs: u64 = args.next().map_or(Ok(10), |s| s.parse())?;
    // INFO waits behind every queued script call: no response timeout.
    let admin = redis::Client::open(url.as_str())?;
    let mut admin = admin
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await?;
    println!("| waiters | hand-offs/s | script calls/s | us per script call | Redis CPU |");
    println!("|---|---|---|---|---|");
    for depth in depths {
        let store = Arc::new(LockStore::create(LockStoreConfig::from_url(&url)?).await?);
        let id = format!("depth-{depth}");
        let stop = Arc::new(AtomicBool::new(false));
        let handoffs = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..depth)
            .map(|_| {
                let (store, id, stop, handoffs) =
                    (store.clone(), id.clone(), stop.clone(), handoffs.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match store.lock(&id).await {
                            Ok(guard) => {
                                handoffs.fetch_add(1, Ordering::Relaxed);
                                let _ = guard.release().await;
                            }
                            Err(e) => eprintln!("lock: {e}"),
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut admin)
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut admin)
            .await?;
        let (cpu0, before, start) = (
            cpu_of(&info),
            handoffs.load(Ordering::Relaxed),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let done = handoffs.load(Ordering::Relaxed) - before;
        let elapsed = start.elapsed().as_secs_f64();
        let info: String = redis::cmd("INFO")
            .arg("all")
            .query_async(&mut admin)
            .await?;
        let calls = stat(&info, "cmdstat_evalsha:", "calls");
        let usec = stat(&info, "cmdstat_evalsha:", "usec");
        let cpu = cpu_of(&info) - cpu0;
        stop.store(true, Ordering::Relaxed);
        println!(
            "| {depth} | {:.1} | {:.0} | {:.1} | {:.0}% |",
            done as f64 / elapsed,
            calls / elapsed,
            if calls > 0.0 { usec / calls } else { 0.0 },
            100.0 * cpu / elapsed
        );
        // The waiters finish their current turn and leave.
        for t in tasks {
            t.abort();
        }
        let _: () = redis::cmd("FLUSHDB").query_async(&mut admin).await?;
    }
    Ok(())
}
