//! TLS with rustls uses the crypto provider the application installed;
//! the library installs none. Its own test binary: nothing else in this
//! process may install a provider first.

use std::time::Duration;

use ticketlock::{Error, RedisConfig, RedisLockStore};

#[tokio::test(flavor = "current_thread")]
async fn tls_without_an_installed_provider_is_a_configuration_error_until_the_application_installs_one()
 {
    assert!(
        rustls_default_is_missing(),
        "a provider was installed before the test"
    );
    // A closed loopback port: nothing to reach, only the setup is checked.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = RedisConfig::default();
    c.host = "127.0.0.1".into();
    c.port = port;
    c.use_ssl = true;
    c.socket_timeout = Duration::from_secs(2);
    match RedisLockStore::connect(&c).await {
        Err(Error::Config { key, message }) => {
            assert_eq!(key, "lock_store.use_ssl");
            assert!(message.contains("install_tls_provider"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert!(rustls_default_is_missing(), "connect installed a provider");
    assert!(ticketlock::install_tls_provider());
    assert!(!ticketlock::install_tls_provider(), "installed twice");
    match RedisLockStore::connect(&c).await {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("expected the closed port to be unavailable, got {other:?}"),
    }
}

fn rustls_default_is_missing() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_none()
}
