//! The subscriber's connection: one server's pub/sub connection, or a
//! cluster connection subscribed with SSUBSCRIBE; its requests and what it
//! tells.
//!
//! On one server the connection speaks RESP3 where the server does (Redis
//! 6+): its messages are pushes, which the client library hands to our
//! push sender in the task that reads the socket, and that sender delivers
//! them (a grant goes to its waiter from there: one task between the
//! socket and the waiter). A server without RESP3 (no HELLO) gets a RESP2
//! pub/sub connection, whose messages come through a stream that the
//! subscriber task reads.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind};
use tokio::sync::{Notify, mpsc};

use super::super::connection::Target;

/// The connection as the task holds it.
pub(super) struct Connection {
    pub(super) link: Link,
    /// Channels the server confirmed.
    pub(super) subscribed: HashSet<Vec<u8>>,
}

/// Where messages go when the connection delivers them itself: channel,
/// payload.
pub(super) type Deliver = Arc<dyn Fn(&[u8], &[u8]) + Send + Sync>;

pub(super) enum Link {
    /// SUBSCRIBE on one server over RESP3: messages are delivered by the
    /// connection's reading task (see the module's docs); `lost` is
    /// signalled when it sees the connection go.
    Pushed {
        conn: MultiplexedConnection,
        lost: Arc<Notify>,
    },
    /// SUBSCRIBE on one server over RESP2 (a server without HELLO).
    Plain {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    /// SSUBSCRIBE through a cluster connection; its pushes arrive on
    /// `pushes`, including the confirmations of our own requests, which
    /// `expected` counts per channel so as to tell them from the cluster
    /// connection's own moves.
    Sharded {
        conn: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        expected: HashMap<Vec<u8>, usize>,
    },
}

/// What the connection told.
pub(super) enum Event {
    /// A message on a channel.
    Message { channel: Vec<u8>, payload: Vec<u8> },
    /// Sharded: the cluster connection subscribed this channel again (on
    /// another node, or after reconnecting): messages may have been missed.
    Moved(Vec<u8>),
    /// Sharded: the server dropped the subscription (its slot migrated).
    Dropped(Vec<u8>),
    /// Sharded: a node's connection was lost: messages may have been
    /// missed, and its slots may be moving to a replica.
    NodeLost,
    /// Nothing to act on.
    Nothing,
    /// The connection is gone.
    Closed,
}

pub(super) enum Failure {
    /// The connection is gone: reconnect.
    Lost(String),
    /// The server refused the request (e.g. an ACL without the channel).
    Refused(String),
}

/// The next event; pending forever without a connection.
pub(super) async fn next_event(conn: &mut Option<Connection>) -> Event {
    let Some(c) = conn.as_mut() else {
        return std::future::pending().await;
    };
    match &mut c.link {
        // Messages never come this way: the connection delivers them.
        Link::Pushed { lost, .. } => {
            lost.notified().await;
            Event::Closed
        }
        Link::Plain { stream, .. } => match stream.next().await {
            Some(msg) => match msg.get_channel::<Vec<u8>>() {
                Ok(channel) => Event::Message {
                    channel,
                    payload: msg.get_payload_bytes().to_vec(),
                },
                Err(_) => Event::Nothing,
            },
            None => Event::Closed,
        },
        Link::Sharded {
            pushes, expected, ..
        } => match pushes.recv().await {
            Some(push) => sharded_event(push, expected),
            None => Event::Closed,
        },
    }
}

fn sharded_event(push: PushInfo, expected: &mut HashMap<Vec<u8>, usize>) -> Event {
    let mut data = push.data.into_iter();
    let channel = data
        .next()
        .and_then(|c| redis::from_redis_value::<Vec<u8>>(c).ok());
    match (push.kind, channel) {
        (PushKind::SMessage, Some(channel)) => Event::Message {
            channel,
            payload: data
                .next()
                .and_then(|p| redis::from_redis_value::<Vec<u8>>(p).ok())
                .unwrap_or_default(),
        },
        (kind @ (PushKind::SSubscribe | PushKind::SUnsubscribe), Some(channel)) => {
            // Our own request's confirmation, or news?
            if let Some(n) = expected.get_mut(&channel) {
                *n -= 1;
                if *n == 0 {
                    expected.remove(&channel);
                }
                return Event::Nothing;
            }
            if kind == PushKind::SSubscribe {
                Event::Moved(channel)
            } else {
                Event::Dropped(channel)
            }
        }
        (PushKind::Disconnection, _) => Event::NodeLost,
        _ => Event::Nothing,
    }
}

/// Connects to `target`. On one server: over RESP3 with pushes handed to
/// `deliver` unless `*resp3` is false, which is set when the server turns
/// out not to have HELLO (then, and from then on, over RESP2).
pub(super) async fn connect(
    target: &Target,
    timeout: Duration,
    deliver: &Deliver,
    resp3: &mut bool,
) -> Result<Connection, String> {
    let link = async {
        let client = match target {
            Target::Standalone(client) => (**client).clone(),
            Target::Sentinel(sentinel) => sentinel.primary().await?,
            Target::Cluster(cluster) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let conn = cluster
                    .client(Some(tx))
                    .map_err(|e| e.to_string())?
                    .get_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(Link::Sharded {
                    conn,
                    pushes: rx,
                    expected: HashMap::new(),
                });
            }
        };
        if *resp3 {
            match pushed(&client, timeout, deliver).await {
                Ok(link) => return Ok(link),
                Err(e) if no_hello(&e) => {
                    tracing::debug!(error = %e, "redis: the server has no RESP3 (HELLO); pub/sub over RESP2");
                    *resp3 = false;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let (sink, stream) = client
            .get_async_pubsub()
            .await
            .map_err(|e| e.to_string())?
            .split();
        Ok(Link::Plain { sink, stream })
    };
    match tokio::time::timeout(timeout, link).await {
        Ok(Ok(link)) => Ok(Connection {
            link,
            subscribed: HashSet::new(),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// A RESP3 connection to the server of `client` whose messages go to
/// `deliver` from the task that reads them.
async fn pushed(
    client: &redis::Client,
    timeout: Duration,
    deliver: &Deliver,
) -> redis::RedisResult<Link> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let lost = Arc::new(Notify::new());
    let sender = {
        let (deliver, lost) = (deliver.clone(), lost.clone());
        move |push: PushInfo| {
            match push.kind {
                PushKind::Message => {
                    if let [channel, payload] = &push.data[..]
                        && let (Some(channel), Some(payload)) = (bytes(channel), bytes(payload))
                    {
                        deliver(channel, payload);
                    }
                }
                PushKind::Disconnection => lost.notify_one(),
                // Confirmations of our own requests: their calls return.
                _ => {}
            }
            Ok::<(), std::convert::Infallible>(())
        }
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_push_sender(sender);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok(Link::Pushed { conn, lost })
}

/// A bulk string's bytes.
fn bytes(value: &redis::Value) -> Option<&[u8]> {
    match value {
        redis::Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// Whether connecting failed because the server does not know HELLO
/// (before Redis 6, or a proxy that hides it), so speaks RESP2 only.
fn no_hello(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("unknown command") && text.to_ascii_uppercase().contains("HELLO")
}

/// Leaves `leave` (all subscribed), in one request on one server.
pub(super) async fn unsubscribe(
    c: &mut Connection,
    leave: Vec<Vec<u8>>,
    timeout: Duration,
    on_message: &mut impl FnMut(&[u8], &[u8]),
) -> Result<(), (Failure, Vec<Vec<u8>>)> {
    if leave.is_empty() {
        return Ok(());
    }
    match &mut c.link {
        Link::Pushed { conn, .. } => {
            call(timeout, conn.unsubscribe(&leave))
                .await
                .map_err(|e| (e, Vec::new()))?;
        }
        Link::Plain { sink, stream } => {
            delivering(stream, on_message, call(timeout, sink.unsubscribe(&leave)))
                .await
                .map_err(|e| (e, Vec::new()))?;
        }
        Link::Sharded { conn, expected, .. } => {
            for ch in &leave {
                *expected.entry(ch.clone()).or_default() += 1;
                call(timeout, conn.sunsubscribe(ch))
                    .await
                    .map_err(|e| (e, Vec::new()))?;
            }
        }
    }
    for ch in &leave {
        c.subscribed.remove(ch);
    }
    Ok(())
}

/// Subscribes to `join` (none subscribed), in one request on one server.
/// On failure, says which channels were refused.
pub(super) async fn subscribe(
    c: &mut Connection,
    join: &[Vec<u8>],
    timeout: Duration,
    on_message: &mut impl FnMut(&[u8], &[u8]),
) -> Result<(), (Failure, Vec<Vec<u8>>)> {
    if join.is_empty() {
        return Ok(());
    }
    match &mut c.link {
        Link::Pushed { conn, .. } => match call(timeout, conn.subscribe(join)).await {
            Ok(()) => c.subscribed.extend(join.iter().cloned()),
            Err(e) => return Err((e, join.to_vec())),
        },
        Link::Plain { sink, stream } => {
            match delivering(stream, on_message, call(timeout, sink.subscribe(join))).await {
                Ok(()) => c.subscribed.extend(join.iter().cloned()),
                Err(e) => return Err((e, join.to_vec())),
            }
        }
        Link::Sharded { conn, expected, .. } => {
            // One channel per request: each is in its own key's slot. A
            // refusal does not keep the others from being subscribed.
            let mut refused = Vec::new();
            let mut why = None;
            for ch in join {
                *expected.entry(ch.clone()).or_default() += 1;
                match call(timeout, conn.ssubscribe(ch)).await {
                    Ok(()) => {
                        c.subscribed.insert(ch.clone());
                    }
                    Err(e) => {
                        expected.remove(ch);
                        match e {
                            Failure::Refused(w) => {
                                why.get_or_insert(w);
                                refused.push(ch.clone());
                            }
                            lost @ Failure::Lost(_) => return Err((lost, vec![ch.clone()])),
                        }
                    }
                }
            }
            if let Some(why) = why {
                return Err((Failure::Refused(why), refused));
            }
        }
    }
    Ok(())
}

/// Awaits `request` on a single server's connection while delivering the
/// messages that arrive meanwhile (a grant must not wait behind another
/// waiter's subscription).
async fn delivering(
    stream: &mut PubSubStream,
    on_message: &mut impl FnMut(&[u8], &[u8]),
    request: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    tokio::pin!(request);
    loop {
        tokio::select! {
            biased;
            done = &mut request => return done,
            msg = stream.next() => match msg {
                Some(msg) => {
                    if let Ok(channel) = msg.get_channel::<Vec<u8>>() {
                        on_message(&channel, msg.get_payload_bytes());
                    }
                }
                // Closed: the request fails or times out on its own.
                None => return request.await,
            },
        }
    }
}

async fn call(
    timeout: Duration,
    request: impl std::future::Future<Output = redis::RedisResult<()>>,
) -> Result<(), Failure> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) if matches!(e.kind(), redis::ErrorKind::Server(_)) && !moved(&e) => {
            Err(Failure::Refused(e.to_string()))
        }
        Ok(Err(e)) => Err(Failure::Lost(e.to_string())),
        Err(_) => Err(Failure::Lost(format!("no answer within {timeout:?}"))),
    }
}

/// Errors of a cluster in motion, which a new connection (with a fresh
/// slot map) gets past.
fn moved(e: &redis::RedisError) -> bool {
    matches!(
        e.code(),
        Some("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "LOADING")
    )
}
