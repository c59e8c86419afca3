//! Taking a lock: the request builder and the fair wait loop shared by every
//! backend.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::backend::{Attempt, Backend, Issued, TicketId, Watch};
use crate::store::{Kind, dispatch};
use crate::{Error, InMemoryLockStore, LockGuard, LockStore, Result};

/// Awaits the future `$fut` made from the store's backend `$b`: in place for
/// the in-memory store, boxed for Redis and PostgreSQL. A Redis operation's future is large
/// (a script call, a timer); in place it would sit in the state of every
/// lock request and guard, and be copied with it, in memory too.
macro_rules! on_backend {
    ($store:expr, $b:ident => $fut:expr) => {
        match &$store.kind {
            $crate::store::Kind::InMemory($b) => $fut.await,
            #[cfg(feature = "redis")]
            $crate::store::Kind::Redis($b) => Box::pin($fut).await,
            #[cfg(feature = "postgres")]
            $crate::store::Kind::Postgres($b) => Box::pin($fut).await,
        }
    };
}
pub(crate) use on_backend;

/// Longest conversation id accepted, in bytes: 64 KiB.
///
/// One limit for every entry point: an id this long still fits in one
/// command-line argument and in one environment variable on Linux (at most
/// 128 KiB each, `MAX_ARG_STRLEN`), so `ticketlock run ID` can take it and
/// hand it to its command as `TICKETLOCK_CONVERSATION_ID`.
pub const MAX_ID_LEN: usize = 64 * 1024;

/// The most tickets a conversation's queue holds by default
/// ([`LockStore::with_max_queue_len`] changes it): a holder and 999 waiters.
/// With [`MAX_ID_LEN`] it bounds the size of a record, so that one client
/// cannot make a record grow without limit.
pub const DEFAULT_MAX_QUEUE_LEN: usize = 1000;

/// The shortest lock lifetime accepted: timers resolve to milliseconds, and
/// a waiter must look at the queue several times per lifetime.
pub const MIN_LIFETIME: Duration = Duration::from_millis(10);

/// Margin added to the holder's remaining lifetime before looking again, so
/// that the look happens after the expiry by the store's clock.
const EXPIRY_SLACK: Duration = Duration::from_millis(1);

/// How a lock is taken. Built by [`LockRequest`]'s methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long the holder keeps the lock without renewing, counted from
    /// acquisition. Rasa's `lock_lifetime`.
    pub lifetime: Duration,
    /// The longest pause between two looks at the queue by the waiter next
    /// in line. Rasa's `wait_time_in_seconds`; wake-ups are pushed, so this
    /// only bounds the wait after a lost wake-up or a release by a Rasa
    /// process. Waiters further back look every third of the lifetime (to
    /// keep their tickets alive) and on a push, not every `wait_time`.
    pub wait_time: Duration,
    /// Give up (with [`Error::Timeout`]) when the lock is not acquired within
    /// this long. `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// Renew the lease in the background while the guard lives.
    pub auto_renew: bool,
}

impl LockOptions {
    /// Rasa's defaults with `lifetime`: wait time 1 s, no timeout, no
    /// auto-renewal.
    pub fn new(lifetime: Duration) -> Self {
        LockOptions {
            lifetime,
            wait_time: Duration::from_secs(1),
            timeout: None,
            auto_renew: false,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.lifetime < MIN_LIFETIME {
            return Err(Error::config(
                "lock_lifetime",
                format!(
                    "{} is shorter than the shortest lifetime, {}: a waiter could \
                     not keep its ticket alive between two looks; Rasa's default is 60 seconds",
                    crate::error::human_duration(self.lifetime),
                    crate::error::human_duration(MIN_LIFETIME)
                ),
            ));
        }
        Ok(())
    }
}

/// A request for a conversation's lock; `.await` it to wait for the lock.
///
/// Made by [`LockStore::lock`]; the methods adjust the options first:
///
/// ```
/// # async fn f(store: ticketlock::LockStore) -> ticketlock::Result<()> {
/// use std::time::Duration;
/// let guard = store
///     .lock("sender-42")
///     .lifetime(Duration::from_secs(30))
///     .timeout(Duration::from_secs(5))
///     .await?;
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "a lock request does nothing until it is awaited"]
#[derive(Debug)]
pub struct LockRequest<'a> {
    pub(crate) store: &'a LockStore,
    pub(crate) conversation_id: &'a str,
    pub(crate) options: LockOptions,
}

impl<'a> LockRequest<'a> {
    pub(crate) fn new(
        store: &'a LockStore,
        conversation_id: &'a str,
        options: LockOptions,
    ) -> Self {
        LockRequest {
            store,
            conversation_id,
            options,
        }
    }

    /// Sets how long the lock is held without renewal (Rasa's `lock_lifetime`).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.options.lifetime = lifetime;
        self
    }

    /// Sets the longest pause between two looks at the queue by the waiter
    /// next in line (Rasa's `wait_time_in_seconds`; see
    /// [`LockOptions::wait_time`]).
    pub fn wait_time(mut self, wait_time: Duration) -> Self {
        self.options.wait_time = wait_time;
        self
    }

    /// Gives up with [`Error::Timeout`] when the lock is not acquired within
    /// `timeout`; no ticket is left behind.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Renews the lease in the background, every third of the lifetime, for
    /// as long as the guard lives.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.options.auto_renew = on;
        self
    }

    /// Replaces all options.
    pub fn options(mut self, options: LockOptions) -> Self {
        self.options = options;
        self
    }
}

impl<'a> LockRequest<'a> {
    /// Takes a ticket now and returns without waiting to be served.
    ///
    /// The place in the queue is fixed when this returns, so a dispatcher
    /// can take tickets in arrival order and hand the waiting to workers:
    /// [`QueuedTicket::acquired`] waits for the lock. The request's timeout
    /// counts from this call.
    ///
    /// # Cancel safety
    /// If this future is dropped before it completes, the ticket (if the
    /// store issued one) is withdrawn.
    pub async fn enqueue(self) -> Result<QueuedTicket> {
        let issued = self.issue().await?;
        Ok(issued.queued(self.store, self.conversation_id.into(), self.options))
    }

    /// Validates the request and takes a ticket (within the timeout).
    async fn issue(&self) -> Result<Taken> {
        let (store, conversation_id, options) = (self.store, self.conversation_id, self.options);
        self.validate()?;
        // An uncontended in-memory request touches no tokio resource and so
        // would never yield: a task taking free locks in a loop would starve
        // the other tasks of its worker. Spend the task's budget as tokio's
        // own locks do; before the ticket exists, so that a drop at this
        // point leaves nothing behind.
        tokio::task::coop::consume_budget().await;
        // The clock is read for a timeout, which counts from here, and for
        // a store across the network, whose wait relies on it (see `wait`'s
        // `issued_at`); an in-memory issue stays free of it.
        let remote = !matches!(store.kind, crate::store::Kind::InMemory(_));
        let started = (options.timeout.is_some() || remote).then(Instant::now);
        let span = self.span();
        let issue = async { on_backend!(store, b => b.issue(conversation_id, options.lifetime)) }
            .instrument(span.clone());
        let issued = match started.zip(options.timeout) {
            // Boxed: the timer would otherwise sit in the state of every
            // request, timeout or not.
            Some((started, t)) => Box::pin(tokio::time::timeout_at(started + t, issue))
                .await
                .map_err(|_| timeout_error(conversation_id, started))??,
            None => issue.await?,
        };
        Ok(Taken::new(issued, started, span))
    }

    fn validate(&self) -> Result<()> {
        validate_id(self.conversation_id)?;
        self.options.validate()
    }

    /// One span per request, from issue to acquisition: the events of the
    /// backends and the wait loop carry its conversation and ticket.
    fn span(&self) -> tracing::Span {
        let conversation_id = self.conversation_id;
        tracing::debug_span!("lock", conversation_id, ticket = tracing::field::Empty)
    }

    /// The request on the in-memory store, at once: the guard when the lock
    /// is free (nearly always), else `step` becomes the wait for it, boxed
    /// (it is large), and this returns `Pending` for the caller to poll it.
    fn lock_in_memory(
        &self,
        m: &InMemoryLockStore,
        step: &mut Step<'a>,
    ) -> Poll<Result<LockGuard>> {
        if let Err(e) = self.validate() {
            return Poll::Ready(Err(e));
        }
        let started = self.options.timeout.map(|_| Instant::now());
        let span = self.span();
        let issued =
            match span.in_scope(|| m.issue_now(self.conversation_id, self.options.lifetime)) {
                Ok(issued) => issued,
                Err(e) => return Poll::Ready(Err(e)),
            };
        let taken = Taken::new(issued, started, span);
        let id = self.conversation_id;
        if let Attempt::Acquired { fencing_token, .. } = taken.issued.attempt {
            // The guard's id inline (no allocation) when it is short.
            return Poll::Ready(Ok(taken.served(
                self.store,
                id,
                fencing_token,
                self.options,
            )));
        }
        let queued = taken.queued(self.store, id.into(), self.options);
        *step = Step::Wait(Box::pin(queued.acquired()));
        Poll::Pending
    }

    /// The request on any store, as an `async` block (boxed: a remote
    /// store's futures are large).
    async fn lock_async(self) -> Result<LockGuard> {
        let taken = self.issue().await?;
        let id = self.conversation_id;
        match taken.issued.attempt {
            // Served at once: the guard is made here, without the wait
            // loop's future, which is large and boxed below only when there
            // is a wait.
            Attempt::Acquired { fencing_token, .. } => {
                Ok(taken.served(self.store, id, fencing_token, self.options))
            }
            _ => {
                let queued = taken.queued(self.store, id.into(), self.options);
                Box::pin(queued.acquired()).await
            }
        }
    }
}

/// A ticket just issued, not yet wrapped in a [`QueuedTicket`] or a guard.
struct Taken {
    issued: Issued,
    /// When the request began, if it has a timeout (which counts from then).
    started: Option<Instant>,
    span: tracing::Span,
}

impl Taken {
    #[inline]
    fn new(issued: Issued, started: Option<Instant>, span: tracing::Span) -> Taken {
        span.record("ticket", issued.ticket.number);
        crate::metrics::issued(&issued.attempt);
        span.in_scope(|| tracing::debug!(attempt = ?issued.attempt, "ticket issued"));
        Taken {
            issued,
            started,
            span,
        }
    }

    /// The guard of a ticket served at once: it did not wait, and the
    /// clock is not read for it.
    #[inline]
    fn served(
        self,
        store: &LockStore,
        id: &str,
        fencing_token: u64,
        options: LockOptions,
    ) -> LockGuard {
        let held = Held {
            ticket: self.issued.ticket,
            fencing_token,
            waited: Duration::ZERO,
        };
        self.span.in_scope(|| acquired_event(id, held));
        crate::metrics::acquired(&held);
        LockGuard::new(store, id, held, options)
    }

    fn queued(
        self,
        store: &LockStore,
        conversation_id: Arc<str>,
        options: LockOptions,
    ) -> QueuedTicket {
        let waiting = !matches!(self.issued.attempt, Attempt::Acquired { .. });
        if waiting {
            crate::metrics::waiting(store, 1);
        }
        QueuedTicket {
            waiting,
            span: self.span,
            store: store.clone(),
            conversation_id,
            ticket: self.issued.ticket,
            attempt: self.issued.attempt,
            options,
            // The wait counts from the issue when there is no timeout (on
            // the in-memory store: elsewhere the clock was read before it).
            started: self.started.unwrap_or_else(Instant::now),
            armed: true,
        }
    }
}

impl<'a> IntoFuture for LockRequest<'a> {
    type Output = Result<LockGuard>;
    type IntoFuture = LockFuture<'a>;

    /// Takes a ticket and waits until it is served.
    ///
    /// Fair: holders of a conversation enter in the order their tickets were
    /// issued. A release wakes the next waiter at once; a holder that
    /// vanished is passed over when its lifetime ends.
    ///
    /// # Cancel safety
    /// Dropping the future at any await point withdraws the ticket (at once
    /// in memory; on Redis with a spawned release, after a repeat of the
    /// issue when its reply was outstanding), so the next waiter
    /// is not held up; a ticket whose withdrawal cannot reach the store
    /// expires after its lifetime.
    fn into_future(self) -> LockFuture<'a> {
        LockFuture {
            step: Step::Start(self),
        }
    }
}

/// The future of an awaited [`LockRequest`]: resolves to the guard.
///
/// A named type, so that a free lock in memory is taken in its first poll
/// without allocating; a wait, and every request on Redis, runs in a boxed
/// future inside it. Cancel safety is that of [`LockRequest`]'s
/// `into_future`.
#[must_use = "futures do nothing unless polled"]
pub struct LockFuture<'a> {
    step: Step<'a>,
}

enum Step<'a> {
    Start(LockRequest<'a>),
    Wait(Pin<Box<dyn Future<Output = Result<LockGuard>> + Send + 'a>>),
    Done,
}

impl Future for LockFuture<'_> {
    type Output = Result<LockGuard>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<LockGuard>> {
        let step = &mut self.step;
        if let Step::Start(request) = step {
            // As in `LockRequest::issue`: spend the task's budget before
            // the ticket exists (see there).
            let Poll::Ready(budget) = tokio::task::coop::poll_proceed(cx) else {
                return Poll::Pending;
            };
            budget.made_progress();
            // The request's fields, not the request: moved out of the
            // step whole, it was read back in wide pieces just after
            // being written field by field (a store-forwarding stall).
            let request = LockRequest::new(request.store, request.conversation_id, request.options);
            match &request.store.kind {
                Kind::InMemory(m) => {
                    if let Poll::Ready(result) = request.lock_in_memory(m, step) {
                        *step = Step::Done;
                        return Poll::Ready(result);
                    }
                }
                #[allow(unreachable_patterns)]
                _ => *step = Step::Wait(Box::pin(request.lock_async())),
            }
        }
        match step {
            Step::Wait(wait) => {
                let result = std::task::ready!(wait.as_mut().poll(cx));
                *step = Step::Done;
                Poll::Ready(result)
            }
            Step::Start(_) | Step::Done => panic!("a LockFuture was polled after it completed"),
        }
    }
}

impl std::fmt::Debug for LockFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match &self.step {
            Step::Start(_) => "start",
            Step::Wait(_) => "waiting",
            Step::Done => "done",
        };
        f.debug_struct("LockFuture")
            .field("step", &step)
            .finish_non_exhaustive()
    }
}

/// A ticket in a conversation's queue, not yet served.
///
/// Made by [`LockRequest::enqueue`]. Owned and `'static`, so it can be sent
/// to another task. Dropping it withdraws the ticket.
#[must_use = "dropping a queued ticket withdraws it"]
pub struct QueuedTicket {
    span: tracing::Span,
    store: LockStore,
    conversation_id: Arc<str>,
    ticket: TicketId,
    attempt: Attempt,
    options: LockOptions,
    /// Since when the ticket waits: the request's start with a timeout
    /// (which counts from there) and on a store across the network, else
    /// (in memory, no timeout) its issue.
    started: Instant,
    armed: bool,
    /// Counted as waiting (not served when issued).
    waiting: bool,
}

impl QueuedTicket {
    /// The conversation whose queue this ticket is in.
    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    /// The ticket number.
    pub fn ticket(&self) -> u64 {
        self.ticket.number
    }

    /// Whether the ticket was served as soon as it was issued (no wait).
    pub fn is_served(&self) -> bool {
        matches!(self.attempt, Attempt::Acquired { .. })
    }

    /// Waits until the ticket is served and returns the guard.
    ///
    /// Fair: tickets of a conversation are served in the order they were
    /// issued. Push-woken: a release wakes the next ticket at once; a holder
    /// that vanished is passed over when its lifetime ends. Fails with
    /// [`Error::Timeout`] past the request's timeout (the ticket is
    /// withdrawn) and with [`Error::Expired`] when the ticket left the queue
    /// (its record was deleted, or it was not kept alive). A look at the
    /// queue that cannot reach the store is tried again while the ticket
    /// is alive (a lifetime after the last look that reached it); only then
    /// does it fail with [`Error::Unavailable`].
    ///
    /// # Cancel safety
    /// Dropping the future at any await point withdraws the ticket.
    pub async fn acquired(mut self) -> Result<LockGuard> {
        let (ticket, o) = (self.ticket, self.options);
        let served_at_once = self.is_served();
        let waited = async {
            let id = &*self.conversation_id;
            on_backend!(&self.store, b => wait(b, id, ticket, self.attempt, self.started, &o))
        }
        .instrument(self.span.clone());
        let outcome = match o.timeout {
            Some(t) => tokio::time::timeout_at(self.started + t, waited).await.ok(),
            None => Some(waited.await),
        };
        let id = &*self.conversation_id;
        let Some(attempt) = outcome else {
            // Withdrawn here, awaited, rather than from `Drop`: a process
            // that exits on the timeout would lose the release spawned
            // there, and its ticket would hold up the queue until it
            // expired.
            let error = timeout_error(id, self.started);
            crate::metrics::not_acquired("timed_out", self.started.elapsed());
            self.span
                .in_scope(|| tracing::debug!("acquire timed out; withdrawing the ticket"));
            if let Err(e) = on_backend!(&self.store, b => b.release(id, ticket)) {
                tracing::debug!(
                    conversation_id = id,
                    ticket = ticket.number,
                    error = %e,
                    "withdrawal after the timeout failed; the ticket will expire"
                );
            }
            self.armed = false;
            return Err(error);
        };
        let attempt = attempt?;
        self.armed = false;
        match attempt {
            Attempt::Acquired { fencing_token, .. } => {
                let held = Held {
                    ticket,
                    fencing_token,
                    waited: if served_at_once {
                        Duration::ZERO
                    } else {
                        self.started.elapsed()
                    },
                };
                acquired_event(id, held);
                crate::metrics::acquired(&held);
                Ok(LockGuard::with_id(
                    &self.store,
                    self.conversation_id.clone().into(),
                    held,
                    o,
                ))
            }
            _ => {
                crate::metrics::not_acquired("lost", self.started.elapsed());
                tracing::warn!(
                    conversation_id = id,
                    ticket = ticket.number,
                    "ticket lost while waiting"
                );
                Err(Error::Expired {
                    conversation_id: id.to_string(),
                    ticket: ticket.number,
                })
            }
        }
    }
}

/// The `lock acquired` event. The ticket by value: with a `&Held` the
/// caller wrote it to memory field by field and, at once, read it back
/// whole for the guard, before those stores had landed (a
/// store-forwarding stall).
fn acquired_event(id: &str, held: Held) {
    tracing::debug!(
        conversation_id = id,
        ticket = held.ticket.number,
        fencing_token = held.fencing_token,
        waited_us = held.waited.as_micros() as u64,
        "lock acquired"
    );
}

impl Drop for QueuedTicket {
    fn drop(&mut self) {
        if self.waiting {
            crate::metrics::waiting(&self.store, -1);
        }
        if self.armed {
            let (id, ticket) = (&*self.conversation_id, self.ticket);
            tracing::debug!(
                conversation_id = id,
                ticket = ticket.number,
                "ticket withdrawn"
            );
            dispatch!(&self.store, b => b.release_on_drop(id, ticket));
        }
    }
}

impl std::fmt::Debug for QueuedTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedTicket")
            .field("conversation_id", &self.conversation_id)
            .field("ticket", &self.ticket)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// A ticket that was acquired.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub ticket: TicketId,
    pub fencing_token: u64,
    /// Zero for a ticket served at once (the clock is not read for it).
    pub waited: Duration,
}

fn timeout_error(id: &str, started: Instant) -> Error {
    Error::Timeout {
        conversation_id: id.to_string(),
        waited: started.elapsed(),
    }
}

pub(crate) fn validate_id(id: &str) -> Result<()> {
    let message = if id.is_empty() {
        "an empty id cannot name a conversation; use the sender id"
    } else if id.len() > MAX_ID_LEN {
        "longer than 64 KiB (65,536 bytes); use a shorter id, e.g. a hash of it"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        conversation_id: id.chars().take(64).collect(),
        message: message.into(),
    })
}

/// The error of an issue refused because the queue holds `limit` tickets.
pub(crate) fn queue_full(id: &str, limit: usize) -> Error {
    Error::QueueFull {
        conversation_id: id.to_string(),
        limit,
    }
}

/// How long a waiter pauses before looking again after a look failed with
/// [`Error::Unavailable`] (each look already retried on a fresh connection).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Waits until `attempt` is no longer [`Attempt::Queued`]: on push wake-ups
/// and on timers (see [`next_look`]): every waiter looks at least every
/// third of its lifetime, which keeps its ticket alive; only the waiter next
/// in line also looks every `wait_time` and at the holder's expiry. So the
/// looks of a queue's waiters between two changes do not grow with
/// `wait_time` times its depth.
///
/// A look that fails with [`Error::Unavailable`] (the store is down or the
/// connection dropped) does not give the ticket up: the waiter looks again
/// after [`RETRY_PAUSE`] for as long as the ticket is alive, i.e. until a
/// lifetime after the last look that reached the store (measured from
/// before it was sent, so on the safe side), and only then reports the
/// error. `issued_at` is when the request that issued the ticket started.
async fn wait<B: Backend>(
    b: &B,
    id: &str,
    ticket: TicketId,
    mut attempt: Attempt,
    issued_at: Instant,
    o: &LockOptions,
) -> Result<Attempt> {
    let mut watch: Option<Watch> = None;
    // When a push last woke this waiter: the start of a hand-off.
    let mut pushed_at: Option<Instant> = None;
    let mut alive_until = issued_at + o.lifetime;
    loop {
        let Attempt::Queued {
            ahead,
            holder_remaining,
        } = attempt
        else {
            return Ok(attempt);
        };
        match &watch {
            None => {
                // Register before looking again, so a release in between is
                // not missed.
                tracing::debug!(
                    conversation_id = id,
                    ticket = ticket.number,
                    ahead,
                    "waiting"
                );
                let w = b.watch(id, ticket).await?;
                // Every push since the ticket was asked for reached the
                // watch (its process's channel was subscribed before): a
                // grant is in it, a wake-up signalled, and nothing else
                // changed that a look would learn. Wait without one.
                let heard = w.hears_everything_since(issued_at);
                watch = Some(w);
                if heard {
                    match watch.as_ref().and_then(Watch::take_grant) {
                        Some(granted) => return Ok(granted),
                        None => continue,
                    }
                }
            }
            Some(w) => {
                let (pause, cause) = next_look(ahead, holder_remaining, o);
                let pushed = tokio::select! {
                    biased;
                    () = w.changed() => true,
                    () = tokio::time::sleep(pause) => false,
                };
                crate::metrics::wakeup(if pushed { "push" } else { cause.label() });
                pushed_at = pushed.then(Instant::now);
            }
        }
        // A grant pushed by the release (native layout): held, no call.
        if let Some(granted) = watch.as_ref().and_then(Watch::take_grant) {
            if let Some(at) = pushed_at {
                crate::metrics::handoff(at.elapsed());
            }
            return Ok(granted);
        }
        let sent = Instant::now();
        attempt = match b.try_acquire(id, ticket, o.lifetime).await {
            Ok(attempt) => {
                alive_until = sent + o.lifetime;
                attempt
            }
            Err(e @ Error::Unavailable { .. }) => {
                if Instant::now() + RETRY_PAUSE >= alive_until {
                    return Err(e);
                }
                tracing::debug!(
                    conversation_id = id,
                    ticket = ticket.number,
                    error = %e,
                    "look at the queue failed; keeping the ticket and looking again"
                );
                // Look again after the pause (or at a wake-up), whatever
                // the ticket's place.
                Attempt::Queued {
                    ahead: 0,
                    holder_remaining: Some(RETRY_PAUSE),
                }
            }
            Err(e) => return Err(e),
        };
        if let (Some(at), Attempt::Acquired { .. }) = (pushed_at, attempt) {
            crate::metrics::handoff(at.elapsed());
        }
    }
}

/// Why a waiter looks at the queue without a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// A third of the lifetime passed: the look keeps the ticket alive.
    KeepAlive,
    /// Next in line, `wait_time` passed (a release by a Rasa process
    /// publishes nothing).
    WaitTime,
    /// Next in line, the holder's lease ends.
    HolderExpiry,
}

impl Look {
    fn label(self) -> &'static str {
        match self {
            Look::KeepAlive => "keep_alive",
            Look::WaitTime => "wait_time",
            Look::HolderExpiry => "holder_expiry",
        }
    }
}

/// How long a waiter `ahead` places behind the head pauses before it looks
/// again unless a push wakes it, and why it looks then.
///
/// Every waiter looks at least every third of its lifetime (keep-alive).
/// Only the waiter next in line (`ahead` <= 1: the holder alone is ahead)
/// also looks every `wait_time` and just after the holder's expiry: it is
/// the one a release by a Rasa process or a vanished holder lets in. A
/// waiter further back learns of a change by a push (a head-change message
/// also wakes the waiter of this process behind the new head, see
/// `redis/subscriber.rs`) or at its keep-alive.
fn next_look(ahead: u64, holder_remaining: Option<Duration>, o: &LockOptions) -> (Duration, Look) {
    let keep_alive = (o.lifetime / 3).max(Duration::from_millis(1));
    let mut next = (keep_alive, Look::KeepAlive);
    if ahead > 1 {
        return next;
    }
    let wait_time = o.wait_time.max(Duration::from_millis(1));
    if wait_time < next.0 {
        next = (wait_time, Look::WaitTime);
    }
    if let Some(r) = holder_remaining.map(|r| r + EXPIRY_SLACK)
        && r < next.0
    {
        next = (r, Look::HolderExpiry);
    }
    next
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use crate::LockStore;

    #[tokio::test(flavor = "current_thread")]
    async fn a_loop_of_free_locks_lets_the_other_tasks_of_its_thread_run() {
        let store = LockStore::in_memory();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        tokio::spawn(async move { flag.store(true, Ordering::Relaxed) });
        // Never awaits anything but the store: without a yield inside
        // `lock`, the spawned task could run only after the loop.
        let mut seen_at = None;
        for i in 0..10_000 {
            let guard = store.lock("c").await.expect("a free lock");
            guard.release().await.expect("a held lock");
            if seen_at.is_none() && ran.load(Ordering::Relaxed) {
                seen_at = Some(i);
            }
        }
        let at = seen_at.expect("the other task never ran during 10,000 free locks");
        // Tokio's budget is 128 operations per turn.
        assert!(at <= 1_000, "the other task ran only after {at} locks");
    }

    #[test]
    fn only_the_waiter_next_in_line_looks_every_wait_time_and_at_the_expiry() {
        use super::{LockOptions, Look, next_look};
        let o = LockOptions::new(Duration::from_secs(6));
        let expiry = Some(Duration::from_millis(500));
        // Far back: the keep-alive alone, a third of the lifetime.
        for ahead in [2, 3, 999] {
            assert_eq!(
                next_look(ahead, expiry, &o),
                (Duration::from_secs(2), Look::KeepAlive)
            );
        }
        // Next in line: the holder's expiry (plus the slack), else wait_time.
        for ahead in [0, 1] {
            assert_eq!(
                next_look(ahead, expiry, &o),
                (Duration::from_millis(501), Look::HolderExpiry)
            );
            assert_eq!(
                next_look(ahead, Some(Duration::from_secs(30)), &o),
                (Duration::from_secs(1), Look::WaitTime)
            );
            assert_eq!(
                next_look(ahead, None, &o),
                (Duration::from_secs(1), Look::WaitTime)
            );
        }
        // A wait_time longer than the keep-alive never delays it.
        let mut long = o;
        long.wait_time = Duration::from_secs(3600);
        assert_eq!(
            next_look(1, None, &long),
            (Duration::from_secs(2), Look::KeepAlive)
        );
        // Nor does a far holder expiry.
        assert_eq!(
            next_look(1, Some(Duration::from_secs(30)), &long),
            (Duration::from_secs(2), Look::KeepAlive)
        );
    }

    #[test]
    fn the_lock_future_is_named_send_and_small() {
        fn send_unpin<T: Send + Unpin>() {}
        send_unpin::<super::LockFuture<'static>>();
        // The request and a pointer: awaiting it copies little (the boxed
        // future it replaced was two words, but cost an allocation).
        let size = std::mem::size_of::<super::LockFuture<'static>>();
        assert!(size <= 96, "{size} bytes");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_lock_served_at_once_waited_zero_and_a_queued_one_its_time_in_the_queue() {
        let store = LockStore::in_memory();
        let first = store.lock("c").await.expect("a free lock");
        assert_eq!(first.waited(), Duration::ZERO);
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { store.lock("c").await }
        });
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(5)).await;
        first.release().await.expect("held");
        let second = waiter.await.expect("no panic").expect("served");
        assert_eq!(second.waited(), Duration::from_secs(5));
        second.release().await.expect("held");
        // Enqueued and served at once: no wait, however late `acquired` is
        // called.
        let queued = store.lock("c").enqueue().await.expect("a ticket");
        assert!(queued.is_served());
        tokio::time::advance(Duration::from_secs(3)).await;
        let third = queued.acquired().await.expect("served");
        assert_eq!(third.waited(), Duration::ZERO);
        third.release().await.expect("held");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn served_at_once_and_queued_guards_report_the_same_facts() {
        let store = LockStore::in_memory();
        let first = store.lock("c").await.expect("a free lock");
        assert_eq!(first.conversation_id(), "c");
        assert_eq!(first.ticket(), 0);
        assert!(!first.is_lost());
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { store.lock("c").await }
        });
        tokio::task::yield_now().await;
        let token = first.fencing_token();
        first.release().await.expect("held");
        let second = waiter
            .await
            .expect("no panic")
            .expect("served after the release");
        assert_eq!(second.conversation_id(), "c");
        assert_eq!(second.ticket(), 1);
        assert!(second.fencing_token() > token);
        assert!(!second.is_lost());
        assert!(second.is_held().await.expect("in memory"));
        second.release().await.expect("held");
    }
}
