//! The command `run` runs: spawned with the lock's facts in its
//! environment, bound to our life, and its exit status read the shell's way.
//!
//! On Linux the command is spawned with `PR_SET_PDEATHSIG` = SIGKILL, so
//! that it dies when `run` dies, even by SIGKILL: otherwise it would go on
//! running with nobody renewing its lease, and one lifetime later the next
//! holder would enter beside it. The kernel sends that signal when the
//! *thread* that forked the child ends; we fork from the thread that runs
//! `block_on` (the main thread), which lives as long as the process. Only
//! the command itself is bound: processes it starts in turn are its own
//! business (a shell script should `exec` its last command, or trap).

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::process::ExitStatus;

use crate::exit;
use ticketlock::LockGuard;

/// What the user asked to run.
pub enum Program<'a> {
    /// A program and its arguments.
    Argv(&'a OsStr, &'a [std::ffi::OsString]),
    /// A line for `sh -c` (flock's `-c`).
    Shell(&'a str),
}

impl Program<'_> {
    /// How the command is named in messages.
    pub fn shown(&self) -> String {
        match self {
            Program::Argv(program, _) => program.to_string_lossy().into_owned(),
            Program::Shell(line) => format!("sh -c {line:?}"),
        }
    }
}

/// Starts the command; errors carry the shell's codes (126, 127).
pub fn spawn(program: &Program<'_>, guard: &LockGuard) -> anyhow::Result<tokio::process::Child> {
    let mut cmd = match program {
        Program::Argv(program, args) => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(*args);
            cmd
        }
        Program::Shell(line) => {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c").arg(line);
            cmd
        }
    };
    cmd.env("TICKETLOCK_CONVERSATION_ID", guard.conversation_id())
        .env("TICKETLOCK_TICKET", guard.ticket().to_string())
        .env(
            "TICKETLOCK_FENCING_TOKEN",
            guard.fencing_token().to_string(),
        )
        // Should `run` fail between here and the wait, the command goes too.
        .kill_on_drop(true);
    // The parent-death signal follows the forking thread: it must be the
    // main thread (`block_on`'s), not a runtime worker that may end first.
    debug_assert_eq!(std::thread::current().name(), Some("main"));
    #[cfg(any(target_os = "linux", target_os = "android"))]
    die_with_parent(&mut cmd);
    let shown = program.shown();
    cmd.spawn().map_err(|e| cannot_spawn(&shown, program, &e))
}

fn cannot_spawn(shown: &str, program: &Program<'_>, e: &std::io::Error) -> anyhow::Error {
    match e.kind() {
        ErrorKind::NotFound => exit::coded(
            exit::NOT_FOUND,
            format!("run: command not found: {shown}; check its name and PATH"),
        ),
        ErrorKind::PermissionDenied => {
            let is_dir = match program {
                Program::Argv(p, _) => std::path::Path::new(p).is_dir(),
                Program::Shell(_) => false,
            };
            let advice = if is_dir {
                "it is a directory; name a program file"
            } else {
                "permission denied; make it executable (chmod +x), or run it through its \
                 interpreter (e.g. `sh FILE`)"
            };
            exit::coded(
                exit::CANNOT_EXECUTE,
                format!("run: cannot execute {shown}: {advice}"),
            )
        }
        _ => exit::coded(
            exit::CANNOT_EXECUTE,
            format!("run: cannot execute {shown}: {e}"),
        ),
    }
}

/// Makes the kernel SIGKILL the command when the thread spawning it (the
/// main thread, see the module docs) ends.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe work is allowed: `bind_to_parent` makes two system calls (prctl, getppid) and neither allocates nor locks.
    unsafe { cmd.pre_exec(move || bind_to_parent(parent)) };
}

/// In the child, before exec: ask for SIGKILL at the parent's death, then
/// check that the parent did not die before we asked (the signal would
/// never come); the spawn fails then, with ESRCH, allocating nothing.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn bind_to_parent(parent: nix::unistd::Pid) -> std::io::Result<()> {
    use nix::errno::Errno;
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid() != parent {
        return Err(Errno::ESRCH.into());
    }
    Ok(())
}

/// The shell's convention: the exit code, or 128+N when killed by signal N.
pub fn status_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        // An exit status is 0..=255 on Unix; clamp elsewhere.
        return u8::try_from(code).unwrap_or(exit::FAILURE);
    }
    super::signals::killed_by(status).map_or(exit::FAILURE, super::signals::exit_code)
}
