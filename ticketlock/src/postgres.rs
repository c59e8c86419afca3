//! The PostgreSQL store: many processes and machines on the database Rasa's
//! tracker store may already use (feature `postgres`).
//!
//! # Implementation details
//! - Data (`postgres/sql/schema.sql`, version 3): a row per conversation
//!   in `ticketlock_conversations`, keyed by the SHA-256 of its id (an id
//!   may be longer than an index entry; compared in full), with its epoch,
//!   the highest number issued, how many tickets it has and an upper bound
//!   of their expiries. A queue of up to 4 tickets lives in that row
//!   (arrays of numbers, expiries in Unix seconds as Rasa writes them, and
//!   fencing tokens once a ticket held), so an uncontended lock inserts
//!   one row and its release deletes it; a longer queue moves to a row per
//!   ticket in `ticketlock_tickets` until the conversation's row goes with
//!   its last ticket. Rasa's record ([`TicketLock`]) is read from and
//!   written to these rows; tickets are served in number order.
//! - Atomicity: every operation is one statement (a PL/pgSQL function,
//!   `postgres/sql/*.sql`) sent with the extended protocol in one round
//!   trip (`query_typed`: Parse/Bind/Execute without a named statement),
//!   run in its own transaction. Each first locks its conversation's row
//!   (`FOR UPDATE`; an uncontended issue inserts it, an uncontended
//!   release deletes it, which locks it as well), so operations on one
//!   conversation are serialized and every other conversation proceeds in
//!   parallel. Each first drops the conversation's expired tickets; a
//!   conversation row goes with its last ticket.
//! - Clock: the server's (`clock_timestamp()` in every function). A ticket
//!   expires when now > expires, as in Rasa.
//! - Fencing tokens and epochs come from one sequence, `ticketlock_fence`,
//!   which never goes back (sequences are logged ahead of use, so also not
//!   across a crash): a holder's token is drawn when its ticket first holds
//!   the lock and kept with the ticket, so it is strictly greater than
//!   every earlier holder's, also across deletion of the conversation's
//!   row. The first ticket of a new row holds at once, with the row's epoch
//!   (drawn then) as its token: one value, one row.
//! - Durability: a grant is answered after its transaction committed, so
//!   with the server's default `synchronous_commit` a lease survives a
//!   crash of the server.
//! - Expired rows are cleaned without a cron job: by the operations on
//!   their conversation, and every 32nd issue that makes a row also
//!   removes up to 128 rows of other conversations whose every ticket
//!   expired over a second ago (`SKIP LOCKED`, so it never waits for them).
//! - Wake-ups: a function whose change gives a queue a new head calls
//!   `pg_notify('ticketlock', '<epoch> <head>')` (`*` after save and
//!   delete), which PostgreSQL delivers at commit. One connection per store
//!   listens, owned by a background task that wakes the waiter of that
//!   ticket only (`postgres/listener.rs`). Waiters also look again at
//!   their holder's expiry, so a missed notification costs at most that.
//! - Connections (`postgres/connection.rs`): a small pool of multiplexed
//!   clients (pipelining the calls of every task) serves all operations;
//!   no connection is held by a waiter. A closed connection (server
//!   restart, `pg_terminate_backend`) is replaced by the next call; one
//!   whose call timed out is dropped (it may be half open). Every call,
//!   connecting included, is bounded by `socket_timeout` and fails with
//!   [`Error::Unavailable`]; refused credentials, a missing database or
//!   privilege fail with [`Error::Config`].
//! - pgbouncer in transaction mode: the operations work through it (no
//!   named prepared statements, no session state, one transaction each),
//!   but `LISTEN` does not; set `listen_url` to the database itself (or a
//!   session-mode pool) for the wake-up connection. On connecting, the
//!   store sends a notification through the pool and checks that the
//!   listener gets it, and warns when not (behind such a pool without
//!   `listen_url`): waiters then enter at their holder's expiry only.
//! - Schema (`postgres/schema.rs`): created on first use, or by
//!   `ticketlock migrate`, in one transaction under an advisory lock; an
//!   older version is upgraded in place (`postgres/sql/upgrade.sql`), or
//!   refused with an error naming `ticketlock migrate` when the user may
//!   not alter it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio_postgres::types::{ToSql, Type};

mod connection;
mod listener;
mod pending;
mod schema;

use crate::in_flight::{InFlight, InFlightTask};
use connection::{Connector, Pool};
use listener::Listener;
use pending::PendingIssue;

use crate::backend::{Attempt, Backend, Issued, TicketId, Watch};
use crate::config::PostgresConfig;
use crate::lock::{DEFAULT_MAX_QUEUE_LEN, validate_id};
use crate::{Error, Result, Ticket, TicketLock};

/// Clients in the pool of one store.
const POOL_SIZE: usize = 4;

/// A lock store on PostgreSQL.
///
/// Cheap to clone: clones share the connections and the wake-up task, which
/// stops when the last clone is dropped.
///
/// ```no_run
/// # async fn f() -> ticketlock::Result<()> {
/// let config = ticketlock::LockStoreConfig::from_url("postgresql://rasa:secret@localhost/rasa")?;
/// let store = ticketlock::LockStore::create(config).await?;
/// let guard = store.lock("conversation-1").await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresLockStore {
    inner: Arc<Inner>,
    max_queue_len: usize,
}

struct Inner {
    pool: Pool,
    listener: Listener,
    /// Whether a notification sent through the pool reached the listener
    /// when the store connected.
    wake_ups_verified: bool,
    in_flight: InFlight,
    /// This process's guards and waiting tickets, for [`crate::LockStore::stats`].
    counters: crate::stats::Counters,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for PostgresLockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLockStore")
            .field("server", &self.inner.pool.connector().describe)
            .field("socket_timeout", &self.inner.pool.connector().timeout)
            .field("max_queue_len", &self.max_queue_len)
            .finish_non_exhaustive()
    }
}

/// `{number, epoch, status, value, remaining_us}` (see `sql/issue.sql`).
const ISSUE: &str = "SELECT ticketlock_issue_packed($1, $2, $3)";
/// `{status, value, remaining_us}` (see `sql/try_acquire.sql`).
const TRY_ACQUIRE: &str = "SELECT ticketlock_try_acquire_packed($1, $2, $3, $4)";
const RELEASE: &str = "SELECT ticketlock_release($1, $2, $3)";
const RENEW: &str = "SELECT ticketlock_renew($1, $2, $3, $4)";
const CHECK: &str = "SELECT ticketlock_check($1, $2, $3)";
const UPDATE: &str = "SELECT ticketlock_update($1)";
const SAVE: &str = "SELECT ticketlock_save($1, $2, $3, $4)";
const DELETE: &str = "SELECT ticketlock_delete($1)";
const EPOCH: &str = "SELECT epoch FROM ticketlock_conversations \
                     WHERE digest = ticketlock_digest($1) AND conversation_id = $1";
const GET: &str = include_str!("postgres/sql/get.sql");
const LIST: &str = include_str!("postgres/sql/list.sql");

const ACQUIRED: i32 = 0;
const QUEUED: i32 = 1;
const FULL: i32 = 2;

impl PostgresLockStore {
    /// Connects to the server of `config`, creates the schema when it is
    /// missing (or upgrades an older one), and starts the wake-up
    /// connection.
    ///
    /// Fails with [`Error::Config`] for refused credentials, a missing
    /// database, a schema that cannot be created, or a newer schema; with
    /// [`Error::Unavailable`] when the server cannot be reached within
    /// `socket_timeout`.
    pub async fn connect(config: &PostgresConfig) -> Result<PostgresLockStore> {
        let (ops, listen) = Connector::new(config)?;
        let pool = Pool::new(ops.clone(), POOL_SIZE);
        {
            let (client, connection) = ops.connect().await?;
            let driver = tokio::spawn(connection);
            let ensured = tokio::time::timeout(ops.timeout, schema::ensure(&client, &ops)).await;
            drop(client);
            driver.abort();
            match ensured {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::unavailable(
                        &ops.describe,
                        format!("the schema check got no answer within {:?}", ops.timeout),
                        None,
                    ));
                }
            }
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let listener = Listener::start(listen, stop_rx);
        if !listener.wait_listening(ops.timeout).await {
            tracing::warn!(
                store = ops.describe,
                "postgres: the wake-up connection is not listening yet; waiters enter at \
                 their holder's expiry until it is (behind pgbouncer in transaction mode, \
                 set listen_url)"
            );
        }
        let wake_ups_verified = probe(&pool, &listener, ops.timeout).await;
        if !wake_ups_verified {
            tracing::warn!(
                store = ops.describe,
                "postgres: a notification sent through the store's connections did not reach \
                 its wake-up connection; behind pgbouncer in transaction mode (which cannot \
                 carry LISTEN), set listen_url to the database itself. Until then waiters \
                 enter only at their holder's expiry"
            );
        }
        Ok(PostgresLockStore {
            inner: Arc::new(Inner {
                pool,
                listener,
                wake_ups_verified,
                in_flight: InFlight::default(),
                counters: Default::default(),
                _stop: stop_tx,
            }),
            max_queue_len: DEFAULT_MAX_QUEUE_LEN,
        })
    }

    /// The counts of this process's guards and waiting tickets.
    pub(crate) fn counters(&self) -> &crate::stats::Counters {
        &self.inner.counters
    }

    /// Creates or upgrades the schema of the database `config` names
    /// (`ticketlock migrate`); returns whether anything was changed.
    pub async fn migrate(config: &PostgresConfig) -> Result<bool> {
        let (ops, _) = Connector::new(config)?;
        let (client, connection) = ops.connect().await?;
        let driver = tokio::spawn(connection);
        let r = tokio::time::timeout(ops.timeout * 3, schema::migrate(&client, &ops)).await;
        drop(client);
        driver.abort();
        r.unwrap_or_else(|_| {
            Err(Error::unavailable(
                &ops.describe,
                "the migration got no answer in time",
                None,
            ))
        })
    }

    /// The same store, refusing to issue past `max_queue_len` live tickets
    /// per conversation; see [`crate::LockStore::with_max_queue_len`].
    pub fn with_max_queue_len(mut self, max_queue_len: usize) -> Self {
        self.max_queue_len = max_queue_len.max(1);
        self
    }

    /// The most tickets a conversation's queue may hold.
    pub fn max_queue_len(&self) -> usize {
        self.max_queue_len
    }

    /// The bound on every call.
    pub fn socket_timeout(&self) -> Duration {
        self.inner.pool.connector().timeout
    }

    /// Whether the wake-up connection is listening now.
    pub fn is_listening(&self) -> bool {
        self.inner.listener.is_listening()
    }

    /// Whether, when the store connected, a notification sent through its
    /// connections reached its wake-up connection (false behind pgbouncer
    /// in transaction mode without `listen_url`: a warning is logged).
    pub fn wake_ups_verified(&self) -> bool {
        self.inner.wake_ups_verified
    }

    /// How many waiters are registered for wake-ups.
    pub fn registered_waiters(&self) -> usize {
        self.inner.listener.waiters()
    }

    /// The server's clock, in Unix seconds.
    pub async fn server_time(&self) -> Result<f64> {
        self.inner
            .pool
            .run_idempotent(|c| async move {
                let row = c.query_typed_one("SELECT ticketlock_now()", &[]).await?;
                Ok(row.get(0))
            })
            .await
    }

    async fn one<T>(&self, sql: &'static str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<T>
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        self.inner
            .pool
            .run_idempotent(|c| async move { Ok(c.query_typed_one(sql, params).await?.get(0)) })
            .await
    }

    async fn issue_now(&self, id: &str, lifetime: Duration) -> Result<Issued> {
        let lifetime = micros(lifetime);
        let max = i32::try_from(self.max_queue_len).unwrap_or(i32::MAX);
        let row = self
            .inner
            .pool
            .run(|c| async move {
                c.query_typed_one(
                    ISSUE,
                    &[
                        (&id, Type::TEXT),
                        (&lifetime, Type::INT8),
                        (&max, Type::INT4),
                    ],
                )
                .await
            })
            .await?;
        let packed: Vec<Option<i64>> = row.try_get(0).map_err(|e| self.bad_type("issue", e))?;
        let &[
            Some(number),
            Some(epoch),
            Some(status),
            Some(value),
            Some(remaining),
        ] = packed.as_slice()
        else {
            return Err(self.bad_answer("issue", &packed));
        };
        let status = i32::try_from(status).unwrap_or(i32::MAX);
        if status == FULL {
            return Err(Error::QueueFull {
                conversation_id: id.to_string(),
                limit: self.max_queue_len,
            });
        }
        let ticket = TicketId {
            number: number as u64,
            epoch: Some(epoch as u64),
        };
        let attempt = attempt(
            status,
            value,
            remaining,
            Duration::from_micros(lifetime as u64),
        )
        .ok_or_else(|| self.bad_reply("issue", status))?;
        Ok(Issued { ticket, attempt })
    }

    fn bad_reply(&self, what: &str, status: i32) -> Error {
        Error::unavailable(
            &self.inner.pool.connector().describe,
            format!(
                "ticketlock_{what} answered the unknown status {status}; is the schema of a newer ticketlock?"
            ),
            None,
        )
    }

    fn bad_answer(&self, what: &str, packed: &[Option<i64>]) -> Error {
        Error::unavailable(
            &self.inner.pool.connector().describe,
            format!(
                "ticketlock_{what}_packed answered {packed:?}, not the array this build reads; \
                 is the schema of another ticketlock?"
            ),
            None,
        )
    }

    fn bad_type(&self, what: &str, e: tokio_postgres::Error) -> Error {
        Error::unavailable(
            &self.inner.pool.connector().describe,
            format!(
                "ticketlock_{what}_packed answered a value this build cannot read ({e}); is the \
                 schema of another ticketlock?"
            ),
            None,
        )
    }

    fn background_task(&self) -> InFlightTask {
        self.inner.in_flight.start()
    }
}

/// Sends `probe <n>` through the pool and waits (at most a second, within
/// `timeout`) for the listener to receive it.
async fn probe(pool: &Pool, listener: &Listener, timeout: Duration) -> bool {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        .max(1);
    let payload = format!("probe {n}");
    let sent = pool
        .run_idempotent(|c| {
            let payload = &payload;
            async move {
                c.query_typed(
                    "SELECT pg_notify('ticketlock', $1)",
                    &[(payload, Type::TEXT)],
                )
                .await
                .map(drop)
            }
        })
        .await;
    sent.is_ok()
        && listener
            .wait_probe(n, timeout.min(Duration::from_secs(1)))
            .await
}

fn attempt(status: i32, value: i64, remaining: i64, lease: Duration) -> Option<Attempt> {
    Some(match status {
        ACQUIRED => Attempt::Acquired {
            fencing_token: value as u64,
            lease,
        },
        QUEUED => Attempt::Queued {
            ahead: value as u64,
            holder_remaining: u64::try_from(remaining).ok().map(Duration::from_micros),
        },
        FULL => Attempt::Lost,
        _ => return None,
    })
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX).max(1)
}

fn epoch_arg(ticket: TicketId) -> i64 {
    ticket
        .epoch
        .map_or(-1, |e| i64::try_from(e).unwrap_or(i64::MAX))
}

fn number_arg(ticket: TicketId) -> i64 {
    i64::try_from(ticket.number).unwrap_or(i64::MAX)
}

impl Backend for PostgresLockStore {
    fn describe(&self) -> String {
        self.inner.pool.connector().describe.clone()
    }

    async fn issue(&self, id: &str, lifetime: Duration) -> Result<Issued> {
        validate_id(id)?;
        // Inline: no task of its own unless the caller leaves while the
        // round trip is in flight (then `PendingIssue` finishes it).
        let (store, owned) = (self.clone(), id.to_string());
        let mut pending = PendingIssue {
            call: Some(Box::pin(async move {
                let issued = store.issue_now(&owned, lifetime).await;
                (issued, store, owned)
            })),
            store: self,
        };
        let (issued, _, _) = std::future::poll_fn(|cx| {
            pending
                .call
                .as_mut()
                .map_or(std::task::Poll::Pending, |call| call.as_mut().poll(cx))
        })
        .await;
        pending.call = None;
        issued
    }

    async fn try_acquire(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<Attempt> {
        let (number, epoch, us) = (number_arg(ticket), epoch_arg(ticket), micros(lifetime));
        let row = self
            .inner
            .pool
            .run_idempotent(|c| async move {
                c.query_typed_one(
                    TRY_ACQUIRE,
                    &[
                        (&id, Type::TEXT),
                        (&number, Type::INT8),
                        (&epoch, Type::INT8),
                        (&us, Type::INT8),
                    ],
                )
                .await
            })
            .await?;
        let packed: Vec<Option<i64>> = row
            .try_get(0)
            .map_err(|e| self.bad_type("try_acquire", e))?;
        let &[Some(status), value, Some(remaining)] = packed.as_slice() else {
            return Err(self.bad_answer("try_acquire", &packed));
        };
        let status = i32::try_from(status).unwrap_or(i32::MAX);
        if status == FULL {
            return Ok(Attempt::Lost);
        }
        attempt(status, value.unwrap_or(0), remaining, lifetime)
            .ok_or_else(|| self.bad_reply("try_acquire", status))
    }

    async fn release(&self, id: &str, ticket: TicketId) -> Result<bool> {
        let (number, epoch) = (number_arg(ticket), epoch_arg(ticket));
        self.one(
            RELEASE,
            &[
                (&id, Type::TEXT),
                (&number, Type::INT8),
                (&epoch, Type::INT8),
            ],
        )
        .await
    }

    fn release_on_drop(&self, id: &str, ticket: TicketId) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.clone();
        let id = id.to_string();
        let task = self.background_task();
        runtime.spawn(async move {
            let _task = task;
            if let Err(e) = store.release(&id, ticket).await {
                tracing::debug!(conversation_id = id, ticket = ticket.number, error = %e, "postgres: release on drop failed; the ticket will expire");
            }
        });
    }

    async fn flush(&self) {
        self.inner.in_flight.idle().await;
    }

    async fn renew(&self, id: &str, ticket: TicketId, lifetime: Duration) -> Result<bool> {
        let (number, epoch, us) = (number_arg(ticket), epoch_arg(ticket), micros(lifetime));
        self.one(
            RENEW,
            &[
                (&id, Type::TEXT),
                (&number, Type::INT8),
                (&epoch, Type::INT8),
                (&us, Type::INT8),
            ],
        )
        .await
    }

    async fn check(&self, id: &str, ticket: TicketId) -> Result<bool> {
        let (number, epoch) = (number_arg(ticket), epoch_arg(ticket));
        self.one(
            CHECK,
            &[
                (&id, Type::TEXT),
                (&number, Type::INT8),
                (&epoch, Type::INT8),
            ],
        )
        .await
    }

    async fn watch(&self, id: &str, ticket: TicketId) -> Result<Watch> {
        let epoch = match ticket.epoch {
            Some(e) => e,
            None => {
                let found: Option<i64> = self
                    .inner
                    .pool
                    .run_idempotent(|c| async move {
                        Ok(c.query_typed_opt(EPOCH, &[(&id, Type::TEXT)])
                            .await?
                            .map(|r| r.get(0)))
                    })
                    .await?;
                match found {
                    Some(e) => e as u64,
                    None => return Ok(Watch::signalled()),
                }
            }
        };
        let notify = Arc::new(Notify::new());
        let registration = self
            .inner
            .listener
            .register(epoch, ticket.number, notify.clone());
        if !self.inner.listener.is_listening() {
            tracing::debug!(
                conversation_id = id,
                ticket = ticket.number,
                "postgres: wake-up connection down; relying on re-checks"
            );
        }
        Ok(Watch::with_registration(notify, Box::new(registration)))
    }

    async fn get_lock(&self, id: &str) -> Result<Option<TicketLock>> {
        let row = self
            .inner
            .pool
            .run_idempotent(|c| async move { c.query_typed_opt(GET, &[(&id, Type::TEXT)]).await })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (epoch, last_issued, numbers, expires): (i64, i64, Vec<i64>, Vec<f64>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let corrupt = |message: String| Error::CorruptRecord {
            key: format!("ticketlock_conversations(epoch = {epoch})"),
            message,
        };
        let mut tickets = Vec::with_capacity(numbers.len());
        for (n, e) in numbers.into_iter().zip(expires) {
            let number =
                u64::try_from(n).map_err(|_| corrupt(format!("ticket number {n} is negative")))?;
            if !e.is_finite() {
                return Err(corrupt(format!(
                    "ticket {n} expires at {e}, not a finite time"
                )));
            }
            tickets.push(Ticket::new(number, e));
        }
        let mut lock = TicketLock::with_tickets(id, tickets);
        lock.set_epoch(u64::try_from(epoch).ok());
        lock.set_last_issued(u64::try_from(last_issued).ok());
        Ok(Some(lock))
    }

    async fn save_lock(&self, lock: &TicketLock) -> Result<()> {
        let id = lock.conversation_id();
        let mut numbers: Vec<i64> = Vec::with_capacity(lock.tickets().len());
        let mut expires: Vec<f64> = Vec::with_capacity(lock.tickets().len());
        for t in lock.tickets() {
            let n = i64::try_from(t.number).unwrap_or(i64::MAX);
            if numbers.contains(&n) {
                return Err(Error::CorruptRecord {
                    key: id.to_string(),
                    message: format!("refusing to save two tickets numbered {n}"),
                });
            }
            numbers.push(n);
            expires.push(t.expires);
        }
        let last_issued = lock
            .last_issued()
            .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.inner
            .pool
            .run_idempotent(|c| {
                let (numbers, expires) = (&numbers, &expires);
                async move {
                    c.query_typed(
                        SAVE,
                        &[
                            (&id, Type::TEXT),
                            (numbers, Type::INT8_ARRAY),
                            (expires, Type::FLOAT8_ARRAY),
                            (&last_issued, Type::INT8),
                        ],
                    )
                    .await
                    .map(drop)
                }
            })
            .await
    }

    async fn delete_lock(&self, id: &str) -> Result<()> {
        self.one::<bool>(DELETE, &[(&id, Type::TEXT)])
            .await
            .map(drop)
    }

    async fn update_lock(&self, id: &str) -> Result<()> {
        let removed: i32 = self.one(UPDATE, &[(&id, Type::TEXT)]).await?;
        if removed > 0 {
            tracing::debug!(
                conversation_id = id,
                removed,
                "postgres: expired tickets removed"
            );
        }
        Ok(())
    }

    async fn conversations(&self) -> Result<Vec<String>> {
        self.inner
            .pool
            .run_idempotent(|c| async move {
                Ok(c.query_typed(LIST, &[])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect())
            })
            .await
    }
}
