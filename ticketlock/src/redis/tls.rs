//! TLS to Redis, as the build's features allow: rustls (`tls-rustls`,
//! `tls-rustls-aws-lc`), the platform's library (`tls-native`), or none.
//!
//! The crate never installs a process-wide rustls crypto provider: TLS with
//! rustls uses the one the application installed, and a configuration
//! that asks for TLS without one is refused with a clear error (the
//! application calls [`install_tls_provider`], or rustls itself, once at
//! startup). The redis client builds its rustls configuration from the
//! process default, so a config-level provider is not possible here.

use redis::cluster::ClusterClientBuilder;
use redis::sentinel::SentinelClientBuilder;

use crate::{Error, RedisConfig, Result};

/// The TLS material of a store: certificates, or nothing in a build
/// without TLS (then no value exists).
#[cfg(any(
    feature = "tls-rustls",
    feature = "tls-rustls-aws-lc",
    feature = "tls-native"
))]
pub(crate) type Certs = redis::TlsCertificates;

/// No TLS in this build: no value exists.
#[cfg(not(any(
    feature = "tls-rustls",
    feature = "tls-rustls-aws-lc",
    feature = "tls-native"
)))]
#[derive(Clone)]
pub(crate) enum Certs {}

/// The certificates of `config` (which asks for TLS), after checking that
/// this build and process can speak TLS.
pub(crate) fn certificates(config: &RedisConfig) -> Result<Certs> {
    #[cfg(not(any(
        feature = "tls-rustls",
        feature = "tls-rustls-aws-lc",
        feature = "tls-native"
    )))]
    {
        let _ = config;
        Err(Error::config(
            "lock_store.use_ssl",
            "this build of ticketlock has no TLS support; enable the `tls-rustls` \
             (or `tls-rustls-aws-lc`, `tls-native`) feature, or set use_ssl: false",
        ))
    }
    #[cfg(any(
        feature = "tls-rustls",
        feature = "tls-rustls-aws-lc",
        feature = "tls-native"
    ))]
    {
        #[cfg(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))]
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(Error::config(
                "lock_store.use_ssl",
                "TLS with rustls needs a crypto provider and the application installed \
                 none; call `ticketlock::install_tls_provider()` (or rustls's \
                 `CryptoProvider::install_default`) once at startup",
            ));
        }
        #[cfg(not(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc")))]
        if config.deployment_mode != crate::DeploymentMode::Standard
            && (config.ssl_ca_certs.is_some() || config.ssl_certfile.is_some())
        {
            return Err(Error::config(
                "lock_store.ssl_ca_certs",
                "certificate files in cluster and sentinel mode need rustls; enable the \
                 `tls-rustls` feature, or use the platform's trust store without them",
            ));
        }
        super::connection::certificates(config)
    }
}

/// A client for one server over TLS.
pub(crate) fn client(
    info: redis::ConnectionInfo,
    certs: Certs,
) -> redis::RedisResult<redis::Client> {
    #[cfg(any(
        feature = "tls-rustls",
        feature = "tls-rustls-aws-lc",
        feature = "tls-native"
    ))]
    return redis::Client::build_with_tls(info, certs);
    #[cfg(not(any(
        feature = "tls-rustls",
        feature = "tls-rustls-aws-lc",
        feature = "tls-native"
    )))]
    {
        let _ = info;
        match certs {}
    }
}

/// A cluster builder that verifies with `certs`.
pub(crate) fn cluster(builder: ClusterClientBuilder, certs: &Certs) -> ClusterClientBuilder {
    #[cfg(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))]
    return builder.certs(certs.clone());
    // The nodes' `rediss` addresses ask for TLS; the platform's trust
    // store verifies (certificate files were refused above).
    #[cfg(all(
        feature = "tls-native",
        not(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))
    ))]
    {
        let _ = certs;
        builder
    }
    #[cfg(not(any(
        feature = "tls-rustls",
        feature = "tls-rustls-aws-lc",
        feature = "tls-native"
    )))]
    {
        let _ = builder;
        match *certs {}
    }
}

/// A sentinel builder that speaks TLS to the sentinels and the servers.
pub(crate) fn sentinel(builder: SentinelClientBuilder, certs: Certs) -> SentinelClientBuilder {
    #[cfg(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))]
    return builder
        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
        .set_client_to_sentinel_certificates(certs.clone())
        .set_client_to_redis_certificates(certs);
    #[cfg(all(
        feature = "tls-native",
        not(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))
    ))]
    {
        let _ = certs;
        builder
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
    }
    #[cfg(not(any(
        feature = "tls-rustls",
        feature = "tls-rustls-aws-lc",
        feature = "tls-native"
    )))]
    {
        let _ = builder;
        match certs {}
    }
}

/// Installs the rustls crypto provider of this build's TLS feature as the
/// process default, unless one is installed already: aws-lc-rs with
/// `tls-rustls-aws-lc`, else ring (`tls-rustls`). Returns whether it
/// installed one.
///
/// ticketlock never calls this itself: a process-wide provider is the
/// application's choice. Call it once at startup in an application that
/// has none of its own, before connecting to Redis with `use_ssl: true`.
#[cfg(any(feature = "tls-rustls", feature = "tls-rustls-aws-lc"))]
pub fn install_tls_provider() -> bool {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return false;
    }
    #[cfg(feature = "tls-rustls-aws-lc")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "tls-rustls-aws-lc"))]
    let provider = rustls::crypto::ring::default_provider();
    // Another thread may have won the race: either way one is installed.
    provider.install_default().is_ok()
}
