//! The schema's layout and its versions: a short queue lives in its
//! conversation's row and a longer one in rows of its own, keeping order
//! and fencing across the move; a version 1 schema is upgraded in place
//! with its live tickets, or refused with a message naming
//! `ticketlock migrate` when the user may not alter it.

use super::server::{PostgresServer, config};
use super::{HOUR, connect, connect_with, tickets};
use ticketlock::{Error, PostgresLockStore};

/// Version 1 of the schema, tables and functions, as it was installed.
const V1: &str = include_str!("schema_v1.sql");

fn install_v1(server: &PostgresServer) {
    server.psql(V1);
    server.psql("INSERT INTO ticketlock_schema VALUES (1, 0)");
}

/// Where the queue of `id` is: `row <n>` (in the conversation's row) or
/// `tickets <n>` (in ticketlock_tickets).
fn layout(server: &PostgresServer, id: &str) -> String {
    server.psql(&format!(
        "SELECT CASE WHEN c.numbers IS NULL THEN 'tickets ' || \
         (SELECT count(*) FROM ticketlock_tickets t WHERE t.epoch = c.epoch) \
         ELSE 'row ' || cardinality(c.numbers) || ' ' || \
         (SELECT count(*) FROM ticketlock_tickets t WHERE t.epoch = c.epoch) END \
         FROM ticketlock_conversations c WHERE c.conversation_id = '{id}'"
    ))
}

/// The columns of the conversation table's primary key.
fn primary_key(server: &PostgresServer) -> String {
    server.psql(
        "SELECT string_agg(a.attname, ',') FROM pg_index i JOIN pg_attribute a \
         ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         WHERE i.indrelid = 'ticketlock_conversations'::regclass AND i.indisprimary",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_longer_than_its_row_holds_moves_to_ticket_rows_in_order() {
    let server = server!();
    let store = connect(&server).await;
    let holder = store.lock("long").await.unwrap();
    assert_eq!(layout(&server, "long"), "row 1 0");
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(store.lock("long").wait_time(HOUR).enqueue().await.unwrap());
    }
    assert_eq!(layout(&server, "long"), "row 4 0");
    for _ in 0..3 {
        queued.push(store.lock("long").wait_time(HOUR).enqueue().await.unwrap());
    }
    // The fifth ticket moved the queue out of the row, fencing token and all.
    assert_eq!(layout(&server, "long"), "tickets 7");
    assert_eq!(tickets(&server, "long"), 7);
    assert_eq!(
        server.psql("SELECT fence FROM ticketlock_tickets WHERE number = 0"),
        holder.fencing_token().to_string()
    );
    let lock = store.get_lock("long").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    assert!(holder.is_held().await.unwrap());
    // Each release wakes the next in ticket order, with a greater token.
    let mut token = holder.fencing_token();
    holder.release().await.unwrap();
    for (n, q) in queued.into_iter().enumerate() {
        assert_eq!(q.ticket(), n as u64 + 1);
        let g = q.acquired().await.unwrap();
        assert!(
            g.fencing_token() > token,
            "{} after {token}",
            g.fencing_token()
        );
        token = g.fencing_token();
        g.renew().await.unwrap();
        assert!(g.is_held().await.unwrap());
        g.release().await.unwrap();
    }
    assert_eq!(
        server.psql("SELECT count(*) FROM ticketlock_conversations"),
        "0"
    );
    assert_eq!(server.psql("SELECT count(*) FROM ticketlock_tickets"), "0");
    // The next incarnation starts in its row again.
    let g = store.lock("long").await.unwrap();
    assert_eq!(layout(&server, "long"), "row 1 0");
    assert!(g.fencing_token() > token);
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_1_schema_is_upgraded_in_place_and_its_tickets_stay() {
    let server = server!();
    install_v1(&server);
    // A holder and a waiter, written by version 1's own functions.
    let fence: u64 = server
        .psql("SELECT value FROM ticketlock_issue('old', 3600000000, 100)")
        .parse()
        .unwrap();
    assert_eq!(
        server.psql("SELECT status || ' ' || number FROM ticketlock_issue('old', 3600000000, 100)"),
        "1 1"
    );
    assert_eq!(primary_key(&server), "epoch");
    let store = connect(&server).await;
    assert_eq!(server.psql("SELECT version FROM ticketlock_schema"), "3");
    assert_eq!(primary_key(&server), "digest");
    assert_eq!(layout(&server, "old"), "tickets 2");
    let lock = store.get_lock("old").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![0, 1]
    );
    // A newcomer queues behind both, and enters after them with a token
    // above the old holder's.
    let newcomer = store.lock("old").wait_time(HOUR).enqueue().await.unwrap();
    assert_eq!(newcomer.ticket(), 2);
    store.finish_serving("old", 0).await.unwrap();
    store.finish_serving("old", 1).await.unwrap();
    let g = newcomer.acquired().await.unwrap();
    assert!(
        g.fencing_token() > fence,
        "{} after {fence}",
        g.fencing_token()
    );
    g.release().await.unwrap();
    assert_eq!(
        server.psql("SELECT count(*) FROM ticketlock_conversations"),
        "0"
    );
    assert_eq!(server.psql("SELECT count(*) FROM ticketlock_tickets"), "0");
    let g = store.lock("old").await.unwrap();
    assert_eq!(layout(&server, "old"), "row 1 0");
    g.release().await.unwrap();
    assert!(
        !PostgresLockStore::migrate(&config(&server)).await.unwrap(),
        "up to date"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_schema_the_user_may_not_alter_is_refused_naming_ticketlock_migrate() {
    let server = server!();
    install_v1(&server);
    server.psql(
        "CREATE ROLE locker LOGIN; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO locker; \
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO locker",
    );
    let mut c = config(&server);
    c.username = "locker".into();
    let e = PostgresLockStore::connect(&c).await.unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(
        message.contains("from version 1 to 3") && message.contains("`ticketlock migrate`"),
        "{message}"
    );
    // Nothing half done.
    assert_eq!(server.psql("SELECT version FROM ticketlock_schema"), "1");
    assert_eq!(primary_key(&server), "epoch");
    // The owner migrates; the user then needs only to use it.
    assert!(PostgresLockStore::migrate(&config(&server)).await.unwrap());
    assert_eq!(primary_key(&server), "digest");
    let store = connect_with(&server, c).await;
    store.lock("c").await.unwrap().release().await.unwrap();
}

/// A process of the previous build (reading `ticketlock_issue` and
/// `ticketlock_try_acquire` as records) still works against this build's
/// functions during an upgrade, on the same queue as this build's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_previous_builds_record_calls_still_work_on_the_same_queues() {
    let server = server!();
    let store = connect(&server).await;
    let holder = store.lock("shared").await.unwrap();
    // The old call queues behind this build's holder, one ticket ahead.
    assert_eq!(
        server.psql(
            "SELECT status || ' ' || number || ' ' || value || ' ' || (remaining_us > 0) \
             FROM ticketlock_issue('shared', 3600000000, 100)"
        ),
        "1 1 1 true"
    );
    assert_eq!(
        server.psql(
            "SELECT status || ' ' || value FROM ticketlock_try_acquire('shared', 1, -1, 3600000000)"
        ),
        "1 1"
    );
    let held = holder.fencing_token();
    holder.release().await.unwrap();
    // Served once the holder left, with a token above the holder's.
    let token: u64 = server
        .psql(
            "SELECT value FROM ticketlock_try_acquire('shared', 1, -1, 3600000000) \
             WHERE status = 0",
        )
        .parse()
        .unwrap();
    assert!(token > held, "{token} after {held}");
    // A ticket not in the queue is lost.
    assert_eq!(
        server.psql(
            "SELECT status || ' ' || coalesce(value::text, 'null') \
             FROM ticketlock_try_acquire('shared', 7, -1, 3600000000)"
        ),
        "2 null"
    );
    assert_eq!(tickets(&server, "shared"), 1);
    // This build's store sees the old call's ticket as the holder.
    let lock = store.get_lock("shared").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![1]
    );
}

/// Version 2 (the same tables, functions answering records) is upgraded to
/// 3 with its live tickets; a schema newer than the build is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_2_schema_is_upgraded_to_3_and_a_newer_one_is_refused() {
    let server = server!();
    let store = connect(&server).await;
    let holder = store.lock("kept").await.unwrap();
    let waiter = store.lock("kept").wait_time(HOUR).enqueue().await.unwrap();
    drop(store);
    // What a version 2 build leaves: its version, and no packed functions.
    server.psql(
        "UPDATE ticketlock_schema SET version = 2, checksum = 0; \
         DROP FUNCTION ticketlock_issue(text, bigint, integer); \
         DROP FUNCTION ticketlock_issue_packed(text, bigint, integer); \
         DROP FUNCTION ticketlock_try_acquire_packed(text, bigint, bigint, bigint)",
    );
    let store = connect(&server).await;
    assert_eq!(server.psql("SELECT version FROM ticketlock_schema"), "3");
    assert_eq!(
        server.psql(
            "SELECT count(*) FROM pg_proc WHERE proname IN \
             ('ticketlock_issue_packed', 'ticketlock_try_acquire_packed', 'ticketlock_issue')"
        ),
        "3"
    );
    let lock = store.get_lock("kept").await.unwrap().unwrap();
    assert_eq!(
        lock.tickets().map(|t| t.number).collect::<Vec<_>>(),
        vec![0, 1]
    );
    // The holder still holds; the waiter enters after it with a greater
    // token, and a newcomer queues behind both.
    assert!(holder.is_held().await.unwrap());
    let newcomer = store.lock("kept").wait_time(HOUR).enqueue().await.unwrap();
    assert_eq!(newcomer.ticket(), 2);
    let token = holder.fencing_token();
    holder.release().await.unwrap();
    let g = waiter.acquired().await.unwrap();
    assert!(g.fencing_token() > token);
    g.release().await.unwrap();
    newcomer.acquired().await.unwrap().release().await.unwrap();
    // A version this build does not know yet.
    server.psql("UPDATE ticketlock_schema SET version = 4");
    let e = PostgresLockStore::connect(&config(&server))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("upgrade ticketlock"), "{e}");
    assert_eq!(server.psql("SELECT version FROM ticketlock_schema"), "4");
}
