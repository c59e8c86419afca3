//! Bringing your own connection: a store on a `redis::Client`,
//! `ConnectionInfo` or cluster nodes the application already set up.

use redis::{ConnectionAddr, IntoConnectionInfo};

use super::RedisLockStore;
use super::connection::{self, Connector, Target};
use crate::stats::Counters;
use crate::{DeploymentMode, Error, RedisConfig, Result};

impl RedisLockStore {
    /// A store on the server that `client` connects to: its address,
    /// database, credentials and TLS are used as they are. `settings`
    /// gives the rest ([`RedisConfig::key_prefix`], `socket_timeout`,
    /// `min_replicas_ack` and its timeout); its server fields (host, port,
    /// db, credentials, TLS, deployment) are ignored.
    ///
    /// Checks that the server answers, as [`RedisLockStore::connect`] does.
    /// The store opens its own connections from the client (a multiplexed
    /// one for commands, one for pub/sub wake-ups).
    ///
    /// ```no_run
    /// # async fn f() -> ticketlock::Result<()> {
    /// use ticketlock::{LockStore, RedisConfig, RedisLockStore};
    ///
    /// let client = redis::Client::open("redis://127.0.0.1:6379/1").expect("a valid URL");
    /// let store: LockStore = RedisLockStore::from_client(client, &RedisConfig::default())
    ///     .await?
    ///     .into();
    /// # Ok(()) }
    /// ```
    pub async fn from_client(client: redis::Client, settings: &RedisConfig) -> Result<Self> {
        let info = client.get_connection_info();
        let describe = describe(info.addr(), info.redis_settings().db());
        let target = Target::Standalone(Box::new(client));
        Self::open(own_connector(target, describe, settings)?, settings).await
    }

    /// [`RedisLockStore::from_client`] with a client made from `info` (a
    /// `redis::ConnectionInfo`, a URL, or `(host, port)`).
    pub async fn from_connection_info(
        info: impl IntoConnectionInfo,
        settings: &RedisConfig,
    ) -> Result<Self> {
        let client = redis::Client::open(info).map_err(|e| {
            Error::config(
                "connection_info",
                format!("{e}; give a redis:// or rediss:// address"),
            )
        })?;
        Self::from_client(client, settings).await
    }

    /// A store on the Redis Cluster whose seed nodes are `nodes` (each
    /// node's `ConnectionInfo` carries its credentials and TLS). `settings`
    /// gives the rest, as for [`RedisLockStore::from_client`].
    ///
    /// Takes the nodes rather than a `redis::cluster::ClusterClient`: the
    /// store's wake-ups need a RESP3 cluster connection with a push
    /// receiver of their own, which a built client cannot give, and a
    /// client does not tell its nodes.
    #[cfg(feature = "cluster")]
    pub async fn from_cluster_nodes<I>(nodes: I, settings: &RedisConfig) -> Result<Self>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        let nodes = nodes
            .into_iter()
            .map(|n| n.into_connection_info())
            .collect::<redis::RedisResult<Vec<redis::ConnectionInfo>>>()
            .map_err(|e| Error::config("cluster_nodes", e.to_string()))?;
        if nodes.is_empty() {
            return Err(Error::config(
                "cluster_nodes",
                "is empty; give at least one node of the cluster",
            ));
        }
        let list: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let scheme = match nodes[0].addr() {
            ConnectionAddr::TcpTls { .. } => "rediss",
            _ => "redis",
        };
        let describe = format!("{scheme} cluster {}", list.join(","));
        let target = connection::ClusterTarget::new(nodes, settings.socket_timeout);
        // Checks the nodes agree on credentials and TLS.
        target
            .client(None)
            .map_err(|e| Error::config("cluster_nodes", e.to_string()))?;
        let target = Target::Cluster(std::sync::Arc::new(target));
        Self::open(own_connector(target, describe, settings)?, settings).await
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }
}

/// The connector of `target`, with the settings of `settings` checked as
/// [`RedisLockStore::connect`] checks them.
fn own_connector(target: Target, describe: String, settings: &RedisConfig) -> Result<Connector> {
    // The same checks and connection settings as from a configuration,
    // on the settings that apply here (no server, no TLS files).
    let mut checked = settings.clone();
    checked.deployment_mode = DeploymentMode::Standard;
    checked.host = "localhost".into();
    checked.db = 0;
    checked.use_ssl = false;
    checked.ssl_ca_certs = None;
    checked.ssl_certfile = None;
    checked.ssl_keyfile = None;
    let base = connection::connector(&checked)?;
    Ok(Connector {
        target,
        manager: base.manager,
        describe,
    })
}

/// Like a configured store's description: scheme, address, database;
/// never credentials.
fn describe(addr: &ConnectionAddr, db: i64) -> String {
    let scheme = match addr {
        ConnectionAddr::TcpTls { .. } => "rediss",
        _ => "redis",
    };
    format!("{scheme} {addr}/{db}")
}
