//! The server-side scripts, one per atomic operation.
//!
//! Each is a one-line prelude naming the publish command, then
//! `common.lua` (record parsing and writing, the clock), `ours.lua` (our
//! own queue beside the record, which repairs what a stale Rasa write did
//! to it; its key is the last of KEYS), `splice.lua` (the common writes
//! made on the record's text when nobody else wrote since we did), then
//! the operation, built once as a [`redis::Script`]: called by hash (EVALSHA)
//! and loaded again when the server answers NOSCRIPT (after a restart,
//! SCRIPT FLUSH, or on a cluster node that has not seen it yet).
//!
//! Issue and release also take the request's entry (KEYS[2]), read and
//! written by the helpers of `../request.lua`, so that a retried call
//! answers what its first attempt did.
//!
//! Two flavours: `PUBLISH` for a standalone server (any version Rasa
//! supports) and `SPUBLISH` for a cluster, where sharded pub/sub (Redis 7)
//! keeps each wake-up on the shard that owns the key instead of
//! broadcasting it to every node. The channel is the key itself, so it is
//! in the key's slot.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($publish:literal, $file:literal) => {
        Script::new(concat!(
            "local PUBLISH = '",
            $publish,
            "'\n",
            include_str!("common.lua"),
            "\n",
            include_str!("ours.lua"),
            "\n",
            include_str!("splice.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

/// A script that also takes a request's entry (KEYS[2]): the request-id
/// helpers (`../request.lua`) come between the head and the operation.
macro_rules! request_script {
    ($publish:literal, $file:literal) => {
        Script::new(concat!(
            "local PUBLISH = '",
            $publish,
            "'\n",
            include_str!("common.lua"),
            "\n",
            include_str!("ours.lua"),
            "\n",
            include_str!("splice.lua"),
            "\n",
            "local REQUEST = KEYS[2]\n",
            include_str!("../request.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

macro_rules! scripts {
    ($publish:literal) => {
        Scripts {
            issue: request_script!($publish, "issue.lua"),
            try_acquire: script!($publish, "try_acquire.lua"),
            release: request_script!($publish, "release.lua"),
            renew: script!($publish, "renew.lua"),
            check: script!($publish, "check.lua"),
            update: script!($publish, "update.lua"),
            save: script!($publish, "save.lua"),
            delete: script!($publish, "delete.lua"),
        }
    };
}

pub(crate) struct Scripts {
    pub issue: Script,
    pub try_acquire: Script,
    pub release: Script,
    pub renew: Script,
    pub check: Script,
    pub update: Script,
    pub save: Script,
    pub delete: Script,
}

/// For a standalone server or a sentinel-managed primary.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| scripts!("PUBLISH"));

/// For a cluster: wake-ups with sharded pub/sub.
pub(crate) static SHARDED_SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| scripts!("SPUBLISH"));

/// The error code a script answers with when the record is corrupt.
pub(crate) const CORRUPT: &str = "CORRUPT";

/// What a script answers about an attempt to acquire.
pub(crate) const ACQUIRED: i64 = 0;
pub(crate) const QUEUED: i64 = 1;
/// What the issue script answers when the queue is full.
pub(crate) const FULL: i64 = 2;
/// What the issue script answers to a retry whose ticket is gone.
pub(crate) const GONE: i64 = 3;
