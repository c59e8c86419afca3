//! A PostgreSQL server of a test's own: a throwaway cluster made by
//! `initdb` in a temp dir, run by `postgres` on a free port of 127.0.0.1.
//!
//! The binaries come from `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`. `initdb` refuses to run as root, so when
//! the tests run as root (CI) the temp dir is given to the `postgres` user
//! and both programs run as that user through `setpriv` (which execs, so
//! the child is the postmaster itself; `runuser` would stay in between).
//! The cluster trusts local connections, and skips fsync (`fsync=off`):
//! a killed server still keeps every committed change (the kernel has it),
//! only a crash of the machine would lose some.

use std::fs::{self, File};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

use crate::run::run_with_timeout;
use crate::server::free_port;

const HOST: &str = "127.0.0.1";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;
/// The superuser the cluster is made with (no password: `trust`).
pub const POSTGRES_USER: &str = "postgres";

/// A `postgres` child process on `127.0.0.1` and a free port, with its own
/// cluster in a temp dir.
///
/// Dropping it kills the server (`SIGKILL`, its backends follow) and
/// removes the temp dir. Failures to start panic with the server's log.
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    bindir: PathBuf,
    /// `setpriv` arguments to run as the `postgres` user, when we are root.
    as_user: Option<Vec<String>>,
    extra_args: Vec<String>,
    tls: Option<crate::TlsFiles>,
    dir: TempDir,
}

enum Launch {
    Ready,
    PortTaken,
    Failed(String),
}

impl PostgresServer {
    /// Makes a cluster and starts a server on it; see
    /// [`start_with`](Self::start_with).
    pub fn start() -> Option<PostgresServer> {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with further server settings
    /// (`["-c", "max_connections=20"]`), given last so they override ours.
    ///
    /// Returns `None` only when PostgreSQL is not installed and `CI` is not
    /// `true` (printing `skipping: ...` to stderr); with `CI=true` that
    /// panics, since CI must run every test.
    pub fn start_with(extra_args: &[&str]) -> Option<PostgresServer> {
        Self::start_inner(extra_args, false)
    }

    /// A server that also accepts TLS (`ssl=on`), with a certificate for
    /// `127.0.0.1` and `localhost` signed by the CA of
    /// [`tls_files`](Self::tls_files); plain connections stay allowed.
    pub fn start_tls() -> Option<PostgresServer> {
        Self::start_inner(&[], true)
    }

    /// The certificates of a [`start_tls`](Self::start_tls) server.
    pub fn tls_files(&self) -> Option<&crate::TlsFiles> {
        self.tls.as_ref()
    }

    fn start_inner(extra_args: &[&str], tls: bool) -> Option<PostgresServer> {
        let Some(bindir) = bindir() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "PostgreSQL (initdb, postgres) is not installed, and CI=true makes that a \
                     failure: install it (Debian: apt-get install -y postgresql)"
                );
            }
            // To the stderr handle itself, once per test binary: the
            // harness captures `eprintln!` of passing tests, which would hide
            // the skip (as for redis-server, see server.rs).
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                use std::io::Write as _;
                let binary = std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "this test binary".into());
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "skipping the tests of {binary} that need PostgreSQL: initdb and postgres \
                     are not installed (install postgresql to run them; with CI=true this is \
                     a failure)"
                );
            });
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("ticketlock-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot make a temp dir: {e}"));
        let as_user = if rustix::process::geteuid().is_root() {
            let (uid, gid) = postgres_ids().unwrap_or_else(|| {
                panic!(
                    "running as root, and there is no `postgres` user to run initdb as \
                     (initdb refuses root); install the postgresql package, which makes it"
                )
            });
            let status = Command::new("chown")
                .arg(format!("{uid}:{gid}"))
                .arg(dir.path())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "cannot give {} to the postgres user",
                dir.path().display()
            );
            Some(vec![
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
                "--".into(),
            ])
        } else {
            None
        };
        let mut server = PostgresServer {
            child: None,
            port: 0,
            bindir,
            as_user,
            extra_args: extra_args.iter().map(|s| (*s).to_string()).collect(),
            tls: None,
            dir,
        };
        server.initdb();
        if tls {
            server.make_tls_files();
        }
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            match server.launch() {
                Launch::Ready => return Some(server),
                Launch::PortTaken => continue,
                Launch::Failed(why) => server.fail(&why),
            }
        }
        server.fail("every port tried was taken by another process");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// `postgresql://postgres@127.0.0.1:PORT/postgres?sslmode=disable`.
    pub fn url(&self) -> String {
        format!(
            "postgresql://{POSTGRES_USER}@{HOST}:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the postmaster with `SIGKILL`, waits for it and for its
    /// backends (which leave once it is gone). Does nothing if it is not
    /// running.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let backends = self.backends(child.id());
        // Backends of a paused server must be able to notice.
        for pid in &backends {
            signal(*pid, Signal::KILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while backends
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port and cluster (committed data
    /// kept), killing it first if it runs.
    ///
    /// # Panics
    /// When it does not come back within 20 s; the message holds the log.
    pub fn restart(&mut self) {
        self.kill();
        let give_up = Instant::now() + Duration::from_secs(5);
        loop {
            match self.launch() {
                Launch::Ready => return,
                Launch::PortTaken if Instant::now() < give_up => {
                    thread::sleep(Duration::from_millis(100));
                }
                Launch::PortTaken => self.fail("its port stays held by another process"),
                Launch::Failed(why) => self.fail(&why),
            }
        }
    }

    /// Freezes the postmaster and every backend with `SIGSTOP`: connections
    /// stay open, nothing is answered until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal_all(Signal::STOP);
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal_all(Signal::CONT);
    }

    /// Runs SQL with `psql` as the superuser on database `postgres` and
    /// returns its unaligned, tuples-only output, trimmed.
    ///
    /// # Panics
    /// When psql fails or takes more than 30 s.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}\n{}", self.log()))
    }

    /// As [`psql`](Self::psql), returning what went wrong instead of panicking.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-U",
            POSTGRES_USER,
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-d", "postgres", "-c", sql]);
        match run_with_timeout(&mut cmd, PSQL_TIMEOUT) {
            Ok(Some(f)) if f.status.success() => Ok(f.stdout.trim().to_string()),
            Ok(Some(f)) => Err(format!("{}: {}", f.status, f.stderr.trim())),
            Ok(None) => Err(format!("no answer within {PSQL_TIMEOUT:?}")),
            Err(e) => Err(format!("cannot run psql: {e}")),
        }
    }

    /// The server's log: for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A command running `program` of the bindir, as the postgres user when
    /// we are root.
    fn command(&self, program: &str) -> Command {
        let bin = self.bindir.join(program);
        match &self.as_user {
            Some(args) => {
                let mut c = Command::new("setpriv");
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    fn initdb(&self) {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(self.data()).args([
            "-A",
            "trust",
            "-U",
            POSTGRES_USER,
            "-N",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        match run_with_timeout(&mut cmd, Duration::from_secs(60)) {
            Ok(Some(f)) if f.status.success() => {}
            Ok(Some(f)) => panic!("initdb failed ({}): {}{}", f.status, f.stdout, f.stderr),
            Ok(None) => panic!("initdb took more than 60 s"),
            Err(e) => panic!("cannot run initdb: {e}"),
        }
    }

    /// Certificates in the temp dir, readable by the server only (it
    /// refuses a key others can read).
    fn make_tls_files(&mut self) {
        let dir = self.dir.path().join("tls");
        fs::create_dir_all(&dir).expect("tls dir");
        let files = crate::TlsFiles::generate(&dir).expect("make TLS files");
        if let Some(args) = &self.as_user {
            let owner = args[0].trim_start_matches("--reuid=").to_string()
                + ":"
                + args[1].trim_start_matches("--regid=");
            let ok = Command::new("chown")
                .args(["-R", &owner])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot give the TLS files to the postgres user");
        }
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&files.server_key, fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
        self.extra_args.extend([
            "-c".into(),
            "ssl=on".into(),
            "-c".into(),
            format!("ssl_cert_file={}", files.server_cert.display()),
            "-c".into(),
            format!("ssl_key_file={}", files.server_key.display()),
        ]);
        self.tls = Some(files);
    }

    fn launch(&mut self) -> Launch {
        let log = match File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
        {
            Ok(f) => f,
            Err(e) => return Launch::Failed(format!("cannot open the log: {e}")),
        };
        let log_len_before = fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200", "-c", "shared_buffers=16MB"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Launch::Failed(format!("cannot run {cmd:?}: {e}")),
        };
        let pid = child.id();
        self.child = Some(child);
        crate::server::spawn_watchdog_for(pid, "postgres", self.dir.path());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let log = self.log();
                let this_run = log.get(log_len_before..).unwrap_or(&log);
                return if this_run.contains("could not bind") || this_run.contains("in use") {
                    Launch::PortTaken
                } else {
                    Launch::Failed(format!("postgres exited during start ({status})"))
                };
            }
            if self.ready(pid) {
                return Launch::Ready;
            }
            if Instant::now() >= deadline {
                self.kill();
                return Launch::Failed(format!(
                    "postgres was not ready on port {} within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `postmaster.pid` names this process and says it is ready,
    /// and the port answers.
    fn ready(&self, pid: u32) -> bool {
        let Ok(text) = fs::read_to_string(self.data().join("postmaster.pid")) else {
            return false;
        };
        let lines: Vec<&str> = text.lines().collect();
        lines.first().is_some_and(|l| l.trim() == pid.to_string())
            && lines.get(7).is_some_and(|l| l.trim() == "ready")
            && TcpStream::connect((HOST, self.port)).is_ok()
    }

    /// The processes whose parent is the postmaster `pid`.
    fn backends(&self, pid: u32) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                    // pid (comm) state ppid ...: comm may hold spaces.
                    stat.rsplit_once(") ")
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                        .is_some_and(|ppid| ppid == pid.to_string())
                })
            })
            .collect()
    }

    fn signal_all(&self, sig: Signal) {
        let Some(pid) = self.pid() else {
            panic!("the server is not running");
        };
        signal(pid, sig);
        for b in self.backends(pid) {
            signal(b, sig);
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "PostgreSQL server in {}: {why}\n--- log ---\n{}",
            self.dir.path().display(),
            self.log()
        );
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = kill_process(p, sig);
    }
}

/// The directory of `initdb` and `postgres`.
fn bindir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&d) {
            return Some(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

/// The uid and gid of the `postgres` user.
fn postgres_ids() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}
