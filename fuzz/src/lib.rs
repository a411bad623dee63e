//! Helpers shared by the fuzz targets: time drawn from the whole range, the input read a
//! byte at a time.
//!
//! A caller may hand a machine any `Duration` as a timeout (`Duration::MAX` means "wait as long
//! as it takes"), and a driver may run at any `Instant`. Machines compute deadlines with
//! `xsio_core::deadline`, where overflow means "no deadline"; these helpers make the targets
//! try the values where that matters, not only the small ones that fire during a session.

use std::time::{Duration, Instant};

use xsio_core::{deadline, last_instant};

mod input;

pub use input::{Bytes, VALUES, value};

/// A duration from anywhere in `Duration`'s range, read from the fuzz input through `next`
/// (which yields 0 once the input is exhausted): short ones that fire within a session, any
/// number of seconds, values at and just below `Duration::MAX`, and fully arbitrary ones.
pub fn any_duration(mut next: impl FnMut() -> u8) -> Duration {
    let selector = next();
    let mut raw = 0u64;
    for _ in 0..8 {
        raw = raw << 8 | u64::from(next());
    }
    match selector % 6 {
        0 => Duration::from_millis(raw % 10_000),
        1 => Duration::from_secs(raw),
        2 => Duration::MAX,
        3 => Duration::MAX - Duration::from_nanos(raw),
        4 => Duration::from_secs(u64::from(selector)),
        // `nanos` below one second: `Duration::new` carries nothing, so it cannot overflow.
        _ => Duration::new(raw, u32::from(selector) * 3_921_568),
    }
}

/// `now` moved on by `by`; when that is past the end of `Instant`'s range, the last instant
/// representable instead, so that the targets also run machines at the very end of time.
pub fn advance(now: Instant, by: Duration) -> Instant {
    deadline(now, by).unwrap_or_else(|| last_instant(now))
}

/// The next byte of the input, 0 once it is exhausted.
pub fn take(rest: &mut &[u8]) -> u8 {
    let (&byte, tail) = rest.split_first().unwrap_or((&0, &[]));
    *rest = tail;
    byte
}

/// An answer to a request never made, or made and already answered, must be refused with
/// `UnknownOp`: `deliver` is handed `Ok(Done)` for one of `answered` (when `byte` is even) or
/// for an id no machine hands out, and this checks what it returns.
pub fn check_stray_answer(
    answered: &std::collections::BTreeSet<xsio_core::OpId>,
    mut byte: impl FnMut() -> u8,
    deliver: impl FnOnce(xsio_ops::Input<'_>) -> Result<(), xsio_ops::InputError>,
) {
    let id = match answered.iter().next() {
        Some(id) if byte() & 1 == 0 => *id,
        _ => xsio_core::OpId::from_raw(u64::MAX - u64::from(byte())),
    };
    let result = Ok(xsio_ops::Reply::Done);
    let refused = deliver(xsio_ops::Input::Reply { id, result });
    assert_eq!(refused, Err(xsio_ops::InputError::UnknownOp(id)));
}

/// The answers any request may get, whatever it asked (`kind` 0 to 4): a lost connection,
/// QEMU's generic error, `third` (the error a target wants tried most), a bare `Done`, or a
/// QMP `value`; `None` for the other kinds, which the target answers to fit the request.
pub fn answer_to_anything(
    kind: u8,
    third: xsio_ops::OpErrorKind,
    value: impl FnOnce() -> serde_json::Value,
) -> Option<Result<xsio_ops::Reply, xsio_ops::OpError>> {
    use xsio_ops::{OpError, OpErrorKind, QmpErrorClass, Reply};
    let error = |k| Err(OpError::new(k, "fuzz"));
    Some(match kind {
        0 => error(OpErrorKind::Connection),
        1 => error(OpErrorKind::Qmp(QmpErrorClass::GenericError)),
        2 => error(third),
        3 => Ok(Reply::Done),
        4 => Ok(Reply::Qmp(value())),
        _ => return None,
    })
}
