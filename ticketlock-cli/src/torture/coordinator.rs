//! The coordinator: spawns the workers, reads their events, kills some at
//! random moments, then hands everything to the checker and prints the
//! figures.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use ticketlock::LockStoreConfig;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::check::{self, Figures, Run, Violation, Window, WorkerEnd, WorkerLog};
use super::clock::{ms, now_ns, ns};
use super::event::Event;
use super::files::Files;
use super::plan::{Rng, fresh_seed};
use super::{REDIS_URL_ENV, TortureArgs};
use crate::exit;

/// How many violations are printed without `--json`.
const PRINTED_VIOLATIONS: usize = 10;

/// How much of a crashed worker's stderr goes into its violation.
const LOG_TAIL: u64 = 1500;

/// Runs a torture and reports; exit 0 only when every check passed.
pub async fn run(args: TortureArgs) -> anyhow::Result<ExitCode> {
    let config = args.store.config()?;
    let socket_timeout = match &config {
        LockStoreConfig::Redis(redis) => redis.socket_timeout,
        LockStoreConfig::Postgres(pg) => pg.socket_timeout,
        _ => {
            return Err(exit::coded(
                exit::USAGE,
                "torture: needs a store shared by its processes: give --redis URL, --postgres \
                 URL or --endpoints FILE with a redis or postgresql lock_store (the in-memory \
                 store lives in one process)",
            ));
        }
    };
    validate(&args)?;
    // Fails here, with the store's own message, when Redis is unreachable.
    let store = args.store.open().await?;
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let run_id = format!("{:08x}", Rng::new(fresh_seed()).next_u64() as u32);
    let (dir, own_dir) = run_dir(&args, &run_id)?;
    Files::create(&dir, args.conversations)?;
    if let Some(path) = &args.fault_log {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("torture: cannot open the fault log {}", path.display()))?;
    }

    let start = now_ns();
    let deadline = start + ns(args.duration);
    let mut workers = Workers::new(&args, seed, run_id, dir.clone(), deadline);
    for _ in 0..args.processes {
        workers.spawn()?;
    }
    workers.drive(&args, seed, start).await?;
    let end = now_ns();

    let windows = match &args.fault_log {
        Some(path) => read_fault_log(path, end)?,
        None => Vec::new(),
    };
    let logs = workers.into_logs(&dir);
    let verdict = check::check(&Run {
        start,
        deadline,
        tasks: args.tasks,
        lifetime: ns(args.lifetime),
        socket_timeout: ns(socket_timeout),
        slack: ns(args.stall_slack),
        workers: logs,
        windows,
    });
    let verified = verdict.violations.is_empty();
    // A message given up is an outcome the checker accepts, but one a
    // post-mortem wants the events of.
    let failed: u64 = verdict.figures.failed.values().sum();
    let kept = if verified && failed == 0 && own_dir {
        let _ = fs::remove_dir_all(&dir);
        None
    } else {
        Some(dir.display().to_string())
    };
    let elapsed = ms(end - start) / 1e3;
    let report = Report {
        verified,
        store: store.describe(),
        seed,
        processes: args.processes,
        tasks: args.tasks,
        conversations: args.conversations,
        duration_s: args.duration.as_secs_f64(),
        lifetime_s: args.lifetime.as_secs_f64(),
        socket_timeout_s: socket_timeout.as_secs_f64(),
        work_ms: [args.work_min_ms, args.work_max_ms],
        overrun_percent: args.overrun_percent,
        elapsed_s: elapsed,
        sections_per_s: verdict.figures.sections as f64 / elapsed.max(1e-9),
        figures: &verdict.figures,
        violations: verdict.violations.len(),
        first_violations: &verdict.violations[..verdict.violations.len().min(50)],
        dir: kept.clone(),
    };
    if args.json {
        crate::json::print(&report)?;
    } else {
        for v in verdict.violations.iter().take(PRINTED_VIOLATIONS) {
            eprintln!("ticketlock: torture: violation: {v}");
        }
        if verdict.violations.len() > PRINTED_VIOLATIONS {
            eprintln!(
                "ticketlock: torture: ... and {} more violations",
                verdict.violations.len() - PRINTED_VIOLATIONS
            );
        }
        println!("{}", report.line());
    }
    if let Some(dir) = kept.filter(|_| !verified || failed > 0) {
        eprintln!("ticketlock: torture: the run's files and worker logs are in {dir}");
    }
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    })
}

fn validate(args: &TortureArgs) -> anyhow::Result<()> {
    if args.work_min_ms > args.work_max_ms {
        return Err(exit::coded(
            exit::USAGE,
            format!(
                "torture: --work-min-ms {} is above --work-max-ms {}; give the shorter one first",
                args.work_min_ms, args.work_max_ms
            ),
        ));
    }
    if Duration::from_millis(args.work_max_ms) >= args.lifetime {
        return Err(exit::coded(
            exit::USAGE,
            format!(
                "torture: --work-max-ms {} is not below the lifetime ({:?}): sections would outlive \
                 their leases by accident; lower it, or use --overrun-percent to test overruns",
                args.work_max_ms, args.lifetime
            ),
        ));
    }
    if args.worker.is_none() && (args.run_id.is_some() || args.deadline_ns.is_some()) {
        return Err(exit::coded(
            exit::USAGE,
            "torture: --run-id and --deadline-ns are internal, for workers; leave them out",
        ));
    }
    Ok(())
}

/// The run's directory: `--dir` (must not exist yet, or be empty), or a
/// new one in the temp dir. Also says whether it is ours to remove.
fn run_dir(args: &TortureArgs, run_id: &str) -> anyhow::Result<(PathBuf, bool)> {
    let (dir, own) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("ticketlock-torture-{run_id}")),
            true,
        ),
    };
    if dir.exists() {
        let empty = fs::read_dir(&dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(exit::coded(
                exit::USAGE,
                format!(
                    "torture: {} exists and is not empty; give a new directory to --dir",
                    dir.display()
                ),
            ));
        }
    } else {
        fs::create_dir_all(&dir)
            .with_context(|| format!("torture: cannot create {}", dir.display()))?;
    }
    Ok((dir, own))
}

/// Reads the fault log: `<ns> <begin|end|at> <name>` per line.
fn read_fault_log(path: &Path, run_end: u64) -> anyhow::Result<Vec<Window>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("torture: cannot read the fault log {}", path.display()))?;
    let mut windows = Vec::new();
    let mut open: Vec<(String, u64)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| {
            exit::coded(
                exit::DATA,
                format!(
                    "torture: fault log {} line {}: {why}; write `<CLOCK_MONOTONIC ns> \
                     <begin|end|at> <name>`",
                    path.display(),
                    n + 1
                ),
            )
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [t, what, name] = fields[..] else {
            return Err(bad(&format!("{} fields instead of 3", fields.len())));
        };
        let t: u64 = t
            .parse()
            .map_err(|_| bad(&format!("{t:?} is not a time in nanoseconds")))?;
        match what {
            "at" => windows.push(Window {
                name: name.to_string(),
                begin: t,
                end: t,
            }),
            "begin" => {
                if open.iter().any(|(o, _)| o == name) {
                    return Err(bad(&format!("{name} begins again before it ended")));
                }
                open.push((name.to_string(), t));
            }
            "end" => {
                let Some(i) = open.iter().position(|(o, _)| o == name) else {
                    return Err(bad(&format!("{name} ends without having begun")));
                };
                let (name, begin) = open.remove(i);
                windows.push(Window {
                    name,
                    begin,
                    end: t.max(begin),
                });
            }
            other => return Err(bad(&format!("{other:?} is not begin, end or at"))),
        }
    }
    windows.extend(open.into_iter().map(|(name, begin)| Window {
        name,
        begin,
        end: run_end.max(begin),
    }));
    windows.sort_by_key(|w| w.begin);
    Ok(windows)
}

/// What a reader task tells the coordinator.
enum Incoming {
    Line(usize, String),
    /// The last line had no newline: cut off by a kill.
    Partial(usize),
    Eof(usize),
}

/// One worker process and what it said.
struct Slot {
    index: u32,
    child: Option<Child>,
    /// Held open so that the worker can tell when we are gone.
    stdin: Option<ChildStdin>,
    spawned: u64,
    events: Vec<Event>,
    garbled: u64,
    end: Option<WorkerEnd>,
    /// Sections entered and not released, attempts not ended (for choosing
    /// victims).
    holding: i64,
    waiting: i64,
}

struct Workers {
    slots: Vec<Slot>,
    /// Every line every worker wrote, and the coordinator's own doings
    /// (`{"e":"killed"...}`, `{"e":"spawned"...}`), for a post-mortem.
    journal: Option<std::io::BufWriter<File>>,
    tx: mpsc::UnboundedSender<Incoming>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    /// The fixed part of every worker's command line.
    worker_args: Vec<String>,
    redis_url: Option<String>,
    postgres_url: Option<String>,
    endpoints: Option<PathBuf>,
    /// `--password-file`, passed on (workers read the same file).
    password_file: Option<PathBuf>,
    dir: PathBuf,
    deadline: u64,
}

impl Workers {
    fn new(args: &TortureArgs, seed: u64, run_id: String, dir: PathBuf, deadline: u64) -> Self {
        let secs = |d: Duration| d.as_secs_f64().to_string();
        let worker_args = vec![
            "--run-id".into(),
            run_id,
            "--deadline-ns".into(),
            deadline.to_string(),
            "--seed".into(),
            seed.to_string(),
            "--tasks".into(),
            args.tasks.to_string(),
            "--conversations".into(),
            args.conversations.to_string(),
            "--lifetime".into(),
            secs(args.lifetime),
            "--work-min-ms".into(),
            args.work_min_ms.to_string(),
            "--work-max-ms".into(),
            args.work_max_ms.to_string(),
            "--overrun-percent".into(),
            args.overrun_percent.to_string(),
            "--acquire-timeout".into(),
            secs(args.acquire_timeout),
            "--max-attempts".into(),
            args.max_attempts.to_string(),
            "--grace".into(),
            secs(args.grace),
        ];
        let (tx, rx) = mpsc::unbounded_channel();
        let journal = File::create(dir.join("events.jsonl"))
            .ok()
            .map(std::io::BufWriter::new);
        Workers {
            slots: Vec::new(),
            journal,
            tx,
            rx,
            worker_args,
            redis_url: args.store.redis.clone(),
            postgres_url: args.store.postgres.clone(),
            endpoints: args.store.endpoints.clone(),
            password_file: args.store.password_file.clone(),
            dir,
            deadline,
        }
    }

    /// Starts the next worker.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let index = self.slots.len() as u32;
        let exe = std::env::current_exe()
            .context("torture: cannot find this program to start the workers")?;
        let log_path = self.dir.join(format!("worker-{index}.log"));
        let log = File::create(&log_path)
            .with_context(|| format!("torture: cannot create {}", log_path.display()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("torture")
            .arg("--worker")
            .arg(index.to_string())
            .args(&self.worker_args)
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        // The URL may hold a password: the environment, not the command line.
        match (&self.redis_url, &self.endpoints) {
            (_, Some(path)) => {
                cmd.arg("--endpoints").arg(path);
            }
            (Some(url), None) => {
                cmd.env(REDIS_URL_ENV, url);
            }
            (None, None) => {}
        }
        if let Some(url) = &self.postgres_url {
            cmd.env(super::POSTGRES_URL_ENV, url);
        }
        if let Some(file) = &self.password_file {
            cmd.arg("--password-file").arg(file);
        }
        let mut child = cmd
            .spawn()
            .context("torture: cannot start a worker process")?;
        let stdout = child
            .stdout
            .take()
            .context("torture: the worker has no stdout pipe")?;
        let slot = self.slots.len();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.ends_with('\n') => {
                        let _ = tx.send(Incoming::Line(slot, line.trim_end().to_string()));
                    }
                    Ok(_) => {
                        let _ = tx.send(Incoming::Partial(slot));
                    }
                }
            }
            let _ = tx.send(Incoming::Eof(slot));
        });
        let spawned = now_ns();
        self.note(&format!(
            r#"{{"e":"spawned","worker":{index},"pid":{},"t":{spawned}}}"#,
            child.id().unwrap_or(0)
        ));
        self.slots.push(Slot {
            index,
            stdin: child.stdin.take(),
            child: Some(child),
            spawned,
            events: Vec::new(),
            garbled: 0,
            end: None,
            holding: 0,
            waiting: 0,
        });
        Ok(())
    }

    /// Reads events until every worker ended, killing as scheduled.
    async fn drive(&mut self, args: &TortureArgs, seed: u64, start: u64) -> anyhow::Result<()> {
        let mut rng = Rng::new(seed ^ 0x6b69_6c6c);
        let now = Instant::now();
        let span = ns(args.duration);
        let mut kills: VecDeque<Instant> = {
            // Between 10% and 80% of the run, so that replacements have
            // time to work and survivors time to show they recover.
            let mut at: Vec<u64> = (0..args.kills)
                .map(|_| span / 10 + rng.below(span * 7 / 10))
                .collect();
            at.sort_unstable();
            at.into_iter()
                .map(|t| now + Duration::from_nanos((start + t).saturating_sub(now_ns())))
                .collect()
        };
        let mut kill_number = 0u32;
        // A holder kill waits for the next entry into a section and kills
        // that worker at once (it is inside for at least the shortest work
        // time); armed until the instant given, then anyone is killed.
        let mut holder_kill: Option<Instant> = None;
        let hard_stop = now
            + args.duration
            + args.grace
            + args.acquire_timeout
            + args.lifetime * 2
            + Duration::from_secs(10);
        loop {
            if kills.is_empty()
                && holder_kill.is_none()
                && self.slots.iter().all(|s| s.end.is_some())
            {
                return Ok(());
            }
            let next_kill = kills.front().copied();
            tokio::select! {
                incoming = self.rx.recv() => match incoming {
                    Some(incoming) => {
                        let entered = self.receive(incoming).await;
                        if let (Some(i), Some(_)) = (entered, holder_kill)
                            && self.slots[i].end.is_none()
                            && now_ns() < self.deadline
                        {
                            holder_kill = None;
                            self.kill_slot(i).await;
                            self.spawn()?;
                        }
                    }
                    None => return Ok(()),
                },
                () = sleep_until_opt(next_kill), if next_kill.is_some() => {
                    kills.pop_front();
                    if now_ns() < self.deadline {
                        if kill_number.is_multiple_of(2) && holder_kill.is_none() {
                            holder_kill = Some(Instant::now() + Duration::from_secs(1));
                        } else {
                            self.kill_random(&mut rng).await;
                            if now_ns() < self.deadline {
                                self.spawn()?;
                            }
                        }
                        kill_number += 1;
                    }
                },
                () = sleep_until_opt(holder_kill), if holder_kill.is_some() => {
                    holder_kill = None;
                    if now_ns() < self.deadline {
                        self.kill_random(&mut rng).await;
                        self.spawn()?;
                    }
                },
                () = tokio::time::sleep_until(hard_stop) => {
                    for slot in self.slots.iter_mut().filter(|s| s.end.is_none()) {
                        if let Some(mut child) = slot.child.take() {
                            let _ = child.start_kill();
                            let _ = child.wait().await;
                        }
                        slot.end = Some(WorkerEnd::Hung { t: now_ns() });
                    }
                    return Ok(());
                },
            }
        }
    }

    /// Takes in what a reader task saw; says which worker just entered a
    /// section, if one did.
    async fn receive(&mut self, incoming: Incoming) -> Option<usize> {
        match incoming {
            Incoming::Line(i, line) => {
                self.note(&line);
                let slot = &mut self.slots[i];
                let mut entered = None;
                match serde_json::from_str::<Event>(&line) {
                    Ok(e) => {
                        match e {
                            Event::Request { .. } => slot.waiting += 1,
                            Event::Retry { .. } | Event::Fail { .. } => slot.waiting -= 1,
                            Event::Enter { .. } => {
                                slot.waiting -= 1;
                                slot.holding += 1;
                                entered = Some(i);
                            }
                            Event::Released { .. } => slot.holding -= 1,
                            _ => {}
                        }
                        slot.events.push(e);
                    }
                    Err(_) => slot.garbled += 1,
                }
                return entered;
            }
            Incoming::Partial(i) => {
                // Only a killed worker may leave half a line.
                let slot = &mut self.slots[i];
                if !matches!(slot.end, Some(WorkerEnd::Killed { .. })) {
                    slot.garbled += 1;
                }
            }
            Incoming::Eof(i) => {
                let slot = &mut self.slots[i];
                slot.stdin = None;
                if slot.end.is_some() {
                    return None;
                }
                let mut child = slot.child.take()?;
                let end = match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                    Ok(Ok(status)) => WorkerEnd::Exited {
                        code: status.code(),
                        t: now_ns(),
                    },
                    Ok(Err(_)) | Err(_) => {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        WorkerEnd::Hung { t: now_ns() }
                    }
                };
                slot.end = Some(end);
            }
        }
        None
    }

    /// SIGKILLs a live worker chosen at random.
    async fn kill_random(&mut self, rng: &mut Rng) {
        let live: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].end.is_none() && self.slots[i].child.is_some())
            .collect();
        if !live.is_empty() {
            self.kill_slot(live[rng.below(live.len() as u64) as usize])
                .await;
        }
    }

    /// SIGKILLs worker `i` and reaps it.
    async fn kill_slot(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some(mut child) = slot.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let t = now_ns();
            slot.end = Some(WorkerEnd::Killed { t });
            let (index, holding, waiting) = (slot.index, slot.holding, slot.waiting);
            self.note(&format!(
                r#"{{"e":"killed","worker":{index},"holding":{holding},"waiting":{waiting},"t":{t}}}"#
            ));
        }
    }

    /// Appends a line to the journal.
    fn note(&mut self, line: &str) {
        if let Some(j) = &mut self.journal {
            let _ = writeln!(j, "{line}");
        }
    }

    fn into_logs(mut self, dir: &Path) -> Vec<WorkerLog> {
        if let Some(mut j) = self.journal.take() {
            let _ = j.flush();
        }
        self.slots
            .into_iter()
            .map(|s| {
                let end = s.end.unwrap_or(WorkerEnd::Hung { t: now_ns() });
                let log_tail = match end {
                    WorkerEnd::Exited { code: Some(0), .. } | WorkerEnd::Killed { .. } => {
                        String::new()
                    }
                    _ => tail(&dir.join(format!("worker-{}.log", s.index))),
                };
                WorkerLog {
                    index: s.index,
                    spawned: s.spawned,
                    events: s.events,
                    garbled: s.garbled,
                    end,
                    log_tail,
                }
            })
            .collect()
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The last bytes of a file, for a report.
fn tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The figures of a run, printed as one line or one JSON object.
#[derive(Debug, Serialize)]
struct Report<'a> {
    verified: bool,
    store: String,
    seed: u64,
    processes: u32,
    tasks: u32,
    conversations: u32,
    duration_s: f64,
    lifetime_s: f64,
    socket_timeout_s: f64,
    work_ms: [u64; 2],
    overrun_percent: u32,
    elapsed_s: f64,
    sections_per_s: f64,
    #[serde(flatten)]
    figures: &'a Figures,
    violations: usize,
    first_violations: &'a [Violation],
    /// Where the run's files were kept (a failed run, or `--dir`).
    dir: Option<String>,
}

impl Report<'_> {
    fn line(&self) -> String {
        let f = self.figures;
        let o = &f.overlaps;
        let overlaps = o.explained_by_data_loss + o.explained_by_lease_overrun + o.unexplained;
        let count = |m: &std::collections::BTreeMap<&str, u64>| m.values().sum::<u64>();
        let verdict = if self.verified {
            "verified".to_string()
        } else {
            format!(
                "NOT verified: {} violations (repeat with --seed {})",
                self.violations, self.seed
            )
        };
        format!(
            "torture: {} processes x {} tasks on {} conversations, {}: {} sections ({:.0}/s), \
             {} overlaps ({} unexplained), {} failed, {} retries, {} kills ({} lost with them), \
             {} panics, wait p99 {:.1} ms, longest stall {:.1} ms; {verdict}",
            self.processes,
            self.tasks,
            self.conversations,
            self.store,
            f.sections,
            self.sections_per_s,
            overlaps,
            o.unexplained,
            count(&f.failed),
            count(&f.retries),
            f.kills.total,
            f.lost_with_killed_processes,
            f.panics,
            f.wait_ms.p99,
            f.stalls.max_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_file(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "ticketlock-torture-faults-{}-{}",
            std::process::id(),
            now_ns()
        ));
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_fault_log_gives_windows_and_instants() {
        let path = log_file(
            "# injected by a test\n100 begin redis-down\n150 at data-loss\n\n300 end redis-down\n\
             400 begin redis-stop\n",
        );
        let windows = read_fault_log(&path, 1000).unwrap();
        fs::remove_file(&path).unwrap();
        let got: Vec<(&str, u64, u64)> = windows
            .iter()
            .map(|w| (w.name.as_str(), w.begin, w.end))
            .collect();
        assert_eq!(
            got,
            [
                ("redis-down", 100, 300),
                ("data-loss", 150, 150),
                ("redis-stop", 400, 1000)
            ]
        );
    }

    #[test]
    fn a_bad_fault_log_line_is_named() {
        for (text, why) in [
            ("100 begin\n", "line 1: 2 fields instead of 3"),
            ("x at a\n", "\"x\" is not a time"),
            ("1 end a\n", "a ends without having begun"),
            ("1 begin a\n2 begin a\n", "line 2: a begins again"),
            ("1 during a\n", "\"during\" is not begin, end or at"),
        ] {
            let path = log_file(text);
            let e = read_fault_log(&path, 10).unwrap_err();
            fs::remove_file(&path).unwrap();
            assert!(format!("{e:#}").contains(why), "{text:?}: {e:#}");
            assert_eq!(exit::code_of(&e), exit::DATA);
        }
    }
}
