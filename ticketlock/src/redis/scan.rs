//! Listing a store's conversations: SCAN over the one server, or over
//! every primary of a cluster (each holds its own slots' keys).

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::commands::Conn;
use super::{RedisLockStore, Reply};
use crate::Result;

impl RedisLockStore {
    /// Adds the ids of this store's records on `node` (a cluster primary;
    /// `None`: the one server) to `ids`.
    pub(super) async fn scan(
        &self,
        node: Option<&(String, u16)>,
        ids: &mut std::collections::HashSet<String>,
    ) -> Result<()> {
        let pattern = self.inner.keys.scan_pattern();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<Vec<u8>>) = match node {
                None => self.query(&cmd, "").await?,
                Some((host, port)) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    });
                    self.inner
                        .commands
                        .run(|conn| {
                            let (cmd, routing) = (&cmd, &routing);
                            async move {
                                let mut c = match conn {
                                    Conn::Cluster(c) => c,
                                    mut other => return cmd.query_async(&mut other).await,
                                };
                                let v = c.route_command(cmd.clone(), routing.clone()).await?;
                                Ok(redis::from_redis_value(v)?)
                            }
                        })
                        .await
                        .map_err(|f| self.failure(f, "", Reply::Command))?
                }
            };
            for key in &keys {
                if let Some(id) = self.inner.keys.conversation_id(key) {
                    ids.insert(id.to_string());
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// The cluster's primaries, as `CLUSTER SLOTS` names them.
    pub(super) async fn primaries(&self) -> Result<Vec<(String, u16)>> {
        let slots: Vec<redis::Value> = self.query(redis::cmd("CLUSTER").arg("SLOTS"), "").await?;
        let mut nodes = Vec::new();
        for range in slots {
            // [start, end, [host, port, id, ...], replicas...]
            let primary = match range {
                redis::Value::Array(items) => items.into_iter().nth(2),
                _ => None,
            };
            let node = match primary {
                Some(redis::Value::Array(node)) => {
                    let mut node = node.into_iter();
                    let host = node
                        .next()
                        .and_then(|h| redis::from_redis_value::<String>(h).ok());
                    let port = node
                        .next()
                        .and_then(|p| redis::from_redis_value::<u16>(p).ok());
                    host.zip(port)
                }
                _ => None,
            };
            let Some(node) = node else {
                return Err(self.unavailable(
                    "CLUSTER SLOTS answered something that is not a slot map".into(),
                    None,
                ));
            };
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        Ok(nodes)
    }
}
