//! The order of things: the guest's and the device model's state, the waits, the hotplug
//! step and the end (libxl's removal flowchart and add table, section 4 and 5 of the
//! design note, with this crate's fixes).

use std::time::Instant;

use xsio_core::{OpId, deadline};
use xsio_ops::{
    DomainState, HostOp, InputError, OpError, ProcessExit, Reply, XsOp, expect_device_model,
    expect_domain, expect_done, expect_exited, expect_state_value, expect_value, split_checked,
};
use xsio_xenbus::XenbusState;

use crate::device::{Force, TOOLSTACK_ROOT, domain_home};
use crate::hotplug::{self, Action};
use crate::io::Purpose;
use crate::op::{DeviceOp, Failure, Job, Phase, Wait};
use crate::outcome::{
    Added, BackendEnd, Completion, DeviceEvent, Removal, RemoveError, Removed, ScriptFailure,
    TxnKind, WaitFor,
};

impl DeviceOp {
    /// The entry of the flowchart (also after an escalation to force ON).
    pub(crate) fn start(&mut self, now: Instant) {
        self.next_epoch();
        match &self.job {
            Job::Add(_) => self.begin_txn(TxnKind::Create, 1),
            Job::Remove if self.device.nuke_only() => {
                self.finish_remove(now, Ok(BackendEnd::NotNegotiated));
            }
            // In dom0 the bodge may apply: it depends on the guest's state.
            Job::Remove if self.config.my_domid == 0 => {
                self.phase = Phase::DomainInfo;
                let domid = self.device.frontend_domid;
                self.request(Purpose::DomainInfo, HostOp::DomainInfo { domid });
            }
            // A driver domain never bodges (libxl since 2013).
            Job::Remove => self.begin_txn(TxnKind::RemovalRequest, 1),
        }
    }

    /// Routes an answer by what it was for; `current` is false for an answer to a phase
    /// that has ended (dropped after its kind is checked).
    pub(crate) fn dispatch(
        &mut self,
        now: Instant,
        id: OpId,
        purpose: Purpose,
        current: bool,
        result: Result<Reply, OpError>,
    ) -> Result<(), InputError> {
        match purpose {
            Purpose::Spawn => {
                let exit = expect_exited(id, result)?;
                self.on_script_end(now, id, exit);
                Ok(())
            }
            Purpose::Kill | Purpose::Unwatch => expect_done(id, result).map(drop),
            Purpose::TxnStart if !current => {
                // A transaction opened for a phase that is over: close it again.
                if let Ok(Reply::TxnStarted(txn)) = result {
                    let end = XsOp::TxnEnd { txn, commit: false };
                    self.request(Purpose::TxnEnd { commit: false }, end);
                }
                Ok(())
            }
            Purpose::DomainInfo => {
                let checked = expect_domain(id, result);
                self.go_on(now, current, checked, |me, now, state| {
                    me.on_domain_info(now, state)
                })
            }
            Purpose::DeviceModel => match expect_device_model(id, result) {
                Ok(answer) => {
                    if current && matches!(self.phase, Phase::DeviceModel) {
                        self.on_device_model(now, answer.ok());
                    }
                    Ok(())
                }
                Err(wrong) => {
                    if current {
                        self.on_device_model(now, None);
                    }
                    Err(wrong)
                }
            },
            Purpose::Watch => {
                let checked = expect_done(id, result);
                self.go_on(now, current, checked, |_, _, ()| {})
            }
            Purpose::WaitRead => {
                let checked = expect_state_value(id, result);
                self.go_on(now, current, checked, Self::on_wait_value)
            }
            Purpose::ScriptKey(index) => {
                let checked = expect_value(id, result);
                self.go_on(now, current, checked, |me, now, value| {
                    me.on_script_key(now, index, value)
                })
            }
            Purpose::HotplugError => {
                // Logging only: an error reading it changes nothing.
                let value = expect_value(id, result);
                if current {
                    let text = value.as_ref().ok().and_then(|v| v.as_ref().ok()).cloned();
                    self.on_hotplug_error(now, text.flatten());
                }
                value.map(drop)
            }
            Purpose::TxnStart
            | Purpose::TxnRead
            | Purpose::TxnDirectory
            | Purpose::TxnApply
            | Purpose::TxnEnd { .. } => self.on_txn_reply(now, id, purpose, current, result),
        }
    }

    /// Goes on after a checked answer of the current phase: `on_ok` with the value, or
    /// the failure for an error (a reply of the wrong kind counts as a failed operation).
    pub(crate) fn go_on<T>(
        &mut self,
        now: Instant,
        current: bool,
        checked: Result<Result<T, OpError>, InputError>,
        on_ok: impl FnOnce(&mut Self, Instant, T),
    ) -> Result<(), InputError> {
        if !current || self.is_done() {
            return checked.map(drop);
        }
        let (outcome, refused) = split_checked(checked);
        match outcome {
            Ok(value) => on_ok(self, now, value),
            Err(error) => self.fail_here(now, error),
        }
        refused
    }

    /// An operation of the current phase failed.
    fn fail_here(&mut self, now: Instant, error: OpError) {
        let failure = match &self.phase {
            Phase::DomainInfo => Failure::DomainInfo(error),
            Phase::Wait(wait) => {
                let wait = wait.clone();
                self.leave_wait(wait);
                Failure::xs("watching a state node", error)
            }
            Phase::ScriptKeys { .. } => Failure::xs("reading the hotplug script keys", error),
            _ => Failure::xs("xenstore", error),
        };
        self.fail(now, failure);
    }

    // ---- the guest and its device model --------------------------------------------------

    fn on_domain_info(&mut self, _now: Instant, state: DomainState) {
        self.guest = Some(state);
        self.event(DeviceEvent::Guest(state));
        if self.device.qemu_backed() {
            self.next_epoch();
            self.phase = Phase::DeviceModel;
            let domid = self.device.frontend_domid;
            self.request(Purpose::DeviceModel, HostOp::DeviceModelAlive { domid });
        } else {
            self.begin_txn(TxnKind::RemovalRequest, 1);
        }
    }

    /// The QEMU decision, from the device model's own liveness when the host knows it:
    /// gone means nothing will ever close the backend, so the toolstack does at once;
    /// alive means QEMU closes it (a paused guest's devices are not closed blind).
    /// Unknown falls back to libxl's rule: a guest that is not running gets the bodge
    /// after a blind wait.
    fn on_device_model(&mut self, now: Instant, alive: Option<bool>) {
        self.event(DeviceEvent::DeviceModel { alive });
        let guest_stopped = !matches!(self.guest, Some(DomainState::Running));
        match alive {
            Some(false) => self.begin_txn(TxnKind::Bodge, 1),
            None if guest_stopped => {
                self.next_epoch();
                self.phase = Phase::BodgeWait;
                // A wait too long to represent has no deadline: the caller cancels.
                self.deadline = deadline(now, self.config.qemu_bodge_timeout);
                self.event(DeviceEvent::BodgeWait(self.config.qemu_bodge_timeout));
            }
            _ => self.begin_txn(TxnKind::RemovalRequest, 1),
        }
    }

    pub(crate) fn on_deadline(&mut self, now: Instant) {
        match self.phase.clone() {
            Phase::BodgeWait => self.begin_txn(TxnKind::Bodge, 1),
            Phase::Wait(wait) => self.on_wait_timeout(now, wait),
            Phase::Script {
                spawn,
                killed: false,
                argv,
            } => {
                self.request(Purpose::Kill, HostOp::Kill { spawn });
                self.event(DeviceEvent::ScriptKilled);
                self.deadline = deadline(now, self.config.kill_grace);
                self.phase = Phase::Script {
                    spawn,
                    argv,
                    killed: true,
                };
            }
            Phase::Script {
                killed: true, argv, ..
            } => {
                // Not reaped within the grace: go on without it; its answer is dropped.
                let failure = ScriptFailure {
                    argv,
                    exit: ProcessExit::FailedToStart("not reaped after SIGKILL".into()),
                    timed_out: true,
                    hotplug_error: None,
                };
                self.next_epoch();
                self.after_script_failure(now, failure);
            }
            _ => {}
        }
    }

    // ---- waits ---------------------------------------------------------------------------

    pub(crate) fn enter_wait(&mut self, now: Instant, what: WaitFor) {
        self.next_epoch();
        self.watch_seq = self.watch_seq.wrapping_add(1);
        let d = &self.device;
        let token = format!(
            "xsio-device/{}/{}/{}/{}",
            d.frontend_domid, d.kind, d.devid, self.watch_seq
        );
        let (path, timeout) = match what {
            WaitFor::BackendUp => (d.backend_key("state"), self.config.init_timeout),
            WaitFor::BackendClosed => (d.backend_key("state"), self.config.destroy_timeout),
            WaitFor::FrontendClosed => {
                (d.frontend_key("state"), self.config.frontend_close_timeout)
            }
            WaitFor::BackendRemoved => (d.backend_path(), self.config.destroy_timeout),
        };
        self.last_seen = None;
        self.deadline = deadline(now, timeout);
        let watch = XsOp::Watch {
            path: path.clone(),
            token: token.clone(),
        };
        self.request(Purpose::Watch, watch);
        self.phase = Phase::Wait(Wait { what, path, token });
        self.event(DeviceEvent::Waiting(what));
    }

    pub(crate) fn leave_wait(&mut self, wait: Wait) {
        self.deadline = None;
        self.next_epoch();
        self.unwatch(wait);
    }

    fn on_wait_value(&mut self, now: Instant, value: Option<String>) {
        let Phase::Wait(wait) = self.phase.clone() else {
            return;
        };
        // As libxl's atoi: garbage reads as Unknown, which never ends a wait.
        let state = value
            .as_deref()
            .map(|v| XenbusState::parse(v).unwrap_or(XenbusState::Unknown));
        let ended = match (wait.what, state) {
            (WaitFor::BackendUp, Some(s)) => matches!(
                s,
                XenbusState::InitWait | XenbusState::Initialised | XenbusState::Connected
            ),
            (WaitFor::BackendClosed, Some(s)) => s == XenbusState::Closed,
            // A frontend that never connected (Initialising) holds no ring either.
            (WaitFor::FrontendClosed, Some(s)) => !s.frontend_active(),
            (WaitFor::BackendRemoved, Some(_)) => false,
            (_, None) => true,
        };
        if !ended {
            let state = state.unwrap_or(XenbusState::Unknown);
            self.last_seen = Some(state);
            self.event(DeviceEvent::StillWaiting {
                wait: wait.what,
                state,
            });
            return;
        }
        let what = wait.what;
        self.leave_wait(wait);
        match (what, state) {
            // The state node is gone: QEMU's clean exit deletes both directories, a dead
            // backend domain takes its nodes with it. Whenever it is seen, that is the same
            // clean end as a backend found gone at the start (libxl: an error after the
            // request, success before it).
            (WaitFor::BackendClosed, None) => {
                self.event(DeviceEvent::BackendGone);
                self.finish_remove(now, Ok(BackendEnd::Gone));
            }
            (WaitFor::BackendUp, None) => self.fail(now, Failure::BackendGone),
            (WaitFor::BackendClosed, Some(_)) => {
                self.event(DeviceEvent::Reached(what));
                self.after_backend_closed(now, BackendEnd::Closed);
            }
            (WaitFor::BackendRemoved, _) => {
                self.event(DeviceEvent::Reached(what));
                self.finish_remove(now, Ok(BackendEnd::RemovedByDriverDomain));
            }
            (WaitFor::BackendUp | WaitFor::FrontendClosed, _) => {
                self.event(DeviceEvent::Reached(what));
                self.hotplug(now);
            }
        }
    }

    fn on_wait_timeout(&mut self, now: Instant, wait: Wait) {
        let what = wait.what;
        self.leave_wait(wait);
        let closing = matches!(what, WaitFor::BackendClosed | WaitFor::FrontendClosed);
        if closing && self.force == Force::Auto {
            // Once: the removal starts again from the top with force ON.
            self.force = Force::On;
            self.escalated = true;
            self.event(DeviceEvent::Escalated);
            self.start(now);
            return;
        }
        let last = self.last_seen;
        self.fail(now, Failure::TimedOut { wait: what, last });
    }

    /// After the backend reached Closed (or the toolstack closed it): a live frontend is
    /// waited for too before the hotplug step (unplugging under a frontend that still uses
    /// the ring corrupts it: xenopsd CA-314170). With force ON the frontend directory is
    /// already gone.
    pub(crate) fn after_backend_closed(&mut self, now: Instant, end: BackendEnd) {
        self.backend_end = end;
        let frontend_alive = matches!(self.guest, Some(DomainState::Running) | None);
        if self.force != Force::On && frontend_alive {
            self.enter_wait(now, WaitFor::FrontendClosed);
        } else {
            self.hotplug(now);
        }
    }

    // ---- hotplug -------------------------------------------------------------------------

    fn action(&self) -> Action {
        match self.job {
            Job::Add(_) => Action::Add,
            Job::Remove => Action::Remove,
        }
    }

    pub(crate) fn hotplug(&mut self, now: Instant) {
        self.next_epoch();
        if self.device.backend_domid != self.config.my_domid {
            // The driver domain runs its own scripts; a removal waits for it to remove
            // the backend directory.
            match self.job {
                Job::Add(_) => self.finish_add(),
                Job::Remove => self.enter_wait(now, WaitFor::BackendRemoved),
            }
            return;
        }
        let keys = hotplug::keys_needed(&self.device);
        self.script_values = vec![None; keys.len()];
        if keys.is_empty() {
            self.next_script(now);
            return;
        }
        self.phase = Phase::ScriptKeys {
            pending: keys.len(),
        };
        for (index, key) in keys.iter().enumerate() {
            let path = self.device.backend_key(key);
            self.request(Purpose::ScriptKey(index), XsOp::Read { path });
        }
    }

    fn on_script_key(&mut self, now: Instant, index: usize, value: Option<String>) {
        let Phase::ScriptKeys { pending } = &mut self.phase else {
            return;
        };
        *pending = pending.saturating_sub(1);
        let left = *pending;
        if let Some(slot) = self.script_values.get_mut(index) {
            *slot = value;
        }
        if left == 0 {
            self.next_script(now);
        }
    }

    /// Runs the `num_exec`-th script, or ends the hotplug step when there is none.
    fn next_script(&mut self, now: Instant) {
        let script = hotplug::script(
            &self.device,
            self.action(),
            self.num_exec,
            &self.script_values,
        );
        let Some(script) = script else {
            match self.job {
                Job::Add(_) => self.finish_add(),
                Job::Remove => self.finish_remove(now, Ok(self.backend_end)),
            }
            return;
        };
        self.next_epoch();
        self.event(DeviceEvent::ScriptStarted {
            argv: script.argv.clone(),
        });
        let spawn = self.request(
            Purpose::Spawn,
            HostOp::Spawn {
                argv: script.argv.clone(),
                env: script.env,
            },
        );
        self.deadline = deadline(now, self.config.hotplug_timeout);
        self.phase = Phase::Script {
            spawn,
            argv: script.argv,
            killed: false,
        };
    }

    fn on_script_end(&mut self, now: Instant, spawn: OpId, exit: ProcessExit) {
        let Phase::Script {
            spawn: running,
            argv,
            killed,
        } = self.phase.clone()
        else {
            return; // a script given up on after SIGKILL, or a cancelled operation
        };
        if running != spawn {
            return;
        }
        self.deadline = None;
        self.event(DeviceEvent::ScriptEnded(exit.clone()));
        if exit.success() {
            self.scripts_ok = self.scripts_ok.saturating_add(1);
            self.num_exec = self.num_exec.saturating_add(1);
            self.next_script(now);
            return;
        }
        let failure = ScriptFailure {
            argv,
            exit,
            timed_out: killed,
            hotplug_error: None,
        };
        self.next_epoch();
        self.phase = Phase::HotplugError { failure };
        let path = self.device.backend_key("hotplug-error");
        self.request(Purpose::HotplugError, XsOp::Read { path });
    }

    fn on_hotplug_error(&mut self, now: Instant, text: Option<String>) {
        let Phase::HotplugError { mut failure } = self.phase.clone() else {
            return;
        };
        if let Some(text) = text {
            self.event(DeviceEvent::HotplugError(text.clone()));
            failure.hotplug_error = Some(text);
        }
        self.after_script_failure(now, failure);
    }

    /// An add stops at a failed script; a removal records it (and reports it at the end:
    /// libxl loses it) and goes on with the next script.
    fn after_script_failure(&mut self, now: Instant, failure: ScriptFailure) {
        match self.job {
            Job::Add(_) => self.fail(now, Failure::Script(failure)),
            Job::Remove => {
                self.failures.push(failure);
                self.num_exec = self.num_exec.saturating_add(1);
                self.next_script(now);
            }
        }
    }

    // ---- the end -------------------------------------------------------------------------

    fn finish_add(&mut self) {
        let added = Added {
            scripts: self.scripts_ok,
        };
        self.complete(Completion::Added(Ok(added)));
    }

    /// Stops the operation with `failure`: an add completes; a removal goes to its end
    /// (where force ON still removes the areas). A failure while removing the areas
    /// completes with [`RemoveError::Prune`].
    pub(crate) fn fail(&mut self, now: Instant, failure: Failure) {
        if self.is_done() {
            return;
        }
        match &self.job {
            Job::Add(_) => self.complete_with(failure),
            Job::Remove if self.pending.is_some() => {
                let after = match self.pending.take() {
                    Some(Err(before)) => Some(Box::new(before.into_remove())),
                    _ => None,
                };
                let error = RemoveError::Prune {
                    error: Box::new(failure.into_remove()),
                    after,
                };
                self.complete(Completion::Removed(Removal {
                    result: Err(error),
                    pruned: false,
                }));
            }
            Job::Remove => self.finish_remove(now, Err(failure)),
        }
    }

    /// The removal's end (libxl's FINISH): on success, or with force ON, the areas are
    /// removed with their empty ancestors in one transaction; otherwise xenstore is left as
    /// it is and the error says why.
    pub(crate) fn finish_remove(&mut self, _now: Instant, result: Result<BackendEnd, Failure>) {
        self.next_epoch();
        let succeeded = result.is_ok() && self.failures.is_empty();
        let prune = self.device.nuke_only() || succeeded || self.force == Force::On;
        let targets = if prune {
            self.prune_targets()
        } else {
            Vec::new()
        };
        if targets.is_empty() {
            let removal = Removal {
                result: self.removal_result(result),
                pruned: false,
            };
            self.complete(Completion::Removed(removal));
            return;
        }
        self.pending = Some(result);
        self.begin_txn(TxnKind::Prune, 1);
    }

    /// What a removal's end reports, once its areas are dealt with.
    pub(crate) fn removal_result(
        &self,
        result: Result<BackendEnd, Failure>,
    ) -> Result<Removed, RemoveError> {
        match result {
            Ok(_) if !self.failures.is_empty() => Err(RemoveError::Scripts(self.failures.clone())),
            Ok(backend) => Ok(Removed {
                backend,
                escalated: self.escalated,
                scripts: self.scripts_ok,
            }),
            Err(failure) => Err(failure.into_remove()),
        }
    }

    /// The areas this domain removes (libxl's `libxl__device_destroy`), each with the
    /// node above which the prune stops.
    pub(crate) fn prune_targets(&self) -> Vec<(String, String)> {
        let d = &self.device;
        let me = self.config.my_domid;
        let mut targets = Vec::new();
        if me == 0 {
            targets.push((d.frontend_path(), domain_home(d.frontend_domid)));
            targets.push((d.toolstack_path(), TOOLSTACK_ROOT.to_owned()));
        }
        if d.backend_domid == me || me == 0 {
            targets.push((d.backend_path(), domain_home(d.backend_domid)));
        }
        targets
    }
}
