//! Calls to the server: commands and scripts within the socket timeout,
//! EVALSHA with its NOSCRIPT reload, WAIT for `min_replicas_ack`, and the
//! mapping of Redis errors to the crate's.

use super::commands::Failure;
use super::open::config_error;
use super::{PythonStr, RedisLockStore, native, preload, rasa};
use crate::{Error, RedisLayout, Result};

/// A script's answer, and the error to report instead when it changed a
/// record that too few replicas acknowledged (`min_replicas_ack`).
pub(super) struct Replied<T> {
    pub(super) value: T,
    pub(super) unacked: Option<Error>,
}

impl<T> Replied<T> {
    pub(super) fn acked(self) -> Result<T> {
        match self.unacked {
            Some(e) => Err(e),
            None => Ok(self.value),
        }
    }
}

/// What answered with an error.
pub(super) enum Reply {
    /// A plain command: WRONGTYPE means the key holds no record.
    Command,
    /// A script: CORRUPT names what is wrong with the record.
    Script,
}

impl RedisLockStore {
    pub(super) fn unavailable(&self, message: String, source: Option<redis::RedisError>) -> Error {
        Error::unavailable(
            self.inner.describe.clone(),
            message,
            source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        )
    }

    pub(super) fn error(&self, e: redis::RedisError, key: &str, reply: Reply) -> Error {
        if let (Reply::Script, Some(native::LAYOUT)) = (&reply, e.code()) {
            return self.layout_error(key);
        }
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

    /// The error for a conversation at `key` held in the other layout.
    pub(super) fn layout_error(&self, key: &str) -> Error {
        let (theirs, what, ours) = match self.inner.layout {
            RedisLayout::Rasa => ("native", "a hash", "rasa"),
            RedisLayout::Native => ("rasa", "a string", "native"),
        };
        Error::config(
            "lock_store.layout",
            format!(
                "the conversation at {key:?} is held in the {theirs} layout ({what}); this store \
                 uses layout {ours}: set the same layout on every client of this Redis \
                 (layout: {theirs} to use these conversations), or remove them with \
                 `ticketlock clear` in layout {theirs} while no client uses them"
            ),
        )
    }

    pub(super) fn failure(&self, f: Failure, key: &str, reply: Reply) -> Error {
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
    pub(super) async fn query<T: redis::FromRedisValue + Send>(
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
    pub(super) async fn script<T: redis::FromRedisValue + Send>(
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
    pub(super) async fn script_with<T: redis::FromRedisValue + Send>(
        &self,
        script: &'static redis::Script,
        key: &str,
        more: &[&str],
        id: &str,
        args: &[&str],
        grants: bool,
    ) -> Result<Replied<T>> {
        self.script_args(script, key, more, id, args, grants).await
    }

    /// [`RedisLockStore::script_with`] with the arguments after the id as
    /// any [`redis::ToRedisArgs`] (a tuple of numbers, say), written
    /// straight into the command: the usual path formats no string of its
    /// own. The command is EVALSHA, built once (with the id's JSON written
    /// into it), sent again after SCRIPT LOAD when the server answers
    /// NOSCRIPT.
    pub(super) async fn script_args<
        T: redis::FromRedisValue + Send,
        A: redis::ToRedisArgs + Send,
    >(
        &self,
        script: &'static redis::Script,
        key: &str,
        more: &[&str],
        id: &str,
        args: A,
        grants: bool,
    ) -> Result<Replied<T>> {
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(script.get_hash());
        evalsha.arg(1 + more.len()).arg(key);
        for k in more {
            evalsha.arg(*k);
        }
        evalsha.arg(PythonStr(id)).arg(args);
        self.evalsha(script, key, evalsha, grants).await
    }

    /// Waits until the layout's scripts are loaded on the server (the
    /// first calls of a store load them, and get their turns in arrival
    /// order: see `redis/preload.rs`); a failure is reported as one on
    /// `key`.
    pub(super) async fn preloaded(&self, key: &str) -> Result<Option<preload::Turn<'_>>> {
        self.inner
            .preload
            .turn(self.inner.timeout, || async {
                let loaded = match self.inner.layout {
                    RedisLayout::Rasa => rasa::load(self).await,
                    RedisLayout::Native => native::load(self).await,
                };
                match loaded {
                    // A cluster loads on every node: one node down must
                    // not fail the calls on the others, which load their
                    // own scripts on NOSCRIPT as before.
                    Err(failure) if self.inner.sharded => {
                        tracing::debug!(
                            error = %failure,
                            "redis: loading the scripts on every cluster node failed; each call loads its own"
                        );
                        Ok(())
                    }
                    other => other,
                }
            })
            .await
            .map_err(|f| self.failure(f, key, Reply::Script))
    }

    /// Whether `script` is the one loaded before the first call (the issue
    /// script: see `redis/preload.rs`). Only its NOSCRIPT means the server
    /// lost what was loaded; the others load when first used.
    pub(super) fn preloads(&self, script: &redis::Script) -> bool {
        let issue = match self.inner.layout {
            RedisLayout::Rasa => rasa::issue_script(self),
            RedisLayout::Native => native::issue_script(self),
        };
        std::ptr::eq(script, issue)
    }

    /// Loads `scripts` (SCRIPT LOAD, on every node of a cluster), all at
    /// once: the multiplexed connection pipelines them, so that loading
    /// takes one round trip however many scripts there are (on a slow link
    /// one after the other took longer than the socket timeout).
    pub(super) async fn load_scripts(
        &self,
        scripts: &[&'static redis::Script],
    ) -> Result<(), Failure> {
        self.inner
            .commands
            .run(|conn| async move {
                futures_util::future::try_join_all(scripts.iter().map(|script| {
                    let mut conn = conn.clone();
                    async move { script.load_async(&mut conn).await }
                }))
                .await
                .map(drop)
            })
            .await
    }

    /// Sends `evalsha` (an EVALSHA of `script` on the record at `key`),
    /// loading the script and sending it again when the server answers
    /// NOSCRIPT; with `min_replicas_ack` and `grants`, followed by WAIT in
    /// the same round trip.
    pub(super) async fn evalsha<T: redis::FromRedisValue + Send>(
        &self,
        script: &'static redis::Script,
        key: &str,
        evalsha: redis::Cmd,
        grants: bool,
    ) -> Result<Replied<T>> {
        let turn = self.preloaded(key).await?;
        let acks = self.inner.acks.filter(|_| grants);
        let Some((wanted, wait)) = acks else {
            let call = self.inner.commands.run(|mut conn| {
                let evalsha = &evalsha;
                async move {
                    match evalsha.query_async(&mut conn).await {
                        Err(e) if e.code() == Some("NOSCRIPT") => {
                            // The server lost its scripts (or a cluster
                            // node never saw them).
                            if self.preloads(script) {
                                self.inner.preload.forget();
                            }
                            script.load_async(&mut conn).await?;
                            evalsha.query_async(&mut conn).await
                        }
                        reply => reply,
                    }
                }
            });
            let value = preload::sent_in_turn(turn, call)
                .await
                .map_err(|f| self.failure(f, key, Reply::Script))?;
            return Ok(Replied {
                value,
                unacked: None,
            });
        };
        let mut pipe = redis::pipe();
        pipe.add_command(evalsha)
            .cmd("WAIT")
            .arg(wanted)
            .arg(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1))
            // Errors come back as values, so a script's own (CORRUPT) keeps
            // its code.
            .ignore_errors();
        let noscript = |v: &[redis::Value]| matches!(v.first(), Some(redis::Value::ServerError(e)) if e.code() == "NOSCRIPT");
        let call = self.inner.commands.run(|mut conn| {
            let pipe = &pipe;
            async move {
                let values: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
                if !noscript(&values) {
                    return Ok(values);
                }
                // The server lost its scripts (or a cluster node never
                // saw them): load, then again.
                if self.preloads(script) {
                    self.inner.preload.forget();
                }
                script.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await
            }
        });
        let values: Vec<redis::Value> = preload::sent_in_turn(turn, call)
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

    /// How long a request's entry is kept (`redis/request.lua`), in
    /// milliseconds: past every retry of the request (each attempt and the
    /// retry window are bounded by the socket timeout), with a second to
    /// spare for a call that sat in a busy server's queue.
    pub(super) fn request_ttl_ms(&self) -> u64 {
        let ms = self.inner.timeout.saturating_mul(2).as_millis() + 1000;
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    pub(super) fn bad_reply(&self, script: &str, reply: &[i64]) -> Error {
        self.unavailable(
            format!("unexpected reply {reply:?} to the {script} script; is this a Redis server?"),
            None,
        )
    }
}
