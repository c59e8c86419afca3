//! The native layout's server-side scripts, one per operation.
//!
//! Each is a one-line prelude naming the publish command, then
//! `common.lua` (the state, prune, grant, advance, TTL), the helpers of
//! `../request.lua` for issue and release (shared with the rasa layout),
//! the operation as a function `main(KEYS, ARGV)`, `bind.lua` (this call's
//! key and name prefix into the helpers' locals), then the call of `main`.
//! Every operation takes one key, the conversation's hash, and the prefix
//! of its other keys and channels as ARGV[1]; the scripts name those from
//! it, in the hash's cluster slot. The Functions library defines the
//! helpers and each `main` once instead (see [`Library`]).
//! Called by hash (EVALSHA), loaded again on NOSCRIPT. Two flavours, as in
//! the rasa layout: PUBLISH, or SPUBLISH on a cluster (the channels are in
//! the conversation's slot).

use std::sync::LazyLock;

use redis::Script;

/// A script for EVALSHA: effects replication where the server has the
/// choice (Redis before 5, so that `TIME` may come before writes; the only
/// mode since 7, so the library needs no such line), the prelude, the
/// helpers, the operation as the function `main`, the binding of this
/// call's key, then the call.
macro_rules! script {
    ($publish:literal, $file:literal) => {
        Script::new(concat!(
            "if redis.replicate_commands then pcall(redis.replicate_commands) end\n",
            "local PUBLISH = '",
            $publish,
            "'\n",
            include_str!("common.lua"),
            "\n",
            op!($file)
        ))
    };
}

macro_rules! request_script {
    ($publish:literal, $file:literal) => {
        Script::new(concat!(
            "if redis.replicate_commands then pcall(redis.replicate_commands) end\n",
            "local PUBLISH = '",
            $publish,
            "'\n",
            include_str!("common.lua"),
            "\n",
            include_str!("../request.lua"),
            "\n",
            op!($file)
        ))
    };
}

/// One operation as a script's tail: its file as the function `main`
/// (defined once, not per call, in the library), then the call.
macro_rules! op {
    ($file:literal) => {
        concat!(
            "local function main(KEYS, ARGV)\n",
            include_str!($file),
            "\nend\n",
            include_str!("bind.lua"),
            "\nreturn run(main, KEYS, ARGV)\n"
        )
    };
}

/// The library's shared part: the prelude and every helper, defined once
/// when the library is loaded.
macro_rules! shared {
    ($publish:literal) => {
        concat!(
            "local PUBLISH = '",
            $publish,
            "'\n",
            include_str!("common.lua"),
            "\n",
            include_str!("../request.lua"),
            "\n"
        )
    };
}

/// One operation's part of the library: its `main`, defined once, and
/// the registered function's body (this call's key bound, then `main`).
macro_rules! body {
    ($file:literal) => {
        (
            concat!(
                "local function main(KEYS, ARGV)\n",
                include_str!($file),
                "\nend\n"
            ),
            concat!(include_str!("bind.lua"), "\nreturn run(main, KEYS, ARGV)\n"),
        )
    };
}

macro_rules! library {
    ($publish:literal) => {
        Library::new(
            shared!($publish),
            &[
                ("issue", body!("issue.lua")),
                ("try_acquire", body!("try_acquire.lua")),
                ("release", body!("release.lua")),
                ("renew", body!("renew.lua")),
                ("check", body!("check.lua")),
                ("update", body!("update.lua")),
                ("get", body!("get.lua")),
                ("save", body!("save.lua")),
                ("delete", body!("delete.lua")),
            ],
        )
    };
}

/// The same operations as one Redis Functions library (Redis 7+), called
/// with FCALL: `ticketlock_<hash>`, its functions `tl<hash>_<operation>`,
/// the hash of the library's text, so that two versions of this crate on
/// one server never replace each other's functions.
///
/// The helpers (`common.lua`, `../request.lua`) and each operation's
/// `main` are defined once, at the library's top level, when it is loaded;
/// each registered function binds its call's key into their locals
/// (`bind.lua`) and calls its `main`. A script run by EVALSHA defines them
/// all again on every call, which is most of what a short call costs the
/// server.
pub(crate) struct Library {
    pub source: String,
    /// Each operation and its function's name, made once (a call names
    /// its function without formatting it).
    functions: Vec<(&'static str, String)>,
}

impl Library {
    fn new(shared: &str, ops: &[(&'static str, (&str, &str))]) -> Library {
        let all: String = std::iter::once(shared)
            .chain(ops.iter().flat_map(|(_, (main, call))| [*main, *call]))
            .collect();
        let hash = Script::new(&all).get_hash()[..16].to_string();
        let prefix = format!("tl{hash}_");
        let mut source = format!("#!lua name=ticketlock_{hash}\n{shared}\n");
        for (name, (main, call)) in ops {
            source.push_str(&format!(
                "do\n{main}redis.register_function('{prefix}{name}', function(KEYS, ARGV)\n{call}end)\nend\n"
            ));
        }
        let functions = ops
            .iter()
            .map(|(name, _)| (*name, format!("{prefix}{name}")))
            .collect();
        Library { source, functions }
    }

    /// The function of `operation` (a file name without `.lua`).
    pub fn function(&self, operation: &str) -> &str {
        self.functions
            .iter()
            .find(|(name, _)| *name == operation)
            .map(|(_, function)| function.as_str())
            .expect("an operation of the library")
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

/// For a standalone server or a sentinel-managed primary.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| scripts!("PUBLISH"));

/// For a cluster: wake-ups with sharded pub/sub.
pub(crate) static SHARDED_SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| scripts!("SPUBLISH"));

/// The error code a script answers with when it meets a conversation of
/// the other layout (`LAYOUT rasa` here, `LAYOUT native` from the rasa
/// layout's scripts).
pub(crate) const LAYOUT: &str = "LAYOUT";
