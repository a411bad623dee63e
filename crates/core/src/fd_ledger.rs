//! A stand-in for file descriptors that makes leaks visible in tests and simulators.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts the [`TrackedFd`]s it opened that are still alive.
///
/// Machines are generic over their fd type; tests and the simulator instantiate them with
/// [`TrackedFd`] and assert at the end that [`open_count`](FdLedger::open_count) is zero:
/// every descriptor handed to a machine was either sent (and then dropped by the test
/// harness) or closed by the machine.
///
/// ```
/// use xsio_core::FdLedger;
///
/// let ledger = FdLedger::default();
/// let fd = ledger.open();
/// assert_eq!(ledger.open_count(), 1);
/// drop(fd);
/// assert_eq!(ledger.open_count(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct FdLedger {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    next: AtomicU64,
    open: AtomicU64,
}

impl FdLedger {
    /// Opens a new tracked descriptor.
    pub fn open(&self) -> TrackedFd {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        TrackedFd {
            id,
            ledger: Arc::clone(&self.inner),
        }
    }

    /// How many descriptors from this ledger are still open.
    pub fn open_count(&self) -> u64 {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// How many descriptors this ledger has opened in all.
    pub fn opened_total(&self) -> u64 {
        self.inner.next.load(Ordering::Relaxed)
    }
}

/// A descriptor stand-in; dropping it "closes" it in its [`FdLedger`].
#[derive(Debug)]
pub struct TrackedFd {
    id: u64,
    ledger: Arc<Counters>,
}

impl TrackedFd {
    /// The number of this descriptor within its ledger (0, 1, ...).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl PartialEq for TrackedFd {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && Arc::ptr_eq(&self.ledger, &other.ledger)
    }
}

impl Eq for TrackedFd {}

impl Drop for TrackedFd {
    fn drop(&mut self) {
        self.ledger.open.fetch_sub(1, Ordering::Relaxed);
    }
}
