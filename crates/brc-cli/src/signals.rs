//! SIGTERM and SIGINT during training (Slurm's time limit, preemption, `scancel`, Ctrl-C): the
//! run finishes its current episode, writes a checkpoint and the process exits with
//! [`brc_train::sweep::INTERRUPTED_EXIT`] (75). A second Ctrl-C ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Turns SIGTERM and SIGINT into a stop request (idempotent); returns the flag.
pub fn install() -> Result<Arc<AtomicBool>> {
    if let Some(flag) = STOP.get() {
        return Ok(Arc::clone(flag));
    }
    let flag = Arc::new(AtomicBool::new(false));
    // Registered first, so it sees the flag before the second Ctrl-C sets it again.
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&flag))
        .context("cannot handle SIGINT")?;
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag)).context("cannot handle signals")?;
    }
    Ok(Arc::clone(STOP.get_or_init(|| flag)))
}

/// Whether a stop was requested (false before [`install`]).
pub fn stop_requested() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::SeqCst))
}
