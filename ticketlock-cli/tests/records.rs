//! `ticketlock inspect`, `list` and `clear` against a redis-server of the
//! test's own.

#[path = "support/cli.rs"]
mod cli;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cli::{Proc, Store, assert_one_error_line, resp_set, text, ticketlock, tl, wait_until};
use serde_json::{Value, json};
use ticketlock_test_support::RedisServer;

/// A record as Rasa writes it plus our two fields: ticket 0 expired in
/// 2001, 1 and 2 live until 2100.
const RECORD: &str = r#"{"conversation_id": "c1", "tickets": ["{\"number\": 0, \"expires\": 1000000000.25}", "{\"number\": 1, \"expires\": 4102444800.5}", "{\"number\": 2, \"expires\": 4102444801.0}"], "last_issued": 5, "epoch": 42}"#;

/// RECORD as the record of conversation `id` (a record names its own
/// conversation; another's under this key is corrupt).
fn record_of(id: &str) -> String {
    RECORD.replacen("\"c1\"", &serde_json::to_string(id).unwrap(), 1)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `redis://…/0` with the query `query` (empty for none).
fn url(server: &RedisServer, db: u32, query: &str) -> String {
    if query.is_empty() {
        format!("{}/{db}", server.url())
    } else {
        format!("{}/{db}?{query}", server.url())
    }
}

fn set(server: &RedisServer, db: u32, key: &str, value: &str) {
    assert_eq!(
        server.cli(&["-n", &db.to_string(), "SET", key, value]),
        "OK"
    );
}

/// Every key of database `db`, sorted.
fn keys(server: &RedisServer, db: u32) -> Vec<String> {
    // KEYS is fine on a test's own server.
    let out = server.cli(&["-n", &db.to_string(), "--no-raw", "KEYS", "*"]);
    let mut keys: Vec<String> = out
        .lines()
        .filter_map(|l| {
            // `1) "key"`, quoted as redis-cli quotes: unquote it.
            let quoted = l.split_once(") ").map_or(l, |(_, k)| k).trim();
            (quoted.starts_with('"')).then(|| {
                serde_json::from_str::<String>(quoted).unwrap_or_else(|_| quoted.to_string())
            })
        })
        .collect();
    keys.sort();
    keys
}

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

#[test]
fn inspect_prints_the_record_as_json_with_who_is_served_and_when_tickets_expire() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    set(&server, 0, "lock:c1", RECORD);
    let before = unix_now();
    let out = tl(&["inspect", "--redis", &url(&server, 0, ""), "c1", "--json"]);
    let after = unix_now();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let v = json_out(&out);

    // The server's clock is this machine's: `now` is within the call.
    let now = v["now"].as_f64().expect("now");
    assert!(before - 1.0 <= now && now <= after + 1.0, "{now}");
    assert_eq!(v["conversation_id"], "c1");
    assert_eq!(v["key"], "lock:c1");
    assert_eq!(v["now_serving"], 1);
    assert_eq!(v["last_issued"], 5);
    assert_eq!(v["epoch"], 42);
    assert_eq!(v["raw"], RECORD, "raw is the stored string, exactly");
    let tickets = v["tickets"].as_array().expect("tickets");
    let expected = [
        (0, 1_000_000_000.25, "2001-09-09T01:46:40.250Z", "expired"),
        (1, 4_102_444_800.5, "2100-01-01T00:00:00.500Z", "serving"),
        (2, 4_102_444_801.0, "2100-01-01T00:00:01.000Z", "waiting"),
    ];
    assert_eq!(tickets.len(), expected.len(), "{v}");
    for (t, (number, expires, at, status)) in tickets.iter().zip(expected) {
        assert_eq!(t["number"], number, "{t}");
        assert_eq!(t["expires"].as_f64(), Some(expires), "{t}");
        assert_eq!(t["expires_at"], at, "{t}");
        assert_eq!(t["status"], status, "{t}");
        let remaining = t["remaining_us"].as_f64().expect("remaining_us") / 1e6;
        assert!(
            (remaining - (expires - now)).abs() < 0.002,
            "remaining {remaining} is not expires - now = {}",
            expires - now
        );
    }
    assert!(tickets[0]["remaining_us"].as_i64().unwrap() < 0);
    // Every field, and no other (the map is sorted by key).
    let fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = [
        "conversation_id",
        "key",
        "now",
        "now_serving",
        "last_issued",
        "epoch",
        "tickets",
        "raw",
    ];
    expected.sort_unstable();
    assert_eq!(fields, expected);
}

#[test]
fn inspect_without_json_prints_a_table() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    set(&server, 0, "lock:c1", RECORD);
    let out = tl(&["inspect", "--redis", &url(&server, 0, ""), "c1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 11, "{stdout}");
    assert_eq!(
        lines[..5],
        [
            "conversation  \"c1\"",
            "key           \"lock:c1\"",
            "now serving   1",
            "last issued   5",
            "epoch         42",
        ]
    );
    assert!(lines[5].starts_with("server time   20"), "{stdout}");
    assert!(lines[5].ends_with('Z'), "{stdout}");
    assert_eq!(
        lines[6],
        "TICKET  STATUS   EXPIRES (UTC)             REMAINING"
    );
    assert!(
        lines[7].starts_with("0       expired  2001-09-09T01:46:40.250Z  -"),
        "{stdout}"
    );
    assert!(
        lines[8].starts_with("1       serving  2100-01-01T00:00:00.500Z  "),
        "{stdout}"
    );
    assert!(
        lines[9].starts_with("2       waiting  2100-01-01T00:00:01.000Z  "),
        "{stdout}"
    );
    assert!(lines[8].ends_with(" s"), "{stdout}");
    assert_eq!(lines[10], format!("raw           {RECORD}"));
}

#[test]
fn inspect_says_when_there_is_no_record_and_exits_1() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // A record in another database and under another prefix is not this one.
    set(&server, 1, "lock:c1", RECORD);
    set(&server, 0, "p:lock:c1", RECORD);
    let url = url(&server, 0, "");
    for json in [false, true] {
        let mut args = vec!["inspect", "--redis", url.as_str(), "c1"];
        if json {
            args.push("--json");
        }
        let out = tl(&args);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let message = "inspect: no record for conversation \"c1\" (key \"lock:c1\")";
        if json {
            // The JSON error object on stdout, besides the line on stderr.
            assert_eq!(
                json_out(&out),
                json!({"error": {"exit_code": 1, "kind": "no_record", "message": message}})
            );
        } else {
            assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        }
        assert_one_error_line(&out, &[&format!("ticketlock: {message}")]);
    }
}

#[test]
fn inspect_of_a_corrupt_record_exits_65_naming_the_key_and_shows_the_bytes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = url(&server, 0, "");
    // Not JSON, and not even UTF-8.
    resp_set(
        server.port(),
        0,
        b"lock:bin",
        b"{\"conversation_id\": \xff\xfe",
    );
    let out = tl(&["inspect", "--redis", &url, "bin", "--json"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert_one_error_line(
        &out,
        &["corrupt lock record at key \"lock:bin\"", "not JSON"],
    );
    let v = json_out(&out);
    assert_eq!(v["key"], "lock:bin");
    assert_eq!(v["conversation_id"], "bin");
    assert_eq!(v["raw"], "{\"conversation_id\": \u{fffd}\u{fffd}");
    // The error object of every failure under --json, with the bytes beside.
    assert_eq!(v["error"]["exit_code"], 65, "{v}");
    assert_eq!(v["error"]["kind"], "corrupt_record", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("lock:bin"),
        "{v}"
    );
    assert_eq!(text(&out.stdout).lines().count(), 1, "one JSON object");

    // JSON of the wrong shape.
    set(&server, 0, "lock:shape", r#"{"tickets": []}"#);
    let out = tl(&["inspect", "--redis", &url, "shape", "--json"]);
    assert_eq!(out.status.code(), Some(65));
    assert_one_error_line(
        &out,
        &[
            "corrupt lock record at key \"lock:shape\"",
            "no `conversation_id`",
        ],
    );
    assert_eq!(json_out(&out)["raw"], r#"{"tickets": []}"#);

    // The human form shows the bytes too.
    let out = tl(&["inspect", "--redis", &url, "shape"]);
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(
        text(&out.stdout),
        "key           \"lock:shape\"\nraw           {\"tickets\": []}\n"
    );

    // A key of another type: no bytes to show.
    server.cli(&["HSET", "lock:hash", "f", "v"]);
    let out = tl(&["inspect", "--redis", &url, "hash", "--json"]);
    assert_eq!(out.status.code(), Some(65));
    assert_one_error_line(
        &out,
        &["corrupt lock record at key \"lock:hash\"", "WRONGTYPE"],
    );
    assert_eq!(json_out(&out)["raw"], Value::Null);
}

#[test]
fn the_tools_refuse_the_in_memory_store() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yml");
    std::fs::write(&endpoints, "lock_store:\n  type: in_memory\n").unwrap();
    let endpoints = endpoints.to_str().unwrap();
    for (tool, args) in [
        ("inspect", &["inspect", "c1"][..]),
        ("list", &["list"]),
        ("clear", &["clear", "c1"]),
        ("clear", &["clear", "--all", "--yes"]),
    ] {
        let out = tl(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert_one_error_line(
            &out,
            &[
                &format!("ticketlock: {tool}: no store given"),
                "--redis URL, --postgres URL or --endpoints FILE",
            ],
        );
        let mut with_file = args.to_vec();
        with_file.extend(["--endpoints", endpoints]);
        let out = tl(&with_file);
        assert_eq!(out.status.code(), Some(64), "{with_file:?}");
        assert_one_error_line(
            &out,
            &[&format!(
                "ticketlock: {tool}: the configured lock store is the in-memory one"
            )],
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_unreachable_store_exits_69() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/0?socket_timeout=1");
    for args in [
        &["inspect", "--redis", &url, "c1"][..],
        &["list", "--redis", &url],
        &["clear", "--redis", &url, "c1"],
    ] {
        let out = tl(args);
        assert_eq!(
            out.status.code(),
            Some(69),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_one_error_line(&out, &["unavailable"]);
    }
}

#[test]
fn list_shows_each_conversation_with_its_queue_and_nothing_else() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = url(&server, 0, "");
    let out = tl(&["list", "--redis", &url]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert_one_error_line(
        &out,
        &["list: no records (keys \"lock:*\" of redis 127.0.0.1:"],
    );

    set(&server, 0, "lock:c1", RECORD);
    set(
        &server,
        0,
        "lock:c2",
        r#"{"conversation_id": "c2", "tickets": ["{\"number\": 3, \"expires\": 1000000000.0}"]}"#,
    );
    let odd = "x\ny";
    resp_set(
        server.port(),
        0,
        format!("lock:{odd}").as_bytes(),
        br#"{"conversation_id": "x\ny", "tickets": ["{\"number\": 0, \"expires\": 4102444800.0}"]}"#,
    );
    // Not records of this store: another prefix, another database, other keys.
    set(&server, 0, "p1:lock:c9", &record_of("c9"));
    set(&server, 1, "lock:d1", &record_of("d1"));
    set(&server, 0, "lock", "x");
    set(&server, 0, "locks:c3", "x");

    let out = tl(&["list", "--redis", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "TICKETS  SERVING  CONVERSATION\n\
         2        1        c1\n\
         0        -        c2\n\
         1        0        x\\u{a}y\n"
    );

    let out = tl(&["list", "--redis", &url, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    // `tickets` is the array `inspect` shows; `live` and `expired` count it.
    let summary: Vec<Value> = rows
        .iter()
        .map(|r| {
            let numbers: Vec<&Value> = r["tickets"]
                .as_array()
                .expect("tickets")
                .iter()
                .map(|t| &t["number"])
                .collect();
            json!({"conversation_id": r["conversation_id"], "key": r["key"], "live": r["live"],
                   "expired": r["expired"], "now_serving": r["now_serving"], "numbers": numbers})
        })
        .collect();
    assert_eq!(
        summary,
        [
            json!({"conversation_id": "c1", "key": "lock:c1", "live": 2, "expired": 1, "now_serving": 1, "numbers": [0, 1, 2]}),
            json!({"conversation_id": "c2", "key": "lock:c2", "live": 0, "expired": 1, "now_serving": null, "numbers": [3]}),
            json!({"conversation_id": "x\ny", "key": "lock:x\ny", "live": 1, "expired": 0, "now_serving": 0, "numbers": [0]}),
        ]
    );
    for row in &rows {
        let fields: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "conversation_id",
                "expired",
                "key",
                "live",
                "now_serving",
                "tickets"
            ],
            "{row}"
        );
    }

    let out = tl(&["list", "--redis", &url, "--limit", "2"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "TICKETS  SERVING  CONVERSATION\n2        1        c1\n0        -        c2\n"
    );
    assert_one_error_line(
        &out,
        &["list: showed the first 2 of 3 conversations (--limit)"],
    );

    // The other prefix and database are stores of their own.
    let out = tl(&[
        "list",
        "--redis",
        &format!("{}/0?key_prefix=p1", server.url()),
        "--json",
    ]);
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["key"], "p1:lock:c9");
    let out = tl(&["list", "--redis", &format!("{}/1", server.url()), "--json"]);
    let row: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["key"], "lock:d1");

    // A corrupt record is listed as such, the others still are, and the
    // status says something is wrong.
    set(&server, 0, "lock:c0", "garbage");
    let out = tl(&["list", "--redis", &url]);
    assert_eq!(out.status.code(), Some(65));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("-        -        c0  (corrupt record: not JSON"),
        "{stdout}"
    );
    assert_one_error_line(
        &out,
        &["list: 1 corrupt record(s), the first at key \"lock:c0\""],
    );
    let out = tl(&["list", "--redis", &url, "--json"]);
    assert_eq!(out.status.code(), Some(65));
    let first: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["key"], "lock:c0");
    assert!(
        first["error"].as_str().unwrap().starts_with("not JSON"),
        "{first}"
    );
}

#[test]
fn clear_removes_one_record_and_says_whether_there_was_one() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = url(&server, 0, "");
    set(&server, 0, "lock:c1", RECORD);
    set(&server, 0, "lock:c2", &record_of("c2"));
    server.cli(&["HSET", "lock:hash", "f", "v"]);

    let out = tl(&["clear", "--redis", &url, "c1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "removed the record of conversation \"c1\" (key \"lock:c1\")\n"
    );
    assert_eq!(keys(&server, 0), ["lock:c2", "lock:hash"]);

    let out = tl(&["clear", "--redis", &url, "c1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_one_error_line(
        &out,
        &["ticketlock: clear: no record for conversation \"c1\" (key \"lock:c1\")"],
    );

    // What `inspect` calls corrupt, `clear` removes.
    let out = tl(&["clear", "--redis", &url, "hash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(keys(&server, 0), ["lock:c2"]);
}

#[test]
fn a_waiter_whose_record_is_cleared_learns_that_its_ticket_is_gone() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = url(&server, 0, "");
    let store = Store::connect(&url);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let holder = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "c1", "--", "sh", "-c"])
            .arg("while [ ! -e \"$1\" ]; do sleep 0.01; done")
            .arg("holder")
            .arg(&go)
            .stderr(Stdio::piped()),
    );
    wait_until("the holder holds", Duration::from_secs(10), || {
        store.live_tickets("c1").len() == 1
    });
    let waiter = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &url, "c1", "--", "echo", "entered"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait_until("the waiter is queued", Duration::from_secs(10), || {
        store.live_tickets("c1").len() == 2
    });
    let out = tl(&["clear", "--redis", &url, "c1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Woken by the deletion, not by a poll: well within its 1 s wait time.
    let out = waiter.output(Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "the waiter entered: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("is no longer in the queue"),
        "{}",
        text(&out.stderr)
    );
    // The holder's command ran to its end (its next renewal is 20 s away),
    // and `run` learnt at the release that its lease was gone: status 75.
    std::fs::write(&go, "").unwrap();
    let out = holder.output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(75));
    assert_one_error_line(
        &out,
        &["the lease of conversation \"c1\" ran out before the command ended"],
    );
}

#[test]
fn clear_all_removes_every_record_of_its_prefix_and_database_only() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    for (db, key) in [
        (0, "lock:a"),
        (0, "lock:b*"),
        (0, "p1:lock:a"),
        (0, "p1:lock:[x]"),
        (0, "p1x:lock:a"),
        (0, "xp1:lock:a"),
        (1, "lock:a"),
        (1, "p1:lock:a"),
    ] {
        let id = key.rsplit_once("lock:").unwrap().1;
        set(&server, db, key, &record_of(id));
    }
    // Keys that are no conversation's record.
    for key in ["lock", "locks:a", "p1:lock:", "p1:lockx", "other"] {
        set(&server, 0, key, "x");
    }

    let out = tl(&[
        "clear",
        "--redis",
        &url(&server, 0, "key_prefix=p1"),
        "--all",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let port = server.port();
    assert_eq!(
        text(&out.stdout),
        format!("removed 2 record(s) (keys \"p1:lock:*\" of redis 127.0.0.1:{port}/0)\n")
    );
    assert_eq!(
        keys(&server, 0),
        [
            "lock",
            "lock:a",
            "lock:b*",
            "locks:a",
            "other",
            "p1:lock:",
            "p1:lockx",
            "p1x:lock:a",
            "xp1:lock:a"
        ]
    );
    assert_eq!(keys(&server, 1), ["lock:a", "p1:lock:a"]);

    let out = tl(&["clear", "--redis", &url(&server, 0, ""), "--all", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("removed 2 record(s) (keys \"lock:*\" of redis 127.0.0.1:{port}/0)\n")
    );
    assert_eq!(
        keys(&server, 0),
        [
            "lock",
            "locks:a",
            "other",
            "p1:lock:",
            "p1:lockx",
            "p1x:lock:a",
            "xp1:lock:a"
        ]
    );
    assert_eq!(keys(&server, 1), ["lock:a", "p1:lock:a"]);

    let out = tl(&["clear", "--redis", &url(&server, 0, ""), "--all", "--yes"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("no records to remove (keys \"lock:*\" of redis 127.0.0.1:{port}/0)\n")
    );
}

#[test]
fn clear_all_without_yes_refuses_when_nobody_can_confirm() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    set(&server, 0, "lock:a", &record_of("a"));
    let out = ticketlock()
        .args(["clear", "--redis", &url(&server, 0, ""), "--all"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert_one_error_line(&out, &["clear --all: stdin is not a terminal", "--yes"]);
    assert_eq!(keys(&server, 0), ["lock:a"]);

    // Exactly one of an id and --all.
    for args in [&["clear"][..], &["clear", "a", "--all"]] {
        let out = ticketlock()
            .args(args)
            .args(["--redis", &url(&server, 0, "")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
    }
    assert_eq!(keys(&server, 0), ["lock:a"]);
}

/// On a terminal, `clear --all` asks, and only `y` removes.
#[cfg(unix)]
#[test]
fn clear_all_asks_on_a_terminal() {
    use std::io::Write as _;

    let Some(server) = RedisServer::start() else {
        return;
    };
    set(&server, 0, "lock:a", &record_of("a"));
    set(&server, 0, "lock:b", &record_of("b"));
    let port = server.port();
    for (answer, code, left) in [("n\n", 1, 2), ("y\n", 0, 0)] {
        let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
        let child = Proc::spawn(
            cli::ticketlock()
                .args(["clear", "--redis", &url(&server, 0, ""), "--all"])
                .stdin(Stdio::from(pty.slave))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut master = std::fs::File::from(pty.master);
        master.write_all(answer.as_bytes()).unwrap();
        let out = child.output(Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "ticketlock: clear --all: remove 2 record(s) (keys \"lock:*\" of redis 127.0.0.1:{port}/0)? [y/N] "
            )),
            "{stderr}"
        );
        assert_eq!(
            keys(&server, 0).len(),
            left,
            "after answering {answer:?}: {stderr}"
        );
    }
}

#[test]
fn help_states_the_exit_statuses() {
    for (tool, says) in [
        ("inspect", "1 when the conversation has no record"),
        ("list", "65 when a record is corrupt"),
        ("clear", "1 when CONVERSATION_ID has no record"),
    ] {
        let out = tl(&[tool, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{tool}");
        // Help is wrapped to the terminal: compare with whitespace folded.
        let help = text(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(help.contains(says), "{tool}: {help}");
        assert!(help.contains("--redis <URL>"), "{tool}: {help}");
    }
}

/// One decoder: `inspect`, `list` and `run` (the store's scripts) give the
/// same verdict on a record, a ticket number from 2^53 up and a record of
/// another conversation under this key being corrupt for all of them.
#[test]
fn every_tool_gives_the_same_verdict_on_a_record() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let url = url(&server, 0, "");
    let big = r#"{"conversation_id": "big", "tickets": ["{\"number\": 9007199254740993, \"expires\": 4102444800.0}"]}"#;
    let other = r#"{"conversation_id": "other", "tickets": ["{\"number\": 1, \"expires\": 4102444800.0}"]}"#;
    set(&server, 0, "lock:big", big);
    set(&server, 0, "lock:m", other);
    for (id, why) in [
        ("big", "below 2^53"),
        ("m", "`conversation_id` is not the conversation of its key"),
    ] {
        let out = tl(&["inspect", "--redis", &url, id]);
        assert_eq!(
            out.status.code(),
            Some(65),
            "inspect {id}: {}",
            text(&out.stdout)
        );
        assert_one_error_line(&out, &[why]);
        let out = tl(&[
            "run",
            "--redis",
            &url,
            "--timeout",
            "1",
            id,
            "--",
            "echo",
            "entered",
        ]);
        assert_eq!(
            out.status.code(),
            Some(65),
            "run {id}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "run {id} entered");
        assert_one_error_line(&out, &[why]);
    }
    let out = tl(&["list", "--redis", &url, "--json"]);
    assert_eq!(out.status.code(), Some(65));
    // Not rewritten by anyone.
    assert_eq!(server.cli(&["GET", "lock:m"]), other);
    assert_eq!(server.cli(&["GET", "lock:big"]), big);
}

/// `ticketlock run` holding `id` in the native layout until `go` exists.
fn native_holder(url: &str, id: &str, go: &std::path::Path) -> Proc {
    Proc::spawn(
        ticketlock()
            .args(["run", "--redis", url, id, "--", "sh", "-c"])
            .arg("while [ ! -e \"$1\" ]; do sleep 0.01; done")
            .arg("holder")
            .arg(go)
            .stderr(Stdio::piped()),
    )
}

#[test]
fn the_tools_show_list_and_clear_native_conversations() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let native = url(&server, 0, "layout=native");
    let store = Store::connect(&native);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let holder = native_holder(&native, "c1", &go);
    wait_until("the holder holds", Duration::from_secs(10), || {
        store.live_tickets("c1") == [0]
    });
    let waiter = Proc::spawn(
        ticketlock()
            .args(["run", "--redis", &native, "c1", "--", "echo", "entered"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait_until("the waiter is queued", Duration::from_secs(10), || {
        store.live_tickets("c1") == [0, 1]
    });

    let out = tl(&["inspect", "--redis", &native, "c1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v = json_out(&out);
    assert_eq!(v["key"], "lock:c1");
    assert_eq!(v["now_serving"], 0);
    assert_eq!(v["last_issued"], 1);
    assert!(v["epoch"].as_u64().is_some(), "{v}");
    let statuses: Vec<(u64, &str)> = v["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["number"].as_u64().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [(0, "serving"), (1, "waiting")]);

    let out = tl(&["list", "--redis", &native, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "only the conversation, no auxiliary key: {rows:?}"
    );
    assert_eq!(rows[0]["conversation_id"], "c1");
    assert_eq!(rows[0]["live"], 2);

    // The rasa layout's tools refuse it, naming the setting.
    let out = tl(&["inspect", "--redis", &url(&server, 0, ""), "c1"]);
    assert_ne!(out.status.code(), Some(0));
    assert_one_error_line(&out, &["lock_store.layout", "native layout"]);

    let out = tl(&["clear", "--redis", &native, "c1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = waiter.output(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the waiter entered");
    // Only short-lived request entries are left, none of the conversation.
    let left = keys(&server, 0);
    assert!(
        left.iter()
            .all(|k| k.contains(":rq:") || k.contains(":rl:")),
        "{left:?}"
    );
    std::fs::write(&go, "").unwrap();
    assert_eq!(
        holder.output(Duration::from_secs(10)).status.code(),
        Some(75)
    );
}

#[test]
fn a_native_waiter_killed_with_sigkill_is_skipped_within_the_claim_window() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Claim window: two socket timeouts and a second, 3 s; lifetimes 1 h.
    let native = url(&server, 0, "layout=native&socket_timeout=1");
    let store = Store::connect(&native);
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let holder = native_holder(&native, "k", &go);
    wait_until("the holder holds", Duration::from_secs(10), || {
        store.live_tickets("k") == [0]
    });
    let run = |what: &str| {
        Proc::spawn(
            ticketlock()
                .args(["run", "--lifetime", "3600", "--redis", &native, "k", "--"])
                .args(["echo", what])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
    };
    let mut doomed = run("the killed waiter entered");
    wait_until(
        "the first waiter is queued",
        Duration::from_secs(10),
        || store.live_tickets("k") == [0, 1],
    );
    let next = run("entered");
    wait_until(
        "the second waiter is queued",
        Duration::from_secs(10),
        || store.live_tickets("k") == [0, 1, 2],
    );
    doomed.child().kill().unwrap();
    doomed.wait_for(Duration::from_secs(10));
    std::fs::write(&go, "").unwrap();
    assert_eq!(
        holder.output(Duration::from_secs(10)).status.code(),
        Some(0)
    );
    // Far less than the killed waiter's hour.
    let out = next.output(Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "entered\n");
}
