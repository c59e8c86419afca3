//! A `redis-server` process of a test's own, on a free port, in a temp dir.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

use crate::resp::{Connection, Reply};
use crate::run::run_with_timeout;
use crate::tls::TlsFiles;

const HOST: &str = "127.0.0.1";
const SERVER_BIN: &str = "redis-server";
const CLI_BIN: &str = "redis-cli";
/// How long a starting server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long [`RedisServer::cli`] waits before calling the server hung.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// New ports tried when another process takes ours between choosing and binding it.
const START_ATTEMPTS: usize = 5;
/// How long [`RedisServer::restart`] keeps retrying while its port is still held.
const RESTART_PORT_WAIT: Duration = Duration::from_secs(5);

/// How to configure a [`RedisServer`]. `RedisOptions::default()` is a plain
/// server with no password, no ACL users, no TLS and no persistence.
///
/// Not `#[non_exhaustive]` on purpose: tests build it with
/// `RedisOptions { tls: true, ..Default::default() }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisOptions {
    /// `requirepass`: the default user's password.
    pub password: Option<String>,
    /// Users made with `ACL SETUSER` right after every start, one rule line each,
    /// in ACL-file form (`"user locker on >pw ~lock:* &* +@all"`) or without
    /// the leading `user` (`"locker on >pw ~lock:* &* +@all"`). Rules are split
    /// on whitespace, so a password cannot contain spaces.
    pub acl_users: Vec<String>,
    /// Listen for TLS only (`--port 0 --tls-port P`) with certificates made at
    /// start; see [`RedisServer::tls_files`]. Client certificates are optional.
    pub tls: bool,
    /// `appendonly yes` with `appendfsync always`, so every acknowledged write
    /// survives [`RedisServer::kill`] + [`RedisServer::restart`].
    pub appendonly: bool,
    /// Further `redis-server` arguments, given last so they override the above
    /// (for example `["--maxclients", "10"]`).
    pub extra_args: Vec<String>,
}

/// A `redis-server` child process on `127.0.0.1` and a free port, with its
/// own temp dir holding its log, data and TLS files.
///
/// Dropping it kills the process (`SIGKILL`) and removes the temp dir. Every
/// failure to start or to answer panics with the server's log.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    options: RedisOptions,
    tls: Option<TlsFiles>,
    dir: TempDir,
    /// For a sentinel: the lines of its config file (`sentinel.conf` in
    /// the temp dir, written before the first start and then left to the
    /// sentinel, which rewrites it).
    sentinel: Option<Vec<String>>,
}

enum Launch {
    Ready,
    PortTaken,
    Failed(String),
}

impl RedisServer {
    /// Starts a server with [`RedisOptions::default()`]; see [`start_with`](Self::start_with).
    pub fn start() -> Option<RedisServer> {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server and waits until it answers.
    ///
    /// Returns `None` only when `redis-server` is not installed and the
    /// environment variable `CI` is not `true`; the first time in a process
    /// it then prints one line, `skipping the tests of <binary> that need
    /// redis-server: ...`, to stderr past the test harness's capture, so it
    /// shows in a plain `cargo test`. With `CI=true` a missing
    /// `redis-server` panics, since CI must run every test.
    ///
    /// # Panics
    ///
    /// When the server does not start or answer within 10 s (the message holds
    /// its log), when an ACL rule is refused, or when the TLS files cannot be made.
    pub fn start_with(options: RedisOptions) -> Option<RedisServer> {
        Self::start_inner(options, None)
    }

    /// Starts `redis-server --sentinel` with a config file of these lines
    /// (the port is given on the command line).
    pub(crate) fn start_sentinel(conf: Vec<String>) -> Option<RedisServer> {
        Self::start_inner(RedisOptions::default(), Some(conf))
    }

    /// Whether the tests that need redis-server may run: `false` (with a
    /// message) only when it is missing outside CI; panics in CI.
    pub(crate) fn available() -> bool {
        if !installed(SERVER_BIN) {
            missing_server();
            return false;
        }
        true
    }

    fn start_inner(options: RedisOptions, sentinel: Option<Vec<String>>) -> Option<RedisServer> {
        if !installed(SERVER_BIN) {
            missing_server();
            return None;
        }
        let mut server = Self::unstarted(options);
        if let Some(conf) = &sentinel {
            let path = server.dir.path().join("sentinel.conf");
            fs::write(&path, conf.join("\n") + "\n")
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        server.sentinel = sentinel;
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            match server.launch() {
                Launch::Ready => {
                    server.create_acl_users();
                    return Some(server);
                }
                // Another process took the port after we chose it: choose again.
                Launch::PortTaken => continue,
                Launch::Failed(why) => server.fail(&why),
            }
        }
        server.fail(&format!(
            "every one of {START_ATTEMPTS} free ports was taken before redis-server could bind it"
        ))
    }

    /// Its temp dir and TLS files, but no process yet and no port.
    fn unstarted(options: RedisOptions) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("ticketlock-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for redis-server: {e}"));
        let tls = options.tls.then(|| {
            TlsFiles::generate(dir.path()).unwrap_or_else(|e| {
                panic!("cannot write TLS files to {}: {e}", dir.path().display())
            })
        });
        RedisServer {
            child: None,
            port: 0,
            options,
            tls,
            dir,
            sentinel: None,
        }
    }

    /// The port it listens on (the TLS port for a TLS server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on: always `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://…` for a TLS server. Holds no
    /// credentials; see [`password`](Self::password).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{HOST}:{}", self.port)
    }

    /// The default user's password, if the options set one.
    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// The options it was started with.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// The CA, server and client PEM files of a TLS server; `None` without TLS.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Its temp dir: working dir (`dir`), log file and TLS files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id while it runs (also while paused); `None` after [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with `SIGKILL` and reaps it. Its port is free again on
    /// return. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and in the same dir (so an
    /// `appendonly` server keeps its data), killing it first if it runs, then
    /// waits until it answers and re-creates the ACL users.
    ///
    /// # Panics
    ///
    /// When it does not come back within 10 s, or its port stays held by
    /// another process for 5 s; the message holds the log.
    pub fn restart(&mut self) {
        self.kill();
        let give_up = Instant::now() + RESTART_PORT_WAIT;
        loop {
            match self.launch() {
                Launch::Ready => break,
                Launch::PortTaken if Instant::now() < give_up => {
                    thread::sleep(Duration::from_millis(100))
                }
                Launch::PortTaken => self.fail(&format!(
                    "port {} is held by another process, so the server cannot restart on it",
                    self.port
                )),
                Launch::Failed(why) => self.fail(&why),
            }
        }
        self.create_acl_users();
    }

    /// Freezes the process with `SIGSTOP`: connections stay open and new ones
    /// are accepted by the kernel, but nothing is answered until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal(Signal::STOP, "pause");
    }

    /// Lets a [`pause`](Self::pause)d process run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal(Signal::CONT, "resume");
    }

    /// Sends `PING` and waits at most `timeout` for `PONG`. `Err` says what
    /// went wrong instead (refused, timed out, an error reply).
    pub fn ping(&self, timeout: Duration) -> Result<(), String> {
        match self.ask(&["PING"], timeout)?.as_str() {
            "PONG" => Ok(()),
            other => Err(format!("PING answered {other:?}")),
        }
    }

    /// Its log file, followed by anything it printed to stdout or stderr
    /// (where early config errors go): for failure messages.
    pub fn log(&self) -> String {
        let log_path = self.log_path();
        let mut log = fs::read_to_string(&log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", log_path.display()));
        let out_path = self.out_path();
        if let Ok(out) = fs::read_to_string(&out_path)
            && !out.trim().is_empty()
        {
            log.push_str("\n--- redis-server stdout/stderr ---\n");
            log.push_str(&out);
        }
        log
    }

    /// Runs `redis-cli` against the server (`-h`, `-p`, `-e`, the TLS files for
    /// a TLS server, `-a` with the password when set) followed by `args`, and
    /// returns its stdout with surrounding whitespace trimmed. Options in
    /// `args` come after the fixed ones, so `["--user", "u", "--pass", "p",
    /// "PING"]` logs in as another user.
    ///
    /// # Panics
    ///
    /// On an error reply, a failed connection or no answer within 30 s; the
    /// message holds redis-cli's error and the server log. Use
    /// [`try_cli`](Self::try_cli) to look at an error instead.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| self.fail(&format!("redis-cli {} failed: {e}", args.join(" "))))
    }

    /// Like [`cli`](Self::cli), but returns redis-cli's error (such as
    /// `WRONGPASS …` or `NOPERM …`) as `Err` instead of panicking.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        self.cli_with_timeout(args, CLI_TIMEOUT)
    }

    fn cli_with_timeout(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        let mut cmd = Command::new(CLI_BIN);
        cmd.args(["-h", HOST, "-p", &self.port.to_string(), "-e"]);
        if let Some(tls) = &self.tls {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(&tls.ca_cert)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        if let Some(password) = &self.options.password {
            cmd.args(["--no-auth-warning", "-a", password]);
        }
        cmd.args(args);
        match run_with_timeout(&mut cmd, timeout) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "{CLI_BIN} is not installed: install it (Debian: apt-get install -y redis-tools)"
            )),
            Err(e) => Err(format!("cannot run {CLI_BIN}: {e}")),
            Ok(None) => Err(format!(
                "{CLI_BIN} got no answer within {timeout:?} (is the server paused?)"
            )),
            Ok(Some(done)) if done.status.success() => Ok(done.stdout.trim().to_owned()),
            Ok(Some(done)) => {
                let err = done.stderr.trim();
                Err(if err.is_empty() {
                    format!("{CLI_BIN} exited with {}", done.status)
                } else {
                    err.to_owned()
                })
            }
        }
    }

    /// Sends one command and returns the reply as text: over plain RESP, or
    /// through redis-cli for a TLS server (this crate links no TLS client).
    pub(crate) fn ask(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        if self.tls.is_some() {
            return self.cli_with_timeout(args, timeout);
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut conn = Connection::open(addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
        if let Some(password) = &self.options.password {
            match conn.command(&["AUTH", password]) {
                Ok(Reply::Simple(_)) => {}
                Ok(reply) => return Err(format!("AUTH answered {reply:?}")),
                Err(e) => return Err(format!("AUTH: {e}")),
            }
        }
        match conn.command(args) {
            Ok(Reply::Error(e)) => Err(e),
            Ok(reply) => reply
                .text()
                .ok_or_else(|| format!("{} answered {reply:?}", args.join(" "))),
            Err(e) => Err(format!("{}: {e}", args.join(" "))),
        }
    }

    /// Spawns redis-server on `self.port` and waits until that port is
    /// answered by this very process (not some other server that took it).
    fn launch(&mut self) -> Launch {
        let log_len_before = fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
        let out = match self.open_out_file() {
            Ok(out) => out,
            Err(e) => {
                return Launch::Failed(format!("cannot open {}: {e}", self.out_path().display()));
            }
        };
        let mut cmd = self.command();
        let (stdout, stderr) = match (out.try_clone(), out.try_clone()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                return Launch::Failed(format!("cannot share {}: {e}", self.out_path().display()));
            }
        };
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return Launch::Failed(format!("cannot run {cmd:?}: {e}")),
        };
        let pid = child.id();
        self.child = Some(child);
        spawn_watchdog(pid, self.dir.path());

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let log = fs::read_to_string(self.log_path()).unwrap_or_default();
                let this_run = log.get(log_len_before..).unwrap_or(&log);
                return if this_run.contains("Address already in use") {
                    Launch::PortTaken
                } else {
                    Launch::Failed(format!("redis-server exited during start ({status})"))
                };
            }
            if let Ok(info) = self.ask(&["INFO", "server"], PROBE_TIMEOUT)
                && process_id(&info) == Some(pid)
            {
                return Launch::Ready;
            }
            if Instant::now() >= deadline {
                self.kill();
                return Launch::Failed(format!(
                    "redis-server did not answer on port {} within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new(SERVER_BIN);
        if self.sentinel.is_some() {
            // The config file must come first.
            cmd.arg(dir.join("sentinel.conf"))
                .arg("--sentinel")
                .args(["--bind", HOST, "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(self.log_path())
                .args(["--port", &self.port.to_string()]);
            return cmd;
        }
        cmd.args(["--bind", HOST, "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(self.log_path());
        if self.options.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let port = self.port.to_string();
        match &self.tls {
            None => {
                cmd.args(["--port", &port]);
            }
            Some(tls) => {
                cmd.args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(&tls.server_cert)
                    .arg("--tls-key-file")
                    .arg(&tls.server_key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca_cert)
                    .args(["--tls-auth-clients", "optional"]);
            }
        }
        if let Some(password) = &self.options.password {
            cmd.args(["--requirepass", password]);
        }
        cmd.args(&self.options.extra_args);
        cmd
    }

    fn create_acl_users(&self) {
        for line in &self.options.acl_users {
            let args = acl_setuser_args(line);
            if let Err(e) = self.ask(&args, CLI_TIMEOUT) {
                self.fail(&format!("ACL rule {line:?} was refused: {e}"));
            }
        }
    }

    fn signal(&self, signal: Signal, what: &str) {
        let Some(child) = &self.child else {
            self.fail(&format!("{what}(): the server is not running (killed?)"));
        };
        if let Err(e) = kill_process(Pid::from_child(child), signal) {
            self.fail(&format!(
                "{what}(): cannot signal process {}: {e}",
                child.id()
            ));
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n--- redis-server log ({}) ---\n{}",
            self.log_path().display(),
            self.log()
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn out_path(&self) -> PathBuf {
        self.dir.path().join("redis.out")
    }

    fn open_out_file(&self) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.out_path())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) process.
        self.kill();
    }
}

/// A missing redis-server: a failure under `CI=true`, else one visible
/// line per process. Written to the stderr handle itself, which the test
/// harness does not capture (it captures only `eprint!` and panics), so the
/// skip is seen even though the skipping tests pass.
fn missing_server() {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "redis-server is not installed, and CI=true makes that a failure: \
             install it (Debian: apt-get install -y redis-server redis-tools)"
        );
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "this test binary".into());
        let _ = writeln!(
            io::stderr().lock(),
            "skipping the tests of {binary} that need redis-server: it is not installed \
             (install redis-server and redis-tools to run them; with CI=true this is a failure)"
        );
    });
}

fn installed(bin: &str) -> bool {
    !matches!(
        Command::new(bin)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status(),
        Err(e) if e.kind() == io::ErrorKind::NotFound
    )
}

/// A port that was free a moment ago. Another process may take it before
/// redis-server binds it; [`RedisServer::start_with`] retries then.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on {HOST}: {e}"))
}

fn process_id(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// `ACL SETUSER` arguments for one rule line, with or without the ACL-file
/// `user` keyword in front.
fn acl_setuser_args(line: &str) -> Vec<&str> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if words.first() == Some(&"user") && words.len() > 1 {
        words.remove(0);
    }
    let mut args = vec!["ACL", "SETUSER"];
    args.extend(words);
    args
}

/// Kills the server `pid` once this process is gone, and removes its temp
/// dir `dir`. A server owned by a static (a deployment a test binary shares
/// between its tests) is never dropped, and would otherwise outlive every
/// test run and leave its dir behind; `pre_exec` with a parent-death signal
/// would need `unsafe`. The watchdog leaves as soon as the server does
/// while this process lives (the drop then removes the dir), and checks
/// that the pid is still a redis-server before killing it, so a reused pid
/// is never hit; it removes only a dir named like ours.
fn spawn_watchdog(pid: u32, dir: &Path) {
    spawn_watchdog_for(pid, "redis-server", dir);
}

/// [`spawn_watchdog`] for a process whose `/proc/PID/comm` is `comm`, whose
/// temp dir is `dir` (removed only if named `ticketlock-redis-*` or
/// `ticketlock-pg-*`).
pub(crate) fn spawn_watchdog_for(pid: u32, comm: &str, dir: &Path) {
    const WATCH: &str = r#"
while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
if ! kill -0 "$1" 2>/dev/null; then
  if [ "$(cat /proc/"$2"/comm 2>/dev/null)" = "$3" ]; then
    kill -9 "$2"
    # Until it is gone or a zombie (nobody may reap it), at most 2 s.
    i=0; while kill -0 "$2" 2>/dev/null && [ $i -lt 40 ]; do sleep 0.05; i=$((i+1)); done
  fi
  case "$4" in */ticketlock-redis-*|*/ticketlock-pg-*) rm -rf -- "$4" ;; esac
fi
"#;
    let _ = Command::new("sh")
        .args(["-c", WATCH, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .arg(comm)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch_on(port: u16, tls: bool) -> (Launch, RedisServer) {
        let mut server = RedisServer::unstarted(RedisOptions {
            tls,
            ..Default::default()
        });
        server.port = port;
        (server.launch(), server)
    }

    #[test]
    fn port_held_by_another_program_is_reported_as_taken() {
        if !installed(SERVER_BIN) {
            return;
        }
        let holder = TcpListener::bind((HOST, 0)).unwrap();
        let (launch, server) = launch_on(holder.local_addr().unwrap().port(), false);
        assert!(matches!(launch, Launch::PortTaken), "{}", server.log());
        assert_eq!(server.pid(), None);
    }

    #[test]
    fn another_redis_on_the_port_is_not_taken_for_ours() {
        // The race this guards against: our port gets taken by another test's
        // redis-server, which answers PING just as ours would.
        for tls in [false, true] {
            let Some(other) = RedisServer::start_with(RedisOptions {
                tls,
                ..Default::default()
            }) else {
                return;
            };
            let (launch, server) = launch_on(other.port(), false);
            assert!(matches!(launch, Launch::PortTaken), "{}", server.log());
        }
    }

    #[test]
    fn acl_lines_with_and_without_user_keyword() {
        assert_eq!(
            acl_setuser_args("user locker on >pw ~lock:* &* +@all"),
            [
                "ACL", "SETUSER", "locker", "on", ">pw", "~lock:*", "&*", "+@all"
            ]
        );
        assert_eq!(
            acl_setuser_args("  locker  on >pw "),
            ["ACL", "SETUSER", "locker", "on", ">pw"]
        );
        // A user named "user" still works when written in ACL-file form.
        assert_eq!(
            acl_setuser_args("user user on"),
            ["ACL", "SETUSER", "user", "on"]
        );
    }

    #[test]
    fn process_id_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\nrun_id:ab\r\n";
        assert_eq!(process_id(info), Some(4242));
        assert_eq!(process_id("# Server\r\n"), None);
    }
}
