//! The webhook example (examples/webhook.rs) on a Redis server of its
//! own: several senders post messages at once, each sender's one after the
//! other; every message is handled, one at a time per sender, in the order
//! it was posted.

#[macro_use]
#[path = "redis_store/server.rs"]
mod server;

#[allow(dead_code)]
#[path = "../examples/webhook.rs"]
mod webhook;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use server::RedisServer;
use ticketlock::{LockStore, RedisLockStore};
use tower::ServiceExt as _;

const SENDERS: usize = 4;
const MESSAGES: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_senders_messages_are_handled_one_at_a_time_in_posting_order() {
    let server = server!();
    // Two replicas of the service on the same Redis, as in production.
    let replica = || async {
        let store: LockStore = RedisLockStore::connect(&server::config(&server))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
            .into();
        webhook::App::new(store)
    };
    let a = replica().await;
    let b = a.replica(replica().await.store());
    let routers = [a.clone().router(), b.router()];
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let routers = routers.clone();
            tokio::spawn(async move {
                for m in 0..MESSAGES {
                    // Alternate replicas: the order must hold across them.
                    let router = routers[(s + m) % 2].clone();
                    let body = format!(r#"{{"sender": "sender-{s}", "text": "message {m:02}"}}"#);
                    let request = Request::post("/webhook")
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .unwrap();
                    let response = router.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::ACCEPTED);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for s in 0..SENDERS {
        let sender = format!("sender-{s}");
        let want: Vec<String> = (0..MESSAGES).map(|m| format!("message {m:02}")).collect();
        let handled = || {
            a.handled
                .lock()
                .unwrap()
                .get(&sender)
                .cloned()
                .unwrap_or_default()
        };
        while handled().len() < MESSAGES {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sender}: {:?} handled\n{}",
                handled(),
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // In posting order, each exactly once: a turn that overlapped
        // another of its sender would have lost the other's write.
        assert_eq!(handled(), want, "{sender}");
    }
}
