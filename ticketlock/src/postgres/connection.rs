//! Connections to the server: the client settings (TLS with our own rustls
//! configuration, no process-wide provider), a small pool of multiplexed
//! clients for the operations, and the mapping of the client's errors to
//! the crate's kinds.
//!
//! Each slot of the pool holds one `tokio_postgres::Client` (which
//! pipelines the requests of every task that uses it) and the task driving
//! its connection. A slot whose connection closed (server restart,
//! `pg_terminate_backend`) or whose call timed out (a half-open socket) is
//! connected anew by the next call; the old task is aborted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PostgresConfig, PostgresSslMode};
use crate::{Error, Result};

/// How to reach the server.
#[derive(Clone)]
pub(crate) struct Connector {
    pub config: Config,
    pub tls: MakeRustlsConnect,
    pub describe: String,
    pub timeout: Duration,
}

impl Connector {
    /// The connector of the operations, and the one of the wake-up
    /// connection (`listen_url`, or the same server).
    pub fn new(c: &PostgresConfig) -> Result<(Connector, Connector)> {
        let tls = tls(c)?;
        let config = client_config(c, &c.host, c.port);
        let ops = Connector {
            config: config.clone(),
            tls: tls.clone(),
            describe: c.describe(),
            timeout: c.socket_timeout,
        };
        let listen = match &c.listen {
            None => ops.clone(),
            Some((host, port)) => {
                // A new Config: `host()` and `port()` add to a Config's list
                // (tried in turn), they do not replace.
                let lc = client_config(c, host, *port);
                let mut shown = c.clone();
                shown.host.clone_from(host);
                shown.port = *port;
                Connector {
                    config: lc,
                    tls,
                    describe: format!("{} (listen)", shown.describe()),
                    timeout: c.socket_timeout,
                }
            }
        };
        Ok((ops, listen))
    }

    /// Opens a connection within the timeout; the connection's task is
    /// returned for the caller to spawn or drive.
    pub async fn connect(
        &self,
    ) -> Result<(
        Client,
        tokio_postgres::Connection<
            Socket,
            <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<Socket>>::Stream,
        >,
    )> {
        match tokio::time::timeout(self.timeout, self.config.connect(self.tls.clone())).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(Error::unavailable(
                &self.describe,
                format!("could not connect within {:?}", self.timeout),
                None,
            )),
        }
    }

    /// The crate's error for a client error.
    pub fn error(&self, e: tokio_postgres::Error) -> Error {
        map_error(&self.describe, e)
    }
}

/// The client settings of `c` for the server at `host:port`.
fn client_config(c: &PostgresConfig, host: &str, port: u16) -> Config {
    let mut config = Config::new();
    config
        .host(host)
        .port(port)
        .user(&c.username)
        .dbname(c.database())
        .application_name("ticketlock")
        .connect_timeout(c.socket_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .ssl_mode(match c.sslmode {
            PostgresSslMode::Disable => tokio_postgres::config::SslMode::Disable,
            PostgresSslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
    if let Some(p) = &c.password {
        config.password(p.expose());
    }
    config
}

/// The rustls configuration: the system's roots, or `sslrootcert`'s.
fn tls(c: &PostgresConfig) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    if c.sslmode != PostgresSslMode::Disable {
        if let Some(path) = &c.sslrootcert {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                Error::config(
                    "lock_store.sslrootcert",
                    format!(
                        "cannot read {}: {e}; name a PEM file of CA certificates",
                        path.display()
                    ),
                )
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::config(
                        "lock_store.sslrootcert",
                        format!("{} is not PEM certificates: {e}", path.display()),
                    )
                })?;
                roots.add(cert).map_err(|e| {
                    Error::config(
                        "lock_store.sslrootcert",
                        format!("{}: a certificate was refused: {e}", path.display()),
                    )
                })?;
            }
        } else {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("lock_store.sslmode", format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Maps a client error: refused credentials, a missing database or a
/// missing privilege are configuration errors; a corrupt row names itself;
/// everything else (the server down, restarting, a connection killed) is
/// transient.
pub(crate) fn map_error(describe: &str, e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let message = db.message().to_string();
        if code == &SqlState::INVALID_PASSWORD
            || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return Error::config(
                "lock_store.password",
                format!(
                    "the PostgreSQL server refused the user name or password ({message}); \
                     check username and password"
                ),
            );
        }
        if code == &SqlState::INVALID_CATALOG_NAME {
            return Error::config(
                "lock_store.db",
                format!("{message}; create the database or name one that exists"),
            );
        }
        if code == &SqlState::INSUFFICIENT_PRIVILEGE {
            return Error::config(
                "lock_store.username",
                format!(
                    "{message}; grant the user the ticketlock_* tables, sequence and \
                     functions, or run `ticketlock migrate` as their owner"
                ),
            );
        }
        if let Some(rest) = message.strip_prefix("ticketlock: CORRUPT ") {
            return Error::CorruptRecord {
                key: "ticketlock_conversations".into(),
                message: rest.to_string(),
            };
        }
        return Error::unavailable(
            describe,
            format!("the server answered {}: {message}", code.code()),
            Some(Box::new(e)),
        );
    }
    let message = if e.is_closed() {
        "the connection was closed (server restarted or connection killed)".to_string()
    } else {
        let mut m = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            m = format!("{m}: {source}");
        }
        if m.to_ascii_lowercase().contains("tls") || m.contains("certificate") {
            m.push_str(" (check sslmode and sslrootcert)");
        }
        m
    };
    Error::unavailable(describe, message, Some(Box::new(e)))
}

/// Whether `e` says the connection is gone (closed, or ended by the
/// server: shutdown, `pg_terminate_backend`).
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            c == &SqlState::ADMIN_SHUTDOWN
                || c == &SqlState::CRASH_SHUTDOWN
                || c == &SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08")
        })
}

/// One pooled client and the task driving its connection.
struct Slot {
    client: Arc<Client>,
    task: JoinHandle<()>,
}

/// A few multiplexed clients, used in turn; none is held by a waiter.
pub(crate) struct Pool {
    connector: Connector,
    slots: Vec<AsyncMutex<Option<Slot>>>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(connector: Connector, size: usize) -> Pool {
        Pool {
            connector,
            slots: (0..size.max(1)).map(|_| AsyncMutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// A client of slot `i`, connected anew when its connection is gone.
    async fn client(&self, i: usize) -> Result<Arc<Client>> {
        let mut slot = self.slots[i].lock().await;
        if let Some(s) = slot.as_ref()
            && !s.client.is_closed()
        {
            return Ok(s.client.clone());
        }
        if let Some(old) = slot.take() {
            old.task.abort();
        }
        let (client, connection) = self.connector.connect().await?;
        let describe = self.connector.describe.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(store = describe, error = %e, "postgres: connection ended");
            }
        });
        let client = Arc::new(client);
        *slot = Some(Slot {
            client: client.clone(),
            task,
        });
        Ok(client)
    }

    /// Forgets slot `i`'s connection if it is still `client` (after a call
    /// on it timed out: it may be half open).
    async fn discard(&self, i: usize, client: &Arc<Client>) {
        let mut slot = self.slots[i].lock().await;
        if slot
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.client, client))
            && let Some(old) = slot.take()
        {
            old.task.abort();
        }
    }

    /// Runs `call` on a pooled client, bounded by the timeout (connecting
    /// included). A failed call is not tried again: the server may have run
    /// it (the client cannot tell a request lost before sending from an
    /// answer lost after), and an issue must not run twice.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.run_inner(false, call).await
    }

    /// As [`Pool::run`], for a call that may run twice with the effect of
    /// once (release, renew, try_acquire, reads...): when its connection
    /// was lost under it (server restart, `pg_terminate_backend`), it is
    /// sent once more on a fresh connection, within the same timeout.
    pub async fn run_idempotent<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.run_inner(true, call).await
    }

    async fn run_inner<T, F, Fut>(&self, idempotent: bool, call: F) -> Result<T>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let timeout = self.connector.timeout;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let attempt = async {
            let mut again = idempotent;
            loop {
                let client = self.client(i).await?;
                match call(client.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        let lost = connection_lost(&e) || client.is_closed();
                        if lost {
                            self.discard(i, &client).await;
                        }
                        if lost && again {
                            again = false;
                            continue;
                        }
                        return Err(self.connector.error(e));
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => {
                // The connection may be half open: start afresh next time.
                if let Ok(mut slot) = self.slots[i].try_lock()
                    && let Some(old) = slot.take()
                {
                    old.task.abort();
                }
                Err(Error::unavailable(
                    &self.connector.describe,
                    format!("no answer within {timeout:?}"),
                    None,
                ))
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(s) = slot.get_mut().take() {
                s.task.abort();
            }
        }
    }
}
