//! Watches: registration (WATCH, UNWATCH), matching a change against the watches set on its
//! path and its ancestors under the permission filter, and queueing the events.
//!
//! Every watch is listed twice: in its connection (registration order, quotas) and in the
//! server's [`WatchIndex`] under the path it watches, so that a change costs a lookup per
//! ancestor of its path rather than a look at every watch of every connection (a host of
//! thousands of guests holds tens of thousands of watches, nearly all on other paths).

use std::collections::BTreeMap;

use xsio_xs_wire::{ErrorKind, Reply, path};

use super::conn::Outbox;
use super::flow::Hold;
use super::{ConnId, Server};
use crate::perms::Caller;
use crate::view::Change;

#[derive(Clone, Debug)]
pub(super) struct Watch {
    /// The resolved path (or the special name).
    pub(super) path: String,
    pub(super) token: String,
    /// Given relative: events report paths relative to the connection's home.
    pub(super) relative: bool,
    /// When it was registered, server-wide: a connection's watches are in this order, and
    /// events of one change reach a connection in it.
    pub(super) seq: u64,
}

/// The watches of every connection by watched path (the resolved path or the special name).
#[derive(Debug, Default)]
pub(super) struct WatchIndex {
    by_path: BTreeMap<String, Vec<(ConnId, u64)>>,
    next_seq: u64,
}

impl WatchIndex {
    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn insert(&mut self, conn_id: ConnId, watch: &Watch) {
        self.by_path
            .entry(watch.path.clone())
            .or_default()
            .push((conn_id, watch.seq));
    }

    fn remove(&mut self, conn_id: ConnId, watch: &Watch) {
        if let Some(watchers) = self.by_path.get_mut(&watch.path) {
            watchers.retain(|w| *w != (conn_id, watch.seq));
            if watchers.is_empty() {
                self.by_path.remove(&watch.path);
            }
        }
    }

    /// Appends the watches set exactly on `path` to `into`.
    fn collect(&self, path: &str, into: &mut Vec<(ConnId, u64)>) {
        if let Some(watchers) = self.by_path.get(path) {
            into.extend_from_slice(watchers);
        }
    }

    /// How many watches are listed (for the consistency check).
    fn len(&self) -> usize {
        self.by_path.values().map(Vec::len).sum()
    }
}

impl Server {
    /// WATCH: registers the watch; returns the reply and the watch's first event (the path
    /// as given, its token), to be queued behind the reply.
    pub(super) fn watch(
        &mut self,
        conn_id: ConnId,
        given: String,
        token: String,
    ) -> Result<(Reply, (String, String)), ErrorKind> {
        let mut watch = self.resolve_watch(conn_id, &given, token)?;
        let conn = &self.conns[&conn_id];
        if conn
            .watches
            .iter()
            .any(|w| w.path == watch.path && w.token == watch.token)
        {
            return Err(ErrorKind::Eexist);
        }
        self.check_watch_quota(conn)?;
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let first_event = (given, watch.token.clone());
        watch.seq = self.watch_index.next_seq();
        self.watch_index.insert(conn_id, &watch);
        conn.watches.push(watch);
        Ok((Reply::Watch, first_event))
    }

    /// UNWATCH: removes the watch with the same resolved path and token (ENOENT if none).
    pub(super) fn unwatch(
        &mut self,
        conn_id: ConnId,
        given: String,
        token: String,
    ) -> Result<Reply, ErrorKind> {
        // No watch can exist on a path WATCH refused, so Xen answers "no such watch".
        let watch = self
            .resolve_watch(conn_id, &given, token)
            .map_err(|_| ErrorKind::Enoent)?;
        let conn = self.conns.get_mut(&conn_id).expect("checked by the caller");
        let idx = conn
            .watches
            .iter()
            .position(|w| w.path == watch.path && w.token == watch.token)
            .ok_or(ErrorKind::Enoent)?;
        let removed = conn.watches.remove(idx);
        self.watch_index.remove(conn_id, &removed);
        Ok(Reply::Unwatch)
    }

    /// Forgets every watch of `conn_id` (RESET_WATCHES, a domain re-introduced, a connection
    /// gone).
    pub(super) fn clear_watches(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        for watch in conn.watches.drain(..) {
            self.watch_index.remove(conn_id, &watch);
        }
    }

    /// Whether the index lists exactly the connections' watches.
    pub(super) fn check_watch_index(&self) -> Result<(), String> {
        let mut listed = 0;
        for (conn_id, conn) in self.conns.iter() {
            for watch in &conn.watches {
                let found = self
                    .watch_index
                    .by_path
                    .get(&watch.path)
                    .is_some_and(|w| w.contains(&(conn_id, watch.seq)));
                if !found {
                    return Err(format!("watch on {} missing from the index", watch.path));
                }
                listed += 1;
            }
        }
        if listed != self.watch_index.len() {
            return Err(format!(
                "the watch index lists {} watches, the connections hold {listed}",
                self.watch_index.len()
            ));
        }
        Ok(())
    }

    /// The watches set on `path`, exactly or (unless `exact`) on one of its ancestors, in
    /// the order the fan-out used to visit them: by connection slot, then by registration.
    fn matching_watches(&mut self, path: &str, exact: bool) -> Vec<(ConnId, u64)> {
        let mut matched = std::mem::take(&mut self.matched);
        matched.clear();
        if exact {
            self.watch_index.collect(path, &mut matched);
        } else {
            let mut at = Some(path);
            while let Some(dir) = at {
                self.watch_index.collect(dir, &mut matched);
                at = path::parent(dir);
            }
        }
        matched.sort_unstable_by_key(|(conn_id, seq)| (conn_id.slot(), *seq));
        matched
    }

    fn resolve_watch(
        &self,
        conn_id: ConnId,
        given: &str,
        token: String,
    ) -> Result<Watch, ErrorKind> {
        let conn = &self.conns[&conn_id];
        if given.starts_with('@') {
            // A special path only has to be short enough.
            if given.len() > self.config.path_max {
                return Err(ErrorKind::Einval);
            }
            return Ok(Watch {
                path: given.to_owned(),
                token,
                relative: false,
                seq: 0,
            });
        }
        let resolved = path::resolve(given, &conn.home);
        path::check_node(&resolved, self.config.path_max).map_err(|_| ErrorKind::Einval)?;
        Ok(Watch {
            path: resolved,
            token,
            relative: !given.starts_with('/'),
            seq: 0,
        })
    }

    /// Queues the events `change` causes on every connection whose watches match and which
    /// may read the node (under its new or, for a permission change, its old permissions) or
    /// its parent, as xenstored decides: a guest watching a directory it may read hears of
    /// children it may not read, but never of anything below a directory hidden from it.
    ///
    /// `batch` is every change of the same request or commit: a removed node's parent is
    /// gone from the tree by then, and the permissions it had are in its own removal record.
    ///
    /// Each event is encoded straight into its connection's output (this runs for every
    /// change): nothing is copied on the way.
    pub(super) fn fire(&mut self, change: &Change, batch: &[Change]) {
        let matched = self.matching_watches(&change.path, change.exact);
        if matched.is_empty() {
            self.matched = matched;
            return;
        }
        let parent_perms = path::parent(&change.path).and_then(|parent| {
            self.tree.get(parent).map(|n| n.perms()).or_else(|| {
                batch
                    .iter()
                    .rev()
                    .find(|c| c.path == parent)
                    .map(|c| &c.perms)
            })
        });
        let source = self.answering;
        let hold = source.map_or(Hold::Nothing, Hold::Source);
        let timeout = self.config.watch_event_timeout;
        let now = self.last_now;
        let mut touched = std::mem::take(&mut self.fired);
        for group in matched.chunk_by(|a, b| a.0 == b.0) {
            let conn_id = group[0].0;
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                continue;
            };
            // The access rule looks at a target only for unprivileged callers.
            let target = if conn.privileged {
                None
            } else {
                self.domains.get(&conn.domid).and_then(|d| d.target)
            };
            let caller = Caller {
                domid: conn.domid,
                privileged: conn.privileged,
                target,
            };
            let can_read = change.perms.granted(caller).read
                || change
                    .old_perms
                    .as_ref()
                    .is_some_and(|p| p.granted(caller).read)
                || parent_perms.is_some_and(|p| p.granted(caller).read);
            if !can_read {
                continue;
            }
            // Overflow means the event never expires; dom0's events never do.
            let expires = (!conn.privileged)
                .then(|| xsio_core::deadline(now, timeout))
                .flatten();
            let mut queued = 0;
            for (_, seq) in group {
                let Ok(at) = conn.watches.binary_search_by_key(seq, |w| w.seq) else {
                    continue;
                };
                let watch = &conn.watches[at];
                let reported = match change.path.strip_prefix(conn.home.as_str()) {
                    Some(rest) if watch.relative && rest.starts_with('/') => &rest[1..],
                    _ => change.path.as_str(),
                };
                let outbox = Outbox {
                    out: &mut conn.out,
                    queued: &mut conn.queued,
                    paused: conn.paused,
                };
                let token = &watch.token;
                if outbox.push(conn_id, &mut self.ready, hold, expires, |out| {
                    Reply::encode_watch_event(reported, token, out)
                }) {
                    queued += 1;
                }
            }
            if queued > 0 {
                touched.push((conn_id, queued));
            }
        }
        for (conn_id, queued) in touched.drain(..) {
            if let Some(source) = source {
                for _ in 0..queued {
                    self.hold_source(source);
                }
            }
            self.charge(conn_id);
        }
        self.fired = touched;
        self.matched = matched;
    }

    /// Queues `@introduceDomain` or `@releaseDomain` for the watchers allowed to hear it.
    pub(super) fn fire_special(&mut self, name: &str) {
        let perms = self.special_perms.get(name).cloned();
        let matched = self.matching_watches(name, true);
        let mut deliveries = Vec::new();
        for (conn_id, seq) in &matched {
            let Some(conn) = self.conns.get(conn_id) else {
                continue;
            };
            let caller = self.caller(conn);
            if !perms.as_ref().is_some_and(|p| p.granted(caller).read) {
                continue;
            }
            if let Ok(at) = conn.watches.binary_search_by_key(seq, |w| w.seq) {
                deliveries.push((*conn_id, conn.watches[at].token.clone()));
            }
        }
        self.matched = matched;
        for (conn_id, token) in deliveries {
            self.queue_event(conn_id, name, &token);
        }
    }

    /// Queues one event for `conn_id`, attributed to the request being answered (if its
    /// events hold it). An event too large for one message is dropped, as xenstored drops
    /// it. For an unprivileged receiver the event expires after the watch-event timeout.
    pub(super) fn queue_event(&mut self, conn_id: ConnId, path: &str, token: &str) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let expires = if conn.privileged {
            None
        } else {
            // Overflow means the event never expires.
            xsio_core::deadline(self.last_now, self.config.watch_event_timeout)
        };
        let hold = self.answering.map_or(Hold::Nothing, Hold::Source);
        self.enqueue(conn_id, hold, expires, |out| {
            Reply::encode_watch_event(path, token, out)
        });
    }
}
