//! The PostgreSQL store's own behaviour, on a server of each test's own:
//! faults (the server killed and restarted, stalled, its connections
//! terminated), cancellation at every await point, the rows Rasa's
//! record maps to, and configuration errors.

#![cfg(feature = "postgres")]

#[path = "postgres_store/server.rs"]
#[macro_use]
mod server;

#[path = "postgres_store/schema.rs"]
mod schema;

use std::time::Duration;

use server::{PostgresServer, config};
use ticketlock::{Error, LockStore, PostgresLockStore, Secret};
use tokio::time::Instant;

const HOUR: Duration = Duration::from_secs(3600);

async fn connect(server: &PostgresServer) -> LockStore {
    connect_with(server, config(server)).await
}

async fn connect_with(server: &PostgresServer, c: ticketlock::PostgresConfig) -> LockStore {
    PostgresLockStore::connect(&c)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
        .into()
}

async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many tickets the rows of `id` hold (in its conversation row, or in
/// rows of their own).
fn tickets(server: &PostgresServer, id: &str) -> u64 {
    server
        .psql(&format!(
            "SELECT coalesce(sum(coalesce(cardinality(c.numbers), 0) + \
             (SELECT count(*) FROM ticketlock_tickets t WHERE t.epoch = c.epoch)), 0) \
             FROM ticketlock_conversations c WHERE c.conversation_id = '{id}'"
        ))
        .parse()
        .unwrap()
}

/// Terminates every connection of the store (the wake-up one included).
fn terminate_all(server: &PostgresServer) -> u64 {
    server
        .psql(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'ticketlock') t",
        )
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_hold_the_record_and_go_with_the_last_ticket() {
    let server = server!();
    let store = connect(&server).await;
    let g = store.lock("c").await.unwrap();
    let w = store.lock("c").wait_time(HOUR).enqueue().await.unwrap();
    assert_eq!(tickets(&server, "c"), 2);
    assert_eq!(
        server.psql(
            "SELECT last_issued || ' ' || queued FROM ticketlock_conversations \
             WHERE conversation_id = 'c'"
        ),
        "1 2"
    );
    // A short queue is kept in the conversation's row: numbers, expiries
    // and fencing tokens, in queue order; no ticket has a row of its own.
    assert_eq!(
        server.psql(
            "SELECT numbers::text || ' ' || cardinality(ticket_expires) || ' ' || \
             fences::text FROM ticketlock_conversations WHERE conversation_id = 'c'"
        ),
        format!("{{0,1}} 2 {{{},NULL}}", g.fencing_token())
    );
    assert_eq!(server.psql("SELECT count(*) FROM ticketlock_tickets"), "0");
    let lock = store.get_lock("c").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![0, 1]
    );
    g.release().await.unwrap();
    let g = w.acquired().await.unwrap();
    g.release().await.unwrap();
    assert_eq!(
        server.psql("SELECT count(*) FROM ticketlock_conversations"),
        "0"
    );
    assert_eq!(server.psql("SELECT count(*) FROM ticketlock_tickets"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_rows_of_other_conversations_are_swept_by_issues() {
    let server = server!();
    let store = connect(&server).await;
    for i in 0..3 {
        store
            .issue_ticket(&format!("gone-{i}"), Some(Duration::from_millis(50)))
            .await
            .unwrap();
    }
    // Expired over a second ago: stale.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(store.conversations().await.unwrap(), Vec::<String>::new());
    assert_eq!(
        server.psql("SELECT count(*) FROM ticketlock_conversations"),
        "3"
    );
    // Every 32nd new row sweeps.
    for i in 0..32 {
        let g = store.lock(&format!("fresh-{i}")).await.unwrap();
        g.release().await.unwrap();
    }
    assert_eq!(
        server.psql("SELECT count(*) FROM ticketlock_conversations"),
        "0"
    );
    assert_eq!(server.psql("SELECT count(*) FROM ticketlock_tickets"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_listening_connection_serves_every_waiter_and_no_waiter_holds_a_connection() {
    let server = server!();
    let store = connect(&server).await;
    let holder = store.lock("c").await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        waiters.push(tokio::spawn(async move {
            store
                .lock("c")
                .wait_time(HOUR)
                .await
                .unwrap()
                .release()
                .await
                .unwrap()
        }));
    }
    let pg = store.as_postgres().unwrap().clone();
    until("20 waiters registered", Duration::from_secs(10), || {
        pg.registered_waiters() == 20
    })
    .await;
    let count = |what: &str| -> u64 {
        server
            .psql(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ticketlock' \
                 AND {what}"
            ))
            .parse()
            .unwrap()
    };
    assert_eq!(count("query = 'LISTEN ticketlock'"), 1);
    assert!(count("true") <= 5, "pool of 4 plus the listener");
    holder.release().await.unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("the chain of 20 waiters is woken by notifications")
            .unwrap();
    }
    assert_eq!(pg.registered_waiters(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_server_gives_unavailable_in_time_and_a_committed_lease_survives_it() {
    let mut server = server!();
    let mut c = config(&server);
    c.socket_timeout = Duration::from_secs(1);
    let store = connect_with(&server, c).await;
    let held = store.lock("held").await.unwrap();
    server.kill();
    for _ in 0..3 {
        let start = Instant::now();
        let e = store.lock("c").await.unwrap_err();
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        assert!(e.is_transient());
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
        assert!(
            e.to_string()
                .contains(&format!("127.0.0.1:{}/postgres", server.port())),
            "{e}"
        );
    }
    assert!(matches!(held.renew().await, Err(Error::Unavailable { .. })));

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let guard = loop {
        match store.lock("c").await {
            Ok(g) => break g,
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Wake-ups work again: the listener reconnected.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await.unwrap() })
    };
    let pg = store.as_postgres().unwrap().clone();
    until(
        "waiter registered, listener back",
        Duration::from_secs(10),
        || pg.registered_waiters() == 1 && pg.is_listening(),
    )
    .await;
    guard.release().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken by a notification, not its hour-long re-check")
        .unwrap()
        .release()
        .await
        .unwrap();
    // Committed before the crash: the lease is still there (unlike Redis
    // without persistence).
    assert!(held.is_held().await.unwrap());
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_connections_are_replaced_and_waiters_still_enter() {
    let server = server!();
    let store = connect(&server).await;
    let pg = store.as_postgres().unwrap().clone();
    let holder = store.lock("c").await.unwrap();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await.unwrap() })
    };
    until("waiter registered", Duration::from_secs(10), || {
        pg.registered_waiters() == 1
    })
    .await;
    assert!(terminate_all(&server) >= 2, "the pool's and the listener's");
    until("listening again", Duration::from_secs(10), || {
        pg.is_listening()
    })
    .await;
    // The pool's clients were closed: the next calls connect anew (a call
    // in flight at the termination may fail, transiently).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match holder.renew().await {
            Ok(()) => break,
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                assert!(Instant::now() < deadline, "{e}");
            }
        }
    }
    let released = Instant::now();
    holder.release().await.unwrap();
    let g = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter enters by notification after the reconnect")
        .unwrap();
    assert!(
        released.elapsed() < Duration::from_secs(2),
        "{:?}",
        released.elapsed()
    );
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_server_gives_unavailable_within_the_timeout() {
    let server = server!();
    let mut c = config(&server);
    c.socket_timeout = Duration::from_secs(1);
    let store = connect_with(&server, c).await;
    store.lock("c").await.unwrap().release().await.unwrap();
    server.pause();
    for op in 0..3 {
        let start = Instant::now();
        let e = match op {
            0 => store.lock("c").await.unwrap_err(),
            1 => store.get_lock("c").await.unwrap_err(),
            _ => store.conversations().await.unwrap_err(),
        };
        let took = start.elapsed();
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(1600),
            "{took:?}"
        );
    }
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.lock("after").await {
            Ok(g) => {
                g.release().await.unwrap();
                break;
            }
            Err(e) => {
                assert!(e.is_transient() && Instant::now() < deadline, "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A lock request dropped at every point of its progress (before the issue
/// is sent, while it is in flight, queued, waiting for a wake-up) leaves no
/// ticket behind once the store is flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_dropped_at_any_await_point_leaves_no_ticket() {
    let server = server!();
    let store = connect(&server).await;
    let holder = store.lock("c").await.unwrap();
    for micros in [0u64, 50, 200, 500, 1000, 2000, 5000, 10_000, 30_000] {
        let r = tokio::time::timeout(
            Duration::from_micros(micros),
            store.lock("c").wait_time(HOUR),
        )
        .await;
        assert!(r.is_err(), "entered while held");
        store.flush().await;
        assert_eq!(tickets(&server, "c"), 1, "dropped after {micros} us");
    }
    // Dropped while the server stalls the issue: the ticket is learnt when
    // the server answers, and withdrawn.
    server.pause();
    let e = store
        .lock("c")
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    server.resume();
    store.flush().await;
    until("withdrawn", Duration::from_secs(5), || {
        tickets(&server, "c") == 1
    })
    .await;
    // A queued waiter aborted: withdrawn too.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.lock("c").wait_time(HOUR).await })
    };
    until("queued", Duration::from_secs(5), || {
        tickets(&server, "c") == 2
    })
    .await;
    waiter.abort();
    store.flush().await;
    until("withdrawn", Duration::from_secs(5), || {
        tickets(&server, "c") == 1
    })
    .await;
    holder.release().await.unwrap();
    let g = store
        .lock("c")
        .timeout(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(g.ticket(), 0, "a new row");
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_credentials_and_databases_are_config_errors_and_passwords_stay_hidden() {
    let server = server!();
    server.psql("CREATE ROLE locker LOGIN PASSWORD 'right'");
    server.psql("ALTER SYSTEM SET password_encryption = 'scram-sha-256'");
    let mut c = config(&server);
    c.dbname = Some("nosuchdb".into());
    let e = PostgresLockStore::connect(&c).await.unwrap_err();
    assert!(
        matches!(e, Error::Config { ref key, .. } if key == "lock_store.db"),
        "{e:?}"
    );
    // Trusted cluster: a password is not checked; a missing role is.
    let mut c = config(&server);
    c.username = "nobody".into();
    c.password = Some(Secret::new("hunter2"));
    let e = PostgresLockStore::connect(&c).await.unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!format!("{c:?}").contains("hunter2"));
    // A closed port: unavailable, in time.
    let mut c = config(&server);
    c.port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = PostgresLockStore::connect(&c).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    // A user without the right to create the schema is told what to do.
    let mut c = config(&server);
    c.username = "locker".into();
    server.psql("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    let e = PostgresLockStore::connect(&c).await.unwrap_err();
    assert!(
        matches!(e, Error::Config { .. }) && e.to_string().contains("ticketlock migrate"),
        "{e:?}"
    );
    // Once migrated by the owner, the user needs only to use it.
    assert!(PostgresLockStore::migrate(&config(&server)).await.unwrap());
    server.psql(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO locker; \
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO locker",
    );
    let store = connect_with(&server, c).await;
    store.lock("c").await.unwrap().release().await.unwrap();
    assert!(
        !PostgresLockStore::migrate(&config(&server)).await.unwrap(),
        "up to date"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ids_of_any_length_and_bytes_reach_their_own_rows() {
    let server = server!();
    let store = connect(&server).await;
    let long = "x".repeat(ticketlock::MAX_ID_LEN);
    let ids = [long.as_str(), "a'b", "ünï\u{1F600}", "a\\b", "%", "a b"];
    let guards = {
        let mut g = Vec::new();
        for id in ids {
            g.push(store.lock(id).await.unwrap());
        }
        g
    };
    let mut listed = store.conversations().await.unwrap();
    listed.sort();
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    for (g, id) in guards.into_iter().zip(ids) {
        assert_eq!(
            store.get_lock(id).await.unwrap().unwrap().tickets().len(),
            1
        );
        g.release().await.unwrap();
    }
    assert_eq!(store.conversations().await.unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_is_verified_against_sslrootcert_and_used() {
    let Some(server) = PostgresServer::start_tls() else {
        return;
    };
    let files = server.tls_files().unwrap();
    let mut c = config(&server);
    c.sslmode = ticketlock::PostgresSslMode::VerifyFull;
    c.sslrootcert = Some(files.ca_cert.clone());
    let store = connect_with(&server, c.clone()).await;
    let g = store.lock("tls").await.unwrap();
    // Every connection of the store (pool and listener) is encrypted.
    let plain: u64 = server
        .psql(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'ticketlock' AND NOT s.ssl",
        )
        .parse()
        .unwrap();
    let encrypted: u64 = server
        .psql(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'ticketlock' AND s.ssl",
        )
        .parse()
        .unwrap();
    assert_eq!(
        (plain, encrypted >= 2),
        (0, true),
        "{plain} plain, {encrypted} TLS"
    );
    g.release().await.unwrap();
    // A CA that did not sign the server's certificate: refused.
    c.sslrootcert = Some(files.other_ca_cert.clone());
    let e = PostgresLockStore::connect(&c).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("sslrootcert"), "{e}");
    // An unreadable sslrootcert is a configuration error naming it.
    c.sslrootcert = Some("/nonexistent/ca.pem".into());
    let e = PostgresLockStore::connect(&c).await.unwrap_err();
    assert!(
        matches!(e, Error::Config { ref key, .. } if key == "lock_store.sslrootcert"),
        "{e:?}"
    );
}

/// The wake-up connection is checked on connecting: a notification sent
/// through the pool must reach it. With `listen_url` naming a server the
/// operations do not go to (as the database behind a pgbouncer in
/// transaction mode would be mis-set), the check fails, and waiters still
/// enter at their holder's expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wake_ups_are_verified_on_connecting() {
    let server = server!();
    let store = connect(&server).await;
    assert!(store.as_postgres().unwrap().wake_ups_verified());
    let Some(other) = PostgresServer::start() else {
        return;
    };
    let mut c = config(&server);
    c.listen = Some(("127.0.0.1".into(), other.port()));
    let deaf = connect_with(&server, c).await;
    let pg = deaf.as_postgres().unwrap();
    assert!(pg.is_listening(), "it listens, on the wrong server");
    assert!(!pg.wake_ups_verified());
    let g = deaf
        .lock("c")
        .lifetime(Duration::from_millis(500))
        .await
        .unwrap();
    drop(g.release().await);
    // No notification can arrive: the waiter enters at the holder's expiry.
    let holder = deaf
        .lock("d")
        .lifetime(Duration::from_millis(600))
        .await
        .unwrap();
    let started = Instant::now();
    let waiter = deaf
        .lock("d")
        .wait_time(HOUR)
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    drop(holder);
    waiter.release().await.unwrap();
}
