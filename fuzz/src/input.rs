//! The fuzz input as the machine targets read it: a byte at a time, and the few draws
//! they all make from it (a value from a table, a clock jump).

use std::time::Duration;

use crate::{any_duration, take};

/// What a xenstore read gives in the machine targets, besides each target's own values:
/// every state number, nothing, garbage.
pub const VALUES: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "", "x"];

/// The value a read gives for `selector`: one of [`VALUES`] or of `extra`.
pub fn value<'v>(selector: u8, extra: &[&'v str]) -> &'v str {
    let index = usize::from(selector) % (VALUES.len() + extra.len());
    match VALUES.get(index) {
        Some(value) => value,
        None => extra[index - VALUES.len()],
    }
}

/// The input, read a byte at a time.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    /// The next byte, `None` at the end.
    pub fn next(&mut self) -> Option<u8> {
        (!self.0.is_empty()).then(|| take(&mut self.0))
    }

    /// The next byte, 0 at the end.
    pub fn byte(&mut self) -> u8 {
        take(&mut self.0)
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A duration from the whole range ([`any_duration`]).
    pub fn duration(&mut self) -> Duration {
        any_duration(|| self.byte())
    }

    /// How far the clock jumps: an odd byte, a duration from the whole range; an even
    /// one, that many `steps`.
    pub fn jump(&mut self, step: Duration) -> Duration {
        match self.byte() {
            n if n & 1 == 1 => self.duration(),
            n => step.saturating_mul(u32::from(n)),
        }
    }
}
