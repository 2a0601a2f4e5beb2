//! The crew's worker threads, started in a scope: each raises `quit` if it
//! panics (so the others stop in order) and holds a `done` sender until it
//! ends, so the main thread knows when the last one has.

use crossbeam::channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Scope, ScopedJoinHandle};

/// Raises `quit` if the thread holding it unwinds, so the others stop in order.
struct PanicGuard<'a>(&'a AtomicBool);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// The worker threads of a run, started in a scope. A panic in one raises
/// `quit`; each holds a clone of `done` until it ends, so the receiver
/// disconnects when the last worker has ended.
pub(super) struct Crew<'scope, 'env> {
    pub(super) scope: &'scope Scope<'scope, 'env>,
    pub(super) quit: &'scope AtomicBool,
    pub(super) done: Sender<()>,
    pub(super) handles: Vec<std::io::Result<ScopedJoinHandle<'scope, ()>>>,
}

impl<'scope> Crew<'scope, '_> {
    pub(super) fn spawn(&mut self, name: String, work: impl FnOnce() + Send + 'scope) {
        let (quit, done) = (self.quit, self.done.clone());
        let handle = std::thread::Builder::new()
            .name(name)
            // Fetchers parse and canonicalise bodies nested up to json::MAX_DEPTH.
            .stack_size(crate::json::THREAD_STACK)
            .spawn_scoped(self.scope, move || {
                let _guard = PanicGuard(quit);
                work();
                drop(done);
            });
        self.handles.push(handle);
    }

    /// Every worker is started: the handles to join.
    pub(super) fn started(self) -> Vec<std::io::Result<ScopedJoinHandle<'scope, ()>>> {
        self.handles
    }
}
