//! How waiters look at the queue on Redis, counted in script calls the
//! server saw (`INFO commandstats`), not in time: the waiters behind the
//! next in line look only to keep their tickets alive (every third of the
//! lifetime) and on a push, so a deep queue costs the server calls in
//! proportion to its depth over a third of the lifetime, not over
//! `wait_time`; the waiter next in line still notices a release that
//! published nothing (a Rasa process's) by its `wait_time` looks; and the
//! queue drains in ticket order.

#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use server::{RedisServer, config, connection};
use ticketlock::{LockStore, RedisLockStore, Ticket, TicketLock};

async fn connect(server: &RedisServer) -> LockStore {
    RedisLockStore::connect(&config(server))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
        .into()
}

/// The EVALSHA calls the server has run so far.
fn evalsha_calls(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|l| l.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

fn get(con: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

/// The ticket numbers of the record at `key`, in queue order.
fn numbers(con: &mut redis::Connection, key: &str) -> Vec<u64> {
    get(con, key).map_or_else(Vec::new, |raw| {
        TicketLock::from_json(&raw)
            .unwrap()
            .tickets()
            .map(|t| t.number)
            .collect()
    })
}

/// Writes the record the way a Rasa process does: its layout without our
/// fields, no TTL, and nothing published.
fn rasa_write(con: &mut redis::Connection, key: &str, lock: &TicketLock) {
    let mut lock = lock.clone();
    lock.set_last_issued(None);
    lock.set_epoch(None);
    redis::cmd("SET")
        .arg(key)
        .arg(lock.dumps().as_bytes())
        .exec(con)
        .unwrap();
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deep_queue_costs_keep_alives_not_wait_time_looks_and_drains_in_order() {
    const WAITERS: u64 = 50;
    const LIFETIME: Duration = Duration::from_secs(6);
    const WINDOW: Duration = Duration::from_secs(6);
    let server = server!();
    let store = connect(&server).await;
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("deep");
    let holder = store
        .lock("deep")
        .lifetime(Duration::from_secs(60))
        .await
        .unwrap();
    let before_queue = evalsha_calls(&mut con);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for _ in 0..WAITERS {
        // The default wait_time, 1 s.
        let q = store
            .lock("deep")
            .lifetime(LIFETIME)
            .enqueue()
            .await
            .unwrap();
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let g = q.acquired().await.unwrap();
            order.lock().unwrap().push(g.ticket());
            g.release().await.unwrap();
        }));
    }
    // Each waiter's issue and its first look, made when it registers.
    until("every waiter's first look", Duration::from_secs(10), || {
        evalsha_calls(&mut con) >= before_queue + 2 * WAITERS
    })
    .await;
    let start = evalsha_calls(&mut con);
    tokio::time::sleep(WINDOW).await;
    let looks = evalsha_calls(&mut con) - start;
    eprintln!("{looks} script calls by {WAITERS} waiters in {WINDOW:?}");
    // Every waiter looks at least every lifetime / 3 = 2 s (at most
    // WINDOW / 2 s + 1 = 4 looks each in the window); the next in line also
    // every wait_time, 1 s (WINDOW / 1 s + 1 = 7); a few to spare. Before,
    // every waiter looked every min(wait_time, lifetime / 3) = 1 s:
    // WAITERS x WINDOW / wait_time = 300 looks (at least 250).
    let keep_alives = WAITERS * (WINDOW.as_secs() / (LIFETIME.as_secs() / 3) + 1);
    let bound = keep_alives + WINDOW.as_secs() + 1 + 5;
    assert!(
        looks <= bound,
        "{looks} looks by {WAITERS} waiters in {WINDOW:?}, more than {bound}"
    );
    // They kept their tickets: all still queued behind the holder.
    assert_eq!(numbers(&mut con, &key).len() as u64, WAITERS + 1);

    // Drained: the waiters far back are served too, in ticket order.
    holder.release().await.unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("the queue did not drain")
            .unwrap();
    }
    let served = order.lock().unwrap().clone();
    assert_eq!(served, (1..=WAITERS).collect::<Vec<_>>());
    assert_eq!(get(&mut con, &key), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_new_next_in_line_notices_a_silent_rasa_release_by_its_wait_time_looks() {
    let server = server!();
    let store = connect(&server).await;
    let other = connect(&server).await;
    let mut con = connection(&server, 1);
    let key = store.as_redis().unwrap().key_for("mixed");
    // Lifetimes of a minute: a keep-alive look comes only every 20 s.
    let lifetime = Duration::from_secs(60);
    let holder = store.lock("mixed").lifetime(lifetime).await.unwrap();
    // A Rasa process queues behind our holder (reads, appends, writes).
    let mut rasa = TicketLock::from_json(&get(&mut con, &key).unwrap()).unwrap();
    let tickets: Vec<Ticket> = rasa.tickets().copied().collect();
    let rasa_number = holder.ticket() + 1;
    rasa = TicketLock::with_tickets(
        "mixed",
        tickets
            .into_iter()
            .chain([Ticket::new(rasa_number, unix_now() + 60.0)]),
    );
    rasa_write(&mut con, &key, &rasa);
    // Ours behind it: two ahead when issued (our holder and Rasa's), so it
    // looks only every 20 s until a push tells it otherwise; and one of
    // another store (another process) behind that.
    let next = store
        .lock("mixed")
        .lifetime(lifetime)
        .wait_time(Duration::from_millis(200))
        .enqueue()
        .await
        .unwrap();
    let last = other
        .lock("mixed")
        .lifetime(lifetime)
        .wait_time(Duration::from_millis(200))
        .enqueue()
        .await
        .unwrap();
    assert_eq!(
        numbers(&mut con, &key),
        [holder.ticket(), rasa_number, next.ticket(), last.ticket()]
    );
    let next = tokio::spawn(next.acquired());
    let last = tokio::spawn(last.acquired());
    // Both registered and made their first look.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Our release hands over to Rasa's ticket and announces it: nobody of
    // ours holds that number, but the waiter behind it is now next in line.
    holder.release().await.unwrap();
    assert_eq!(
        numbers(&mut con, &key)[0],
        rasa_number,
        "Rasa's ticket is served"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !next.is_finished(),
        "entered while Rasa's ticket was served"
    );
    // Rasa's finish_serving: read, remove its ticket, write back. It
    // publishes nothing.
    let mut rasa = TicketLock::from_json(&get(&mut con, &key).unwrap()).unwrap();
    assert!(rasa.remove_ticket_for(rasa_number));
    rasa_write(&mut con, &key, &rasa);
    // Seen by a wait_time look: well before the 20 s keep-alive.
    let g = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("the next in line did not look every wait_time after the push")
        .unwrap()
        .unwrap();
    assert_eq!(g.ticket(), rasa_number + 1);
    assert!(!last.is_finished(), "two holders at once");
    g.release().await.unwrap();
    let g = tokio::time::timeout(Duration::from_secs(10), last)
        .await
        .expect("the release did not wake the last waiter")
        .unwrap()
        .unwrap();
    assert_eq!(g.ticket(), rasa_number + 2);
    g.release().await.unwrap();
    assert_eq!(get(&mut con, &key), None);
}
