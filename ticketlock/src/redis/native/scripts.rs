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

/// The text of one operation, as a script body (for the library).
macro_rules! body {
    ($publish:literal, $file:literal) => {
        concat!(
            "local PUBLISH = '",
            $publish,
            "'\n",
            include_str!("common.lua"),
            "\n",
            include_str!($file)
        )
    };
    ($publish:literal, request $file:literal) => {
        concat!(
            "local PUBLISH = '",
            $publish,
            "'\n",
            include_str!("common.lua"),
            "\n",
            include_str!("../request.lua"),
            "\n",
            include_str!($file)
        )
    };
}

macro_rules! library {
    ($publish:literal) => {
        Library::new(&[
            ("issue", body!($publish, request "issue.lua")),
            ("try_acquire", body!($publish, "try_acquire.lua")),
            ("release", body!($publish, request "release.lua")),
            ("renew", body!($publish, "renew.lua")),
            ("check", body!($publish, "check.lua")),
            ("update", body!($publish, "update.lua")),
            ("get", body!($publish, "get.lua")),
            ("save", body!($publish, "save.lua")),
            ("delete", body!($publish, "delete.lua")),
        ])
    };
}

/// The same operations as one Redis Functions library (Redis 7+), called
/// with FCALL: `ticketlock_<hash>`, its functions `tl<hash>_<operation>`,
/// the hash of the operations' text, so that two versions of this crate
/// on one server never replace each other's functions.
pub(crate) struct Library {
    pub source: String,
    prefix: String,
}

impl Library {
    fn new(ops: &[(&str, &str)]) -> Library {
        let all: String = ops.iter().map(|(_, body)| *body).collect();
        let hash = Script::new(&all).get_hash()[..16].to_string();
        let prefix = format!("tl{hash}_");
        let mut source = format!("#!lua name=ticketlock_{hash}\n");
        for (name, body) in ops {
            source.push_str(&format!(
                "redis.register_function('{prefix}{name}', function(KEYS, ARGV)\n{body}\nend)\n"
            ));
        }
        Library { source, prefix }
    }

    /// The function of `operation` (a file name without `.lua`).
    pub fn function(&self, operation: &str) -> String {
        format!("{}{operation}", self.prefix)
    }
}

/// The library for a standalone server or a sentinel-managed primary.
pub(crate) static LIBRARY: LazyLock<Library> = LazyLock::new(|| library!("PUBLISH"));

/// The library for a cluster.
pub(crate) static SHARDED_LIBRARY: LazyLock<Library> = LazyLock::new(|| library!("SPUBLISH"));

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

impl Scripts {
    /// Every script, to load them all before the first call.
    pub fn all(&self) -> [&Script; 9] {
        [
            &self.issue,
            &self.try_acquire,
            &self.release,
            &self.renew,
            &self.check,
            &self.update,
            &self.get,
            &self.save,
            &self.delete,
        ]
    }
}

/// For a standalone server or a sentinel-managed primary.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| scripts!("PUBLISH"));

/// For a cluster: wake-ups with sharded pub/sub.
pub(crate) static SHARDED_SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| scripts!("SPUBLISH"));

/// The error code a script answers with when it meets a conversation of
/// the other layout (`LAYOUT rasa` here, `LAYOUT native` from the rasa
/// layout's scripts).
pub(crate) const LAYOUT: &str = "LAYOUT";
