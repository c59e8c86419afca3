//! Opening a store: the probe connection that reports a wrong address,
//! password, ACL or TLS setting clearly, and the store built after it.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::connection::{self, Target};
use super::keys::Keys;
use super::subscriber::Subscriber;
use super::{Commands, Inner, RedisLockStore};
use crate::in_flight::InFlight;
use crate::{DEFAULT_MAX_QUEUE_LEN, Error, RedisConfig, Result};

impl RedisLockStore {
    /// Connects to the server of `config` and checks it answers (PING), so
    /// that a wrong address, password or TLS setting fails here with a clear
    /// error rather than at the first lock. In cluster mode every primary
    /// must answer; in sentinel mode the sentinels must name a primary that
    /// answers.
    ///
    /// Fails with [`Error::Config`] for invalid settings (or credentials the
    /// server refuses) and [`Error::Unavailable`] when the server cannot be
    /// reached within `socket_timeout`.
    pub async fn connect(config: &RedisConfig) -> Result<RedisLockStore> {
        Self::open(connection::connector(config)?, config).await
    }

    /// [`RedisLockStore::connect`] with the clients already built.
    pub(super) async fn open(
        connector: connection::Connector,
        config: &RedisConfig,
    ) -> Result<Self> {
        let connection::Connector {
            target,
            manager,
            describe,
        } = connector;
        let timeout = config.socket_timeout;
        let unavailable = |message: String, source: Option<redis::RedisError>| {
            Error::unavailable(
                describe.clone(),
                message,
                source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            )
        };
        // A plain connection first: the manager would retry a refused
        // password or certificate until the timeout, hiding the reason.
        let probe = || async {
            let client = match &target {
                Target::Standalone(client) => (**client).clone(),
                Target::Sentinel(sentinel) => match sentinel.primary_or_refusal().await {
                    Ok(client) => client,
                    Err(why) => return Ok::<_, redis::RedisError>(Err(why)),
                },
                Target::Cluster(cluster) => {
                    // PING goes to every primary: all must answer.
                    let mut c = cluster.client(None)?.get_async_connection().await?;
                    redis::cmd("PING").query_async::<String>(&mut c).await?;
                    return Ok(Ok(()));
                }
            };
            let setup = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let mut c = client
                .get_multiplexed_async_connection_with_config(&setup)
                .await?;
            redis::cmd("PING").query_async::<String>(&mut c).await?;
            Ok(Ok(()))
        };
        // A connection dropped during the probe (not refused: nothing
        // listens, or a configuration fault) is tried once more, as every
        // later call is.
        let started = tokio::time::Instant::now();
        let mut probed = tokio::time::timeout(timeout, probe()).await;
        if let Ok(Err(e)) = &probed
            && e.is_connection_dropped()
            && !e.is_connection_refusal()
            && config_error(e, config.username.as_deref()).is_none()
        {
            tracing::debug!(error = %e, "redis: probe connection dropped; trying once more");
            probed = tokio::time::timeout_at(started + timeout * 2, probe()).await;
        }
        match probed {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err((why, None)))) => return Err(unavailable(why, None)),
            Ok(Ok(Err((why, Some(key))))) => {
                let fix = if key == "lock_store.sentinel_password" {
                    "check sentinel_username and sentinel_password"
                } else {
                    "grant the user the ACL rule documented on RedisLockStore (sentinel mode \
                     adds +role)"
                };
                return Err(Error::config(key, format!("{why}; {fix}")));
            }
            Ok(Err(e)) if is_parse_error(&e) => {
                // Something answered, in another protocol (HTTP, TLS, ...).
                return Err(Error::config(
                    "lock_store.port",
                    format!(
                        "{describe} answered, but not as Redis; check that host and port name \
                         a Redis server (and use_ssl / rediss:// if it speaks TLS)"
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(
                    config_error(&e, config.username.as_deref()).unwrap_or_else(|| {
                        let hint = tls_hint(config.use_ssl, &e.to_string());
                        unavailable(format!("cannot connect: {e}{hint}"), Some(e))
                    }),
                );
            }
            Err(_) => {
                let hint = tls_hint(config.use_ssl, "timed out");
                return Err(unavailable(
                    format!("no answer within {timeout:?}{hint}"),
                    None,
                ));
            }
        }
        let sharded = matches!(target, Target::Cluster(_));
        let (stop, stopped) = oneshot::channel();
        let subscriber = Subscriber::start(target.clone(), timeout, stopped);
        let commands = Commands::new(target, manager, timeout);
        tracing::debug!(server = describe, "connected to redis");
        Ok(RedisLockStore {
            inner: Arc::new(Inner {
                describe,
                keys: Keys::new(usable_prefix(config.key_prefix.as_deref())),
                timeout,
                commands,
                sharded,
                layout: config.layout,
                functions: std::sync::atomic::AtomicBool::new(true),
                acks: (config.min_replicas_ack > 0)
                    .then_some((config.min_replicas_ack, config.min_replicas_ack_timeout)),
                preload: Default::default(),
                subscriber,
                wake_id: super::request_id()[..16].to_string(),
                in_flight: InFlight::default(),
                counters: Default::default(),
                user: config.username.clone(),
                _stop: stop,
            }),
            max_queue_len: DEFAULT_MAX_QUEUE_LEN,
        })
    }
}

/// A hint when a failure to connect looks like TLS on one side only: a
/// TLS server drops a plain client's first bytes, and a plain server never
/// answers a TLS handshake.
pub(super) fn tls_hint(use_ssl: bool, failure: &str) -> &'static str {
    let dropped = [
        "reset by peer",
        "broken pipe",
        "closed",
        "end of file",
        "EOF",
    ];
    if !use_ssl && dropped.iter().any(|d| failure.contains(d)) {
        " (if the server requires TLS, use rediss:// or use_ssl: true)"
    } else if use_ssl && failure.contains("timed out") {
        " (if the server does not speak TLS, use redis:// or use_ssl: false)"
    } else {
        ""
    }
}

/// The key prefix as endpoints.yml (and Rasa) would take it: one that is
/// not alphanumeric is ignored, with a warning, so that a `RedisConfig`
/// built by hand names the same keys as the file that says the same.
pub(super) fn usable_prefix(prefix: Option<&str>) -> Option<&str> {
    match prefix {
        Some(p) if !p.is_empty() && !crate::config::key_prefix_ok(p) => {
            tracing::warn!(
                key_prefix = p,
                "lock store configuration: `key_prefix`: {p:?} is not alphanumeric, so it is \
                 ignored and keys get no prefix, as Rasa does; {}",
                crate::config::KEY_PREFIX_HINT
            );
            None
        }
        p => p,
    }
}

/// Whether the reply could not be read as RESP: the server speaks another
/// protocol.
pub(super) fn is_parse_error(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Parse
}

/// Turns errors that a change of configuration fixes (credentials, ACL)
/// into [`Error::Config`].
pub(super) fn config_error(e: &redis::RedisError, user: Option<&str>) -> Option<Error> {
    let detail = e.detail().map_or_else(|| e.to_string(), str::to_string);
    let text = e.to_string();
    let auth = matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
        || text.contains("Authentication required")
        || text.contains("NOAUTH");
    if auth {
        let who = match user {
            Some(user) => format!("of user {user:?}"),
            None => "of the default user (no username given)".to_string(),
        };
        return Some(Error::config(
            "lock_store.password",
            format!(
                "the Redis server refused the credentials {who} ({detail}); check username and \
                 password"
            ),
        ));
    }
    // NOPERM, also from a command inside a script (answered as ERR).
    if e.code() == Some("NOPERM")
        || text.contains("no permissions to run")
        || text.contains("can't run this command")
        || text.contains("no permissions to access")
    {
        return Some(Error::config(
            "lock_store.username",
            format!(
                "the Redis user lacks a permission the lock store needs ({detail}); \
                 grant it the ACL rule documented on RedisLockStore"
            ),
        ));
    }
    if text.contains("invalid peer certificate") {
        let key = if text.contains("NotValidForName") {
            "lock_store.host"
        } else {
            "lock_store.ssl_ca_certs"
        };
        return Some(Error::config(
            key,
            format!(
                "the server's TLS certificate is not accepted ({text}); give the CA that signed it \
                 in ssl_ca_certs and a host name the certificate names"
            ),
        ));
    }
    // The server refused our side of the handshake: no client certificate
    // where one is required, or one signed by a CA it does not trust.
    const CLIENT_CERT_ALERTS: &[&str] = &[
        "UnknownCA",
        "BadCertificate",
        "CertificateRequired",
        "CertificateUnknown",
        "UnsupportedCertificate",
        "CertificateExpired",
        "CertificateRevoked",
    ];
    if text.contains("received fatal alert")
        && CLIENT_CERT_ALERTS.iter().any(|alert| text.contains(alert))
    {
        return Some(Error::config(
            "lock_store.ssl_certfile",
            format!(
                "the server refused the client certificate ({text}); give in ssl_certfile and \
                 ssl_keyfile a certificate signed by a CA the server trusts (tls-ca-cert-file)"
            ),
        ));
    }
    if text.contains("refused to switch database") {
        return Some(Error::config(
            "lock_store.db",
            format!("the Redis server refused the database ({detail}); use one it has, e.g. 1"),
        ));
    }
    None
}
