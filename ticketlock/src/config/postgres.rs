//! Settings of the PostgreSQL store, and its URL form
//! `postgresql://user:password@host:port/db?sslmode=...`.
//!
//! Implementation details: the `url` crate splits the URL; user, password
//! and database are percent-decoded here. The query settings are the same
//! names as in `endpoints.yml` (and as libpq's for `sslmode` and
//! `sslrootcert`). Error messages never echo the URL, which may hold a
//! password.

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use url::{Host, Url};

use super::Secret;
use super::check::{self, Warning};
use crate::{Error, Result};

/// How the PostgreSQL store uses TLS (libpq's `sslmode` names).
///
/// Where TLS is used, the server's certificate chain and host name are
/// always verified (against the system's roots, or `sslrootcert`): rustls
/// has no unverified mode, so `require` and `verify-ca` are as strict as
/// `verify-full`, stricter than libpq's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PostgresSslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, else plain (libpq's default). The
    /// certificate is verified as in the other TLS modes, so a server whose
    /// certificate the roots do not vouch for is refused rather than used
    /// unverified: give `sslrootcert`, or `disable`.
    #[default]
    Prefer,
    /// TLS or no connection.
    Require,
    /// As `Require` (the chain is verified in every TLS mode).
    VerifyCa,
    /// As `Require`.
    VerifyFull,
}

impl PostgresSslMode {
    /// libpq's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            PostgresSslMode::Disable => "disable",
            PostgresSslMode::Prefer => "prefer",
            PostgresSslMode::Require => "require",
            PostgresSslMode::VerifyCa => "verify-ca",
            PostgresSslMode::VerifyFull => "verify-full",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => PostgresSslMode::Disable,
            // `allow` tries plain first; TLS when offered is as good.
            "allow" | "prefer" => PostgresSslMode::Prefer,
            "require" => PostgresSslMode::Require,
            "verify-ca" => PostgresSslMode::VerifyCa,
            "verify-full" => PostgresSslMode::VerifyFull,
            other => {
                return Err(format!(
                    "{other:?} is not an sslmode; write disable, prefer, require, verify-ca \
                     or verify-full"
                ));
            }
        })
    }
}

/// Settings of the PostgreSQL store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// Server host name or IP address. Default `localhost`.
    pub host: String,
    /// Server port. Default 5432.
    pub port: u16,
    /// Database name. Default: the user name (as libpq).
    pub dbname: Option<String>,
    /// User name. Default `postgres`.
    pub username: String,
    /// Password.
    pub password: Option<Secret>,
    /// TLS use.
    pub sslmode: PostgresSslMode,
    /// CA certificates (PEM) to verify the server with, instead of the
    /// system's roots.
    pub sslrootcert: Option<PathBuf>,
    /// Bound on connecting and on every call to the server. Default 10 s.
    pub socket_timeout: Duration,
    /// Where the wake-up connection (`LISTEN`) goes, when not to the same
    /// server: behind pgbouncer in transaction mode, which cannot carry
    /// `LISTEN`, name the database itself (or a session-mode pool) here.
    /// Only host and port (and TLS settings) are taken from it.
    pub listen: Option<(String, u16)>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            host: "localhost".into(),
            port: 5432,
            dbname: None,
            username: "postgres".into(),
            password: None,
            sslmode: PostgresSslMode::Prefer,
            sslrootcert: None,
            socket_timeout: Duration::from_secs(10),
            listen: None,
        }
    }
}

impl PostgresConfig {
    /// The database the store uses.
    pub fn database(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.username)
    }

    /// `host:port/db`, for errors and logs (never the password).
    pub fn describe(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("postgresql {host}:{}/{}", self.port, self.database())
    }

    /// Applies one of the query settings (`sslmode`, `sslrootcert`,
    /// `socket_timeout`, `connect_timeout`, `listen_url`); `Ok(false)` for
    /// a name that is not one.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> Result<bool, String> {
        match name {
            "sslmode" => self.sslmode = PostgresSslMode::parse(value)?,
            "sslrootcert" => self.sslrootcert = Some(PathBuf::from(value)),
            "socket_timeout" | "connect_timeout" => {
                self.socket_timeout = check::seconds_str(value)?;
            }
            "listen_url" => self.listen = Some(listen_target(value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The query settings a URL or `query:` may carry.
pub(crate) const QUERY_SETTINGS: &str = "sslmode, sslrootcert, socket_timeout, listen_url";

/// The host and port of a `listen_url`: a `postgresql://` URL or `host:port`.
fn listen_target(value: &str) -> Result<(String, u16), String> {
    if value.contains("://") {
        let c = parse_url(value).map_err(|e| match e {
            Error::Config { message, .. } => format!("listen_url: {message}"),
            other => other.to_string(),
        })?;
        return Ok((c.host, c.port));
    }
    check::split_endpoint(value)
        .map(|(h, p)| (h.trim_matches(['[', ']']).to_string(), p))
        .ok_or_else(|| {
            "listen_url is neither a postgresql:// URL nor host:port; write e.g. \
             postgresql://db-primary:5432"
                .to_string()
        })
}

fn url_err(message: impl Into<String>) -> Error {
    Error::config("url", message)
}

fn decode(part: &str, what: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            url_err(format!(
                "the {what} is not valid UTF-8 once percent-decoded; percent-encode its bytes \
                 as UTF-8"
            ))
        })
}

/// Parses `postgresql://` or `postgres://`.
pub(crate) fn parse_url(input: &str) -> Result<PostgresConfig> {
    parse_url_warn(input).map(|(c, _)| c)
}

pub(crate) fn parse_url_warn(input: &str) -> Result<(PostgresConfig, Vec<Warning>)> {
    const FORM: &str = "postgresql://[user[:password]@]host[:port][/db][?sslmode=...]";
    let url = Url::parse(input).map_err(|e| {
        url_err(format!(
            "not a URL ({e}); write {FORM} (percent-encode @ # / in the password)"
        ))
    })?;
    if !matches!(url.scheme(), "postgresql" | "postgres") {
        return Err(url_err(format!(
            "the scheme {:?} is not postgresql://; write {FORM}",
            url.scheme()
        )));
    }
    let host = match url.host() {
        Some(Host::Domain(d)) if !d.is_empty() => decode(d, "host")?,
        Some(Host::Ipv4(a)) => a.to_string(),
        Some(Host::Ipv6(a)) => a.to_string(),
        _ => "localhost".into(),
    };
    let mut c = PostgresConfig {
        host,
        ..PostgresConfig::default()
    };
    if let Some(port) = url.port() {
        if port == 0 {
            return Err(url_err("port 0 is not a port; write 1 to 65535, e.g. 5432"));
        }
        c.port = port;
    }
    if !url.username().is_empty() {
        c.username = decode(url.username(), "user name")?;
    }
    if let Some(p) = url.password() {
        c.password = Some(Secret::new(decode(p, "password")?));
    }
    let path = url.path().trim_start_matches('/');
    if path.contains('/') {
        return Err(url_err(
            "the path has more than one segment; write the database name alone, e.g. /rasa",
        ));
    }
    if !path.is_empty() {
        c.dbname = Some(decode(path, "database name")?);
    }
    let warnings = Vec::new();
    for (k, v) in url.query_pairs() {
        match c.set(&k, &v) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::config(
                    format!("url.{k}"),
                    format!("unknown setting; the settings are {QUERY_SETTINGS}"),
                ));
            }
            Err(problem) => return Err(Error::config(format!("url.{k}"), problem)),
        }
    }
    Ok((c, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_every_part() {
        let c = parse_url(
            "postgresql://rasa:p%40ss@db.example:6543/tracker?sslmode=require&socket_timeout=2.5",
        )
        .unwrap();
        assert_eq!(c.host, "db.example");
        assert_eq!(c.port, 6543);
        assert_eq!(c.username, "rasa");
        assert_eq!(c.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(c.dbname.as_deref(), Some("tracker"));
        assert_eq!(c.sslmode, PostgresSslMode::Require);
        assert_eq!(c.socket_timeout, Duration::from_millis(2500));
        assert_eq!(c.describe(), "postgresql db.example:6543/tracker");
    }

    #[test]
    fn a_bare_url_takes_libpqs_defaults() {
        let c = parse_url("postgres://").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.database()),
            ("localhost", 5432, "postgres")
        );
        assert_eq!(c.sslmode, PostgresSslMode::Prefer);
    }

    #[test]
    fn listen_url_takes_a_url_or_host_port() {
        let c =
            parse_url("postgresql://pgbouncer:6432/rasa?listen_url=postgresql://db:5432").unwrap();
        assert_eq!(c.listen, Some(("db".into(), 5432)));
        let c = parse_url("postgresql://pgbouncer:6432/rasa?listen_url=db:5433").unwrap();
        assert_eq!(c.listen, Some(("db".into(), 5433)));
    }

    #[test]
    fn bad_settings_are_errors_naming_them_without_the_password() {
        for (url, key, word) in [
            (
                "postgresql://u:secret@h/db?sslmode=maybe",
                "url.sslmode",
                "sslmode",
            ),
            (
                "postgresql://u:secret@h/db?socket_timeout=0",
                "url.socket_timeout",
                "greater",
            ),
            ("redis://u:secret@h/1", "url", "scheme"),
            ("postgresql://u:secret@h/a/b", "url", "segment"),
        ] {
            let err = parse_url(url).unwrap_err();
            let Error::Config { key: k, message } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(k, key, "{url}");
            assert!(message.contains(word), "{url}: {message}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        let err = parse_url("postgresql://h/db?colour=red").unwrap_err();
        assert!(
            matches!(err, Error::Config { ref key, .. } if key == "url.colour"),
            "{err}"
        );
    }
}
