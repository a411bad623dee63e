//! The transactions: open, read what the writes depend on, write, commit; a conflict
//! starts the transaction again from fresh reads, up to `Config::transaction_attempts`.
//! And the prune: a node, then each ancestor left empty, inside the open transaction.

use std::collections::VecDeque;
use std::time::Instant;

use xsio_core::OpId;
use xsio_ops::{
    Access, InputError, OpError, OpErrorKind, Perm, Reply, TxnOp, XsOp, expect_children,
    expect_committed, expect_done, expect_txn_started, expect_value, split_checked,
};
use xsio_xenbus::XenbusState;

use crate::device::{Force, domain_home};
use crate::io::Purpose;
use crate::op::{
    AddSpec, AfterAbort, DeviceOp, Failure, Job, Phase, Prune, PruneStep, TxStep, Txn,
};
use crate::outcome::{BackendEnd, Completion, DeviceEvent, Removal, TxnKind, WaitFor};

impl DeviceOp {
    /// Opens a transaction of `kind` (attempt number `attempts`).
    pub(crate) fn begin_txn(&mut self, kind: TxnKind, attempts: u32) {
        self.next_epoch();
        self.pruned_paths.clear();
        self.phase = Phase::Txn(Txn {
            kind,
            id: None,
            attempts,
            step: TxStep::Starting,
        });
        self.request(Purpose::TxnStart, XsOp::TxnStart);
    }

    fn txn(&self) -> Option<&Txn> {
        match &self.phase {
            Phase::Txn(txn) => Some(txn),
            _ => None,
        }
    }

    fn txn_mut(&mut self) -> Option<&mut Txn> {
        match &mut self.phase {
            Phase::Txn(txn) => Some(txn),
            _ => None,
        }
    }

    /// An answer to a transaction step.
    pub(crate) fn on_txn_reply(
        &mut self,
        now: Instant,
        id: OpId,
        purpose: Purpose,
        current: bool,
        result: Result<Reply, OpError>,
    ) -> Result<(), InputError> {
        let live = current && !self.is_done() && self.txn().is_some();
        match purpose {
            Purpose::TxnStart => {
                let checked = expect_txn_started(id, result);
                self.txn_step(
                    now,
                    live,
                    checked,
                    "opening a transaction",
                    |me, now, txn| me.on_txn_started(now, txn),
                )
            }
            Purpose::TxnRead => {
                let checked = expect_value(id, result);
                self.txn_step(
                    now,
                    live,
                    checked,
                    "reading inside a transaction",
                    |me, now, value| me.on_txn_read(now, value),
                )
            }
            Purpose::TxnDirectory => {
                let checked = expect_children(id, result);
                self.txn_step(
                    now,
                    live,
                    checked,
                    "listing inside a transaction",
                    |me, now, children| me.on_prune_listing(now, children),
                )
            }
            Purpose::TxnApply => {
                let checked = expect_done(id, result);
                self.txn_step(
                    now,
                    live,
                    checked,
                    "writing inside a transaction",
                    |me, now, ()| me.on_txn_applied(now),
                )
            }
            Purpose::TxnEnd { commit: true } => {
                let checked = expect_committed(id, result);
                if !live {
                    return checked.map(drop);
                }
                match checked {
                    Ok(Ok(())) => self.on_committed(now),
                    Ok(Err(error)) if error.kind == OpErrorKind::Conflict => self.on_conflict(now),
                    Ok(Err(error)) => {
                        self.fail(now, Failure::xs("committing a transaction", error))
                    }
                    Err(wrong) => {
                        let error = OpError::new(OpErrorKind::Invalid, wrong.to_string());
                        self.fail(now, Failure::xs("committing a transaction", error));
                        return Err(wrong);
                    }
                }
                Ok(())
            }
            Purpose::TxnEnd { commit: false } => {
                // The transaction is gone whatever the answer says.
                let checked = expect_done(id, result);
                if live {
                    if let Some(Txn {
                        step: TxStep::Aborting(then),
                        ..
                    }) = self.txn().cloned()
                    {
                        self.after_abort(now, then);
                    }
                }
                checked.map(drop)
            }
            _ => Ok(()),
        }
    }

    /// Goes on after a checked answer inside the open transaction; an error aborts it.
    fn txn_step<T>(
        &mut self,
        now: Instant,
        live: bool,
        checked: Result<Result<T, OpError>, InputError>,
        step: &'static str,
        on_ok: impl FnOnce(&mut Self, Instant, T),
    ) -> Result<(), InputError> {
        if !live {
            return checked.map(drop);
        }
        let (outcome, refused) = split_checked(checked);
        match outcome {
            Ok(value) => on_ok(self, now, value),
            Err(error) => self.abort_or_fail(now, Failure::xs(step, error)),
        }
        refused
    }

    /// Ends the transaction without writing, then `then`.
    fn abort_then(&mut self, then: AfterAbort) {
        let Some(txn) = self.txn().and_then(|t| t.id) else {
            return;
        };
        // Answers to the steps still in flight are stale from here on.
        self.next_epoch();
        self.request(
            Purpose::TxnEnd { commit: false },
            XsOp::TxnEnd { txn, commit: false },
        );
        if let Some(t) = self.txn_mut() {
            t.step = TxStep::Aborting(then);
        }
    }

    fn abort_or_fail(&mut self, now: Instant, failure: Failure) {
        if self.txn().is_some_and(|t| t.id.is_some()) {
            self.abort_then(AfterAbort::Fail(failure));
        } else {
            self.fail(now, failure);
        }
    }

    fn after_abort(&mut self, now: Instant, then: AfterAbort) {
        match then {
            AfterAbort::BackendGone => {
                self.event(DeviceEvent::BackendGone);
                self.finish_remove(now, Ok(BackendEnd::Gone));
            }
            AfterAbort::AlreadyClosed => {
                self.event(DeviceEvent::Bodged { wrote: false });
                self.after_backend_closed(now, BackendEnd::Closed);
            }
            AfterAbort::Fail(failure) => self.fail(now, failure),
        }
    }

    fn on_txn_started(&mut self, _now: Instant, id: xsio_ops::TxnId) {
        let Some(txn) = self.txn_mut() else {
            return;
        };
        txn.id = Some(id);
        let kind = txn.kind;
        match kind {
            TxnKind::RemovalRequest | TxnKind::Bodge => {
                txn.step = TxStep::Reading;
                let path = self.device.backend_key("state");
                self.request(Purpose::TxnRead, XsOp::TxnRead { txn: id, path });
            }
            TxnKind::Create => {
                txn.step = TxStep::Reading;
                let path = self.device.toolstack_path();
                self.request(Purpose::TxnRead, XsOp::TxnRead { txn: id, path });
            }
            TxnKind::Prune => {
                let targets = self.prune_targets();
                self.start_prune(targets);
            }
        }
    }

    fn on_txn_read(&mut self, now: Instant, value: Option<String>) {
        let Some(txn) = self.txn().cloned() else {
            return;
        };
        if let TxStep::Pruning(prune) = txn.step {
            self.on_prune_value(now, prune, value);
            return;
        }
        let state = value
            .as_deref()
            .map(|v| XenbusState::parse(v).unwrap_or(XenbusState::Unknown));
        let be_state = self.device.backend_key("state");
        match (txn.kind, state) {
            // The backend is gone already (its domain died, QEMU exited cleanly): nothing
            // to close (libxl since 2018).
            (TxnKind::RemovalRequest | TxnKind::Bodge, None) => {
                self.abort_then(AfterAbort::BackendGone);
            }
            (TxnKind::RemovalRequest, Some(state)) => {
                self.read_state = state;
                let mut ops = vec![TxnOp::write(self.device.backend_key("online"), "0")];
                // Never Closing over Closed: a backend already at 6 would not answer again.
                if state != XenbusState::Closed {
                    ops.push(TxnOp::write(be_state, XenbusState::Closing.wire()));
                }
                self.apply(ops);
            }
            // The bodge's read and write are one real transaction (libxl reads and writes
            // outside the transaction it loops on).
            (TxnKind::Bodge, Some(XenbusState::Closed)) => {
                self.abort_then(AfterAbort::AlreadyClosed);
            }
            (TxnKind::Bodge, Some(_)) => {
                self.apply(vec![TxnOp::write(be_state, XenbusState::Closed.wire())]);
            }
            (TxnKind::Create, Some(_)) => {
                let path = self.device.toolstack_path();
                self.abort_then(AfterAbort::Fail(Failure::Exists(path)));
            }
            (TxnKind::Create, None) => {
                let ops = match &self.job {
                    Job::Add(spec) => create_ops(spec, self.config.my_domid),
                    Job::Remove => Vec::new(),
                };
                self.apply(ops);
            }
            (TxnKind::Prune, _) => {}
        }
    }

    /// Issues every step at once (a connection executes them in order).
    fn apply(&mut self, ops: Vec<TxnOp>) {
        let Some(txn) = self.txn().and_then(|t| t.id) else {
            return;
        };
        let pending = ops.len();
        for op in ops {
            self.request(Purpose::TxnApply, XsOp::TxnApply { txn, op });
        }
        if let Some(t) = self.txn_mut() {
            t.step = TxStep::Applying { pending };
        }
        if pending == 0 {
            self.after_applying();
        }
    }

    fn on_txn_applied(&mut self, now: Instant) {
        let Some(txn) = self.txn_mut() else {
            return;
        };
        match &mut txn.step {
            TxStep::Applying { pending } => {
                *pending = pending.saturating_sub(1);
                if *pending == 0 {
                    self.after_applying();
                }
            }
            TxStep::Pruning(prune) => {
                let prune = prune.clone();
                self.climb(now, prune);
            }
            _ => {}
        }
    }

    fn after_applying(&mut self) {
        let kind = self.txn().map(|t| t.kind);
        if kind == Some(TxnKind::RemovalRequest) && self.force == Force::On {
            // With force the frontend goes in the same transaction: a dead guest cannot
            // block the removal, and the backend sees its frontend vanish and closes.
            let d = &self.device;
            let target = (d.frontend_path(), domain_home(d.frontend_domid));
            self.start_prune(vec![target]);
        } else {
            self.commit();
        }
    }

    fn commit(&mut self) {
        let Some(txn) = self.txn().and_then(|t| t.id) else {
            return;
        };
        self.request(
            Purpose::TxnEnd { commit: true },
            XsOp::TxnEnd { txn, commit: true },
        );
        if let Some(t) = self.txn_mut() {
            t.step = TxStep::Committing;
        }
    }

    fn on_conflict(&mut self, now: Instant) {
        let Some(txn) = self.txn().cloned() else {
            return;
        };
        if txn.attempts >= self.config.transaction_attempts {
            let failure = Failure::Conflicts {
                txn: txn.kind,
                attempts: txn.attempts,
            };
            self.fail(now, failure);
            return;
        }
        self.event(DeviceEvent::Conflict {
            txn: txn.kind,
            attempts: txn.attempts,
        });
        // From the top, with fresh reads: the decisions ("already Closed?") are taken again.
        self.begin_txn(txn.kind, txn.attempts.saturating_add(1));
    }

    fn on_committed(&mut self, now: Instant) {
        let Some(txn) = self.txn().cloned() else {
            return;
        };
        match txn.kind {
            TxnKind::RemovalRequest => {
                self.event(DeviceEvent::RemovalRequested {
                    backend: self.read_state,
                    force: self.force,
                });
                self.enter_wait(now, WaitFor::BackendClosed);
            }
            TxnKind::Bodge => {
                self.event(DeviceEvent::Bodged { wrote: true });
                self.after_backend_closed(now, BackendEnd::Bodged);
            }
            TxnKind::Create => {
                self.event(DeviceEvent::Created);
                if self.device.qemu_backed() {
                    // QEMU goes to Connected by itself and runs no script.
                    self.hotplug(now);
                } else {
                    self.enter_wait(now, WaitFor::BackendUp);
                }
            }
            TxnKind::Prune => {
                let paths = std::mem::take(&mut self.pruned_paths);
                self.event(DeviceEvent::Pruned { paths });
                let result = self.pending.take().unwrap_or(Ok(BackendEnd::Closed));
                let removal = Removal {
                    result: self.removal_result(result),
                    pruned: true,
                };
                self.complete(Completion::Removed(removal));
            }
        }
    }

    // ---- the prune -----------------------------------------------------------------------

    /// Removes each target, then its ancestors left empty (libxl's
    /// `libxl__xs_path_cleanup`), stopping at the first ancestor with a value or children,
    /// and never at or above the target's floor (a domain's home, `/libxl`).
    fn start_prune(&mut self, targets: Vec<(String, String)>) {
        let mut targets: VecDeque<(String, String)> = targets.into();
        let Some((path, floor)) = targets.pop_front() else {
            self.commit();
            return;
        };
        self.remove_node(Prune {
            targets,
            current: path,
            floor,
            step: PruneStep::Removing,
        });
    }

    fn remove_node(&mut self, prune: Prune) {
        let Some(txn) = self.txn().and_then(|t| t.id) else {
            return;
        };
        let op = TxnOp::Rm {
            path: prune.current.clone(),
        };
        if self.txn().is_some_and(|t| t.kind == TxnKind::Prune) {
            self.pruned_paths.push(prune.current.clone());
        }
        self.request(Purpose::TxnApply, XsOp::TxnApply { txn, op });
        self.set_prune(Prune {
            step: PruneStep::Removing,
            ..prune
        });
    }

    fn set_prune(&mut self, prune: Prune) {
        if let Some(t) = self.txn_mut() {
            t.step = TxStep::Pruning(prune);
        }
    }

    /// After a removal: the parent is next, if it is below the floor.
    fn climb(&mut self, _now: Instant, prune: Prune) {
        let parent = parent_of(&prune.current);
        let below_floor = parent
            .strip_prefix(prune.floor.as_str())
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
        if !below_floor {
            self.next_target(prune.targets);
            return;
        }
        let Some(txn) = self.txn().and_then(|t| t.id) else {
            return;
        };
        let path = parent.to_owned();
        self.request(
            Purpose::TxnRead,
            XsOp::TxnRead {
                txn,
                path: path.clone(),
            },
        );
        self.set_prune(Prune {
            current: path,
            step: PruneStep::ReadingValue,
            ..prune
        });
    }

    fn next_target(&mut self, targets: VecDeque<(String, String)>) {
        self.start_prune(targets.into());
    }

    fn on_prune_value(&mut self, _now: Instant, prune: Prune, value: Option<String>) {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            self.next_target(prune.targets);
            return;
        }
        let Some(txn) = self.txn().and_then(|t| t.id) else {
            return;
        };
        let path = prune.current.clone();
        self.request(Purpose::TxnDirectory, XsOp::TxnDirectory { txn, path });
        self.set_prune(Prune {
            step: PruneStep::Listing,
            ..prune
        });
    }

    fn on_prune_listing(&mut self, _now: Instant, children: Option<Vec<String>>) {
        let Some(Txn {
            step: TxStep::Pruning(prune),
            ..
        }) = self.txn().cloned()
        else {
            return;
        };
        if children.is_some_and(|c| !c.is_empty()) {
            self.next_target(prune.targets);
        } else {
            self.remove_node(prune);
        }
    }
}

/// The parent of an absolute path (`/` for a top-level node).
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(index) => &path[..index],
    }
}

/// The create transaction's steps: leftovers removed, both directories made with their
/// permissions and keys (xenbus's `DeviceAreas::create`), and the toolstack's private copy
/// (`frontend`, `backend`, and the backend keys), readable by the toolstack only.
fn create_ops(spec: &AddSpec, toolstack_domid: u32) -> Vec<TxnOp> {
    let d = &spec.device;
    let entry = d.toolstack_path();
    let (fe, be) = (d.frontend_path(), d.backend_path());
    let mut ops = vec![
        TxnOp::Rm {
            path: entry.clone(),
        },
        TxnOp::Rm { path: fe.clone() },
        TxnOp::Rm { path: be.clone() },
    ];
    ops.extend(
        d.areas()
            .create(&spec.backend_keys, &spec.frontend_keys)
            .ops,
    );
    ops.push(TxnOp::Mkdir {
        path: entry.clone(),
    });
    ops.push(TxnOp::SetPerms {
        path: entry.clone(),
        perms: vec![Perm::new(Access::None, toolstack_domid)],
    });
    let generic = [
        ("frontend".to_owned(), fe.clone()),
        ("frontend-id".to_owned(), d.frontend_domid.to_string()),
        ("online".to_owned(), "1".to_owned()),
        (
            "state".to_owned(),
            XenbusState::Initialising.wire().to_owned(),
        ),
    ];
    ops.push(TxnOp::write(format!("{entry}/frontend"), fe));
    ops.push(TxnOp::write(format!("{entry}/backend"), be));
    for (key, value) in generic.iter().skip(1).chain(&spec.backend_keys) {
        ops.push(TxnOp::write(format!("{entry}/{key}"), value.clone()));
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::parent_of;

    #[test]
    fn parents() {
        assert_eq!(parent_of("/local/domain/1/device"), "/local/domain/1");
        assert_eq!(parent_of("/libxl"), "/");
        assert_eq!(parent_of("x"), "/");
    }
}
