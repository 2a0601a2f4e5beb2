//! The gate a run's writers pass before their first batch: its raw table
//! exists. The fleet hands a run to the crew before creating a missing
//! table, so that the first pages are on their way meanwhile.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Why the table is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoTable {
    pub message: String,
    /// The database was unreachable (not a refusal of the table itself).
    pub database_lost: bool,
}

/// Open (the table exists), shut for good (it could not be made), or
/// pending until one of the two.
#[derive(Default)]
pub struct TableGate {
    state: Mutex<Option<Result<(), NoTable>>>,
    settled: Condvar,
}

impl TableGate {
    /// A gate for a table yet to be made sure of: `settle` must follow,
    /// or writers wait; [`Settling`] settles it on every path.
    pub fn pending() -> TableGate {
        TableGate::default()
    }

    /// The table's fate, once; later calls change nothing.
    pub fn settle(&self, result: Result<(), NoTable>) {
        let mut state = self.lock();
        if state.is_none() {
            *state = Some(result);
            self.settled.notify_all();
        }
    }

    /// Waits until the gate is settled, and says how.
    pub fn wait(&self) -> Result<(), NoTable> {
        let mut state = self.lock();
        loop {
            if let Some(r) = &*state {
                return r.clone();
            }
            state = self
                .settled
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Result<(), NoTable>>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Settles a gate as shut if it is dropped before being settled (the code
/// making the table returned early or panicked): writers never wait forever.
pub struct Settling<'g>(pub &'g TableGate);

impl Drop for Settling<'_> {
    fn drop(&mut self) {
        self.0.settle(Err(NoTable {
            message: "the raw table was not made sure of before the run".into(),
            database_lost: false,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_writer_waits_until_the_table_is_settled_and_sees_the_first_verdict() {
        let gate = TableGate::pending();
        let (started, started_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                started.send(()).unwrap();
                gate.wait()
            });
            // The table comes late: only once the writer is on its way to wait.
            started_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the writer thread started");
            assert!(!waiter.is_finished(), "the writer must wait for the table");
            gate.settle(Ok(()));
            gate.settle(Err(NoTable {
                message: "too late".into(),
                database_lost: false,
            }));
            assert_eq!(waiter.join().unwrap(), Ok(()));
        });
        assert_eq!(gate.wait(), Ok(()));
    }

    #[test]
    fn a_gate_left_unsettled_is_shut_when_its_settling_guard_goes() {
        let gate = TableGate::pending();
        drop(Settling(&gate));
        let shut = gate.wait().unwrap_err();
        assert!(shut.message.contains("raw table"), "{shut:?}");
        assert!(!shut.database_lost);
        let open = TableGate::pending();
        open.settle(Ok(()));
        drop(Settling(&open));
        assert_eq!(open.wait(), Ok(()), "a settled gate stays as it was");
    }
}
