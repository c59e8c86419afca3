//! TEMPORARY private spawner of `redis-server`, until the test-support
//! crate's `RedisServer` lands on main: the lead replaces `RedisServer` and
//! `RedisOptions` here with `ticketlock_test_support`'s (the tests use
//! `start`, `start_with`, `url`, `port`, `kill`, `restart`, `pause`,
//! `resume`, `log`, `RedisOptions { tls, extra_args }`, and `certs()` for
//! the CA, client certificate and key paths of a TLS server). Keep
//! `config` and `redis_lock_store` at the end: they need only `start`,
//! `port` and `log`, and `redis_lock_store` is the helper for the
//! conformance suite.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ticketlock::{LockStore, RedisConfig, RedisLockStore};

/// Options of a server: extra `redis-server` arguments.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Arguments appended to the command line, e.g. `["--requirepass", "x"]`.
    pub extra_args: Vec<String>,
    /// Serve TLS only (on the port), with certificates made at start.
    pub tls: bool,
}

/// A `redis-server` of its own on a free port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    options: RedisOptions,
}

/// Certificates made for a TLS server (in its directory).
pub struct Certs {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl RedisServer {
    /// Starts a server, or `None` when `redis-server` is not installed
    /// (a failure in CI, where it must be).
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is not installed; CI must install it"
            );
            eprintln!("redis-server is not installed: skipping this test");
            return None;
        }
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "ticketlock-redis-{}-{port}-{}",
                std::process::id(),
                Instant::now().elapsed().as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let mut server = RedisServer {
                child: None,
                port,
                dir,
                options: options.clone(),
            };
            if options.tls {
                server.make_certs();
            }
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    fn make_certs(&self) {
        let d = &self.dir;
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl is needed to make test certificates");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ticketlock test CA",
        ]);
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        for name in ["server", "client"] {
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                "/CN=localhost",
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ]);
        }
    }

    /// The certificates of a TLS server.
    pub fn certs(&self) -> Certs {
        Certs {
            ca: self.dir.join("ca.crt"),
            client_cert: self.dir.join("client.crt"),
            client_key: self.dir.join("client.key"),
        }
    }

    fn spawn(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .unwrap();
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
            "--dir",
        ])
        .arg(&self.dir);
        if self.options.tls {
            cmd.args(["--port", "0", "--tls-port", &port])
                .args([
                    "--tls-cert-file",
                    "server.crt",
                    "--tls-key-file",
                    "server.key",
                ])
                .args([
                    "--tls-ca-cert-file",
                    "ca.crt",
                    "--tls-auth-clients",
                    "optional",
                ]);
        } else {
            cmd.args(["--port", &port]);
        }
        cmd.args(&self.options.extra_args)
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.listening() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not come up:\n{}", self.log());
    }

    fn listening(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.options.tls {
            return true;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        matches!(s.read(&mut buf), Ok(n) if n > 0 && (buf.starts_with(b"+PONG") || buf.starts_with(b"-NOAUTH")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait for the process to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "cannot restart redis-server:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("server is running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// SIGSTOP: the server stops answering but keeps its connections.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused server dies of SIGKILL too; continue it all the same
            // so that nothing is left stopped if the kill fails.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
        if std::thread::panicking() {
            eprintln!("redis-server log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The store configuration for `server` (database 1, as Rasa's default).
pub fn config(server: &RedisServer) -> RedisConfig {
    let mut c = RedisConfig::default();
    c.host = "127.0.0.1".into();
    c.port = server.port();
    c.socket_timeout = Duration::from_secs(2);
    c
}

/// A server and a store connected to it (for the conformance suite).
pub async fn redis_lock_store() -> Option<(RedisServer, LockStore)> {
    let server = RedisServer::start()?;
    let store = RedisLockStore::connect(&config(&server))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()));
    Some((server, store.into()))
}
