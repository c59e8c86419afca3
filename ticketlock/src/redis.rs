//! The Redis store: many processes and machines, wire-compatible with Rasa.
//!
//! # Implementation details
//! - Data: one string key per conversation, `lock:<id>` or
//!   `<key_prefix>:lock:<id>`, holding Rasa's JSON record byte for byte as
//!   Python writes it (tickets double-encoded, `expires` as float seconds),
//!   followed by two optional fields of ours that Rasa ignores:
//!   `last_issued` (numbers are never reused, even after the highest ticket
//!   expired; written only then, since otherwise the queue tells it) and
//!   `epoch` (tells incarnations of a record apart). Keys are
//!   built in one place (`redis/keys.rs`); the id is appended verbatim and
//!   every command names its key exactly, so no id can reach another's
//!   record.
//! - Atomicity: every operation is one Lua script (`redis/rasa/*.lua`),
//!   so one round trip, atomic with respect to every other client, Rasa's
//!   included: issue (with the first attempt to acquire), try to acquire
//!   (which also keeps a waiting ticket alive), release (dropping the record
//!   with its last ticket), renew, check, update, save, delete. Scripts are
//!   called by hash and loaded again when the server answers NOSCRIPT. Each
//!   first drops the expired tickets; a corrupt record is answered with an
//!   error naming what is wrong, never overwritten.
//! - Clock: the server's (`TIME` in every script), so skew between clients
//!   cannot move an expiry. A ticket expires when now > expires, as in Rasa.
//! - Fencing tokens: a record's epoch is the server time in microseconds
//!   when a script created it; a holder's token is epoch + ticket number
//!   (server time + number for a record Rasa created, which has no epoch).
//!   Tokens therefore increase for successive holders, also across deletion
//!   of the record, as long as the server's clock does not go back and fewer
//!   tickets than microseconds pass in one incarnation of a record.
//! - TTL: every write sets the key to expire one second after its latest
//!   ticket, so a crashed process leaves nothing behind for long.
//! - Wake-ups: a script whose change gives the queue a new head publishes
//!   the head's number on the channel named like the key (`*` after
//!   save_lock and delete_lock: everybody looks again). One pub/sub
//!   connection per store, owned by a background task, serves all its
//!   waiters (`redis/subscriber.rs`). A release by a Rasa process publishes
//!   nothing: our waiters then see it at their next bounded re-check.
//! - Connections: one multiplexed connection for commands plus the pub/sub
//!   one. Every attempt is bounded by `socket_timeout`. A connection that
//!   failed or timed out is replaced (never used again), and the call is
//!   sent again on a fresh one, within one more `socket_timeout`
//!   (`redis/commands.rs`); only then does it fail with
//!   [`Error::Unavailable`].
//! - Request ids: sending a call twice is safe. Issue and release scripts
//!   also take a request entry (KEYS[2]) beside the record, in its cluster
//!   slot: `{T}:<key>:rq:<request id>` remembers the ticket an issue made
//!   (the 128-bit id is drawn per ticket by the client), and
//!   `{T}:<key>:rl:<epoch>:<number>` that a release removed its ticket; a
//!   retry answers from it instead of issuing again or reporting the
//!   ticket gone. `T` is the key's hash tag, or the key itself, or a tag of
//!   the same slot (`redis/keys.rs`). Entries live two socket timeouts
//!   plus a second. The record itself is untouched (Rasa's format; Rasa
//!   rewrites whole records), and the helpers are kept apart in
//!   `redis/request.lua`. Renew, try_acquire and the rest are
//!   idempotent as they are.
//! - Waiters: a look at the queue that fails does not give the ticket up;
//!   the waiter looks again while the ticket is alive (`lock.rs`).
//! - Deployments (`deployment_mode`): `standard`, one server; `cluster`, a
//!   Redis Cluster reached through `endpoints`: each script is routed by
//!   its one key (the channel is the same name, so the same slot), MOVED
//!   and ASK are followed by the client, wake-ups use sharded pub/sub
//!   (SPUBLISH/SSUBSCRIBE, Redis 7) so each stays on the key's shard, and
//!   [`Backend::conversations`] scans every primary; `sentinel`, the
//!   primary the sentinels at `endpoints` name for `sentinel_service`,
//!   asked again after a connection error or a READONLY answer (a failover
//!   happened), so the store follows a failover without a restart.
//! - Failover (cluster or sentinel): replication is asynchronous, so a
//!   change the primary acknowledged may be lost with it. Lost grants break
//!   exclusivity (the lease is gone, another client gets the lock while
//!   the first still holds it) and reuse fencing tokens (the record goes
//!   back to an older state of the same epoch). With `min_replicas_ack: N`
//!   every answer that grants or extends a lease (issue, try_acquire,
//!   renew) is sent only after N replicas acknowledged it (WAIT, in the
//!   same round trip), and is refused with [`Error::Unavailable`]
//!   otherwise (an issued ticket is withdrawn). A replica promoted with
//!   every acknowledged grant (N = all replicas; or N = 1 where the
//!   failover picks the most advanced replica, as Sentinel and Cluster do)
//!   then keeps exclusivity and token order across the failover. Releases
//!   are not waited for: replication is one ordered stream, so any later
//!   acknowledged grant carries them; a release lost with the primary
//!   brings back its ticket until it expires (a pause, not a second
//!   holder). Tokens of a record created after the failover come from the
//!   new primary's clock, which must not be behind the old one's by more
//!   than the failover took (detection alone is `down-after-milliseconds`
//!   or `cluster-node-timeout`).
//! - Cancellation: `issue` runs in a spawned task, so a ticket whose caller
//!   went away during the round trip is still released.
//! - Bounds: the issue script refuses a ticket (status 2, then
//!   [`Error::QueueFull`]) when the queue already holds the handle's
//!   `max_queue_len` live tickets, so our processes cannot grow a record
//!   without limit; ids longer than [`crate::MAX_ID_LEN`] are refused before
//!   any key is built. (A client that writes records itself, as Rasa does,
//!   is not bound by this.)
//! - Strict leases: release, renew and check drop expired tickets first, so
//!   a holder whose lifetime ran out learns it ([`Error::Expired`] from the
//!   guard) even when nobody else came.
//!
//! # Limits
//! - An issue whose first attempt and retry both got no answer in time
//!   leaves its ticket in the queue until its lifetime ends, as a crashed
//!   process does.
//! - Shared with Rasa processes, numbers can be reused by Rasa (its next
//!   ticket is the last live one's + 1, and its rewrites drop `last_issued`
//!   and `epoch`): a waiter of ours whose ticket was lost (silent for longer
//!   than its lifetime) could take a newer Rasa ticket of the same number
//!   for its own. Our own processes never reuse numbers.
//! - In safe mode, a primary left with fewer than `min_replicas_ack`
//!   replicas (e.g. a cluster shard of one replica, after its failover)
//!   grants nothing until a replica is back: run N + 1 replicas to keep
//!   working through a failover.
//! - A duplicate that runs later than its request entry lives (a server
//!   stalled for longer, or the entry lost with the data) is not
//!   recognised: a late issue then leaves a ticket nobody waits for, until
//!   its lifetime ends (as a crashed process would).
//! - `username`, `password` and `db` are for the data servers;
//!   `sentinel_username` and `sentinel_password` (Rasa Pro's names) for the
//!   sentinels.
//!
//! # Redis ACL
//! The least privilege the store needs (with `key_prefix: p`, write
//! `~p:lock:* ~{*}:p:lock:*` and `&p:lock:*`; the second key pattern is
//! for the request-id entries, see "Request ids" above):
//!
//! ```text
//! ACL SETUSER ticketlock on >PASSWORD resetkeys ~lock:* ~{*}:lock:* resetchannels &lock:* -@all +evalsha +script|load +get +set +del +publish +time +scan +subscribe +unsubscribe +ping +select
//! ```
//!
//! A cluster also needs `+spublish +ssubscribe +sunsubscribe
//! +cluster|slots`, sentinel mode `+role` on the data servers (the client
//! checks the primary it was named with ROLE), and `min_replicas_ack`
//! `+wait`. Each permission and key pattern is shown needed by a test that
//! removes it (`redis_store.rs`, `redis_cluster.rs`, `redis_sentinel.rs`);
//! `+hello` is not needed (Redis lets every client send HELLO).

mod commands;
mod connection;
mod from_client;
mod keys;
mod rasa;
mod scan;
mod subscriber;
mod tls;

#[cfg(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))]
pub use tls::install_tls_provider;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::backend::{Attempt, Backend, Issued, TicketId, Watch};
use crate::in_flight::{InFlight, InFlightTask};
use crate::lock::validate_id;
use crate::ticket::push_python_str;
use crate::{DEFAULT_MAX_QUEUE_LEN, Error, RedisConfig, Result, TicketLock};
use commands::{Commands, Failure};
use connection::Target;
use keys::Keys;
use subscriber::{Subscribed, Subscriber};

/// A lock store in Redis, shared by every process that points at the same
/// server, database and key prefix, Rasa servers included.
///
/// Cheap to clone: clones share the connections. Made with
/// [`RedisLockStore::connect`], or through [`crate::LockStore::create`] from
/// a configuration.
///
/// ```no_run
/// # async fn f() -> ticketlock::Result<()> {
/// use ticketlock::{LockStore, RedisConfig, RedisLockStore};
///
/// let mut config = RedisConfig::default();
/// config.host = "redis.internal".into();
/// let store: LockStore = RedisLockStore::connect(&config).await?.into();
/// let guard = store.lock("sender-42").await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLockStore {
    inner: Arc<Inner>,
    /// This handle's bound on a queue; see [`RedisLockStore::with_max_queue_len`].
    max_queue_len: usize,
}

struct Inner {
    describe: String,
    keys: Keys,
    timeout: Duration,
    commands: Commands,
    /// A cluster: scripts publish with SPUBLISH (sharded pub/sub).
    sharded: bool,
    /// `min_replicas_ack` and its timeout, when set.
    acks: Option<(u32, Duration)>,
    subscriber: Subscriber,
    /// Background round trips (issues whose caller left, releases from
    /// destructors) that [`Backend::flush`] waits for.
    in_flight: InFlight,
    /// This process's held and waiting counts, for `LockStore::stats`.
    counters: crate::stats::Counters,
    /// The configured username, for messages about refused credentials.
    user: Option<String>,
    /// Dropped with the last handle: stops the subscriber task.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for RedisLockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLockStore")
            .field("server", &self.inner.describe)
            .field("keys", &self.inner.keys.key("*"))
            .field("socket_timeout", &self.inner.timeout)
            .field("max_queue_len", &self.max_queue_len)
            .finish_non_exhaustive()
    }
}

/// A script's answer, and the error to report instead when it changed a
/// record that too few replicas acknowledged (`min_replicas_ack`).
struct Replied<T> {
    value: T,
    unacked: Option<Error>,
}

impl<T> Replied<T> {
    fn acked(self) -> Result<T> {
        match self.unacked {
            Some(e) => Err(e),
            None => Ok(self.value),
        }
    }
}

/// What answered with an error.
enum Reply {
    /// A plain command: WRONGTYPE means the key holds no record.
    Command,
    /// A script: CORRUPT names what is wrong with the record.
    Script,
}

impl RedisLockStore {
    /// Connects to the server of `config` and checks it answers (PING), so
    /// that a wrong address, password or TLS setting fails here with a clear
    /// error rather than at the first lock. In cluster mode every primary
    /// must answer; in sentinel mode the sentinels must name a primary that
    /// answers.
    ///
    /// Fails with [`Error::Config`] for invalid settings (or credentials the
    /// server refuses) and [`Error::Unavailable`] when the server cannot be
    /// reached within `socket_timeout`.
    pub async fn connect(config: &RedisConfig) -> Result<RedisLockStore> {
        Self::open(connection::connector(config)?, config).await
    }

    /// [`RedisLockStore::connect`] with the clients already built.
    async fn open(connector: connection::Connector, config: &RedisConfig) -> Result<Self> {
        let connection::Connector {
            target,
            manager,
            describe,
        } = connector;
        let timeout = config.socket_timeout;
        let unavailable = |message: String, source: Option<redis::RedisError>| {
            Error::unavailable(
                describe.clone(),
                message,
                source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            )
        };
        // A plain connection first: the manager would retry a refused
        // password or certificate until the timeout, hiding the reason.
        let probe = || async {
            let client = match &target {
                Target::Standalone(client) => (**client).clone(),
                Target::Sentinel(sentinel) => match sentinel.primary_or_refusal().await {
                    Ok(client) => client,
                    Err(why) => return Ok::<_, redis::RedisError>(Err(why)),
                },
                Target::Cluster(cluster) => {
                    // PING goes to every primary: all must answer.
                    let mut c = cluster.client(None)?.get_async_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut c).await?;
                    return Ok(Ok(()));
                }
            };
            let setup = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let mut c = client
                .get_multiplexed_async_connection_with_config(&setup)
                .await?;
            redis::cmd("PING").query_async::<String>(&mut c).await?;
            Ok(Ok(()))
        };
        // A connection dropped during the probe (not refused: nothing
        // listens, or a configuration fault) is tried once more, as every
        // later call is.
        let started = tokio::time::Instant::now();
        let mut probed = tokio::time::timeout(timeout, probe()).await;
        if let Ok(Err(e)) = &probed
            && e.is_connection_dropped()
            && !e.is_connection_refusal()
            && config_error(e, config.username.as_deref()).is_none()
        {
            tracing::debug!(error = %e, "redis: probe connection dropped; trying once more");
            probed = tokio::time::timeout_at(started + timeout * 2, probe()).await;
        }
        match probed {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err((why, None)))) => return Err(unavailable(why, None)),
            Ok(Ok(Err((why, Some(key))))) => {
                let fix = if key == "lock_store.sentinel_password" {
                    "check sentinel_username and sentinel_password"
                } else {
                    "grant the user the ACL rule documented on RedisLockStore (sentinel mode \
                     adds +role)"
                };
                return Err(Error::config(key, format!("{why}; {fix}")));
            }
            Ok(Err(e)) if is_parse_error(&e) => {
                // Something answered, in another protocol (HTTP, TLS, ...).
                return Err(Error::config(
                    "lock_store.port",
                    format!(
                        "{describe} answered, but not as Redis; check that host and port name \
                         a Redis server (and use_ssl / rediss:// if it speaks TLS)"
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(
                    config_error(&e, config.username.as_deref()).unwrap_or_else(|| {
                        let hint = tls_hint(config.use_ssl, &e.to_string());
                        unavailable(format!("cannot connect: {e}{hint}"), Some(e))
                    }),
                );
            }
            Err(_) => {
                let hint = tls_hint(config.use_ssl, "timed out");
                return Err(unavailable(
                    format!("no answer within {timeout:?}{hint}"),
                    None,
                ));
            }
        }
        let sharded = matches!(target, Target::Cluster(_));
        let (stop, stopped) = oneshot::channel();
        let subscriber = Subscriber::start(target.clone(), timeout, stopped);
        let commands = Commands::new(target, manager, timeout);
        tracing::debug!(server = describe, "connected to redis");
        Ok(RedisLockStore {
            inner: Arc::new(Inner {
                describe,
                keys: Keys::new(usable_prefix(config.key_prefix.as_deref())),
                timeout,
                commands,
                sharded,
                acks: (config.min_replicas_ack > 0)
                    .then_some((config.min_replicas_ack, config.min_replicas_ack_timeout)),
                subscriber,
                in_flight: InFlight::default(),
                counters: Default::default(),
                user: config.username.clone(),
                _stop: stop,
            }),
            max_queue_len: DEFAULT_MAX_QUEUE_LEN,
        })
    }

    /// This handle, refusing to issue a ticket (with [`Error::QueueFull`])
    /// when the conversation's queue already holds `max_queue_len` live
    /// tickets (at least 1; default [`DEFAULT_MAX_QUEUE_LEN`]). Checked by
    /// the issue script, atomically. Other handles keep their own bound.
    pub fn with_max_queue_len(mut self, max_queue_len: usize) -> Self {
        self.max_queue_len = max_queue_len.max(1);
        self
    }

    /// The most tickets this handle lets a queue hold.
    pub fn max_queue_len(&self) -> usize {
        self.max_queue_len
    }

    /// The Redis key of `conversation_id`'s record (`lock:<id>` or
    /// `<key_prefix>:lock:<id>`), also the pub/sub channel of its changes.
    pub fn key_for(&self, conversation_id: &str) -> String {
        self.inner.keys.key(conversation_id)
    }

    /// The record of `conversation_id` exactly as stored, if any (for
    /// inspection tools).
    pub async fn raw_record(&self, conversation_id: &str) -> Result<Option<Vec<u8>>> {
        let key = self.key_for(conversation_id);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&key);
        self.query(&cmd, &key).await
    }

    /// Deletes the record of `conversation_id`, as
    /// [`crate::LockStore::delete_lock`] does (its waiters learn that their
    /// tickets are gone), and says whether there was one, for tools that
    /// report what they removed. A key of another type under the record's
    /// name is removed too.
    pub async fn remove_record(&self, conversation_id: &str) -> Result<bool> {
        let key = self.key_for(conversation_id);
        let removed = rasa::delete(self, &key, conversation_id).await?;
        tracing::debug!(conversation_id, existed = removed, "redis: record deleted");
        Ok(removed)
    }

    /// The server's clock (Redis `TIME`) as Unix seconds: the clock every
    /// expiry is measured by, so that inspection tools tell live tickets
    /// from expired ones as the scripts do, whatever this machine's clock
    /// says.
    pub async fn server_time(&self) -> Result<f64> {
        let (secs, micros): (u64, u64) = self.query(&redis::cmd("TIME"), "").await?;
        Ok(secs as f64 + micros as f64 / 1e6)
    }

    /// The socket timeout bounding every call.
    pub fn socket_timeout(&self) -> Duration {
        self.inner.timeout
    }

    fn unavailable(&self, message: String, source: Option<redis::RedisError>) -> Error {
        Error::unavailable(
            self.inner.describe.clone(),
            message,
            source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        )
    }

    fn error(&self, e: redis::RedisError, key: &str, reply: Reply) -> Error {
        let corrupt = match (reply, e.code()) {
            (Reply::Script, Some(rasa::CORRUPT)) => {
                Some(e.detail().unwrap_or("corrupt").to_string())
            }
            (Reply::Command, Some("WRONGTYPE")) if !key.is_empty() => {
                Some("not a string value (WRONGTYPE)".to_string())
            }
            _ => None,
        };
        if let Some(message) = corrupt {
            return Error::CorruptRecord {
                key: key.to_string(),
                message,
            };
        }
        if let Some(config) = config_error(&e, self.inner.user.as_deref()) {
            return config;
        }
        self.unavailable(e.to_string(), Some(e))
    }

    fn failure(&self, f: Failure, key: &str, reply: Reply) -> Error {
        match f {
            Failure::Redis(e) => self.error(e, key, reply),
            Failure::Timeout => {
                self.unavailable(format!("no answer within {:?}", self.inner.timeout), None)
            }
            Failure::Connect(why) => self.unavailable(why, None),
        }
    }

    /// Runs a command within the socket timeout; `key` is the record it
    /// reads, if any.
    async fn query<T: redis::FromRedisValue + Send>(
        &self,
        cmd: &redis::Cmd,
        key: &str,
    ) -> Result<T> {
        self.inner
            .commands
            .run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
            .map_err(|f| self.failure(f, key, Reply::Command))
    }

    /// Runs a script on the record at `key` within the socket timeout; the
    /// conversation id goes first among the arguments, JSON-encoded as
    /// Python writes it.
    ///
    /// With `min_replicas_ack`, a script that may grant or extend a lease
    /// (`grants`: issue, try_acquire, renew) is followed by WAIT in the same
    /// round trip, and the answer says whether enough replicas acknowledged.
    /// Other changes need no wait of their own: replication is one ordered
    /// stream, so the acknowledgement of any later grant covers them, and
    /// losing one that nothing acknowledged after it (a release, say) only
    /// brings back a ticket that then expires, never a second holder.
    #[allow(dead_code)] // for scripts that take the record's key alone
    async fn script<T: redis::FromRedisValue + Send>(
        &self,
        script: &'static redis::Script,
        key: &str,
        id: &str,
        args: &[&str],
        grants: bool,
    ) -> Result<Replied<T>> {
        self.script_with(script, key, &[], id, args, grants).await
    }

    /// [`RedisLockStore::script`] for the scripts that take more keys after
    /// the record's (`more`: KEYS[2], ...), such as a request's entry (see
    /// `redis/request.lua`), all in the record's slot.
    async fn script_with<T: redis::FromRedisValue + Send>(
        &self,
        script: &'static redis::Script,
        key: &str,
        more: &[&str],
        id: &str,
        args: &[&str],
        grants: bool,
    ) -> Result<Replied<T>> {
        let mut id_json = String::with_capacity(id.len() + 2);
        push_python_str(&mut id_json, id);
        let mut invocation = script.key(key);
        for k in more {
            invocation.key(*k);
        }
        invocation.arg(&id_json);
        for a in args {
            invocation.arg(*a);
        }
        let acks = self.inner.acks.filter(|_| grants);
        let Some((wanted, wait)) = acks else {
            let value = self
                .inner
                .commands
                .run(|mut conn| {
                    let invocation = &invocation;
                    async move { invocation.invoke_async(&mut conn).await }
                })
                .await
                .map_err(|f| self.failure(f, key, Reply::Script))?;
            return Ok(Replied {
                value,
                unacked: None,
            });
        };
        // EVALSHA by hand: the invocation cannot go in a pipeline.
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(script.get_hash());
        evalsha.arg(1 + more.len()).arg(key);
        for k in more {
            evalsha.arg(*k);
        }
        evalsha.arg(&id_json);
        for a in args {
            evalsha.arg(*a);
        }
        let mut pipe = redis::pipe();
        pipe.add_command(evalsha)
            .cmd("WAIT")
            .arg(wanted)
            .arg(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1))
            // Errors come back as values, so a script's own (CORRUPT) keeps
            // its code.
            .ignore_errors();
        let noscript = |v: &[redis::Value]| matches!(v.first(), Some(redis::Value::ServerError(e)) if e.code() == "NOSCRIPT");
        let values: Vec<redis::Value> = self
            .inner
            .commands
            .run(|mut conn| {
                let pipe = &pipe;
                async move {
                    let values: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
                    if !noscript(&values) {
                        return Ok(values);
                    }
                    // First use on this server (or node): load, then again.
                    script.load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                }
            })
            .await
            .map_err(|f| self.failure(f, key, Reply::Script))?;
        let mut values = values.into_iter();
        let (Some(reply), Some(acked)) = (values.next(), values.next()) else {
            return Err(
                self.unavailable("the reply to a script and WAIT is incomplete".into(), None)
            );
        };
        let value: T = match reply {
            redis::Value::ServerError(e) => {
                return Err(self.error(e.into(), key, Reply::Script));
            }
            other => redis::from_redis_value(other).map_err(|e| {
                self.unavailable(format!("unexpected reply to a script: {e}"), None)
            })?,
        };
        let acked: u32 = match acked {
            redis::Value::Int(n) => u32::try_from(n).unwrap_or(0),
            // WAIT refused (say, NOPERM) after the script ran: reported as
            // not acknowledged, so that an issued ticket is withdrawn.
            redis::Value::ServerError(e) => {
                return Ok(Replied {
                    value,
                    unacked: Some(self.error(e.into(), key, Reply::Command)),
                });
            }
            other => {
                return Err(self.unavailable(format!("unexpected reply to WAIT: {other:?}"), None));
            }
        };
        let unacked = (acked < wanted).then(|| {
            self.unavailable(
                format!(
                    "only {acked} of the {wanted} replicas required by min_replicas_ack \
                     acknowledged the change to {key:?} within {wait:?}, so a failover could \
                     lose it"
                ),
                None,
            )
        });
        Ok(Replied { value, unacked })
    }

    /// How long a request's entry is kept (`redis/request.lua`): past
    /// every retry of the request (each attempt and the retry window are
    /// bounded by the socket timeout), with a second to spare for a call
    /// that sat in a busy server's queue.
    fn request_ttl_ms(&self) -> String {
        let ms = self.inner.timeout.saturating_mul(2).as_millis() + 1000;
        ms.to_string()
    }

    fn bad_reply(&self, script: &str, reply: &[i64]) -> Error {
        self.unavailable(
            format!("unexpected reply {reply:?} to the {script} script; is this a Redis server?"),
            None,
        )
    }
}

/// A hint when a failure to connect looks like TLS on one side only: a
/// TLS server drops a plain client's first bytes, and a plain server never
/// answers a TLS handshake.
fn tls_hint(use_ssl: bool, failure: &str) -> &'static str {
    let dropped = [
        "reset by peer",
        "broken pipe",
        "closed",
        "end of file",
        "EOF",
    ];
    if !use_ssl && dropped.iter().any(|d| failure.contains(d)) {
        " (if the server requires TLS, use rediss:// or use_ssl: true)"
    } else if use_ssl && failure.contains("timed out") {
        " (if the server does not speak TLS, use redis:// or use_ssl: false)"
    } else {
        ""
    }
}

/// The key prefix as endpoints.yml (and Rasa) would take it: one that is
/// not alphanumeric is ignored, with a warning, so that a `RedisConfig`
/// built by hand names the same keys as the file that says the same.
fn usable_prefix(prefix: Option<&str>) -> Option<&str> {
    match prefix {
        Some(p) if !p.is_empty() && !crate::config::key_prefix_ok(p) => {
            tracing::warn!(
                key_prefix = p,
                "lock store configuration: `key_prefix`: {p:?} is not alphanumeric, so it is \
                 ignored and keys get no prefix, as Rasa does; {}",
                crate::config::KEY_PREFIX_HINT
            );
            None
        }
        p => p,
    }
}

/// Whether the reply could not be read as RESP: the server speaks another
/// protocol.
fn is_parse_error(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Parse
}

/// Turns errors that a change of configuration fixes (credentials, ACL)
/// into [`Error::Config`].
fn config_error(e: &redis::RedisError, user: Option<&str>) -> Option<Error> {
    let detail = e.detail().map_or_else(|| e.to_string(), str::to_string);
    let text = e.to_string();
    let auth = matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
        || text.contains("Authentication required")
        || text.contains("NOAUTH");
    if auth {
        let who = match user {
            Some(user) => format!("of user {user:?}"),
            None => "of the default user (no username given)".to_string(),
        };
        return Some(Error::config(
            "lock_store.password",
            format!(
                "the Redis server refused the credentials {who} ({detail}); check username and \
                 password"
            ),
        ));
    }
    // NOPERM, also from a command inside a script (answered as ERR).
    if e.code() == Some("NOPERM")
        || text.contains("no permissions to run")
        || text.contains("can't run this command")
        || text.contains("no permissions to access")
    {
        return Some(Error::config(
            "lock_store.username",
            format!(
                "the Redis user lacks a permission the lock store needs ({detail}); \
                 grant it the ACL rule documented on RedisLockStore"
            ),
        ));
    }
    if text.contains("invalid peer certificate") {
        let key = if text.contains("NotValidForName") {
            "lock_store.host"
        } else {
            "lock_store.ssl_ca_certs"
        };
        return Some(Error::config(
            key,
            format!(
                "the server's TLS certificate is not accepted ({text}); give the CA that signed it \
                 in ssl_ca_certs and a host name the certificate names"
            ),
        ));
    }
    // The server refused our side of the handshake: no client certificate
    // where one is required, or one signed by a CA it does not trust.
    const CLIENT_CERT_ALERTS: &[&str] = &[
        "UnknownCA",
        "BadCertificate",
        "CertificateRequired",
        "CertificateUnknown",
        "UnsupportedCertificate",
        "CertificateExpired",
        "CertificateRevoked",
    ];
    if text.contains("received fatal alert")
        && CLIENT_CERT_ALERTS.iter().any(|alert| text.contains(alert))
    {
        return Some(Error::config(
            "lock_store.ssl_certfile",
            format!(
                "the server refused the client certificate ({text}); give in ssl_certfile and \
                 ssl_keyfile a certificate signed by a CA the server trusts (tls-ca-cert-file)"
            ),
        ));
    }
    if text.contains("refused to switch database") {
        return Some(Error::config(
            "lock_store.db",
            format!("the Redis server refused the database ({detail}); use one it has, e.g. 1"),
        ));
    }
    None
}

/// The caller's end of an issue in flight. Dropped before the answer was
/// received, it withdraws the ticket: closing the channel makes a later
/// answer bounce back to the issuing task (which releases it), and an
/// answer already sent is released here.
struct Incoming<'a> {
    rx: oneshot::Receiver<Result<Issued>>,
    store: &'a RedisLockStore,
    id: &'a str,
    received: bool,
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        if self.received {
            return;
        }
        self.rx.close();
        if let Ok(Ok(issued)) = self.rx.try_recv() {
            tracing::debug!(
                conversation_id = self.id,
                ticket = issued.ticket.number,
                "redis: caller gone during issue; ticket withdrawn"
            );
            self.store.release_on_drop(self.id, issued.ticket);
        }
    }
}

/// A new request id: 128 bits, unique across processes and machines (a
/// per-process random SipHash key, from the OS, over a counter).
fn request_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (KEYS.hash_one((n, 0u8)), KEYS.hash_one((n, 1u8)));
    format!("{a:016x}{b:016x}")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn epoch_arg(ticket: TicketId) -> i64 {
    ticket
        .epoch
        .map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX))
}

impl Backend for RedisLockStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    async fn issue(&self, id: &str, lifetime: Duration) -> Result<Issued> {
        validate_id(id)?;
        // The round trip runs in its own task: if the caller goes away
        // while it is in flight, the ticket is still learnt and released.
        let (tx, rx) = oneshot::channel();
        let store = self.clone();
        let owned = id.to_string();
        let task = self.background_task();
        tokio::spawn(async move {
            let _task = task;
            let issued = rasa::issue(&store, &owned, lifetime).await;
            if let Err(Ok(issued)) = tx.send(issued) {
                tracing::debug!(
                    conversation_id = owned,
                    ticket = issued.ticket.number,
                    "redis: caller gone during issue; ticket withdrawn"
                );
                let _ = store.release(&owned, issued.ticket).await;
            }
        });
        let mut incoming = Incoming {
            rx,
            store: self,
            id,
            received: false,
        };
        let issued = (&mut incoming.rx).await;
        incoming.received = true;
        issued.map_err(|_| self.unavailable("the issuing task was cancelled".into(), None))?
    }

    async fn try_acquire(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<Attempt> {
        rasa::try_acquire(self, id, ticket, lifetime).await
    }

    async fn release(&self, id: &str, ticket: TicketId) -> Result<bool> {
        rasa::release(self, id, ticket).await
    }

    fn release_on_drop(&self, id: &str, ticket: TicketId) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to send it from: the ticket expires after its
            // lifetime.
            return;
        };
        let store = self.clone();
        let id = id.to_string();
        let task = self.background_task();
        runtime.spawn(async move {
            let _task = task;
            if let Err(e) = store.release(&id, ticket).await {
                tracing::debug!(conversation_id = id, ticket = ticket.number, error = %e, "redis: release on drop failed; the ticket will expire");
            }
        });
    }

    async fn flush(&self) {
        // Each background round trip is bounded by the socket timeout.
        self.inner.in_flight.idle().await;
    }

    async fn renew(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<bool> {
        rasa::renew(self, id, ticket, lifetime).await
    }

    async fn check(&self, id: &str, ticket: TicketId) -> Result<bool> {
        rasa::check(self, id, ticket).await
    }

    async fn watch(&self, id: &str, ticket: TicketId) -> Result<Watch> {
        let key = self.key_for(id);
        let notify = Arc::new(Notify::new());
        let (registration, subscribed) = self
            .inner
            .subscriber
            .register(Keys::channel(&key), ticket.number, notify.clone())
            .await;
        match subscribed {
            Subscribed::Confirmed => {}
            Subscribed::Unconfirmed => tracing::debug!(
                conversation_id = id,
                ticket = ticket.number,
                "redis: subscription not confirmed in time; relying on re-checks"
            ),
            Subscribed::Refused(why) => {
                return Err(Error::config(
                    "lock_store.username",
                    format!(
                        "the Redis server refused to subscribe to the channel {key:?} ({why}); \
                         grant the user the channels of the lock keys (ACL `&lock:*`)"
                    ),
                ));
            }
        }
        Ok(Watch::with_registration(notify, Box::new(registration)))
    }

    async fn get_lock(&self, id: &str) -> Result<Option<TicketLock>> {
        let Some(raw) = self.raw_record(id).await? else {
            return Ok(None);
        };
        TicketLock::from_record(id, &raw)
            .map(Some)
            .map_err(|e| Error::CorruptRecord {
                key: self.key_for(id),
                message: e.to_string(),
            })
    }

    async fn save_lock(&self, lock: &TicketLock) -> Result<()> {
        rasa::save_lock(self, lock).await
    }

    async fn delete_lock(&self, id: &str) -> Result<()> {
        self.remove_record(id).await.map(drop)
    }

    async fn update_lock(&self, id: &str) -> Result<()> {
        rasa::update_lock(self, id).await
    }

    async fn conversations(&self) -> Result<Vec<String>> {
        let mut ids = std::collections::HashSet::new();
        if let Target::Cluster(_) = self.inner.commands.target() {
            // Each primary holds its own slots' keys: walk every one.
            for node in self.primaries().await? {
                self.scan(Some(&node), &mut ids).await?;
            }
        } else {
            self.scan(None, &mut ids).await?;
        }
        Ok(ids.into_iter().collect())
    }
}

impl RedisLockStore {
    /// Counts one background round trip until the result is dropped.
    fn background_task(&self) -> InFlightTask {
        self.inner.in_flight.start()
    }
}
