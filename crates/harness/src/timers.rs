//! The machines' deadlines, kept sorted: finding the due timers, or the earliest one, costs
//! a look at the front rather than a question to every machine (a simulated host of ten
//! thousand guests runs forty thousand machines, and asks after every step).

use std::collections::BTreeSet;
use std::time::Instant;

/// Each machine's deadline as last read, and the same sorted. A machine that may have
/// changed since (it was handed an input, or lent out with `actor_mut`) is stale until it
/// is read again.
///
/// Kept only once [`Timers::enable`] was called (by the first `fire_due_timers`): a model
/// checker, which clones the harness in every state and fires timers one by one, pays
/// nothing for it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    enabled: bool,
    at: Vec<Option<Instant>>,
    sorted: BTreeSet<(Instant, usize)>,
    /// Stale machines, each once (`flagged` says which are listed).
    stale: Vec<usize>,
    flagged: Vec<bool>,
}

impl Timers {
    /// Whether the deadlines are kept.
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Starts keeping the deadlines of `machines` machines (all stale until read).
    pub(crate) fn enable(&mut self, machines: usize) {
        if !self.enabled {
            self.enabled = true;
            for i in 0..machines {
                self.mark_stale(i);
            }
        }
    }

    /// Records machine `index`'s deadline.
    pub(crate) fn set(&mut self, index: usize, deadline: Option<Instant>) {
        if !self.enabled {
            return;
        }
        if self.at.len() <= index {
            self.at.resize(index + 1, None);
        }
        if let Some(old) = self.at[index] {
            self.sorted.remove(&(old, index));
        }
        self.at[index] = deadline;
        if let Some(at) = deadline {
            self.sorted.insert((at, index));
        }
    }

    /// Machine `index` may have a new deadline that was not read yet.
    pub(crate) fn mark_stale(&mut self, index: usize) {
        if !self.enabled {
            return;
        }
        if self.flagged.len() <= index {
            self.flagged.resize(index + 1, false);
        }
        if !self.flagged[index] {
            self.flagged[index] = true;
            self.stale.push(index);
        }
    }

    /// The machines marked stale since the last call.
    pub(crate) fn take_stale(&mut self) -> Vec<usize> {
        for &i in &self.stale {
            self.flagged[i] = false;
        }
        std::mem::take(&mut self.stale)
    }

    /// The stale machines (their deadlines must be asked for).
    pub(crate) fn stale(&self) -> &[usize] {
        &self.stale
    }

    /// The earliest recorded deadline of a machine that is not stale.
    pub(crate) fn earliest_fresh(&self) -> Option<Instant> {
        self.sorted
            .iter()
            .find(|(_, i)| !self.flagged.get(*i).copied().unwrap_or(false))
            .map(|(at, _)| *at)
    }

    /// The machines whose recorded deadline is at or before `now`, by index.
    pub(crate) fn due(&self, now: Instant) -> Vec<usize> {
        let mut due: Vec<usize> = self
            .sorted
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, index)| *index)
            .collect();
        due.sort_unstable();
        due
    }
}
