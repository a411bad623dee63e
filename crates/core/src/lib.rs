//! Shared vocabulary of every xen-sansio machine.
//!
//! Every machine in this workspace, at every layer, has the same surface so that learning one
//! teaches all of them:
//!
//! - `Machine::new(config, now)`;
//! - inputs through `handle_*(&mut self, now, input)` (`now` first, as in quinn);
//! - outputs through `poll_output()`, drained until it returns `None` after every input;
//! - the next deadline through `poll_timeout()`, fed back with `handle_timeout(now)`.
//!
//! This crate holds only the pieces that several machines and drivers share: [`OpId`],
//! [`Transmit`], [`Input`], the [`Machine`] trait a driver or simulator uses to step any
//! machine, and [`deadline`], the one way to compute a deadline (a timeout too large to
//! represent means "no deadline", never a panic). It does no I/O and reads no clock.
//!
//! ```
//! use xsio_core::{OpId, OpIds, Transmit};
//!
//! let mut ids = OpIds::default();
//! let first: OpId = ids.next_id();
//! assert_ne!(first, ids.next_id());
//!
//! // A transmit without descriptors, using a plain integer as the fd type.
//! let t: Transmit<u32> = Transmit::bytes(&b"hello"[..]);
//! assert_eq!(&t.bytes[..], b"hello");
//! assert!(t.fds.is_empty());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod deadline;
mod fd_ledger;
mod protocol_machine;

use std::fmt;
use std::os::fd::OwnedFd;
use std::time::Instant;

use bytes::Bytes;

pub use deadline::{deadline, last_instant};
pub use fd_ledger::{FdLedger, TrackedFd};

/// Identifies one operation started on a machine.
///
/// Every operation that starts is given an `OpId` and finishes exactly once, with a success
/// value or a typed error, whatever happens to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(u64);

impl OpId {
    /// Wraps a raw id (for drivers that persist or print ids).
    pub const fn from_raw(raw: u64) -> Self {
        OpId(raw)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// Hands out fresh, increasing [`OpId`]s. One per machine.
#[derive(Clone, Debug, Default)]
pub struct OpIds {
    next: u64,
}

impl OpIds {
    /// Returns an id never returned before by this allocator.
    pub fn next_id(&mut self) -> OpId {
        let id = OpId(self.next);
        // Wrapping after 2^64 operations cannot happen in practice; do not panic anyway.
        self.next = self.next.wrapping_add(1);
        id
    }
}

/// Bytes a machine wants written to its peer, with the file descriptors that must travel in
/// the same `sendmsg` call as the first byte of `bytes`.
///
/// The driver must write all of `bytes`, in order, before the bytes of any later transmit.
/// When `fds` is non-empty it must attach them (SCM_RIGHTS) to the write that carries the
/// first byte, then close its copies. If the write fails, dropping the transmit closes them.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a transmit holds bytes (and fds) that must be written to the peer"]
pub struct Transmit<F = OwnedFd> {
    /// The bytes to write.
    pub bytes: Bytes,
    /// Descriptors to pass along with the first byte.
    pub fds: Vec<F>,
}

impl<F> Transmit<F> {
    /// A transmit that carries no descriptors.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        Transmit {
            bytes: bytes.into(),
            fds: Vec::new(),
        }
    }

    /// A transmit carrying `fds` with its first byte.
    pub fn with_fds(bytes: impl Into<Bytes>, fds: Vec<F>) -> Self {
        Transmit {
            bytes: bytes.into(),
            fds,
        }
    }
}

/// What a driver read from the peer's stream.
#[derive(Debug)]
pub enum Input<'a, F = OwnedFd> {
    /// Bytes received, in order. Any split is allowed: one byte, or many messages at once.
    Bytes(&'a [u8]),
    /// Descriptors received with the bytes that follow.
    Fds(Vec<F>),
    /// The peer closed its end (read returned 0) or the connection failed.
    Closed,
}

/// The one surface of every machine, at every layer: what a generic driver, harness or
/// simulator needs to step it.
///
/// - [`handle_input`](Machine::handle_input) feeds what the machine's peer or driver
///   produced: bytes and fds for a protocol machine (L1, [`Input`]), operation results and
///   watch events for a toolstack machine (L2, `xsio_ops::Input`).
/// - [`handle_timeout`](Machine::handle_timeout) tells it that time reached `now`.
/// - [`poll_output`](Machine::poll_output) is drained until `None` after every `handle_*`
///   call (and after the machine's own command methods, which return an [`OpId`]).
/// - [`poll_timeout`](Machine::poll_timeout) is asked after draining: `None` means the
///   machine has no deadline.
///
/// `now` is the first argument after `self` and never goes backwards. Commands specific to
/// one machine (a read, a QMP command, a close) stay its own named methods, each returning
/// the [`OpId`] its completion will carry.
///
/// ```
/// use std::time::{Duration, Instant};
/// use xsio_core::Machine;
///
/// /// Steps any machine to a point in time: fire its deadline if it passed, drain outputs.
/// fn advance<M: Machine>(machine: &mut M, now: Instant) -> Vec<M::Output> {
///     if machine.poll_timeout().is_some_and(|deadline| deadline <= now) {
///         machine.handle_timeout(now);
///     }
///     std::iter::from_fn(|| machine.poll_output()).collect()
/// }
///
/// /// A machine that says "tick" once its deadline passes.
/// struct Alarm { deadline: Option<Instant>, rang: bool }
/// impl Machine for Alarm {
///     type Input<'a> = ();
///     type Output = &'static str;
///     type Error = std::convert::Infallible;
///     fn handle_input(&mut self, _now: Instant, _input: ()) -> Result<(), Self::Error> { Ok(()) }
///     fn handle_timeout(&mut self, now: Instant) {
///         if self.deadline.is_some_and(|d| d <= now) { self.deadline = None; self.rang = true; }
///     }
///     fn poll_output(&mut self) -> Option<&'static str> {
///         std::mem::take(&mut self.rang).then_some("tick")
///     }
///     fn poll_timeout(&self) -> Option<Instant> { self.deadline }
/// }
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let start = Instant::now();
/// let mut alarm = Alarm { deadline: Some(start + Duration::from_secs(1)), rang: false };
/// assert!(advance(&mut alarm, start).is_empty());
/// assert_eq!(advance(&mut alarm, start + Duration::from_secs(1)), ["tick"]);
/// assert_eq!(alarm.poll_timeout(), None);
/// ```
pub trait Machine {
    /// What the driver feeds the machine.
    type Input<'a>;
    /// What the machine asks the driver to do or tells it.
    type Output;
    /// Why an input was refused (the machine's state is unchanged, unless the error says
    /// otherwise).
    type Error;

    /// Feeds one input at time `now`.
    fn handle_input(&mut self, now: Instant, input: Self::Input<'_>) -> Result<(), Self::Error>;

    /// Tells the machine that time has advanced to `now`. Call it when
    /// [`poll_timeout`](Machine::poll_timeout) has passed. `now` never goes backwards.
    fn handle_timeout(&mut self, now: Instant);

    /// The next output, or `None` when drained. Drain after every input.
    #[must_use = "an output is something the driver must do; dropping it loses it"]
    fn poll_output(&mut self) -> Option<Self::Output>;

    /// The earliest instant at which [`handle_timeout`](Machine::handle_timeout) must be
    /// called; `None` when the machine has no deadline.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
}
