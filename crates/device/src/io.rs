//! Request bookkeeping: op ids, what each in-flight request is for (and in which epoch of
//! the operation it was asked), and the output queue.

use xsio_ops::Requests;

/// What a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Purpose {
    DomainInfo,
    DeviceModel,
    TxnStart,
    TxnRead,
    TxnDirectory,
    TxnApply,
    TxnEnd { commit: bool },
    Watch,
    Unwatch,
    WaitRead,
    ScriptKey(usize),
    HotplugError,
    Spawn,
    Kill,
}

/// The in-flight requests of a machine and its queued outputs.
///
/// Every request carries the epoch it was asked in; a phase change bumps the epoch, so a
/// reply that arrives after its phase ended (a read racing a timeout) is recognised as
/// stale and dropped rather than misread.
pub(crate) type Io<E> = Requests<(Purpose, u32), E>;
