//! The store under test (one per layout measured) and the baselines'
//! connections to its server.

use std::path::Path;

use anyhow::Context as _;
use ticketlock::{LockStore, LockStoreConfig, RedisConfig};

use super::floor::Floor;
use super::layout::{self, Layout, LayoutChoice};
use super::plan::Plan;
use super::setnx::SetNx;
use super::wire::{Wire, client};
use super::{BenchArgs, StoreKind, Workload, fresh_tag};

/// The store under test, and what its baseline needs.
pub(super) enum Target {
    /// A new in-memory store (and keyed map) for every side of every run.
    Memory,
    Redis(RedisTarget),
}

pub(super) struct RedisTarget {
    /// The stores under test: one per layout measured.
    pub(super) stores: Vec<(Option<Layout>, LockStore)>,
    pub(super) wire: Wire,
    pub(super) setnx: SetNx,
    /// The FIFO floor, on a standalone server.
    pub(super) floor: Option<Box<Floor>>,
}

/// Where the Redis server is named.
#[derive(Debug, Clone, Copy)]
enum RedisSource<'a> {
    Url(&'a str, Layout),
    Endpoints(&'a Path),
}

impl Target {
    pub(super) async fn open(args: &BenchArgs) -> anyhow::Result<Target> {
        let sources: Vec<RedisSource> = match (&args.redis, &args.endpoints, args.store) {
            (_, _, StoreKind::Memory) => return Ok(Target::Memory),
            (Some(url), _, _) => args
                .layout
                .unwrap_or(LayoutChoice::Rasa)
                .layouts()
                .into_iter()
                .map(|l| RedisSource::Url(url, l))
                .collect(),
            (None, Some(file), _) => vec![RedisSource::Endpoints(file)],
            (None, None, _) => anyhow::bail!("--store redis needs --redis URL or --endpoints FILE"),
        };
        let mut stores = Vec::new();
        let mut config = None;
        for source in sources {
            let (store, redis) = open_redis(source).await?;
            let layout = match source {
                RedisSource::Url(_, l) => Some(l),
                RedisSource::Endpoints(_) => None,
            };
            stores.push((layout, store));
            config.get_or_insert(redis);
        }
        let config = config.context("bench: no store to measure")?;
        let wire = Wire::open(&config).await?;
        let setnx = SetNx::new(&wire, fresh_tag());
        // The floor is a reference, not a side under test: a server it
        // cannot run on (no RESP3 before Redis 6) is benched without it.
        let floor = if args.workload == Workload::Contended && wire.is_standalone() {
            match Floor::open(&wire, &client(&config)?, fresh_tag()).await {
                Ok(floor) => Some(Box::new(floor)),
                Err(e) => {
                    eprintln!("ticketlock: bench: {e:#}; running without the FIFO floor");
                    None
                }
            }
        } else {
            None
        };
        Ok(Target::Redis(RedisTarget {
            stores,
            wire,
            setnx,
            floor,
        }))
    }

    /// The stores under test, with their layouts.
    pub(super) fn stores(&self) -> Vec<(Option<Layout>, LockStore)> {
        match self {
            Target::Memory => vec![(None, LockStore::in_memory())],
            Target::Redis(r) => r.stores.clone(),
        }
    }

    /// The baseline's connection, which also reads the server's CPU.
    pub(super) fn wire(&self) -> Option<&Wire> {
        match self {
            Target::Memory => None,
            Target::Redis(r) => Some(&r.wire),
        }
    }

    /// The `SET NX` lock, for the workloads that compare with it.
    pub(super) fn setnx(&self, plan: &Plan) -> Option<&SetNx> {
        match self {
            Target::Redis(r)
                if matches!(plan.workload, Workload::Throughput | Workload::Contended) =>
            {
                Some(&r.setnx)
            }
            _ => None,
        }
    }

    /// The FIFO floor, opened only for the `contended` workload on a
    /// standalone server.
    pub(super) fn floor(&self) -> Option<&Floor> {
        match self {
            Target::Redis(r) => r.floor.as_deref(),
            Target::Memory => None,
        }
    }
}

/// The Redis store named by `source`, and its configuration (for the
/// baseline's own connection).
async fn open_redis(source: RedisSource<'_>) -> anyhow::Result<(LockStore, RedisConfig)> {
    let (config, redis) = match source {
        RedisSource::Url(url, layout) => layout::config(url, layout)?,
        RedisSource::Endpoints(file) => {
            let config = LockStoreConfig::from_endpoints_file(file)?;
            let LockStoreConfig::Redis(redis) = &config else {
                anyhow::bail!(
                    "--store redis: {} does not configure a Redis lock store (its lock_store type is in-memory)",
                    file.display()
                );
            };
            let redis = redis.clone();
            (config, redis)
        }
    };
    let store = LockStore::create(config).await?;
    Ok((store, redis))
}
