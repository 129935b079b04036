//! The per-run lock: a file in the run directory, created atomically (`O_EXCL`) by the executor
//! that trains the run, so two executors (two `sweep run`s, a pool and a Slurm array) never
//! train one run at the same time.
//!
//! A lock is stale when its holder is gone: on the same host, when its process no longer
//! exists; from another host (a cluster's shared file system), when its heartbeat — the
//! holder touches the file every [`HEARTBEAT`] — is older than [`STALE_AFTER`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How often the holder refreshes its lock's modification time.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A lock from another host not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    host: String,
    pid: u32,
}

impl Holder {
    fn me() -> Self {
        Self {
            host: host_name(),
            pid: std::process::id(),
        }
    }

    fn describe(&self) -> String {
        format!("{} pid {}", self.host, self.pid)
    }
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Whether process `pid` exists on this host.
fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// What is at a lock's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LockState {
    /// No lock, or a stale one.
    Free,
    /// A live holder, described as `host pid N`.
    Held(String),
}

/// Reads the lock at `path`: its text and whether it is stale.
fn inspect(path: &Path) -> std::io::Result<Option<(String, LockState)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let age = std::fs::metadata(path)?
        .modified()?
        .elapsed()
        .unwrap_or_default();
    let state = match serde_json::from_str::<Holder>(&text) {
        Ok(h) if h.host == host_name() => {
            if process_exists(h.pid) {
                LockState::Held(h.describe())
            } else {
                LockState::Free
            }
        }
        // Another host's lock, or one being written right now: trust its heartbeat.
        Ok(h) if age < STALE_AFTER => LockState::Held(h.describe()),
        Err(_) if age < STALE_AFTER => LockState::Held("another executor".into()),
        _ => LockState::Free,
    };
    Ok(Some((text, state)))
}

/// The live holder of the lock at `path`, if any.
pub(super) fn live_holder(path: &Path) -> Option<String> {
    match inspect(path) {
        Ok(Some((_, LockState::Held(who)))) => Some(who),
        _ => None,
    }
}

/// A held lock; dropping it stops the heartbeat and removes the file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    stop: Arc<(Mutex<bool>, Condvar)>,
    heartbeat: Option<JoinHandle<()>>,
}

impl RunLock {
    /// Takes the lock at `path` (replacing a stale one), or says who holds it.
    pub fn acquire(path: &Path) -> std::io::Result<Result<RunLock, String>> {
        let me = serde_json::to_string(&Holder::me()).expect("holders serialize");
        // Two rounds: the second after moving a stale lock aside.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    f.write_all(me.as_bytes())?;
                    f.sync_all()?;
                    return Ok(Ok(Self::start(path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let Some((text, state)) = inspect(path)? else {
                continue;
            };
            if let LockState::Held(who) = state {
                return Ok(Err(who));
            }
            // Move the stale lock aside (atomic: of two executors, one wins) and check that
            // what moved is the lock judged stale, not a fresh one taken in between.
            let aside = path.with_extension(format!("stale-{}", std::process::id()));
            match std::fs::rename(path, &aside) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            let moved = std::fs::read_to_string(&aside).unwrap_or_default();
            if moved != text {
                // Put the other executor's fresh lock back (unless yet another one is there).
                let _ = std::fs::hard_link(&aside, path);
                std::fs::remove_file(&aside)?;
                return Ok(Err(
                    live_holder(path).unwrap_or_else(|| "another executor".into())
                ));
            }
            std::fs::remove_file(&aside)?;
        }
        Ok(Err(
            live_holder(path).unwrap_or_else(|| "another executor".into())
        ))
    }

    fn start(path: &Path) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let heartbeat = {
            let (stop, path) = (Arc::clone(&stop), path.to_path_buf());
            std::thread::spawn(move || {
                let (flag, wake) = &*stop;
                let mut stopped = flag.lock().expect("heartbeat flag");
                // The flag is checked before each wait (it may be set before the first).
                while !*stopped {
                    let (guard, _) = wake
                        .wait_timeout(stopped, HEARTBEAT)
                        .expect("heartbeat flag");
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                    if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                        let _ = f.set_modified(SystemTime::now());
                    }
                }
            })
        };
        Self {
            path: path.to_path_buf(),
            stop,
            heartbeat: Some(heartbeat),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().expect("heartbeat flag") = true;
        wake.notify_all();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        // Remove it only while it is still ours.
        let mine = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str::<Holder>(&t).ok())
            .is_some_and(|h| h == Holder::me());
        if mine {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
