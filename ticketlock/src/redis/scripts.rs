//! The server-side scripts, one per atomic operation.
//!
//! Each is `scripts/common.lua` (record parsing and writing, the clock)
//! followed by the operation, built once as a [`redis::Script`]: called by
//! hash (EVALSHA) and loaded again when the server answers NOSCRIPT (after
//! a restart or SCRIPT FLUSH).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("scripts/common.lua"),
            "\n",
            include_str!($file)
        ))
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

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    issue: script!("scripts/issue.lua"),
    try_acquire: script!("scripts/try_acquire.lua"),
    release: script!("scripts/release.lua"),
    renew: script!("scripts/renew.lua"),
    check: script!("scripts/check.lua"),
    update: script!("scripts/update.lua"),
    save: script!("scripts/save.lua"),
    delete: script!("scripts/delete.lua"),
});

/// The error code a script answers with when the record is corrupt.
pub(crate) const CORRUPT: &str = "CORRUPT";

/// What a script answers about an attempt to acquire.
pub(crate) const ACQUIRED: i64 = 0;
pub(crate) const QUEUED: i64 = 1;
/// What the issue script answers when the queue is full.
pub(crate) const FULL: i64 = 2;
