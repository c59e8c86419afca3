//! The Redis store: many processes and machines, wire-compatible with Rasa
//! in the rasa layout.
//!
//! # Implementation details
//! - Data: one conversation per key `lock:<id>` or `<key_prefix>:lock:<id>`,
//!   in one of two layouts ([`RedisLayout`], `layout:`), each documented in
//!   its module: `rasa` (`redis/rasa.rs`: Rasa's JSON record in a string,
//!   shared with Rasa processes) and `native` (`redis/native.rs`: a hash
//!   beside two sorted sets, constant cost per call). The key has a
//!   different Redis type in each, so a client of one layout that meets a
//!   conversation of the other gets WRONGTYPE inside its script, answered
//!   as `LAYOUT` and reported as [`Error::Config`] naming
//!   `lock_store.layout`: never read, never overwritten, never an overlap.
//!   Keys are built in one place (`redis/keys.rs`); the id is appended
//!   verbatim and every command names its key exactly, so no id can reach
//!   another's conversation. Auxiliary keys start with `{`, so a SCAN of
//!   `lock:*` lists conversations only, of both layouts.
//! - Atomicity: every operation is one Lua script of the layout
//!   (`redis/rasa/*.lua`, `redis/native/*.lua`), so one round trip, atomic
//!   with respect to every other client (Rasa's included): issue (with the
//!   first attempt to acquire), try to acquire (which also keeps a waiting
//!   ticket alive), release (dropping the conversation with its last
//!   ticket), renew, check, update, save, delete. Scripts are called by hash
//!   and loaded again when the server answers NOSCRIPT (the native layout,
//!   on Redis 7+, calls them as Redis Functions: see `redis/native.rs`). Each first drops
//!   expired tickets; a corrupt record is answered with an error naming
//!   what is wrong, never overwritten.
//! - Clock: the server's (`TIME` in every script), so skew between clients
//!   cannot move an expiry. A ticket expires when now > expires, as in Rasa.
//! - Fencing tokens: a conversation's epoch is the server time in
//!   microseconds when a script created it; a holder's token is epoch +
//!   ticket number (server time + number for a record Rasa created, which
//!   has no epoch).
//!   Tokens therefore increase for successive holders, also across deletion
//!   of the record, as long as the server's clock does not go back and fewer
//!   tickets than microseconds pass in one incarnation of a record.
//! - TTL: every key lives at least one second past its latest ticket (the
//!   rasa layout sets exactly that at every write; the native layout, when
//!   a write needs more, twice the remaining life), so a crashed process
//!   leaves nothing behind for long.
//! - Wake-ups: one pub/sub connection per store, owned by a background
//!   task, serves all its waiters (`redis/subscriber.rs`). What is published
//!   is the layout's: the rasa layout names the queue's new head on the
//!   key's channel (`*` after save_lock and delete_lock: everybody looks
//!   again), and the waiter then takes the lock with a call; a head-change
//!   message also wakes the lowest waiting ticket above it in the process
//!   (the new next in line). A release by a Rasa process publishes nothing:
//!   our waiter next in line sees it at its next `wait_time` look (the
//!   others look every third of their lifetime, see `lock.rs`). The native
//!   layout pushes the grant itself, naming the ticket, on its process's
//!   channel of the conversation, which the waiter's [`Watch`] takes
//!   without a call; a waiter issued while that channel was already
//!   subscribed (another waiter of the process keeps it) needs neither a
//!   subscription nor a look, since every push for its ticket reaches the
//!   process (one that comes before the waiter registers is kept for it,
//!   `redis/subscriber/stash.rs`). On one server the pub/sub
//!   connection speaks RESP3 where the server does (RESP2 before Redis 6),
//!   and its reading task hands the grant to the waiter directly.
//! - Connections: one multiplexed connection for commands plus the pub/sub
//!   one. Every attempt is bounded by `socket_timeout`. A connection that
//!   failed or timed out is replaced (never used again), and the call is
//!   sent again on a fresh one, within one more `socket_timeout`
//!   (`redis/commands.rs`); only then does it fail with
//!   [`Error::Unavailable`]. Opening a store (the probe that names a wrong
//!   address, password, ACL or TLS setting) is in `redis/open.rs`; running
//!   commands and scripts (EVALSHA and its NOSCRIPT reload, WAIT for
//!   `min_replicas_ack`) and mapping Redis errors to the crate's, in
//!   `redis/calls.rs`.
//! - Request ids: sending a call twice is safe. Issue and release scripts
//!   also take a request entry (KEYS[2]) beside the record, in its cluster
//!   slot: `{T}:<key>:rq:<request id>` remembers the ticket an issue made
//!   (the 128-bit id is drawn per ticket by the client), and
//!   `{T}:<key>:rl:<epoch>:<number>` that a release removed its ticket; a
//!   retry answers from it instead of issuing again or reporting the
//!   ticket gone. `T` is the key's hash tag, or the key itself, or a tag of
//!   the same slot (`redis/keys.rs`). Entries live two socket timeouts
//!   plus a second. A rasa record itself is untouched (Rasa's format; Rasa
//!   rewrites whole records), and the helpers are kept apart in
//!   `redis/request.lua`, shared by both layouts. Renew, try_acquire and the rest are
//!   idempotent as they are.
//! - Waiters: a look at the queue that fails does not give the ticket up;
//!   the waiter looks again while the ticket is alive (`lock.rs`).
//! - Deployments (`deployment_mode`): `standard`, one server; `cluster`, a
//!   Redis Cluster reached through `endpoints`: each script is routed by
//!   its conversation's key (its other keys and channels are in the same
//!   slot), MOVED
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
//! - Cancellation: `issue` runs inline; if its caller goes away while the
//!   reply is outstanding, a drop guard spawns (only then) a task that sends
//!   the same request again (same request id, drawn before the first send:
//!   the script answers the ticket the first attempt made, or makes it if
//!   the first never ran) and releases that ticket.
//! - Bounds: the issue script refuses a ticket (status 2, then
//!   [`Error::QueueFull`]) when the queue already holds the handle's
//!   `max_queue_len` live tickets, so our processes cannot grow a queue
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
//! The least privilege the store needs in the rasa layout (with
//! `key_prefix: p`, write `~p:lock:* ~{*}:p:lock:*` and `&p:lock:*`; the
//! second key pattern is for the request-id entries, see "Request ids"
//! above); the native layout's rule, which lists its scripts' commands
//! (Redis checks each command a script runs), is in `redis/native.rs` and
//! the README:
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

mod calls;
mod commands;
mod connection;
mod from_client;
mod keys;
mod native;
mod open;
mod preload;
mod rasa;
mod scan;
mod subscriber;
mod tls;

#[cfg(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))]
pub use tls::install_tls_provider;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::backend::{Attempt, Backend, GrantSlot, Issued, TicketId, Watch};
use crate::in_flight::{InFlight, InFlightTask};
use crate::lock::validate_id;
use crate::ticket::push_python_str;
use crate::{Error, RedisLayout, Result, TicketLock};
use calls::{Replied, Reply};
use commands::Commands;
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
    /// How conversations are stored.
    layout: RedisLayout,
    /// Native layout: call the scripts as Redis Functions (FCALL); cleared
    /// when the server turns out to have none.
    functions: std::sync::atomic::AtomicBool,
    /// `min_replicas_ack` and its timeout, when set.
    acks: Option<(u32, Duration)>,
    /// The scripts loaded before the first call (see `redis/preload.rs`).
    preload: preload::Preload,
    subscriber: Subscriber,
    /// Native layout: this store's wake id, 16 random hex digits. Its
    /// tickets name it, and their grants and wake-ups come on the one
    /// channel it makes per conversation (`w:<wake id>`, see
    /// `redis/native.rs`).
    wake_id: String,
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
            .field("layout", &self.inner.layout)
            .finish_non_exhaustive()
    }
}

impl RedisLockStore {
    /// This handle, refusing to issue a ticket (with [`Error::QueueFull`])
    /// when the conversation's queue already holds `max_queue_len` live
    /// tickets (at least 1; default [`crate::DEFAULT_MAX_QUEUE_LEN`]). Checked by
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
    /// inspection tools). In the native layout, which stores no JSON, the
    /// conversation rendered as the Rasa record it stands for (its
    /// tickets, `last_issued` and `epoch`).
    pub async fn raw_record(&self, conversation_id: &str) -> Result<Option<Vec<u8>>> {
        if self.inner.layout == RedisLayout::Native {
            let lock = native::get_lock(self, conversation_id).await?;
            return Ok(lock.map(|l| l.dumps().into_bytes()));
        }
        let key = self.key_for(conversation_id);
        let mut cmd = redis::cmd("GET");
        cmd.arg(&key);
        match self.query(&cmd, &key).await {
            Err(Error::CorruptRecord { .. }) if self.is_native_conversation(&key).await => {
                Err(self.layout_error(&key))
            }
            raw => raw,
        }
    }

    /// Deletes the record of `conversation_id`, as
    /// [`crate::LockStore::delete_lock`] does (its waiters learn that their
    /// tickets are gone), and says whether there was one, for tools that
    /// report what they removed. A key of another type under the record's
    /// name is removed too.
    pub async fn remove_record(&self, conversation_id: &str) -> Result<bool> {
        let key = self.key_for(conversation_id);
        let removed = match self.inner.layout {
            RedisLayout::Rasa => rasa::delete(self, &key, conversation_id).await?,
            RedisLayout::Native => native::delete(self, &key).await?,
        };
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
}

/// An issue whose reply is outstanding. Dropped before the reply was read
/// (the caller went away), it withdraws the ticket from a spawned task:
/// the same request is sent again, so the script answers the ticket the
/// first attempt made (or makes it, if the first never ran), and that
/// ticket is released. Nothing is spawned unless the caller leaves.
struct PendingIssue<'a> {
    store: &'a RedisLockStore,
    id: &'a str,
    lifetime: Duration,
    request: RequestId,
    armed: bool,
}

impl Drop for PendingIssue<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to send it from: the ticket (if made) expires
            // after its lifetime.
            return;
        };
        let (store, id, lifetime, request) = (
            self.store.clone(),
            self.id.to_string(),
            self.lifetime,
            self.request,
        );
        let task = store.background_task();
        runtime.spawn(async move {
            let _task = task;
            match store.issue_once(&id, lifetime, &request).await {
                Ok(issued) => {
                    tracing::debug!(
                        conversation_id = id,
                        ticket = issued.ticket.number,
                        "redis: caller gone during issue; ticket withdrawn"
                    );
                    if let Err(e) = store.release(&id, issued.ticket).await {
                        tracing::debug!(conversation_id = id, ticket = issued.ticket.number, error = %e, "redis: withdrawal failed; the ticket will expire");
                    }
                }
                Err(e) => tracing::debug!(
                    conversation_id = id,
                    error = %e,
                    "redis: caller gone during issue, and the issue could not be repeated; \
                     a ticket it made will expire"
                ),
            }
        });
    }
}

/// A conversation id as a script argument: JSON as Python writes it,
/// written straight into the command (an id without characters to escape,
/// the usual case, is copied whole).
struct PythonStr<'a>(&'a str);

impl redis::ToRedisArgs for PythonStr<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        if crate::ticket::python_str_is_plain(self.0) {
            let mut w = out.writer_for_next_arg();
            // Writes into the command's buffer cannot fail.
            let _ = w.write_all(b"\"");
            let _ = w.write_all(self.0.as_bytes());
            let _ = w.write_all(b"\"");
        } else {
            let mut json = String::with_capacity(self.0.len() + 8);
            push_python_str(&mut json, self.0);
            out.write_arg(json.as_bytes());
        }
    }
}

/// A request id: 128 bits as 32 lowercase hex digits, unique across
/// processes and machines (a per-process random SipHash key, from the OS,
/// over a counter). Inline, so drawing one allocates nothing.
#[derive(Clone, Copy)]
struct RequestId([u8; 32]);

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        // Hex digits only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A new request id (see [`RequestId`]).
fn request_id() -> RequestId {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (KEYS.hash_one((n, 0u8)), KEYS.hash_one((n, 1u8)));
    let mut out = [0u8; 32];
    for (i, c) in out.iter_mut().enumerate() {
        let word = if i < 16 { a } else { b };
        *c = HEX[(word >> (60 - 4 * (i % 16)) & 0xf) as usize];
    }
    RequestId(out)
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
        // The round trip runs inline; if the caller goes away while it is
        // in flight, `PendingIssue` repeats it (same request id, drawn
        // here, before the first send) and releases the ticket.
        let mut pending = PendingIssue {
            store: self,
            id,
            lifetime,
            request: request_id(),
            armed: true,
        };
        let issued = self.issue_once(id, lifetime, &pending.request).await;
        pending.armed = false;
        issued
    }

    async fn try_acquire(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<Attempt> {
        match self.inner.layout {
            RedisLayout::Rasa => rasa::try_acquire(self, id, ticket, lifetime).await,
            RedisLayout::Native => native::try_acquire(self, id, ticket, lifetime).await,
        }
    }

    async fn release(&self, id: &str, ticket: TicketId) -> Result<bool> {
        match self.inner.layout {
            RedisLayout::Rasa => rasa::release(self, id, ticket).await,
            RedisLayout::Native => native::release(self, id, ticket).await,
        }
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
        match self.inner.layout {
            RedisLayout::Rasa => rasa::renew(self, id, ticket, lifetime).await,
            RedisLayout::Native => native::renew(self, id, ticket, lifetime).await,
        }
    }

    async fn check(&self, id: &str, ticket: TicketId) -> Result<bool> {
        match self.inner.layout {
            RedisLayout::Rasa => rasa::check(self, id, ticket).await,
            RedisLayout::Native => native::check(self, id, ticket).await,
        }
    }

    async fn watch(&self, id: &str, ticket: TicketId) -> Result<Watch> {
        let key = self.key_for(id);
        let notify = Arc::new(Notify::new());
        // The native layout pushes each ticket's grant on its process's
        // channel of the conversation, naming the ticket.
        // With `min_replicas_ack` a push is only a wake-up: the grant was
        // published before the replicas acknowledged it, so the waiter
        // claims it with a look that waits for them.
        let (channel, grant) = match (self.inner.layout, ticket.epoch) {
            (RedisLayout::Native, Some(_)) => (
                keys::NativeKeys::new(&key)
                    .channel(&self.inner.wake_id)
                    .into_bytes(),
                self.inner.acks.is_none().then(GrantSlot::default),
            ),
            _ => (Keys::channel(&key).to_vec(), None),
        };
        let native = self.inner.layout == RedisLayout::Native && ticket.epoch.is_some();
        let (registration, subscribed, heard_since) = self
            .inner
            .subscriber
            .register(&channel, ticket, notify.clone(), grant.clone(), native)
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
        let watch = match grant {
            Some(grant) => Watch::with_grant(notify, grant, Box::new(registration)),
            None => Watch::with_registration(notify, Box::new(registration)),
        };
        // A native ticket's channel is its process's: when that was
        // subscribed before the ticket was issued, every push for the
        // ticket reached this process (the stash keeps those that came
        // before this registration), and the waiter needs no look to learn
        // of one. A rasa-layout channel keeps nothing and gets no such
        // time (a release by a Rasa process pushes nothing).
        Ok(watch.heard_since(heard_since))
    }

    async fn get_lock(&self, id: &str) -> Result<Option<TicketLock>> {
        if self.inner.layout == RedisLayout::Native {
            return native::get_lock(self, id).await;
        }
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
        match self.inner.layout {
            RedisLayout::Rasa => rasa::save_lock(self, lock).await,
            RedisLayout::Native => native::save_lock(self, lock).await,
        }
    }

    async fn delete_lock(&self, id: &str) -> Result<()> {
        self.remove_record(id).await.map(drop)
    }

    async fn update_lock(&self, id: &str) -> Result<()> {
        match self.inner.layout {
            RedisLayout::Rasa => rasa::update_lock(self, id).await,
            RedisLayout::Native => native::update_lock(self, id).await,
        }
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
    /// One issue with the request id `request` (retried on a fresh
    /// connection after a connection error; a retry with the same id
    /// answers the ticket the first attempt made).
    async fn issue_once(
        &self,
        id: &str,
        lifetime: Duration,
        request: &RequestId,
    ) -> Result<Issued> {
        match self.inner.layout {
            RedisLayout::Rasa => rasa::issue(self, id, lifetime, request).await,
            RedisLayout::Native => native::issue(self, id, lifetime, request).await,
        }
    }

    /// Whether the key of another type at `key` is a native-layout
    /// conversation (a hash with an epoch), for a rasa-layout store's
    /// messages.
    async fn is_native_conversation(&self, key: &str) -> bool {
        let mut cmd = redis::cmd("HEXISTS");
        cmd.arg(key).arg("e");
        matches!(self.query::<i64>(&cmd, "").await, Ok(1))
    }

    /// Counts one background round trip until the result is dropped.
    fn background_task(&self) -> InFlightTask {
        self.inner.in_flight.start()
    }
}
