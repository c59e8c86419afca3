//! Building the Redis clients from the configuration: where the servers
//! are (one server, a cluster, or a primary found through sentinels),
//! database, credentials and TLS.

#[cfg(any(
    feature = "tls-rustls",
    feature = "tls-rustls-aws-lc",
    feature = "tls-native"
))]
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::io::tcp::TcpSettings;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
#[cfg(any(
    feature = "tls-rustls",
    feature = "tls-rustls-aws-lc",
    feature = "tls-native"
))]
use redis::{ClientTlsConfig, TlsCertificates};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, PushInfo, RedisConnectionInfo};

use super::keys;
use super::tls::{self, Certs};
use crate::config::split_endpoint;
use crate::{DeploymentMode, Error, RedisConfig, Result};

/// What the store needs to open connections.
pub(crate) struct Connector {
    pub target: Target,
    pub manager: ConnectionManagerConfig,
    pub describe: String,
}

/// Where the servers are.
#[derive(Clone)]
pub(crate) enum Target {
    /// One server (`deployment_mode: standard`).
    Standalone(Box<redis::Client>),
    /// A Redis Cluster, reached through its nodes.
    Cluster(Arc<ClusterTarget>),
    /// A primary found through the sentinels, again after each failover.
    Sentinel(Arc<SentinelTarget>),
}

/// The seed nodes of a cluster and how to talk to them.
pub(crate) struct ClusterTarget {
    nodes: Vec<ConnectionInfo>,
    certs: Option<Certs>,
    timeout: Duration,
}

impl ClusterTarget {
    /// The cluster of seed `nodes`, whose infos carry credentials and TLS.
    #[cfg(feature = "cluster")]
    pub(crate) fn new(nodes: Vec<ConnectionInfo>, timeout: Duration) -> Self {
        ClusterTarget {
            nodes,
            certs: None,
            timeout,
        }
    }

    /// A client for the cluster; with `push`, a RESP3 one whose pushes
    /// (sharded messages, subscription changes, disconnections) go there.
    pub(crate) fn client(
        &self,
        push: Option<tokio::sync::mpsc::UnboundedSender<PushInfo>>,
    ) -> redis::RedisResult<ClusterClient> {
        let mut builder = ClusterClientBuilder::new(self.nodes.clone())
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .tcp_settings(TcpSettings::default().set_nodelay(true))
            // MOVED, ASK and failovers are retried, quickly: the store's
            // own timeout bounds the whole call.
            .retries(8)
            .min_retry_wait(10)
            .max_retry_wait(500);
        if let Some(certs) = &self.certs {
            builder = tls::cluster(builder, certs);
        }
        if let Some(push) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder.build()
    }
}

/// The sentinels, and the name of the primary they watch.
pub(crate) struct SentinelTarget {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    timeout: Duration,
    service: String,
}

impl SentinelTarget {
    /// A client for the current primary: asks the sentinels, and checks
    /// that the server they name calls itself a primary (ROLE).
    pub(crate) async fn primary(&self) -> Result<redis::Client, String> {
        self.primary_or_refusal().await.map_err(|(why, _)| why)
    }

    /// [`SentinelTarget::primary`], also naming the setting to fix when
    /// the failure is one of configuration: the sentinels refused the
    /// credentials (`sentinel_password`), or the data server's user lacks
    /// a permission (`username`; ROLE, by which the client checks the
    /// server it was named is the primary).
    pub(crate) async fn primary_or_refusal(
        &self,
    ) -> Result<redis::Client, (String, Option<&'static str>)> {
        let mut sentinel = self.sentinel.lock().await;
        match tokio::time::timeout(self.timeout, sentinel.async_get_client()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err((
                format!(
                    "no sentinel named a reachable primary for {:?}: {e}",
                    self.service
                ),
                match e.kind() {
                    redis::ErrorKind::AuthenticationFailed => Some("lock_store.sentinel_password"),
                    redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => {
                        Some("lock_store.username")
                    }
                    _ => None,
                },
            )),
            Err(_) => Err((
                format!(
                    "the sentinels did not name a primary for {:?} within {:?}",
                    self.service, self.timeout
                ),
                None,
            )),
        }
    }
}

/// Checks the configuration and builds the clients (no I/O but reading
/// the TLS files).
pub(crate) fn connector(config: &RedisConfig) -> Result<Connector> {
    deployment_built(config.deployment_mode)?;
    if config.deployment_mode == DeploymentMode::Standard && config.host.is_empty() {
        return Err(Error::config(
            "lock_store.host",
            "is empty; give the Redis server's host name, e.g. `localhost`",
        ));
    }
    if config.db < 0 {
        return Err(Error::config(
            "lock_store.db",
            format!("{} is negative; use a database number such as 1", config.db),
        ));
    }
    if let Some(problem) = config.key_prefix.as_deref().and_then(keys::prefix_problem) {
        return Err(Error::config("lock_store.key_prefix", problem));
    }
    if config.socket_timeout.is_zero() {
        return Err(Error::config(
            "lock_store.socket_timeout",
            "must be greater than zero; Rasa's default is 10 seconds",
        ));
    }
    if config.min_replicas_ack > 0 && config.min_replicas_ack_timeout >= config.socket_timeout {
        return Err(Error::config(
            "lock_store.min_replicas_ack_timeout",
            "must be shorter than socket_timeout, or every call would time out first",
        ));
    }
    if !config.use_ssl
        && (config.ssl_certfile.is_some()
            || config.ssl_keyfile.is_some()
            || config.ssl_ca_certs.is_some())
    {
        tracing::warn!(
            "lock_store: ssl_certfile, ssl_keyfile and ssl_ca_certs are ignored without use_ssl: true"
        );
    }
    let certs = if config.use_ssl {
        // Checks the build and the process can speak TLS (rustls: the
        // application's crypto provider; none is installed here).
        Some(tls::certificates(config)?)
    } else {
        None
    };
    let mut redis_info = RedisConnectionInfo::default()
        .set_db(config.db)
        .set_lib_name("ticketlock", env!("CARGO_PKG_VERSION"));
    if let Some(user) = &config.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = &config.password {
        redis_info = redis_info.set_password(password.expose());
    }
    // Requests are small and latency matters: no Nagle delay.
    let tcp = TcpSettings::default().set_nodelay(true);
    let scheme = if config.use_ssl { "rediss" } else { "redis" };
    let timeout = config.socket_timeout;
    let (target, describe) = match config.deployment_mode {
        DeploymentMode::Standard => {
            let info = address(config.use_ssl, &config.host, config.port)
                .into_connection_info()
                .map_err(|e| Error::config("lock_store.host", e.to_string()))?
                .set_redis_settings(redis_info)
                .set_tcp_settings(tcp);
            let client = match certs {
                Some(certs) => tls::client(info, certs).map_err(|e| {
                    Error::config(
                        "lock_store.ssl_ca_certs",
                        format!("unusable TLS files: {e}"),
                    )
                })?,
                None => redis::Client::open(info)
                    .map_err(|e| Error::config("lock_store.host", e.to_string()))?,
            };
            let describe = format!("{scheme} {}:{}/{}", config.host, config.port, config.db);
            (Target::Standalone(Box::new(client)), describe)
        }
        DeploymentMode::Cluster => {
            if config.db != 0 {
                return Err(Error::config(
                    "lock_store.db",
                    format!(
                        "db is {} but must be 0 in cluster mode (Redis Cluster has only \
                         database 0); set it to 0 or leave it out",
                        config.db
                    ),
                ));
            }
            let nodes = endpoints(config)?
                .into_iter()
                .map(|(host, port)| {
                    address(config.use_ssl, host, port)
                        .into_connection_info()
                        .map(|i| {
                            i.set_redis_settings(redis_info.clone())
                                .set_tcp_settings(tcp.clone())
                        })
                        .map_err(|e| Error::config("lock_store.endpoints", e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            let target = ClusterTarget {
                nodes,
                certs,
                timeout,
            };
            // Checks the seed nodes agree on credentials and TLS.
            target
                .client(None)
                .map_err(|e| Error::config("lock_store.endpoints", e.to_string()))?;
            let describe = format!("{scheme} cluster {}", config.endpoints.join(","));
            (Target::Cluster(Arc::new(target)), describe)
        }
        DeploymentMode::Sentinel => {
            let Some(service) = config.sentinel_service.clone() else {
                return Err(Error::config(
                    "lock_store.sentinel_service",
                    "sentinel mode needs the name of the monitored primary; \
                     set sentinel_service, e.g. mymaster",
                ));
            };
            let sentinels: Vec<ConnectionAddr> = endpoints(config)?
                .into_iter()
                .map(|(host, port)| address(config.use_ssl, host, port))
                .collect();
            let mut builder =
                SentinelClientBuilder::new(sentinels, &service, SentinelServerType::Master)
                    .map_err(|e| Error::config("lock_store.endpoints", e.to_string()))?
                    .set_client_to_redis_db(config.db)
                    .set_client_to_redis_tcp_settings(tcp.clone())
                    .set_client_to_sentinel_tcp_settings(tcp);
            if let Some(user) = &config.username {
                builder = builder.set_client_to_redis_username(user);
            }
            if let Some(password) = &config.password {
                builder = builder.set_client_to_redis_password(password.expose());
            }
            if let Some(user) = &config.sentinel_username {
                builder = builder.set_client_to_sentinel_username(user);
            }
            if let Some(password) = &config.sentinel_password {
                builder = builder.set_client_to_sentinel_password(password.expose());
            }
            if let Some(certs) = certs {
                builder = tls::sentinel(builder, certs);
            }
            let sentinel = builder
                .build()
                .map_err(|e| Error::config("lock_store.endpoints", e.to_string()))?;
            let describe = format!(
                "{scheme} sentinel {service:?} via {}/{}",
                config.endpoints.join(","),
                config.db
            );
            let target = SentinelTarget {
                sentinel: tokio::sync::Mutex::new(sentinel),
                timeout,
                service,
            };
            (Target::Sentinel(Arc::new(target)), describe)
        }
    };
    // The client library's own response timeout as well as
    // `Commands::run`'s: a server that accepts and never answers is then
    // reported as the library's "timed out" (see bad_input.rs).
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // Come back quickly after a restart: retry within a second.
        .set_min_delay(Duration::from_millis(25))
        .set_max_delay(Duration::from_secs(1))
        .set_number_of_retries(6);
    Ok(Connector {
        target,
        manager,
        describe,
    })
}

fn address(tls: bool, host: &str, port: u16) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_string(), port)
    }
}

/// The `endpoints` as host and port: cluster seed nodes or sentinels.
fn endpoints(config: &RedisConfig) -> Result<Vec<(&str, u16)>> {
    if config.endpoints.is_empty() {
        return Err(Error::config(
            "lock_store.endpoints",
            "is empty; list the cluster nodes or sentinels as host:port, \
             e.g. [\"node1:6379\", \"node2:6379\"]",
        ));
    }
    config
        .endpoints
        .iter()
        .map(|e| {
            split_endpoint(e).ok_or_else(|| {
                Error::config(
                    "lock_store.endpoints",
                    format!("{e:?} is not host:port, e.g. node1:6379"),
                )
            })
        })
        .collect()
}

#[cfg(any(
    feature = "tls-rustls",
    feature = "tls-rustls-aws-lc",
    feature = "tls-native"
))]
pub(crate) fn certificates(config: &RedisConfig) -> Result<TlsCertificates> {
    let root_cert = config
        .ssl_ca_certs
        .as_deref()
        .map(|p| read("lock_store.ssl_ca_certs", p))
        .transpose()?;
    let client_tls = match (&config.ssl_certfile, &config.ssl_keyfile) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("lock_store.ssl_certfile", cert)?,
            client_key: read("lock_store.ssl_keyfile", key)?,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Error::config(
                "lock_store.ssl_keyfile",
                "is missing: a client certificate (ssl_certfile) needs its private key",
            ));
        }
        (None, Some(_)) => {
            return Err(Error::config(
                "lock_store.ssl_certfile",
                "is missing: a private key (ssl_keyfile) needs its client certificate",
            ));
        }
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

#[cfg(any(
    feature = "tls-rustls",
    feature = "tls-rustls-aws-lc",
    feature = "tls-native"
))]
fn read(key: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::config(
            key,
            format!(
                "cannot read {}: {e}; give the path of a PEM file",
                path.display()
            ),
        )
    })
}

/// Refuses a deployment mode whose cargo feature this build lacks.
fn deployment_built(mode: DeploymentMode) -> Result<()> {
    let feature = match mode {
        DeploymentMode::Cluster if !cfg!(feature = "cluster") => "cluster",
        DeploymentMode::Sentinel if !cfg!(feature = "sentinel") => "sentinel",
        _ => return Ok(()),
    };
    Err(Error::config(
        "lock_store.deployment_mode",
        format!(
            "this build of ticketlock has no {feature} support; enable its cargo feature \
             `{feature}`, or use deployment_mode: standard"
        ),
    ))
}
