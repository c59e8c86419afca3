//! `TICKET_LOCK_LIFETIME` sets the default lifetime of a store made from a
//! configuration, as in Rasa: the lease `run` holds lasts that long.

#[path = "support/cli.rs"]
mod cli;

use cli::{text, ticketlock};
use ticketlock_test_support::RedisServer;

/// The remaining lease of the serving ticket, as `inspect` sees it from
/// inside a `run` started with `TICKET_LOCK_LIFETIME=env`.
fn remaining_with(env: &str) -> f64 {
    let Some(server) = RedisServer::start() else {
        return f64::NAN;
    };
    let url = format!("{}/0", server.url());
    let out = ticketlock()
        .env("TICKET_LOCK_LIFETIME", env)
        .args(["run", "--redis", &url, "c", "--"])
        .arg(env!("CARGO_BIN_EXE_ticketlock"))
        .args(["inspect", "--redis", &url, "c", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ticket = &record["tickets"][0];
    assert_eq!(ticket["status"], "serving", "{record}");
    ticket["remaining_us"].as_f64().unwrap() / 1e6
}

#[test]
fn ticket_lock_lifetime_overrides_the_60_second_default() {
    let remaining = remaining_with("7");
    if remaining.is_nan() {
        return; // no redis-server outside CI
    }
    assert!((5.0..=7.0).contains(&remaining), "{remaining}");
}

#[test]
fn empty_or_zero_keeps_the_default() {
    for env in ["", "0"] {
        let remaining = remaining_with(env);
        if remaining.is_nan() {
            return;
        }
        assert!((58.0..=60.0).contains(&remaining), "{env:?}: {remaining}");
    }
}
