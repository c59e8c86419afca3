//! Signals while `run` waits or its command runs: caught, and passed on to
//! the command.
//!
//! We catch SIGINT, SIGQUIT, SIGTERM and SIGHUP so that we outlive them and
//! release the lock after the command ends. A signal typed at the terminal
//! (Ctrl-C, Ctrl-\) already reached the command, which is in our process
//! group; passing it on again would deliver it twice, so those two are
//! forwarded only when our group is not the terminal's foreground group
//! (e.g. `kill -INT` from elsewhere, or no terminal at all).

#[cfg(unix)]
mod imp {
    use std::process::ExitStatus;

    use nix::sys::signal::{Signal, kill};
    use nix::unistd::{Pid, getpgrp, tcgetpgrp};
    use tokio::signal::unix::{SignalKind, signal};

    /// The caught signals, as streams.
    pub struct Signals {
        int: tokio::signal::unix::Signal,
        quit: tokio::signal::unix::Signal,
        term: tokio::signal::unix::Signal,
        hup: tokio::signal::unix::Signal,
    }

    impl Signals {
        pub fn install() -> std::io::Result<Self> {
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                quit: signal(SignalKind::quit())?,
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
            })
        }

        /// The next caught signal's number.
        pub async fn recv(&mut self) -> i32 {
            tokio::select! {
                _ = self.int.recv() => Signal::SIGINT as i32,
                _ = self.quit.recv() => Signal::SIGQUIT as i32,
                _ = self.term.recv() => Signal::SIGTERM as i32,
                _ = self.hup.recv() => Signal::SIGHUP as i32,
            }
        }
    }

    /// Passes `signal` on to the child, unless the terminal already did.
    pub fn forward(child: &tokio::process::Child, signal: i32) {
        let Ok(sig) = Signal::try_from(signal) else {
            return;
        };
        let typed = matches!(sig, Signal::SIGINT | Signal::SIGQUIT);
        if typed && in_terminal_foreground() {
            tracing::debug!(signal = %sig, "not forwarded: the terminal sent it to the command too");
            return;
        }
        send(child, signal);
    }

    pub const TERM: i32 = Signal::SIGTERM as i32;
    pub const KILL: i32 = Signal::SIGKILL as i32;

    /// Sends `signal` to the child, unless it already exited.
    pub fn send(child: &tokio::process::Child, signal: i32) {
        let Ok(sig) = Signal::try_from(signal) else {
            return;
        };
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return; // Already exited.
        };
        tracing::debug!(signal = %sig, pid, "sending signal");
        if let Err(e) = kill(Pid::from_raw(pid), sig) {
            tracing::warn!(signal = %sig, pid, error = %e, "could not send signal");
        }
    }

    /// Whether our process group is the foreground group of our terminal.
    fn in_terminal_foreground() -> bool {
        let fg = tcgetpgrp(std::io::stdin())
            .or_else(|_| tcgetpgrp(std::io::stderr()))
            .or_else(|_| tcgetpgrp(std::io::stdout()));
        fg.is_ok_and(|g| g == getpgrp())
    }

    pub fn killed_by(status: ExitStatus) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&status)
    }

    pub fn name(signal: i32) -> String {
        Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string())
    }
}

#[cfg(not(unix))]
mod imp {
    use std::process::ExitStatus;

    /// Ctrl-C only; the console delivers it to the command as well.
    pub struct Signals;

    impl Signals {
        pub fn install() -> std::io::Result<Self> {
            Ok(Signals)
        }

        pub async fn recv(&mut self) -> i32 {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            2
        }
    }

    pub fn forward(_child: &tokio::process::Child, _signal: i32) {}

    pub const TERM: i32 = 15;
    pub const KILL: i32 = 9;

    /// Not supported here: the child ends with `run` (kill on drop).
    pub fn send(_child: &tokio::process::Child, _signal: i32) {}

    pub fn killed_by(_status: ExitStatus) -> Option<i32> {
        None
    }

    pub fn name(_signal: i32) -> String {
        "Ctrl-C".into()
    }
}

pub use imp::{KILL, Signals, TERM, forward, killed_by, name, send};

/// The shell's exit code for death by `signal`: 128+N.
pub fn exit_code(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(crate::exit::FAILURE)
}
