//! The native layout's server-side scripts, one per operation.
//!
//! Each is a one-line prelude naming the publish command, then
//! `common.lua` (the keys, the state, prune, grant, advance, TTL), then the
//! operation; issue and release also take the request's entry (KEYS[2])
//! with the helpers of `../request.lua`, shared with the rasa layout.
//! Called by hash (EVALSHA), loaded again on NOSCRIPT. Two flavours, as in
//! the rasa layout: PUBLISH, or SPUBLISH on a cluster (the channels are in
//! the conversation's slot).

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
            include_str!($file)
        ))
    };
}

macro_rules! request_script {
    ($publish:literal, $file:literal) => {
        Script::new(concat!(
            "local PUBLISH = '",
            $publish,
            "'\n",
            include_str!("common.lua"),
            "\n",
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
            get: script!($publish, "get.lua"),
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
    pub get: Script,
    pub save: Script,
    pub delete: Script,
}

/// For a standalone server or a sentinel-managed primary.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| scripts!("PUBLISH"));

/// For a cluster: wake-ups with sharded pub/sub.
pub(crate) static SHARDED_SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| scripts!("SPUBLISH"));

/// The error code a script answers with when it meets a conversation of
/// the other layout (`LAYOUT rasa` here, `LAYOUT native` from the rasa
/// layout's scripts).
pub(crate) const LAYOUT: &str = "LAYOUT";
