//! The guard of a held lock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::backend::{Backend, TicketId};
use crate::lock::{Held, LockOptions, on_backend};
use crate::store::{Kind, dispatch};
use crate::{Error, LockStore, Result};

/// Proof that a conversation's lock is held.
///
/// Release it with [`LockGuard::release`], which reports whether the lock
/// was still held. Dropping the guard also releases (at once in memory, with
/// a spawned round trip on Redis); if even that cannot reach the store, the
/// lease ends after its lifetime.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    /// One pointer. The guard is moved several times in every cycle (out
    /// of the lock future, through each layer of the caller that converts
    /// the error, `?`, into `release`): its state inline was 128 bytes,
    /// built field by field and copied at once in 16-byte pieces, and each
    /// copy's loads waited for the narrower stores before them to land (a
    /// store-forwarding stall); those moves cost a one-task cycle more than
    /// the allocation of the box, which reuses the block the last guard freed.
    state: Box<GuardState>,
}

/// What a [`LockGuard`] holds.
struct GuardState {
    /// The store's backend (not the whole [`LockStore`], whose default
    /// lifetime the guard does not need).
    kind: Kind,
    conversation_id: GuardId,
    ticket: TicketId,
    fencing_token: u64,
    waited_ns: u64,
    lifetime_ns: u64,
    /// Whether the guard learnt that its lease ran out (with no renewer;
    /// see [`Renewal`]).
    lost: AtomicBool,
    renewal: Option<Box<Renewal>>,
    released: bool,
    #[cfg(feature = "metrics")]
    acquired_at: tokio::time::Instant,
}

/// The renewer task of an auto-renewed guard and the lost flag it shares
/// with the guard (a guard without one keeps its flag inline: no
/// allocation per lock).
struct Renewal {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl LockGuard {
    /// The guard of `conversation_id`, keeping its own copy of the id
    /// (inline when short, see [`GuardId`]), written straight into the
    /// box: built beside it and moved in, the copy was read back in wide
    /// pieces before its narrow stores had landed.
    #[inline]
    pub(crate) fn new(
        store: &LockStore,
        conversation_id: &str,
        held: Held,
        o: LockOptions,
    ) -> Self {
        if conversation_id.len() > GuardId::INLINE {
            return LockGuard::with_id(store, GuardId::Shared(conversation_id.into()), held, o);
        }
        let mut guard = LockGuard::build(store, GuardId::EMPTY, held, o);
        guard.state.conversation_id.set_inline(conversation_id);
        guard.renew_in_background(store, o);
        guard
    }

    /// The guard of a ticket whose id is already shared (a queued ticket's).
    pub(crate) fn with_id(store: &LockStore, id: GuardId, held: Held, o: LockOptions) -> Self {
        let mut guard = LockGuard::build(store, id, held, o);
        guard.renew_in_background(store, o);
        guard
    }

    #[inline]
    fn build(store: &LockStore, conversation_id: GuardId, held: Held, o: LockOptions) -> Self {
        crate::metrics::guard_made(&store.kind);
        LockGuard {
            state: Box::new(GuardState {
                kind: store.kind.clone(),
                conversation_id,
                ticket: held.ticket,
                fencing_token: held.fencing_token,
                waited_ns: nanos(held.waited),
                lifetime_ns: nanos(o.lifetime),
                lost: AtomicBool::new(false),
                renewal: None,
                released: false,
                #[cfg(feature = "metrics")]
                acquired_at: tokio::time::Instant::now(),
            }),
        }
    }

    /// With `auto_renew`, starts the renewer.
    #[inline]
    fn renew_in_background(&mut self, store: &LockStore, o: LockOptions) {
        if o.auto_renew {
            let state = &mut *self.state;
            let lost = Arc::new(AtomicBool::new(false));
            let task = spawn_renewer(
                store.clone(),
                state.conversation_id.to_shared(),
                state.ticket,
                o.lifetime,
                lost.clone(),
            );
            state.renewal = Some(Box::new(Renewal { task, lost }));
        }
    }

    /// The lost flag: the renewer's while there is one.
    fn lost_flag(&self) -> &AtomicBool {
        self.state
            .renewal
            .as_ref()
            .map_or(&self.state.lost, |r| &r.lost)
    }

    /// The conversation whose lock this is.
    pub fn conversation_id(&self) -> &str {
        self.state.conversation_id.as_str()
    }

    /// The ticket number this guard was served with.
    pub fn ticket(&self) -> u64 {
        self.state.ticket.number
    }

    /// The ticket with its record epoch.
    pub fn ticket_id(&self) -> TicketId {
        self.state.ticket
    }

    /// A token strictly greater than that of every earlier holder of this
    /// conversation, also across deletion of its record. Pass it to the
    /// stores you write under the lock, so that they can refuse a write from
    /// a holder whose lease ran out (fencing).
    pub fn fencing_token(&self) -> u64 {
        self.state.fencing_token
    }

    /// How long the ticket waited in the queue before it was served:
    /// zero when it was served at once.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.state.waited_ns)
    }

    /// The lifetime each renewal grants.
    pub fn lifetime(&self) -> Duration {
        Duration::from_nanos(self.state.lifetime_ns)
    }

    /// Extends the lease to one lifetime from now.
    ///
    /// Fails with [`Error::Expired`] when the lease already ran out (another
    /// holder may have entered): stop the work, it is no longer exclusive.
    pub async fn renew(&self) -> Result<()> {
        self.renew_for(self.lifetime()).await
    }

    /// Extends the lease to `lifetime` from now; see [`LockGuard::renew`].
    pub async fn renew_for(&self, lifetime: Duration) -> Result<()> {
        let (id, ticket) = (self.state.conversation_id.as_str(), self.state.ticket);
        let renewed = on_backend!(self.state, b => b.renew(id, ticket, lifetime));
        if renewed.is_err() {
            crate::metrics::renewal(false);
        }
        if renewed? {
            crate::metrics::renewal(true);
            tracing::debug!(
                conversation_id = id,
                ticket = ticket.number,
                "lease renewed"
            );
            Ok(())
        } else {
            mark_lost(self.lost_flag());
            tracing::warn!(
                conversation_id = id,
                ticket = ticket.number,
                "lease expired before renewal"
            );
            Err(self.expired())
        }
    }

    /// Asks the store whether this guard still holds the lock.
    pub async fn is_held(&self) -> Result<bool> {
        let (id, ticket) = (self.state.conversation_id.as_str(), self.state.ticket);
        let held = on_backend!(self.state, b => b.check(id, ticket))?;
        if !held {
            mark_lost(self.lost_flag());
        }
        Ok(held)
    }

    /// Whether this guard has learnt that its lease ran out (from a renewal,
    /// automatic or not, or from [`LockGuard::is_held`]). Costs nothing.
    pub fn is_lost(&self) -> bool {
        self.lost_flag().load(Ordering::Relaxed)
    }

    /// Releases the lock and wakes the next waiter.
    ///
    /// Fails with [`Error::Expired`] when the ticket was no longer in the
    /// queue (the lease ran out earlier, so the work under the lock may not
    /// have been exclusive), and with [`Error::Unavailable`] when the store
    /// could not be reached. The release is then tried once more in the
    /// background (within one more socket timeout and its retry), so that
    /// a store back by then frees the conversation at once; else the lease
    /// ends after its lifetime.
    ///
    /// In memory the lock is released by this call, and the future only
    /// hands over the answer: no future holding the guard is made or moved
    /// (one was 448 bytes, and copying it cost more than the release). On
    /// a remote store the round trip is made when the future is awaited.
    pub fn release(mut self) -> impl Future<Output = Result<()>> + Send + 'static {
        self.stop_renewer();
        match &self.state.kind {
            // The id's bytes: no UTF-8 check of the inline copy.
            Kind::InMemory(m) => {
                self.state.released = true;
                let was_there = m.remove(self.state.conversation_id.as_bytes(), self.state.ticket);
                self.released_event(was_there);
                if was_there {
                    Release::Held
                } else {
                    Release::Lost(Box::new(self.lost_now()))
                }
            }
            // A future dropped before its first poll drops the guard
            // unreleased, which releases it in the background.
            #[allow(unreachable_patterns)]
            _ => Release::Remote(Box::pin(async move {
                self.state.released = true;
                let (id, ticket) = (self.state.conversation_id.as_str(), self.state.ticket);
                match on_backend!(self.state, b => b.release(id, ticket)) {
                    Ok(was_there) => self.released_with(was_there),
                    Err(e) => {
                        if e.is_transient() {
                            // Not reached within the call and its retry:
                            // once more in the background, so that a store
                            // back within a socket timeout frees the
                            // conversation then, not at the lease's end. A
                            // repeat of a release that did run answers
                            // what it did (request ids) and removes nothing
                            // else: the ticket is this guard's alone.
                            dispatch!(self.state, b => b.release_on_drop(id, ticket));
                        }
                        Err(e)
                    }
                }
            })),
        }
    }

    /// The answer of a release that found the ticket (`was_there`) or not.
    fn released_with(&self, was_there: bool) -> Result<()> {
        self.released_event(was_there);
        if was_there {
            Ok(())
        } else {
            Err(self.lost_now())
        }
    }

    #[inline]
    fn released_event(&self, was_there: bool) {
        tracing::debug!(
            conversation_id = self.state.conversation_id.as_str(),
            ticket = self.state.ticket.number,
            was_there,
            "lock released"
        );
    }

    /// A release found the ticket gone: marks the guard lost; the error.
    #[cold]
    fn lost_now(&self) -> Error {
        mark_lost(self.lost_flag());
        self.expired()
    }

    fn expired(&self) -> Error {
        Error::Expired {
            conversation_id: self.state.conversation_id.as_str().to_string(),
            ticket: self.state.ticket.number,
        }
    }

    #[inline]
    fn stop_renewer(&mut self) {
        if let Some(r) = self.state.renewal.take() {
            r.task.abort();
            // The flag stays the guard's.
            self.state
                .lost
                .store(r.lost.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// The future of [`LockGuard::release`]: three words. In memory it holds
/// only the answer, and a success as no more than its variant: an answer
/// kept as a `Result<()>` (the size of an [`Error`]) was written as its
/// tag alone and then copied whole, and the copy's wide loads waited for
/// that narrow store to land (a store-forwarding stall in every cycle).
enum Release {
    /// Released in memory while it was held: `Ok(())`, until it is taken.
    Held,
    /// Released in memory, the ticket gone: the error (boxed: rare, and it
    /// would make this future as large as an error).
    Lost(Box<Error>),
    /// The answer was taken.
    Done,
    /// A remote store's round trip.
    Remote(Pin<Box<dyn Future<Output = Result<()>> + Send>>),
}

impl Future for Release {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        match this {
            Release::Remote(f) => f.as_mut().poll(cx),
            _ => match std::mem::replace(this, Release::Done) {
                Release::Held => Poll::Ready(Ok(())),
                Release::Lost(error) => Poll::Ready(Err(*error)),
                _ => panic!("a release future was polled after it completed"),
            },
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop_renewer();
        #[cfg(feature = "metrics")]
        let held_for = Some(self.state.acquired_at.elapsed());
        #[cfg(not(feature = "metrics"))]
        let held_for = None;
        crate::metrics::guard_gone(&self.state.kind, held_for);
        if !self.state.released {
            tracing::debug!(
                conversation_id = self.state.conversation_id.as_str(),
                ticket = self.state.ticket.number,
                "lock released on drop"
            );
            let (id, ticket) = (&self.state.conversation_id, self.state.ticket);
            match &self.state.kind {
                Kind::InMemory(m) => {
                    m.remove(id.as_bytes(), ticket);
                }
                #[allow(unreachable_patterns)]
                _ => dispatch!(self.state, b => b.release_on_drop(id.as_str(), ticket)),
            }
        }
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("conversation_id", &self.state.conversation_id.as_str())
            .field("ticket", &self.state.ticket)
            .field("fencing_token", &self.state.fencing_token)
            .field("lifetime", &self.lifetime())
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// The guard's own copy of its conversation id: inline when it is at most
/// [`GuardId::INLINE`] bytes long (a UUID's 36 fit), so that a lock taken
/// at once allocates nothing for its guard (an `Arc<str>` copy was an
/// allocation, a copy and a free per cycle, a tenth of an uncontended
/// cycle); a longer id, or one already shared with a queued ticket, is an
/// `Arc<str>`. The store's entry keeps its own copy: sharing that one would
/// make every held conversation 16 bytes larger (an `Arc`'s counts).
#[derive(Clone)]
pub(crate) enum GuardId {
    Inline {
        len: u8,
        bytes: [u8; GuardId::INLINE],
    },
    Shared(Arc<str>),
}

impl GuardId {
    /// The longest id kept inline, in bytes: the enum is then 40 bytes.
    pub(crate) const INLINE: usize = 38;

    /// An inline id of no bytes, to be set with [`GuardId::set_inline`].
    const EMPTY: GuardId = GuardId::Inline {
        len: 0,
        bytes: [0; GuardId::INLINE],
    };

    /// Makes this an inline copy of `id`, of at most [`GuardId::INLINE`]
    /// bytes (a longer one is shared instead).
    #[inline]
    fn set_inline(&mut self, id: &str) {
        match (self, u8::try_from(id.len())) {
            (GuardId::Inline { len, bytes }, Ok(n)) if id.len() <= GuardId::INLINE => {
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                *len = n;
            }
            (this, _) => *this = GuardId::Shared(id.into()),
        }
    }

    /// The id. An inline one is checked as UTF-8 again (it was copied
    /// from a `str` whole, so it always is; the crate has no `unsafe`):
    /// about 200 instructions for 36 bytes, so the paths of every cycle
    /// (release, drop, the events when nobody listens) use
    /// [`GuardId::as_bytes`] or call this only when needed.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            GuardId::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            GuardId::Shared(id) => id,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            GuardId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            GuardId::Shared(id) => id.as_bytes(),
        }
    }

    /// The id as an `Arc<str>`, for a task that outlives the guard's borrow.
    fn to_shared(&self) -> Arc<str> {
        match self {
            GuardId::Inline { .. } => self.as_str().into(),
            GuardId::Shared(id) => id.clone(),
        }
    }
}

impl From<&str> for GuardId {
    #[inline]
    fn from(id: &str) -> Self {
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= GuardId::INLINE => {
                let mut bytes = [0; GuardId::INLINE];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                GuardId::Inline { len, bytes }
            }
            _ => GuardId::Shared(id.into()),
        }
    }
}

impl AsRef<str> for GuardId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<Arc<str>> for GuardId {
    fn from(id: Arc<str>) -> Self {
        GuardId::Shared(id)
    }
}

/// A duration in nanoseconds, saturating (at 584 years, longer than any
/// lease that matters).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn spawn_renewer(
    store: LockStore,
    id: Arc<str>,
    ticket: TicketId,
    lifetime: Duration,
    lost: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let every = (lifetime / 3).max(Duration::from_millis(1));
    tokio::spawn(async move {
        let id = &*id;
        loop {
            tokio::time::sleep(every).await;
            match dispatch!(&store, b => b.renew(id, ticket, lifetime).await) {
                Ok(true) => {
                    crate::metrics::renewal(true);
                    tracing::trace!(
                        conversation_id = id,
                        ticket = ticket.number,
                        "lease renewed"
                    )
                }
                Ok(false) => {
                    mark_lost(&lost);
                    tracing::warn!(
                        conversation_id = id,
                        ticket = ticket.number,
                        "lease expired before renewal"
                    );
                    return;
                }
                // A blip: try again at the next period; the lease has two
                // more periods to run.
                Err(e) => {
                    crate::metrics::renewal(false);
                    tracing::warn!(conversation_id = id, ticket = ticket.number, error = %e, "lease renewal failed")
                }
            }
        }
    })
}

/// Sets the lost flag; counts the lease as lost the first time.
fn mark_lost(flag: &AtomicBool) {
    if !flag.swap(true, Ordering::Relaxed) {
        crate::metrics::lease_lost();
    }
}

#[cfg(test)]
mod tests {
    use super::{GuardId, LockGuard};
    use crate::LockStore;

    #[test]
    fn a_guard_id_reads_back_as_the_id_it_was_made_from() {
        let cases = [
            "c".to_string(),
            "4f1c9d0e-0000-4000-8000-00000000002a".to_string(),
            "x".repeat(GuardId::INLINE),
            "x".repeat(GuardId::INLINE + 1),
            // Multi-byte characters, one of them across the inline bound.
            format!("{}é", "x".repeat(GuardId::INLINE - 1)),
            "über-ß-会話".to_string(),
            "y".repeat(1000),
        ];
        for id in &cases {
            let g = GuardId::from(id.as_str());
            assert_eq!(g.as_str(), id);
            assert_eq!(g.as_bytes(), id.as_bytes());
            assert_eq!(&*g.to_shared(), id);
            let inline = matches!(g, GuardId::Inline { .. });
            assert_eq!(inline, id.len() <= GuardId::INLINE, "{id:?}");
        }
        let shared = GuardId::from(std::sync::Arc::<str>::from("shared"));
        assert_eq!(shared.as_str(), "shared");
        assert!(std::mem::size_of::<GuardId>() <= 40);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_guard_is_one_pointer_and_an_in_memory_release_is_done_by_the_call() {
        // Moved in a register (see the guard's field), and wrapped in a
        // result no larger than the error.
        assert_eq!(
            std::mem::size_of::<LockGuard>(),
            std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<crate::Result<LockGuard>>(),
            std::mem::size_of::<crate::Error>()
        );
        let store = LockStore::in_memory();
        let memory = store.as_in_memory().expect("in memory").clone();
        let guard = store.lock("c").await.expect("free");
        let release = guard.release();
        // The future holds the answer only, not the guard: three words
        // (a remote store's boxed future is two).
        assert!(std::mem::size_of_val(&release) <= 24);
        assert!(memory.is_empty(), "not released by the call");
        release.await.expect("held");
        // A lost lease is reported by the future all the same.
        let guard = store
            .lock("c")
            .lifetime(std::time::Duration::from_secs(60))
            .await
            .expect("free");
        store.delete_lock("c").await.expect("in memory");
        let release = guard.release();
        assert!(matches!(
            release.await,
            Err(crate::Error::Expired { ticket: 0, .. })
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn guards_name_and_release_the_conversation_they_were_given() {
        let store = LockStore::in_memory();
        let memory = store.as_in_memory().expect("in memory").clone();
        let long = "z".repeat(GuardId::INLINE + 10);
        for id in [
            "c",
            "4f1c9d0e-0000-4000-8000-00000000002a",
            "会話-7",
            long.as_str(),
        ] {
            // Served at once (an inline or shared id), released.
            let guard = store.lock(id).await.expect("free");
            assert_eq!(guard.conversation_id(), id);
            assert!(guard.is_held().await.expect("in memory"));
            guard.release().await.expect("held");
            assert!(memory.is_empty(), "{id:?} still has a record");
            // Served at once, dropped.
            let guard = store.lock(id).await.expect("free");
            drop(guard);
            assert!(memory.is_empty(), "{id:?} kept after a drop");
            // Served after a wait (the queued ticket's shared id).
            let holder = store.lock(id).await.expect("free");
            let queued = store.lock(id).enqueue().await.expect("a ticket");
            holder.release().await.expect("held");
            let guard = queued.acquired().await.expect("handed over");
            assert_eq!(guard.conversation_id(), id);
            assert!(format!("{guard:?}").contains(id));
            guard.release().await.expect("held");
            assert!(memory.is_empty());
        }
    }
}
