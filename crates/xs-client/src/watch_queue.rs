//! Bounded per-watch event queues that never lose an event silently: the one rule every
//! driver uses to hold watch events until their consumer takes them.
//!
//! A driver must drain the client machine at once (its replies must keep flowing), but a
//! watch's consumer may be slow. Queueing without a bound lets a stalled consumer grow
//! memory; dropping events when full loses them silently (a consumer never learns that its
//! view is stale); waiting for the consumer stalls every reply on the connection. The rule
//! here: each watch queues its events up to a bound; one more replaces everything queued by
//! an [`Overflow`] item, which tells the consumer how many events it stands for and that it
//! must re-read what the watch covers. Xenstore events carry no value, only "this path
//! changed", so a re-read after the marker sees everything the lost events announced.
//!
//! Events that arrive after the marker queue behind it again (up to the bound); a second
//! overflow before the consumer took the marker folds into it, since the consumer's re-read
//! will come after them too.
//!
//! ```
//! use xsio_core::OpId;
//! use xsio_xs_client::{WatchEvent, WatchItem, WatchQueue};
//!
//! let watch = OpId::from_raw(1);
//! let event = |path: &str| WatchEvent { watch, path: path.into(), token: "t".into() };
//! let mut queue = WatchQueue::new(watch, "/vm", "t", 2);
//! for (seq, path) in ["/vm/a", "/vm/b", "/vm/c", "/vm/d"].into_iter().enumerate() {
//!     let _replaced = queue.push(seq as u64, event(path));
//! }
//! // Three events overflowed the bound of 2: one marker stands for them, then "/vm/d".
//! let Some(WatchItem::Overflow(overflow)) = queue.pop() else { panic!() };
//! assert_eq!((overflow.path.as_str(), overflow.lost), ("/vm", 3));
//! assert_eq!(queue.pop(), Some(WatchItem::Event(event("/vm/d"))));
//! assert_eq!(queue.pop(), None);
//! ```

use std::collections::{BTreeMap, VecDeque};

use xsio_core::OpId;

use crate::types::WatchEvent;

/// What a watch's consumer is handed: an event, or the explicit sign that events were lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// A watch event.
    Event(WatchEvent),
    /// More events came than the queue holds: they are gone. Re-read what the watch covers.
    Overflow(Overflow),
}

impl WatchItem {
    /// The watch this item belongs to.
    pub fn watch(&self) -> OpId {
        match self {
            WatchItem::Event(event) => event.watch,
            WatchItem::Overflow(overflow) => overflow.watch,
        }
    }

    /// The watch's token.
    pub fn token(&self) -> &str {
        match self {
            WatchItem::Event(event) => &event.token,
            WatchItem::Overflow(overflow) => &overflow.token,
        }
    }

    /// The path to look at: the path that changed, or for an overflow the watched path
    /// (everything under it may have changed).
    pub fn path(&self) -> &str {
        match self {
            WatchItem::Event(event) => &event.path,
            WatchItem::Overflow(overflow) => &overflow.path,
        }
    }
}

/// Events of one watch were lost because its consumer did not keep up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overflow {
    /// The watch.
    pub watch: OpId,
    /// The watched path: re-read it (and what lies under it).
    pub path: String,
    /// The watch's token.
    pub token: String,
    /// How many events this marker replaced.
    pub lost: u64,
}

/// The events of one watch waiting for its consumer, at most `bound` of them plus one
/// [`Overflow`] marker (see the [module docs](self)).
///
/// Each push carries a sequence number from the driver (increasing over the connection), so
/// that several queues can be merged in arrival order ([`WatchQueues`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchQueue {
    watch: OpId,
    path: String,
    token: String,
    bound: usize,
    /// The marker: the sequence number of the first event it replaced, and how many.
    overflow: Option<(u64, u64)>,
    events: VecDeque<(u64, WatchEvent)>,
}

impl WatchQueue {
    /// An empty queue for watch `watch` on `path` with `token`, holding at most `bound`
    /// events (0: every event becomes an overflow).
    pub fn new(watch: OpId, path: &str, token: &str, bound: usize) -> WatchQueue {
        WatchQueue {
            watch,
            path: path.to_owned(),
            token: token.to_owned(),
            bound,
            overflow: None,
            events: VecDeque::new(),
        }
    }

    /// Queues `event` (arrived as number `seq`); when `bound` events already wait, they and
    /// it are replaced by the overflow marker. Returns how many events that replaced (0
    /// when `event` was queued).
    pub fn push(&mut self, seq: u64, event: WatchEvent) -> u64 {
        if self.events.len() < self.bound {
            self.events.push_back((seq, event));
            return 0;
        }
        let first = self.events.front().map_or(seq, |(s, _)| *s);
        let replaced = self.events.len() as u64 + 1;
        self.events.clear();
        self.overflow = Some(match self.overflow {
            Some((at, lost)) => (at, lost.saturating_add(replaced)),
            None => (first, replaced),
        });
        replaced
    }

    /// The next item: the overflow marker first (it stands for events older than any still
    /// queued), then the events in order.
    pub fn pop(&mut self) -> Option<WatchItem> {
        if let Some((_, lost)) = self.overflow.take() {
            return Some(WatchItem::Overflow(Overflow {
                watch: self.watch,
                path: self.path.clone(),
                token: self.token.clone(),
                lost,
            }));
        }
        self.events
            .pop_front()
            .map(|(_, event)| WatchItem::Event(event))
    }

    /// The sequence number of the item [`pop`](WatchQueue::pop) would return.
    pub fn front_seq(&self) -> Option<u64> {
        match self.overflow {
            Some((seq, _)) => Some(seq),
            None => self.events.front().map(|(seq, _)| *seq),
        }
    }

    /// Items waiting (the marker counts as one).
    pub fn len(&self) -> usize {
        self.events.len() + usize::from(self.overflow.is_some())
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The watch.
    pub fn watch(&self) -> OpId {
        self.watch
    }
}

/// The queues of every watch of a connection, merged in arrival order: what a driver with
/// one event stream for all watches keeps (the blocking client's `next_event`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchQueues {
    bound: usize,
    next_seq: u64,
    queues: BTreeMap<OpId, WatchQueue>,
    lost: u64,
}

impl WatchQueues {
    /// No queues yet; each watch's will hold `bound` events.
    pub fn new(bound: usize) -> WatchQueues {
        WatchQueues {
            bound,
            ..WatchQueues::default()
        }
    }

    /// Queues `event` behind the older events of its watch. `path` is the watched path,
    /// used for the overflow marker when the watch has no queue yet.
    pub fn push(&mut self, path: &str, event: WatchEvent) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let bound = self.bound;
        let queue = self
            .queues
            .entry(event.watch)
            .or_insert_with(|| WatchQueue::new(event.watch, path, &event.token, bound));
        let replaced = queue.push(seq, event);
        self.lost = self.lost.saturating_add(replaced);
    }

    /// The oldest item over every watch.
    pub fn pop(&mut self) -> Option<WatchItem> {
        let (&watch, _) = self
            .queues
            .iter()
            .filter_map(|(watch, q)| q.front_seq().map(|seq| (watch, seq)))
            .min_by_key(|(_, seq)| *seq)?;
        let queue = self.queues.get_mut(&watch)?;
        let item = queue.pop();
        if queue.is_empty() {
            self.queues.remove(&watch);
        }
        item
    }

    /// Forgets watch `watch`'s queued items (it was removed).
    pub fn forget(&mut self, watch: OpId) {
        self.queues.remove(&watch);
    }

    /// Items waiting over every watch.
    pub fn len(&self) -> usize {
        self.queues.values().map(WatchQueue::len).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Events replaced by overflow markers so far (each also reported in its marker).
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn event(watch: u64, n: u32) -> WatchEvent {
        WatchEvent {
            watch: OpId::from_raw(watch),
            path: format!("/w{watch}/{n}"),
            token: format!("t{watch}"),
        }
    }

    proptest! {
        /// Against a model that keeps everything: every event pushed is either handed
        /// over, in order, or counted by a marker handed over no later than any event
        /// that came after it; a watch never holds more than `bound` events plus one
        /// marker; and other watches' events are never touched by one watch's overflow.
        #[test]
        fn no_event_is_lost_silently(
            bound in 0usize..5,
            steps in proptest::collection::vec((0u64..3, any::<bool>()), 0..200),
        ) {
            let mut queues = WatchQueues::new(bound);
            // Per watch: events pushed, in order; events handed over; lost by markers.
            let mut pushed: BTreeMap<u64, Vec<WatchEvent>> = BTreeMap::new();
            let mut handed: BTreeMap<u64, Vec<WatchEvent>> = BTreeMap::new();
            let mut lost: BTreeMap<u64, u64> = BTreeMap::new();
            let mut n = 0;
            for (watch, is_push) in steps {
                if is_push {
                    let e = event(watch, n);
                    n += 1;
                    pushed.entry(watch).or_default().push(e.clone());
                    queues.push(&format!("/w{watch}"), e);
                } else if let Some(item) = queues.pop() {
                    let w = item.watch().get();
                    match item {
                        WatchItem::Event(e) => {
                            // In order, and newer than anything handed or lost before.
                            let index = pushed[&w].iter().position(|p| *p == e).unwrap();
                            let seen = handed.get(&w).map_or(0, Vec::len) as u64
                                + lost.get(&w).copied().unwrap_or(0);
                            prop_assert_eq!(index as u64, seen);
                            handed.entry(w).or_default().push(e);
                        }
                        WatchItem::Overflow(o) => {
                            prop_assert_eq!(&o.path, &format!("/w{w}"));
                            prop_assert!(o.lost > bound as u64);
                            *lost.entry(w).or_default() += o.lost;
                        }
                    }
                }
                for queue in queues.queues.values() {
                    prop_assert!(queue.events.len() <= bound);
                }
            }
            // Drain: then everything pushed is accounted for exactly once.
            while let Some(item) = queues.pop() {
                let w = item.watch().get();
                match item {
                    WatchItem::Event(e) => handed.entry(w).or_default().push(e),
                    WatchItem::Overflow(o) => *lost.entry(w).or_default() += o.lost,
                }
            }
            prop_assert!(queues.is_empty());
            let mut total_lost = 0;
            for (w, events) in &pushed {
                let got = handed.get(w).map_or(0, Vec::len) as u64;
                let gone = lost.get(w).copied().unwrap_or(0);
                prop_assert_eq!(got + gone, events.len() as u64, "watch {}", w);
                // What was handed over is the tail-consistent subsequence, in order.
                let handed_events = handed.get(w).cloned().unwrap_or_default();
                let mut it = events.iter();
                for e in &handed_events {
                    prop_assert!(it.any(|p| p == e), "out of order on watch {}", w);
                }
                total_lost += gone;
            }
            prop_assert_eq!(queues.lost(), total_lost);
        }
    }

    #[test]
    fn a_second_overflow_folds_into_the_unread_marker() {
        let watch = OpId::from_raw(7);
        let mut queue = WatchQueue::new(watch, "/p", "t", 1);
        for seq in 0..5 {
            let _ = queue.push(
                seq,
                WatchEvent {
                    watch,
                    path: format!("/p/{seq}"),
                    token: "t".into(),
                },
            );
        }
        // 0 queued; 1 overflows (0, 1 lost); 2 queued; 3 overflows (2, 3 lost); 4 queued.
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.front_seq(), Some(0));
        let Some(WatchItem::Overflow(overflow)) = queue.pop() else {
            panic!("marker first")
        };
        assert_eq!(overflow.lost, 4);
        assert_eq!(
            queue.pop().map(|i| i.path().to_owned()),
            Some("/p/4".into())
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn queues_merge_in_arrival_order() {
        let mut queues = WatchQueues::new(8);
        queues.push("/w1", event(1, 0));
        queues.push("/w2", event(2, 1));
        queues.push("/w1", event(1, 2));
        let order: Vec<String> = std::iter::from_fn(|| queues.pop())
            .map(|i| i.path().to_owned())
            .collect();
        assert_eq!(order, ["/w1/0", "/w2/1", "/w1/2"]);
        queues.push("/w1", event(1, 3));
        queues.forget(OpId::from_raw(1));
        assert_eq!(queues.pop(), None);
    }
}
