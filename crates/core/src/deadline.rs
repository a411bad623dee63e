//! Deadline arithmetic that cannot panic.

use std::time::{Duration, Instant};

/// The instant `after` past `now`, or `None` when that lies beyond what [`Instant`] can
/// represent.
///
/// `now + after` panics on overflow, and a caller may well ask for `Duration::MAX` ("wait as
/// long as it takes"). Every machine and driver computes its deadlines through this function,
/// and reads `None` as "no deadline": a timeout too large to represent never fires.
///
/// ```
/// use std::time::{Duration, Instant};
/// use xsio_core::deadline;
///
/// let now = Instant::now(); // tidy:allow (an epoch for the example)
/// assert_eq!(deadline(now, Duration::from_secs(5)), Some(now + Duration::from_secs(5)));
/// // Too far to represent: no deadline, and no panic.
/// assert_eq!(deadline(now, Duration::MAX), None);
/// assert_eq!(deadline(now, Duration::from_secs(u64::MAX)), None);
/// ```
#[must_use]
pub fn deadline(now: Instant, after: Duration) -> Option<Instant> {
    now.checked_add(after)
}

/// The latest [`Instant`] that can be reached from `from`: the point past which [`deadline`]
/// gives `None`.
///
/// `Instant` has no `MAX`, so this bisects with `checked_add`. Tests, fuzz targets and
/// simulators use it to run machines at the very end of time, where a small timeout
/// overflows too.
///
/// ```
/// use std::time::{Duration, Instant};
/// use xsio_core::{deadline, last_instant};
///
/// let now = Instant::now(); // tidy:allow (an epoch for the example)
/// let end = last_instant(now);
/// assert!(end > now);
/// assert_eq!(deadline(end, Duration::ZERO), Some(end));
/// assert_eq!(deadline(end, Duration::from_nanos(1)), None);
/// ```
#[must_use]
pub fn last_instant(from: Instant) -> Instant {
    let fits = |secs: u64, nanos: u32| deadline(from, Duration::new(secs, nanos)).is_some();
    let (mut low, mut high) = (0u64, u64::MAX);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if fits(mid, 0) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let secs = low;
    let (mut low, mut high) = (0u32, 999_999_999u32);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if fits(secs, mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    // Both searches kept only values that fit.
    from + Duration::new(secs, low)
}
