//! Where the CPU kernels' parallel work runs.
//!
//! Rayon runs a parallel loop that starts outside its pool by handing it to the pool's threads
//! and blocking the caller until they are done: a sleeping worker is woken, and later the
//! caller. On the 2-core development VM those two wake-ups cost 12 to 25 us per call (a
//! 400 KB sum split in two took 20 us, 4 us on one core), more than a batch-1 pooling takes, so
//! small ops had to stay on one core. PyTorch's OpenMP regions run on the calling thread plus
//! spinning helpers and pay no such hand-off.
//!
//! So the first thread that runs a CPU op, unless it already is a rayon worker, joins a cupool
//! thread pool as its worker 0 (rayon's `use_current_thread`), with as many threads as rayon's
//! global pool. Its ops then split their work in place: the other workers steal halves, and
//! whatever is not stolen in time the caller runs itself, so an op never waits for a wake-up.
//! Measured through `cupool bench --quick` (same build, `CUPOOL_JOIN_POOL=0` as the
//! baseline, best of three runs): batch-1 ops (1x2048x7x7) ran 1.2x to 3.9x faster (a 3x3
//! stride-1 channels-last average 64 -> 24 us, a bf16 `mean` backward 48 -> 12 us), the ResNet
//! tail's (16x2048x7x7) mostly 1.1x to 1.5x, a few of its NCHW rows 0.82x to 0.95x. On such a
//! thread ops over [`super::SEQUENTIAL_WORK_IN_PLACE`] elements of work split, rather than over
//! [`super::SEQUENTIAL_WORK`]. Other threads (and ops called from inside a rayon pool) keep
//! rayon's usual behaviour.
//!
//! The side effect: rayon calls made on that thread afterwards also run in cupool's pool (of
//! the same size), and `rayon::current_thread_index()` is `Some(0)` there. Set the environment
//! variable `CUPOOL_JOIN_POOL=0` to keep every thread out of it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Whether some thread has joined (or tried to join) the pool.
static CLAIMED: AtomicBool = AtomicBool::new(false);
/// The pool the joined thread belongs to, alive for the rest of the process.
static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

std::thread_local! {
    /// Whether this thread has been through [`join_calling_thread`] already.
    static CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// Makes the calling thread worker 0 of cupool's pool if no thread is yet and joining is not
/// turned off; a no-op after the first call on each thread. Called before each CPU op.
pub(crate) fn join_calling_thread() {
    if CHECKED.replace(true) {
        return;
    }
    if rayon::current_thread_index().is_some() || std::env::var("CUPOOL_JOIN_POOL").is_ok_and(|v| v == "0") {
        return;
    }
    let threads = rayon::current_num_threads();
    if threads < 2 || CLAIMED.swap(true, Ordering::AcqRel) {
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("cupool-{i}"))
        .use_current_thread()
        .build();
    // A pool that cannot be built (no threads to spawn) leaves this thread on rayon's global
    // pool, as every other thread.
    if let Ok(pool) = pool {
        let _ = POOL.set(pool);
    }
}

/// Whether parallel work started on this thread runs without a hand-off: it is a rayon
/// worker (of cupool's pool or any other), so splitting small ops pays.
#[inline]
pub(crate) fn splits_in_place() -> bool {
    rayon::current_thread_index().is_some()
}
