//! A chat webhook that handles each sender's messages one at a time, in
//! the order they arrived, across every replica of the service: Rasa's
//! pattern, with the lock store in Redis.
//!
//! `POST /webhook` with `{"sender": "...", "text": "..."}` takes the
//! sender's ticket (so the message's place in the sender's queue is fixed
//! before the request is answered), answers `202 Accepted`, and handles the
//! message when the ticket is served. Messages of different senders are
//! handled in parallel.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379/1 cargo run --example webhook
//! curl -X POST localhost:3000/webhook -H 'content-type: application/json' \
//!      -d '{"sender": "alice", "text": "hello"}'
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use ticketlock::{LockStore, RedisConfig, RedisLockStore};

/// A message as the chat channel posts it.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// The conversation: one lock per sender.
    pub sender: String,
    /// What the sender wrote.
    pub text: String,
}

/// What the service shares between requests.
#[derive(Clone)]
pub struct App {
    store: LockStore,
    /// Stands in for the conversation tracker, a database shared by the
    /// replicas: each sender's handled messages, in the order they were
    /// handled.
    pub handled: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

impl App {
    /// The service on `store`.
    pub fn new(store: LockStore) -> Self {
        App {
            store,
            handled: Arc::default(),
        }
    }

    /// Another replica of the service, on `store`, writing to the same
    /// tracker (in production: the same database).
    pub fn replica(&self, store: LockStore) -> Self {
        App {
            store,
            handled: self.handled.clone(),
        }
    }

    /// The lock store of this replica.
    pub fn store(&self) -> LockStore {
        self.store.clone()
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/webhook", post(receive))
            .with_state(self)
    }
}

async fn receive(
    State(app): State<App>,
    Json(message): Json<Message>,
) -> Result<StatusCode, (StatusCode, String)> {
    // The ticket is taken before answering: a message answered first is
    // first in its sender's queue.
    let ticket = app
        .store
        .lock(&message.sender)
        .lifetime(Duration::from_secs(30))
        .auto_renew(true)
        .enqueue()
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    tokio::spawn(async move {
        let guard = match ticket.acquired().await {
            Ok(guard) => guard,
            Err(e) => return eprintln!("message of {} not handled: {e}", message.sender),
        };
        handle(&app, &message).await;
        if let Err(e) = guard.release().await {
            eprintln!("lock of {} not released cleanly: {e}", message.sender);
        }
    });
    Ok(StatusCode::ACCEPTED)
}

/// The bot's turn: reads the conversation, thinks, writes it back. Only
/// one turn per sender runs at a time, so nothing written is lost.
async fn handle(app: &App, message: &Message) {
    let before = app
        .handled
        .lock()
        .unwrap()
        .get(&message.sender)
        .cloned()
        .unwrap_or_default();
    // Thinking takes a while, longer for some messages than others.
    let think = 1 + (message.text.len() % 4) as u64;
    tokio::time::sleep(Duration::from_millis(think)).await;
    let mut after = before;
    after.push(message.text.clone());
    app.handled
        .lock()
        .unwrap()
        .insert(message.sender.clone(), after);
}

#[allow(dead_code)] // the test includes this file and calls only `App`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/1".into());
    let client = redis::Client::open(url)?;
    let store: LockStore = RedisLockStore::from_client(client, &RedisConfig::default())
        .await?
        .into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000/webhook");
    axum::serve(listener, App::new(store.clone()).router()).await?;
    store.flush().await;
    Ok(())
}
