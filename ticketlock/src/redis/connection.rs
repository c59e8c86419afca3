//! Building the Redis client from the configuration: address, database,
//! credentials and TLS.

use std::path::Path;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::io::tcp::TcpSettings;
use redis::{
    ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates,
};

use super::keys;
use crate::{DeploymentMode, Error, RedisConfig, Result};

/// What the store needs to open connections.
pub(crate) struct Connector {
    pub client: redis::Client,
    pub manager: ConnectionManagerConfig,
    pub describe: String,
}

/// Checks the configuration and builds the client (no I/O but reading the
/// TLS files).
pub(crate) fn connector(config: &RedisConfig) -> Result<Connector> {
    if config.deployment_mode != DeploymentMode::Standard {
        return Err(Error::config(
            "lock_store.deployment_mode",
            "only `standard` is supported by this version; point `host` and `port` at the primary",
        ));
    }
    if config.host.is_empty() {
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
    let describe = format!(
        "{} {}:{}/{}",
        if config.use_ssl { "rediss" } else { "redis" },
        config.host,
        config.port,
        config.db
    );
    let addr = if config.use_ssl {
        ConnectionAddr::TcpTls {
            host: config.host.clone(),
            port: config.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        if config.ssl_certfile.is_some()
            || config.ssl_keyfile.is_some()
            || config.ssl_ca_certs.is_some()
        {
            tracing::warn!(
                "lock_store: ssl_certfile, ssl_keyfile and ssl_ca_certs are ignored without use_ssl: true"
            );
        }
        ConnectionAddr::Tcp(config.host.clone(), config.port)
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
    let info = addr
        .into_connection_info()
        .map_err(|e| Error::config("lock_store.host", e.to_string()))?
        .set_redis_settings(redis_info)
        // Requests are small and latency matters: no Nagle delay.
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let client = if config.use_ssl {
        // rustls needs a process-wide crypto provider; install ring's unless
        // the application installed one.
        let _ = rustls::crypto::ring::default_provider().install_default();
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
        redis::Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls,
                root_cert,
            },
        )
        .map_err(|e| {
            Error::config(
                "lock_store.ssl_ca_certs",
                format!("unusable TLS files: {e}"),
            )
        })?
    } else {
        redis::Client::open(info).map_err(|e| Error::config("lock_store.host", e.to_string()))?
    };
    let timeout = config.socket_timeout;
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // Come back quickly after a restart: retry within a second.
        .set_min_delay(Duration::from_millis(25))
        .set_max_delay(Duration::from_secs(1))
        .set_number_of_retries(6);
    Ok(Connector {
        client,
        manager,
        describe,
    })
}

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
