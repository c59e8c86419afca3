//! The PostgreSQL settings of the `lock_store:` section: `type: postgresql`
//! with a `postgresql://` URL, or the keys of Rasa's SQL tracker store
//! (`dialect`, `url` as the host, `port`, `db`, `username`, `password`,
//! `query`), so that a `tracker_store:` section can be copied.

use saphyr::YamlData;

use super::{Field, LockStoreConfig, Result, Section, Warning, at, check, untag};
use crate::config::{POSTGRES_QUERY_SETTINGS, PostgresConfig, Secret, parse_postgres_url};

/// Settings of ours and Rasa's that only the Redis store reads.
const REDIS_ONLY: &[&str] = &[
    "use_ssl",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_ca_certs",
    "key_prefix",
    "deployment_mode",
    "endpoints",
    "sentinel_service",
    "min_replicas_ack",
    "min_replicas_ack_timeout",
];

impl Section<'_, '_, '_> {
    /// Builds the PostgreSQL configuration; `sql` when the type was Rasa's
    /// `SQL`, which needs `dialect: postgresql`.
    pub(super) fn postgres(mut self, sql: bool) -> Result<(LockStoreConfig, Vec<Warning>)> {
        match self.read("dialect", Field::string)? {
            Some(d) if d == "postgresql" || d == "postgres" || d.starts_with("postgresql+") => {}
            Some(other) => {
                return Err(self.err(
                    "dialect",
                    format!(
                        "{other:?} is not supported: ticketlock's SQL store runs on PostgreSQL \
                         only; write dialect: postgresql"
                    ),
                ));
            }
            None if sql => {
                return Err(self.err(
                    "dialect",
                    "type SQL needs dialect: postgresql (Rasa's default, sqlite, cannot \
                     serve locks across processes)",
                ));
            }
            None => {}
        }
        let mut cfg = PostgresConfig::default();
        let url = self.read("url", Field::string)?;
        let host = self.read("host", Field::string)?;
        match (url, host) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "url",
                    "both url and host are set; keep one (url may be a postgresql:// URL \
                     or, as in Rasa's SQL tracker store, the host name)",
                ));
            }
            (Some(url), None) if url.contains("://") => {
                let (c, warnings) = parse_postgres_url(&url).map_err(|e| match e {
                    crate::Error::Config { key, message } => {
                        let f = self.get("url").expect("read above");
                        let sub = key.strip_prefix("url").unwrap_or("");
                        crate::Error::config(
                            format!("lock_store.url{sub}"),
                            format!("{}: {message}", at(f.node)),
                        )
                    }
                    other => other,
                })?;
                cfg = c;
                self.warnings.extend(warnings);
            }
            (Some(h), None) => cfg.host = check::host(&h).map_err(|p| self.err("url", p))?,
            (None, Some(h)) => cfg.host = check::host(&h).map_err(|p| self.err("host", p))?,
            (None, None) => {}
        }
        if let Some(port) = self.read("port", Field::port)? {
            cfg.port = port;
        }
        if let Some(db) = self.read("db", Field::string)? {
            cfg.dbname = Some(db);
        }
        if let Some(user) = self.read("username", Field::string)? {
            cfg.username = user;
        }
        if let Some(password) = self.read("password", Field::string)? {
            cfg.password = Some(Secret::new(password));
        }
        for name in ["sslmode", "sslrootcert", "socket_timeout", "listen_url"] {
            if let Some(f) = self.get(name) {
                let value = match name {
                    "socket_timeout" => f.seconds(self.env)?.map(|d| d.as_secs_f64().to_string()),
                    _ => f.string(self.env)?,
                };
                if let Some(value) = value {
                    cfg.set(name, &value).map_err(|p| f.err(p))?;
                }
            }
        }
        self.query(&mut cfg)?;
        for f in &self.fields {
            if REDIS_ONLY.contains(&f.name.as_str()) {
                self.warnings.push(Warning::new(
                    f.key(),
                    "a Redis setting: the PostgreSQL store ignores it",
                ));
            }
        }
        Ok((LockStoreConfig::Postgres(cfg), self.warnings))
    }

    /// Rasa's `query:` mapping (SQLAlchemy's URL query): the settings this
    /// store knows are applied, others are ignored with a warning.
    fn query(&mut self, cfg: &mut PostgresConfig) -> Result<()> {
        let Some(f) = self.get("query") else {
            return Ok(());
        };
        let node = untag(f.node);
        let YamlData::Mapping(map) = &node.data else {
            if super::is_null(node) {
                return Ok(());
            }
            return Err(f.err(format!(
                "a mapping of settings is expected, e.g. `query: {{sslmode: require}}`; \
                 found {}",
                super::kind(node)
            )));
        };
        let mut warnings = Vec::new();
        for (k, v) in map {
            let name = super::scalar_text(k).unwrap_or("?").to_owned();
            let entry = Field {
                name: format!("query.{name}"),
                node: v,
            };
            let Some(value) = entry.string(self.env)? else {
                continue;
            };
            match cfg.set(&name, &value) {
                Ok(true) => {}
                Ok(false) => warnings.push(Warning::new(
                    entry.key(),
                    format!(
                        "not read by the lock store, ignored; it reads {POSTGRES_QUERY_SETTINGS}"
                    ),
                )),
                Err(p) => return Err(entry.err(p)),
            }
        }
        self.warnings.extend(warnings);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::PostgresSslMode;
    use crate::{Error, LockStoreConfig};

    fn parse(yaml: &str, env: &[(&str, &str)]) -> crate::Result<(LockStoreConfig, Vec<String>)> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        super::super::parse(yaml, "endpoints.yml", &lookup)
            .map(|(c, w)| (c, w.into_iter().map(|w| w.key).collect()))
    }

    fn pg(yaml: &str, env: &[(&str, &str)]) -> (crate::PostgresConfig, Vec<String>) {
        match parse(yaml, env).unwrap() {
            (LockStoreConfig::Postgres(c), w) => (c, w),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_url_with_sslmode_is_read() {
        let (c, w) = pg(
            "lock_store:\n  type: postgresql\n  url: postgresql://rasa:${PW}@db:6543/locks?sslmode=require\n",
            &[("PW", "s3cret")],
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            (c.host.as_str(), c.port, c.database()),
            ("db", 6543, "locks")
        );
        assert_eq!(c.username, "rasa");
        assert_eq!(c.password.unwrap().expose(), "s3cret");
        assert_eq!(c.sslmode, PostgresSslMode::Require);
    }

    #[test]
    fn a_copied_tracker_store_section_is_read() {
        let (c, w) = pg(
            "lock_store:\n  type: SQL\n  dialect: \"postgresql\"\n  url: ${DB_HOST}\n  port: 5433\n  \
             db: rasa\n  username: ${DB_USER}\n  password: ${DB_PASS}\n  login_db: postgres\n  \
             query:\n    sslmode: verify-full\n    application_name: rasa\n  socket_timeout: 2\n",
            &[
                ("DB_HOST", "pg.internal"),
                ("DB_USER", "bot"),
                ("DB_PASS", "x"),
            ],
        );
        assert_eq!(
            (c.host.as_str(), c.port, c.database()),
            ("pg.internal", 5433, "rasa")
        );
        assert_eq!(c.username, "bot");
        assert_eq!(c.sslmode, PostgresSslMode::VerifyFull);
        assert_eq!(c.socket_timeout, Duration::from_secs(2));
        assert_eq!(
            w,
            vec!["lock_store.login_db", "lock_store.query.application_name"],
            "unknown keys warn, naming them"
        );
    }

    #[test]
    fn wrong_dialects_and_values_are_errors_naming_the_key() {
        for (yaml, key, word) in [
            (
                "lock_store:\n  type: SQL\n  dialect: sqlite\n",
                "lock_store.dialect",
                "PostgreSQL only",
            ),
            (
                "lock_store:\n  type: SQL\n",
                "lock_store.dialect",
                "dialect: postgresql",
            ),
            (
                "lock_store:\n  type: postgresql\n  sslmode: sometimes\n",
                "lock_store.sslmode",
                "sslmode",
            ),
            (
                "lock_store:\n  type: postgresql\n  port: 0\n",
                "lock_store.port",
                "65535",
            ),
            (
                "lock_store:\n  type: postgresql\n  url: postgresql://u:pw@h/a/b\n",
                "lock_store.url",
                "segment",
            ),
            (
                "lock_store:\n  type: postgresql\n  query: [1]\n",
                "lock_store.query",
                "mapping",
            ),
            (
                "lock_store:\n  type: postgresql\n  query: {sslmode: no}\n",
                "lock_store.query.sslmode",
                "sslmode",
            ),
        ] {
            let err = parse(yaml, &[]).unwrap_err();
            let Error::Config { key: k, message } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(k, key, "{yaml}");
            assert!(message.contains(word), "{yaml}: {message}");
            assert!(!message.contains("pw@"), "{message}");
        }
    }

    #[test]
    fn redis_settings_are_ignored_with_a_warning() {
        let (_, w) = pg("lock_store:\n  type: postgresql\n  key_prefix: abc\n", &[]);
        assert_eq!(w, vec!["lock_store.key_prefix"]);
    }
}
