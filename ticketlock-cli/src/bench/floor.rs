//! The floor of a pushed FIFO hand-off on one Redis server: the fewest
//! commands such a lock can cost, as a reference for the `contended`
//! workload (not a usable lock).
//!
//! A ticket is `INCR` of a counter and `RPUSH` of its number on a list;
//! the first in the list holds. The release is `LPOP` and a `PUBLISH` of
//! the next number on the process's channel, which a RESP3 connection
//! delivers to that ticket's waiter from the task that reads the socket,
//! as ticketlock's own wake-ups are delivered. So a hand-off costs one
//! script and one push, like ours, but each script runs 3 or 4 commands
//! where ours run about a dozen. It has no expiry (a dead holder blocks
//! the key for ever), no retries and no fencing: what it measures is how
//! far our server time per script is from the least a FIFO hand-off needs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind};
use tokio::sync::oneshot;

use super::locker::Locker;
use super::wire::{CALL_TIMEOUT, Con, Wire};

/// `KEYS[1]`: the key's prefix. Returns `{number, 1 if it holds}`.
const ISSUE: &str = "local n = redis.call('INCR', KEYS[1] .. 'n') \
                     redis.call('RPUSH', KEYS[1] .. 'q', n) \
                     if redis.call('LINDEX', KEYS[1] .. 'q', 0) == tostring(n) then \
                     return {n, 1} end return {n, 0}";

/// `KEYS[1]`: the key's prefix, `ARGV[1]`: the holder's number, `ARGV[2]`:
/// the waiters' channel. Pushes `<number> <prefix>` of the next ticket;
/// the last release deletes both keys. Returns 1, or 0 when `ARGV[1]` did
/// not hold.
const RELEASE: &str = "if redis.call('LINDEX', KEYS[1] .. 'q', 0) ~= ARGV[1] then return 0 end \
                       redis.call('LPOP', KEYS[1] .. 'q') \
                       local next = redis.call('LINDEX', KEYS[1] .. 'q', 0) \
                       if next then redis.call('PUBLISH', ARGV[2], next .. ' ' .. KEYS[1]) \
                       else redis.call('DEL', KEYS[1] .. 'n', KEYS[1] .. 'q') end \
                       return 1";

/// What the baseline names in reports.
pub(crate) const NAME: &str =
    "FIFO floor (3-command scripts, one push per hand-off; no expiry: not a usable lock)";

/// The waiters of this process: the push each waits for (`<number>
/// <prefix>`), and the pushes that came before their waiter asked.
#[derive(Default)]
struct Waiters {
    waiting: HashMap<String, oneshot::Sender<()>>,
    early: HashSet<String>,
}

/// The floor lock of one process.
#[derive(Clone)]
pub(crate) struct Floor {
    /// The baseline's connection, as the SET NX lock's.
    con: Con,
    /// Keeps the subscribed connection (and so its pushes) alive.
    _pushes: MultiplexedConnection,
    waiters: Arc<Mutex<Waiters>>,
    channel: Arc<str>,
    issue: Arc<redis::Script>,
    release: Arc<redis::Script>,
}

/// What [`Floor::lock`] hands the holder: its number.
pub(crate) struct Number(String);

impl Floor {
    /// Calls on `wire`'s connection; connects to the server of `client`
    /// for the pushes and subscribes this process's channel (named with
    /// `tag`).
    pub(crate) async fn open(
        wire: &Wire,
        client: &redis::Client,
        tag: u32,
    ) -> anyhow::Result<Floor> {
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let sender = {
            let waiters = waiters.clone();
            move |push: PushInfo| {
                if push.kind == PushKind::Message
                    && let [_, payload] = &push.data[..]
                    && let Ok(payload) = redis::from_redis_value_ref::<String>(payload)
                {
                    let mut w = waiters.lock().unwrap_or_else(|p| p.into_inner());
                    match w.waiting.remove(&payload) {
                        Some(tx) => {
                            let _ = tx.send(());
                        }
                        None => {
                            w.early.insert(payload);
                        }
                    }
                }
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let resp3 = redis::Client::open(info.set_redis_settings(settings))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_push_sender(sender);
        let mut pushes = resp3
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .context("FIFO floor: connecting for pushes (needs RESP3, Redis 6+)")?;
        let channel: Arc<str> = format!("ticketlock-bench:floor:w:{tag:08x}").into();
        pushes
            .subscribe(&*channel)
            .await
            .context("FIFO floor: SUBSCRIBE")?;
        Ok(Floor {
            con: wire.con(),
            _pushes: pushes,
            waiters,
            channel,
            issue: Arc::new(redis::Script::new(ISSUE)),
            release: Arc::new(redis::Script::new(RELEASE)),
        })
    }

    /// The prefix of conversation `id`'s keys.
    pub(crate) fn prefix(id: &str) -> String {
        format!("ticketlock-bench:floor:{id}:")
    }

    /// The wake-up for `push` (`<number> <prefix>`), or none when it
    /// already came.
    fn register(&self, push: String) -> Option<oneshot::Receiver<()>> {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if w.early.remove(&push) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        w.waiting.insert(push, tx);
        Some(rx)
    }
}

impl Locker for Floor {
    type Guard = Number;

    async fn lock(&self, id: &str) -> anyhow::Result<Number> {
        let prefix = Floor::prefix(id);
        let (number, holds): (i64, i64) = self
            .issue
            .key(&prefix)
            .invoke_async(&mut self.con.clone())
            .await
            .context("FIFO floor: issue")?;
        let number = number.to_string();
        if holds == 0
            && let Some(woken) = self.register(format!("{number} {prefix}"))
        {
            tokio::time::timeout(CALL_TIMEOUT, woken)
                .await
                .with_context(|| {
                    format!(
                        "FIFO floor: ticket {number} of {id} was not woken within {CALL_TIMEOUT:?}"
                    )
                })?
                .context("FIFO floor: the push connection is gone")?;
        }
        Ok(Number(number))
    }

    async fn release(&self, id: &str, Number(number): Number) -> anyhow::Result<()> {
        let released: i64 = self
            .release
            .key(Floor::prefix(id))
            .arg(&number)
            .arg(&*self.channel)
            .invoke_async(&mut self.con.clone())
            .await
            .context("FIFO floor: release")?;
        anyhow::ensure!(
            released == 1,
            "FIFO floor: ticket {number} of {id} did not hold the lock at release"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ticketlock_test_support::RedisServer;
    use tokio::task::JoinSet;

    use super::super::locker::checks;
    use super::super::wire::{client, test_server};
    use super::*;

    async fn floor() -> Option<(RedisServer, Floor)> {
        let (server, config) = test_server()?;
        let client = client(&config).unwrap();
        let wire = Wire::connect(&client).await.unwrap();
        let lock = Floor::open(&wire, &client, 7).await.unwrap();
        Some((server, lock))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_floor_lock_is_exclusive_and_leaves_no_key() {
        let Some((server, lock)) = floor().await else {
            return;
        };
        checks::is_exclusive(&lock, "c").await;
        assert_eq!(server.cli(&["DBSIZE"]), "0");
    }

    /// Waiters enter in the order of their tickets, each woken by the
    /// release before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_enter_in_ticket_order() {
        let Some((server, lock)) = floor().await else {
            return;
        };
        let first = lock.lock("c").await.unwrap();
        assert_eq!(first.0, "1");
        let entered = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        for i in 2..=5 {
            let (lock, entered) = (lock.clone(), entered.clone());
            tasks.spawn(async move {
                let held = lock.lock("c").await.unwrap();
                entered.lock().unwrap().push(held.0.clone());
                lock.release("c", held).await.unwrap();
            });
            // Each waiter takes its ticket before the next one is started.
            let queue = Floor::prefix("c") + "q";
            let mut tries = 0;
            while server.cli(&["LLEN", &queue]) != i.to_string() {
                tries += 1;
                assert!(tries < 400, "waiter {i} took no ticket within 2 s");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        lock.release("c", first).await.unwrap();
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        assert_eq!(*entered.lock().unwrap(), ["2", "3", "4", "5"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_release_by_a_ticket_that_does_not_hold_is_an_error_and_leaves_the_holder() {
        let Some((server, lock)) = floor().await else {
            return;
        };
        let held = lock.lock("c").await.unwrap();
        let err = lock
            .release("c", Number("9".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not hold"), "{err}");
        let queue = Floor::prefix("c") + "q";
        assert_eq!(server.cli(&["LRANGE", &queue, "0", "-1"]), held.0);
        lock.release("c", held).await.unwrap();
        assert_eq!(server.cli(&["DBSIZE"]), "0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_contended_workload_runs_on_it_and_records_hand_offs() {
        let Some((server, lock)) = floor().await else {
            return;
        };
        checks::runs_contended(&lock).await;
        assert_eq!(server.cli(&["DBSIZE"]), "0");
    }
}
