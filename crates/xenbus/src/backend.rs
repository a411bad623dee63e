//! The backend end of the handshake (what QEMU's XenDevice and Linux blkback do).

use std::sync::Arc;
use std::time::Instant;

use crate::areas::DeviceAreas;
use crate::keys::{KeyCheck, KeyError, KeyRead, KeySpec};
use crate::requests::{End, Phase, write_state};
use crate::state::{StateError, XenbusState};
use xsio_ops::{
    Answer, InputError, OpError, Output, Requests, TxnOp, XsOp, expect_done, expect_state_value,
    expect_txn, expect_value,
};

/// What a [`Backend`] needs to know.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackendConfig {
    /// Where the device lives.
    pub areas: DeviceAreas,
    /// Keys (relative to the backend directory) written together with InitWait.
    pub features: Vec<(String, String)>,
    /// Keys written together with Connected (`sectors`, `info`, `sector-size`).
    pub connect_keys: Vec<(String, String)>,
    /// Frontend keys read before connecting (`ring-ref`, `event-channel`, `protocol`).
    pub frontend_keys: Vec<KeySpec>,
    /// How those values are checked.
    pub check: KeyCheck,
}

/// What a [`Backend`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendEvent {
    /// The backend wrote a new state.
    StateChanged {
        /// The state before.
        from: XenbusState,
        /// The state written.
        to: XenbusState,
    },
    /// A read of the frontend's `state` gave this (missing node: Unknown).
    FrontendState(XenbusState),
    /// The frontend's `state` node holds garbage; it is ignored.
    BadFrontendState(StateError),
    /// `online` changed (missing reads as 0).
    Online(bool),
    /// The frontend's transport was read and checked; the driver maps the ring now. The
    /// values are the present keys of [`BackendConfig::frontend_keys`].
    Connected {
        /// `(key, value)` pairs read from the frontend directory.
        frontend: Vec<(String, String)>,
    },
    /// The frontend's transport was missing or malformed; the backend goes Closing.
    ConnectFailed(KeyError),
    /// The ring is no longer in use (the backend left Connected).
    Disconnected,
    /// The device is done: Closed while `online` is 0, or the frontend is gone. The backend
    /// has removed its watches; the driver may drop it.
    Finished,
    /// The backend's own `state` node vanished (its directory was destroyed).
    Removed,
    /// A xenstore operation failed; the backend stopped.
    Failed(OpError),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    Watch,
    Unwatch,
    ReadFrontendState,
    ReadOnline,
    ReadKey { generation: u32, index: usize },
    WriteState,
}

/// The backend end of a split device.
///
/// It starts by publishing its features with InitWait, watches the frontend's `state` and
/// its own `online`, connects when the frontend is Initialised or Connected, mirrors
/// Closing, goes Closed when the frontend closes or the toolstack sets `online` to 0, and
/// reconnects (InitWait) when the frontend comes back to Initialising while `online` is 1.
///
/// Every state write is guarded by the existence of the backend `state` node, so a
/// destroyed directory is never recreated. A state equal to the cached one is not
/// rewritten, except on purpose: when the toolstack sets `online` to 0 while the backend
/// is already Closed, Closed is written again, because libxl's removal request may have
/// overwritten it with Closing.
///
/// ```
/// use std::time::Instant;
/// use xsio_ops::{Op, Output, XsOp};
/// use xsio_xenbus::{Backend, BackendConfig, DeviceAreas, KeyCheck};
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let config = BackendConfig {
///     areas: DeviceAreas::new(0, "qdisk", 1, "vbd", 51712),
///     features: vec![("feature-flush-cache".into(), "1".into())],
///     connect_keys: vec![],
///     frontend_keys: vec![],
///     check: KeyCheck::PresenceOnly,
/// };
/// let mut backend = Backend::new(config, now);
/// let mut ops = Vec::new();
/// while let Some(out) = backend.poll_output() {
///     if let Output::Request(request) = out {
///         ops.push(request.op);
///     }
/// }
/// // Two watches (frontend state, own online), then features and InitWait in one transaction.
/// assert!(matches!(&ops[0], Op::Xs(XsOp::Watch { path, .. }) if path.ends_with("device/vbd/51712/state")));
/// assert!(matches!(&ops[2], Op::Xs(XsOp::Transaction(txn)) if txn.ops.len() == 2));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    // Shared: simulators and model checkers clone machines by the million.
    config: Arc<BackendConfig>,
    requests: Requests<Purpose, BackendEvent>,
    own: XenbusState,
    frontend: XenbusState,
    online: bool,
    connect: Option<KeyRead>,
    generation: u32,
    /// Closed on its own ([`Backend::close`]): reconnect only after the frontend has shown
    /// Closed, since an Initialising read before that is the old connection's.
    awaiting_frontend_close: bool,
    phase: Phase,
}

impl Backend {
    /// Starts the backend of a device whose directories the toolstack created (both
    /// `state` = Initialising, `online` = 1).
    pub fn new(config: BackendConfig, _now: Instant) -> Backend {
        let mut backend = Backend {
            config: Arc::new(config),
            requests: Requests::new(),
            own: XenbusState::Initialising,
            frontend: XenbusState::Initialising,
            online: true,
            connect: None,
            generation: 0,
            awaiting_frontend_close: false,
            phase: Phase::Running,
        };
        let (fe_state, online) = (backend.frontend_state_path(), backend.online_path());
        backend.request(
            Purpose::Watch,
            XsOp::Watch {
                token: backend.token("frontend-state"),
                path: fe_state,
            },
        );
        backend.request(
            Purpose::Watch,
            XsOp::Watch {
                token: backend.token("online"),
                path: online,
            },
        );
        let features = backend.own_writes(&backend.config.features);
        backend.switch(XenbusState::InitWait, features, false);
        backend
    }

    /// The state the backend last wrote.
    pub fn state(&self) -> XenbusState {
        self.own
    }

    /// The frontend state the backend last read.
    pub fn frontend_state(&self) -> XenbusState {
        self.frontend
    }

    /// Whether the backend stopped (finished, removed or failed): it ignores watch events.
    pub fn is_stopped(&self) -> bool {
        self.phase != Phase::Running
    }

    /// The configuration.
    pub fn config(&self) -> &BackendConfig {
        &self.config
    }

    /// How many requests await a reply.
    pub fn in_flight(&self) -> usize {
        self.requests.in_flight()
    }

    /// The backend gives the device up on its own (unplug, a fatal error of its block
    /// layer): Closing while the frontend uses the device (its Closed then closes the
    /// backend), Closed at once otherwise. `online` is untouched, so a frontend coming back
    /// to Initialising can reconnect. Does nothing when already Closing or Closed.
    pub fn close(&mut self, _now: Instant) {
        if self.phase != Phase::Running
            || matches!(self.own, XenbusState::Closing | XenbusState::Closed)
        {
            return;
        }
        self.connect = None;
        self.awaiting_frontend_close = true;
        if self.frontend.frontend_active() {
            self.switch(XenbusState::Closing, Vec::new(), false);
        } else {
            self.close_now();
        }
    }

    /// A watch event. Events of other tokens and events after the backend stopped are
    /// ignored (they can legitimately arrive late).
    pub fn handle_watch(&mut self, _now: Instant, _path: &str, token: &str) {
        if self.phase != Phase::Running {
            return;
        }
        if token == self.token("frontend-state") {
            let path = self.frontend_state_path();
            self.request(Purpose::ReadFrontendState, XsOp::Read { path });
        } else if token == self.token("online") {
            let path = self.online_path();
            self.request(Purpose::ReadOnline, XsOp::Read { path });
        }
    }

    /// The result of a request.
    pub fn handle_reply(&mut self, _now: Instant, answer: Answer) -> Result<(), InputError> {
        match self.requests.finish(answer.id)? {
            Purpose::Watch | Purpose::Unwatch => self.answered(answer, expect_done, |_, ()| {}),
            Purpose::WriteState => self.answered(answer, expect_txn, Self::on_state_written),
            Purpose::ReadFrontendState => {
                self.answered(answer, expect_state_value, Self::on_frontend_state)
            }
            Purpose::ReadOnline => self.answered(answer, expect_value, Self::on_online),
            Purpose::ReadKey { generation, index } => {
                self.answered(answer, expect_value, |me, value| {
                    me.on_key(generation, index, value);
                })
            }
        }
    }

    /// A state write that found no `state` node: the directory is gone.
    fn on_state_written(&mut self, committed: bool) {
        if !committed {
            self.stop(Phase::Finished, BackendEvent::Removed);
        }
    }

    fn on_frontend_state(&mut self, value: Option<String>) {
        let state = match XenbusState::from_node(value.as_deref()) {
            Ok(state) => state,
            Err(err) => {
                self.event(BackendEvent::BadFrontendState(err));
                return;
            }
        };
        self.frontend = state;
        self.event(BackendEvent::FrontendState(state));
        if matches!(state, XenbusState::Closed | XenbusState::Unknown) {
            self.awaiting_frontend_close = false;
        }
        match state {
            XenbusState::Unknown => {
                // The frontend directory is gone: nothing can reconnect.
                self.close_now();
                self.stop(Phase::Finished, BackendEvent::Finished);
            }
            XenbusState::Closed => {
                self.close_now();
                if !self.online {
                    self.stop(Phase::Finished, BackendEvent::Finished);
                }
            }
            XenbusState::Closing => {
                self.connect = None;
                if !matches!(self.own, XenbusState::Closing | XenbusState::Closed) {
                    self.switch(XenbusState::Closing, Vec::new(), false);
                }
            }
            XenbusState::Initialising => {
                if matches!(self.own, XenbusState::Initialising | XenbusState::InitWait)
                    || self.awaiting_frontend_close
                {
                    return;
                }
                // The frontend restarted (driver reload, kexec, resume): close what is left
                // of the old connection, then offer a new one if the toolstack still wants
                // the device.
                self.close_now();
                if self.online {
                    let features = self.own_writes(&self.config.features);
                    self.switch(XenbusState::InitWait, features, false);
                } else {
                    self.stop(Phase::Finished, BackendEvent::Finished);
                }
            }
            XenbusState::Initialised | XenbusState::Connected => {
                if self.own == XenbusState::InitWait && self.online && self.connect.is_none() {
                    self.start_connect();
                }
            }
            XenbusState::InitWait | XenbusState::Reconfiguring | XenbusState::Reconfigured => {}
        }
    }

    fn on_online(&mut self, value: Option<String>) {
        let online = value.is_some_and(|v| matches!(v.parse::<u64>(), Ok(n) if n != 0));
        let was = self.online;
        self.online = online;
        if was == online {
            return;
        }
        self.event(BackendEvent::Online(online));
        if online {
            // Back online: a frontend coming back to Initialising will reconnect.
            return;
        }
        self.connect = None;
        if self.own == XenbusState::Closed {
            // libxl's removal request may have overwritten our Closed with Closing.
            self.switch(XenbusState::Closed, Vec::new(), true);
            self.stop(Phase::Finished, BackendEvent::Finished);
        } else if self.frontend.frontend_active() {
            // Ask the frontend to let go; its Closed finishes the device.
            self.switch(XenbusState::Closing, Vec::new(), true);
        } else {
            self.close_now();
            self.stop(Phase::Finished, BackendEvent::Finished);
        }
    }

    fn on_key(&mut self, generation: u32, index: usize, value: Option<String>) {
        let Some(read) = self.connect.as_mut() else {
            return;
        };
        if read.generation != generation || !read.record(index, value) {
            return;
        }
        let result = read.finish(&self.config.frontend_keys, self.config.check);
        self.connect = None;
        match result {
            Ok(frontend) => {
                let keys = self.own_writes(&self.config.connect_keys);
                self.switch(XenbusState::Connected, keys, false);
                self.event(BackendEvent::Connected { frontend });
            }
            Err(err) => {
                // xenbus_dev_fatal: report and go Closing; the frontend answers Closed.
                self.event(BackendEvent::ConnectFailed(err));
                self.switch(XenbusState::Closing, Vec::new(), false);
            }
        }
    }

    fn start_connect(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let keys: Vec<String> = self
            .config
            .frontend_keys
            .iter()
            .map(|k| k.name.clone())
            .collect();
        self.connect = Some(KeyRead::new(generation, keys.len()));
        if keys.is_empty() {
            self.on_key(generation, 0, None);
            return;
        }
        for (index, key) in keys.iter().enumerate() {
            let path = self.config.areas.frontend_key(key);
            self.request(Purpose::ReadKey { generation, index }, XsOp::Read { path });
        }
    }

    /// Disconnects and writes Closed, if not Closed already.
    fn close_now(&mut self) {
        self.connect = None;
        if self.own != XenbusState::Closed {
            self.switch(XenbusState::Closed, Vec::new(), false);
        }
    }

    /// Writes `to` (with `extra` keys first) unless it is the cached state and not forced.
    fn switch(&mut self, to: XenbusState, extra: Vec<TxnOp>, force: bool) {
        if self.own == to && !force {
            return;
        }
        let from = self.own;
        self.own = to;
        let state_path = self.config.areas.backend_key("state");
        self.request(Purpose::WriteState, write_state(state_path, to, extra));
        if from != to {
            if from == XenbusState::Connected {
                self.event(BackendEvent::Disconnected);
            }
            self.event(BackendEvent::StateChanged { from, to });
        }
    }

    fn stop(&mut self, phase: Phase, event: BackendEvent) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = phase;
        self.connect = None;
        self.event(event);
        let (fe_state, online) = (self.frontend_state_path(), self.online_path());
        self.request(
            Purpose::Unwatch,
            XsOp::Unwatch {
                token: self.token("frontend-state"),
                path: fe_state,
            },
        );
        self.request(
            Purpose::Unwatch,
            XsOp::Unwatch {
                token: self.token("online"),
                path: online,
            },
        );
    }

    fn own_writes(&self, keys: &[(String, String)]) -> Vec<TxnOp> {
        keys.iter()
            .map(|(key, value)| TxnOp::write(self.config.areas.backend_key(key), value.clone()))
            .collect()
    }

    fn request(&mut self, purpose: Purpose, op: XsOp) {
        self.requests.request(purpose, op);
    }

    fn event(&mut self, event: BackendEvent) {
        self.requests.event(event);
    }

    fn token(&self, what: &str) -> String {
        format!("{}:{what}", self.config.areas.backend_path())
    }

    fn frontend_state_path(&self) -> String {
        self.config.areas.frontend_key("state")
    }

    fn online_path(&self) -> String {
        self.config.areas.backend_key("online")
    }
}

impl Backend {
    /// The backend arms no timers (waiting for the frontend is bounded by the toolstack's
    /// [`StateWaiter`](crate::StateWaiter)); this does nothing.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// The next output, or `None` when drained. Drain after every input.
    #[must_use = "an output is something the driver must do; dropping it loses it"]
    pub fn poll_output(&mut self) -> Option<Output<BackendEvent>> {
        self.requests.next_output()
    }

    /// Always `None`: the backend arms no timers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

xsio_ops::impl_machine!(Backend, BackendEvent, watch: handle_watch);

impl End for Backend {
    fn running(&self) -> bool {
        self.phase == Phase::Running
    }

    fn fail(&mut self, err: OpError) {
        self.stop(Phase::Failed, BackendEvent::Failed(err));
    }
}
