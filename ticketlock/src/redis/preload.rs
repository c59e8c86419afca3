//! Loading the layout's scripts (or its Functions library) before the
//! store's first call, so that calls keep the order they were made in.
//!
//! A script called by hash on a server that has not seen it yet answers
//! NOSCRIPT, and the caller loads it and sends the call again. Calls made
//! in the meantime that reach the server after the load run before that
//! second send: tickets issued a millisecond apart would be numbered out
//! of their arrival order. So the first calls of a store wait here, in
//! arrival order, while one of them loads what issues tickets (the issue
//! script, or the native layout's Functions library; the other scripts
//! load on NOSCRIPT when first used, their order does not matter);
//! each keeps its turn until its command is on its way (on the one
//! connection the store's commands share), so the ones made after it are
//! sent after it. Once the scripts are loaded and no call is queued, a call
//! passes with two atomic reads.
//!
//! A server that loses its scripts later (a restart without persistence,
//! SCRIPT FLUSH, a new primary that never saw them) still answers
//! NOSCRIPT; the caller loads and sends again as before, and tells this
//! gate, so that calls made after that wait for a load again. Calls that
//! were already on their way at that moment may still be numbered out of
//! order among themselves (RELIABILITY.md says so).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use super::commands::Failure;

#[derive(Default)]
pub(crate) struct Preload {
    /// The scripts are believed loaded on the server.
    ready: AtomicBool,
    /// Calls that wait for their turn or hold it: while there are any, a
    /// new call queues behind them even when the scripts are loaded.
    queued: AtomicUsize,
    /// Held by the call whose turn it is, from its load (if it is the
    /// first) to its answer; the calls behind it wait in arrival order.
    turn: tokio::sync::Mutex<()>,
}

/// A call's turn: it keeps the calls made after it waiting until its
/// command is sent ([`sent_in_turn`]). Dropped with the call.
pub(crate) struct Turn<'a> {
    _turn: Option<tokio::sync::MutexGuard<'a, ()>>,
    queued: &'a AtomicUsize,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Preload {
    /// `None` (one or two atomic reads) when the scripts are loaded and no
    /// call is queued. Otherwise the call waits for its turn, in arrival
    /// order, runs `load` (what issues tickets) if the scripts are
    /// still not loaded, and keeps its turn until its command is sent
    /// ([`sent_in_turn`]), so that calls made later are sent after it.
    ///
    /// The wait and the load take at most `timeout` (the socket timeout):
    /// past it, or on a connection failure, the call fails as it would have
    /// (a slow or dead server). An answer from the server, even an error
    /// (say, an ACL user without SCRIPT), counts as loaded: the call itself
    /// then reports what is wrong.
    pub(crate) async fn turn<F, Fut>(
        &self,
        timeout: Duration,
        load: F,
    ) -> Result<Option<Turn<'_>>, Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), Failure>>,
    {
        if self.ready.load(Ordering::Acquire) && self.queued.load(Ordering::Acquire) == 0 {
            return Ok(None);
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        let mut turn = Turn {
            _turn: None,
            queued: &self.queued,
        };
        let waited = tokio::time::timeout(timeout, async {
            turn._turn = Some(self.turn.lock().await);
            if self.ready.load(Ordering::Acquire) {
                return Ok(());
            }
            match load().await {
                Ok(()) => {}
                Err(Failure::Redis(e)) if e.code().is_some() => {
                    tracing::debug!(error = %e, "redis: loading the scripts was refused; each call loads its own");
                }
                Err(failure) => return Err(failure),
            }
            self.ready.store(true, Ordering::Release);
            Ok(())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(Some(turn)),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// The server answered that a script is missing: the next calls wait
    /// for a load again.
    pub(crate) fn forget(&self) {
        self.ready.store(false, Ordering::Release);
    }
}

/// Runs `call` (a command on the store's shared connection) in `turn`: the
/// first poll sends the command (the multiplexed connection queues it at
/// once), then the turn passes to the next call, then the answer is
/// awaited.
pub(crate) async fn sent_in_turn<F: Future>(turn: Option<Turn<'_>>, call: F) -> F::Output {
    let mut call = std::pin::pin!(call);
    if let Some(turn) = turn {
        let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
        if let Poll::Ready(answer) = first {
            return answer;
        }
        drop(turn);
    }
    call.await
}
