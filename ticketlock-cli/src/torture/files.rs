//! The witness and the downstream store: files in the run's directory,
//! shared by the workers, independent of Redis.
//!
//! - `witness/<k>`: an exclusive `flock` taken without waiting when a holder
//!   enters conversation k's section and dropped when it leaves. Failing to
//!   take it means another holder is inside. The kernel drops a killed
//!   process's lock with it.
//! - `downstream/<k>`: the highest fencing token written for conversation
//!   k, as decimal text; a write with a token not above it is refused. The
//!   file's own `flock` (taken waiting) makes read-compare-write atomic
//!   between processes, as a database's transaction would.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::event::Downstream;

/// The run's shared files.
#[derive(Debug, Clone)]
pub struct Files {
    witness: PathBuf,
    downstream: PathBuf,
}

/// A held witness, or the proof that another holder had it.
#[derive(Debug)]
pub struct Witness {
    held: Option<Flock<File>>,
}

impl Witness {
    /// Whether another holder was inside when this one entered.
    pub fn overlapped(&self) -> bool {
        self.held.is_none()
    }
}

impl Files {
    /// Makes the directories and files of `conversations` conversations in
    /// `dir` (which must exist).
    pub fn create(dir: &Path, conversations: u32) -> anyhow::Result<Files> {
        let files = Files::open(dir);
        for d in [&files.witness, &files.downstream] {
            fs::create_dir(d).with_context(|| format!("torture: cannot create {}", d.display()))?;
        }
        for k in 0..conversations {
            for path in [files.witness_path(k), files.downstream_path(k)] {
                File::create(&path)
                    .with_context(|| format!("torture: cannot create {}", path.display()))?;
            }
        }
        Ok(files)
    }

    /// The files of the run in `dir`.
    pub fn open(dir: &Path) -> Files {
        Files {
            witness: dir.join("witness"),
            downstream: dir.join("downstream"),
        }
    }

    /// Takes conversation `k`'s witness without waiting.
    pub fn enter(&self, k: u32) -> anyhow::Result<Witness> {
        let path = self.witness_path(k);
        // A new open file description each time: flock excludes other
        // descriptions, also those of other tasks of this process.
        let file = File::open(&path)
            .with_context(|| format!("torture: cannot open the witness {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => Ok(Witness { held: Some(held) }),
            Err((_, Errno::EWOULDBLOCK)) => Ok(Witness { held: None }),
            Err((_, e)) => Err(io::Error::from(e))
                .with_context(|| format!("torture: cannot flock the witness {}", path.display())),
        }
    }

    /// Writes `token` to conversation `k`'s downstream store, which keeps
    /// it only if it is above every token written before.
    pub fn write_downstream(&self, k: u32, token: u64) -> anyhow::Result<Downstream> {
        let path = self.downstream_path(k);
        let context = || format!("torture: downstream store {}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(context)?;
        let mut file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io::Error::from(e))
            .with_context(context)?;
        let mut text = String::new();
        file.read_to_string(&mut text).with_context(context)?;
        let highest = match text.trim() {
            "" => None,
            t => Some(
                t.parse::<u64>()
                    .with_context(|| format!("{}: not a token: {t:?}", context()))?,
            ),
        };
        if let Some(highest) = highest.filter(|&h| h >= token) {
            return Ok(Downstream::Rejected { highest });
        }
        file.seek(SeekFrom::Start(0)).with_context(context)?;
        file.set_len(0).with_context(context)?;
        file.write_all(token.to_string().as_bytes())
            .with_context(context)?;
        Ok(Downstream::Accepted)
    }

    fn witness_path(&self, k: u32) -> PathBuf {
        self.witness.join(k.to_string())
    }

    fn downstream_path(&self, k: u32) -> PathBuf {
        self.downstream.join(k.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ticketlock-torture-test-{name}-{}-{}",
            std::process::id(),
            super::super::clock::now_ns()
        ));
        fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn the_witness_sees_a_second_holder_and_frees_on_drop() {
        let dir = temp_dir("witness");
        let files = Files::create(&dir, 2).unwrap();
        let first = files.enter(0).unwrap();
        assert!(!first.overlapped());
        // Same process, another description: excluded as another process is.
        let second = files.enter(0).unwrap();
        assert!(second.overlapped());
        // Another conversation is independent.
        assert!(!files.enter(1).unwrap().overlapped());
        drop(second);
        drop(first);
        assert!(!files.enter(0).unwrap().overlapped());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_downstream_store_refuses_tokens_not_above_the_highest() {
        let dir = temp_dir("downstream");
        let files = Files::create(&dir, 1).unwrap();
        assert_eq!(files.write_downstream(0, 10).unwrap(), Downstream::Accepted);
        assert_eq!(
            files.write_downstream(0, 100).unwrap(),
            Downstream::Accepted
        );
        assert_eq!(
            files.write_downstream(0, 99).unwrap(),
            Downstream::Rejected { highest: 100 }
        );
        assert_eq!(
            files.write_downstream(0, 100).unwrap(),
            Downstream::Rejected { highest: 100 }
        );
        // Shorter text after longer: the file is rewritten, not overlaid.
        assert_eq!(
            files.write_downstream(0, 101).unwrap(),
            Downstream::Accepted
        );
        assert_eq!(fs::read_to_string(dir.join("downstream/0")).unwrap(), "101");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_run_dir_is_an_error_naming_the_file() {
        let files = Files::open(Path::new("/nonexistent/ticketlock-torture"));
        let e = files.enter(0).unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/ticketlock-torture/witness/0"),
            "{e:#}"
        );
    }
}
