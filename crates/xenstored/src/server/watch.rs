//! Watches: registration (WATCH, UNWATCH), matching a change against every connection's
//! watches under the permission filter, and queueing the events.

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
}

impl Server {
    /// WATCH: registers the watch; its first event (the path as given) goes to `after`, to be
    /// queued behind the reply.
    pub(super) fn watch(
        &mut self,
        conn_id: ConnId,
        given: String,
        token: String,
        after: &mut Vec<(String, String)>,
    ) -> Result<Reply, ErrorKind> {
        let watch = self.resolve_watch(conn_id, &given, token)?;
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
        after.push((given, watch.token.clone()));
        conn.watches.push(watch);
        Ok(Reply::Watch)
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
        conn.watches.remove(idx);
        Ok(Reply::Unwatch)
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
            });
        }
        let resolved = path::resolve(given, &conn.home);
        path::check_node(&resolved, self.config.path_max).map_err(|_| ErrorKind::Einval)?;
        Ok(Watch {
            path: resolved,
            token,
            relative: !given.starts_with('/'),
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
        for (conn_id, conn) in self.conns.iter_mut() {
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
            for watch in &conn.watches {
                let matches = if change.exact {
                    watch.path == change.path
                } else {
                    path::is_at_or_below(&change.path, &watch.path)
                };
                if !matches {
                    continue;
                }
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
    }

    /// Queues `@introduceDomain` or `@releaseDomain` for the watchers allowed to hear it.
    pub(super) fn fire_special(&mut self, name: &str) {
        let perms = self.special_perms.get(name).cloned();
        let mut deliveries = Vec::new();
        for (conn_id, conn) in self.conns.iter() {
            let caller = self.caller(conn);
            if !perms.as_ref().is_some_and(|p| p.granted(caller).read) {
                continue;
            }
            for watch in &conn.watches {
                if watch.path == name {
                    deliveries.push((conn_id, watch.token.clone()));
                }
            }
        }
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
