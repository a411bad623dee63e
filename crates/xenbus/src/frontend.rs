//! The frontend end of the handshake (what Linux blkfront and netfront do in a guest).

use std::sync::Arc;
use std::time::{Duration, Instant};

use xsio_core::deadline;

use crate::areas::DeviceAreas;
use crate::keys::{KeyCheck, KeyError, KeyRead, KeySpec};
use crate::requests::{End, Phase, write_state};
use crate::state::{StateError, XenbusState};
use xsio_ops::{
    Answer, InputError, OpError, Output, Requests, TxnOp, XsOp, expect_done, expect_state_value,
    expect_txn, expect_value,
};

/// What a [`Frontend`] needs to know.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrontendConfig {
    /// Where the device lives.
    pub areas: DeviceAreas,
    /// Keys (relative to the frontend directory) written together with Initialised
    /// (`ring-ref`, `event-channel`, `protocol`).
    pub transport: Vec<(String, String)>,
    /// Backend keys read before declaring Connected (`sectors`, `info`, `sector-size`).
    pub backend_keys: Vec<KeySpec>,
    /// How those values are checked.
    pub check: KeyCheck,
    /// How long a [`close`](Frontend::close) waits in Closing for the backend before going
    /// Closed anyway (Linux waits 5 s on guest shutdown).
    pub close_timeout: Duration,
}

/// What a [`Frontend`] reports.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrontendEvent {
    /// The frontend wrote a new state.
    StateChanged {
        /// The state before.
        from: XenbusState,
        /// The state written.
        to: XenbusState,
    },
    /// A read of the backend's `state` gave this (missing node: Unknown).
    BackendState(XenbusState),
    /// The backend's `state` node holds garbage; it is ignored.
    BadBackendState(StateError),
    /// The backend's keys were read and checked: the device is usable.
    Connected {
        /// `(key, value)` pairs read from the backend directory.
        backend: Vec<(String, String)>,
    },
    /// The backend's keys were missing or malformed; the frontend goes Closing.
    ConnectFailed(KeyError),
    /// The device is no longer usable (the frontend left Connected).
    Disconnected,
    /// The backend directory is gone and the frontend is Closed; watches were removed.
    Finished,
    /// The frontend's own `state` node vanished (its directory was destroyed).
    Removed,
    /// A xenstore operation failed; the frontend stopped.
    Failed(OpError),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Purpose {
    Watch,
    Unwatch,
    ReadBackendState,
    ReadKey { generation: u32, index: usize },
    WriteState,
}

/// The frontend end of a split device.
///
/// From Initialising it publishes its transport and goes Initialised when the backend is
/// InitWait (or Connected: the skipped work is done first); when the backend is Connected it
/// reads the backend's keys and goes Connected. A backend Closing or Closed (a missed
/// Closing) closes it. [`close`](Frontend::close) starts a guest-side close: Closing, then
/// Closed when the backend follows or after [`FrontendConfig::close_timeout`].
/// [`restart`](Frontend::restart) reconnects a Closed frontend (driver reload).
///
/// Once Closed the frontend writes nothing until it is restarted; after a restart it
/// ignores a backend still Closed from the earlier connection until the backend answers
/// with InitWait (or Connected).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frontend {
    // Shared: simulators and model checkers clone machines by the million.
    config: Arc<FrontendConfig>,
    requests: Requests<Purpose, FrontendEvent>,
    own: XenbusState,
    backend: XenbusState,
    read: Option<KeyRead>,
    generation: u32,
    close_deadline: Option<Instant>,
    /// Restarted and the backend has not answered yet: a Closed backend is the old
    /// connection's, not a close.
    restarting: bool,
    phase: Phase,
}

impl Frontend {
    /// Starts the frontend of a device whose directories the toolstack created (both
    /// `state` = Initialising).
    pub fn new(config: FrontendConfig, _now: Instant) -> Frontend {
        let mut frontend = Frontend {
            config: Arc::new(config),
            requests: Requests::new(),
            own: XenbusState::Initialising,
            backend: XenbusState::Initialising,
            read: None,
            generation: 0,
            close_deadline: None,
            restarting: false,
            phase: Phase::Running,
        };
        let path = frontend.backend_state_path();
        frontend.request(
            Purpose::Watch,
            XsOp::Watch {
                token: frontend.token(),
                path,
            },
        );
        frontend
    }

    /// The state the frontend last wrote.
    pub fn state(&self) -> XenbusState {
        self.own
    }

    /// The backend state the frontend last read.
    pub fn backend_state(&self) -> XenbusState {
        self.backend
    }

    /// Whether the frontend stopped (finished, removed or failed).
    pub fn is_stopped(&self) -> bool {
        self.phase != Phase::Running
    }

    /// The configuration.
    pub fn config(&self) -> &FrontendConfig {
        &self.config
    }

    /// How many requests await a reply.
    pub fn in_flight(&self) -> usize {
        self.requests.in_flight()
    }

    /// The guest lets go of the device (unplug, shutdown). A Connected frontend goes
    /// Closing and waits for the backend up to the close timeout; one that never connected
    /// goes Closed at once. Does nothing when already Closing or Closed.
    pub fn close(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        match self.own {
            XenbusState::Closing | XenbusState::Closed => {}
            XenbusState::Connected => {
                self.switch(XenbusState::Closing, Vec::new());
                self.close_deadline = deadline(now, self.config.close_timeout);
            }
            _ => self.close_now(),
        }
    }

    /// Reconnects a Closed frontend (driver reload): writes Initialising, and the handshake
    /// runs again once the backend answers InitWait. Returns false (and does nothing) when
    /// the frontend is not Closed or has stopped.
    pub fn restart(&mut self, _now: Instant) -> bool {
        if self.phase != Phase::Running || self.own != XenbusState::Closed {
            return false;
        }
        self.restarting = true;
        self.switch(XenbusState::Initialising, Vec::new());
        true
    }

    /// A watch event. Events of other tokens and events after the frontend stopped are
    /// ignored.
    pub fn handle_watch(&mut self, _now: Instant, _path: &str, token: &str) {
        if self.phase != Phase::Running || token != self.token() {
            return;
        }
        let path = self.backend_state_path();
        self.request(Purpose::ReadBackendState, XsOp::Read { path });
    }

    /// The result of a request.
    pub fn handle_reply(&mut self, _now: Instant, answer: Answer) -> Result<(), InputError> {
        match self.requests.finish(answer.id)? {
            Purpose::Watch | Purpose::Unwatch => self.answered(answer, expect_done, |_, ()| {}),
            Purpose::WriteState => self.answered(answer, expect_txn, Self::on_state_written),
            Purpose::ReadBackendState => {
                self.answered(answer, expect_state_value, Self::on_backend_state)
            }
            Purpose::ReadKey { generation, index } => {
                self.answered(answer, expect_value, |me, value| {
                    me.on_key(generation, index, value);
                })
            }
        }
    }

    /// Time passed: a close that waited too long for the backend goes Closed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.close_deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        self.close_deadline = None;
        if self.phase == Phase::Running && self.own == XenbusState::Closing {
            self.close_now();
        }
    }

    /// The next output, or `None` when drained. Drain after every input.
    #[must_use = "an output is something the driver must do; dropping it loses it"]
    pub fn poll_output(&mut self) -> Option<Output<FrontendEvent>> {
        self.requests.next_output()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due: the close deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.close_deadline
    }

    /// A state write that found no `state` node: the directory is gone.
    fn on_state_written(&mut self, committed: bool) {
        if !committed {
            self.stop(Phase::Finished, FrontendEvent::Removed);
        }
    }

    fn on_backend_state(&mut self, value: Option<String>) {
        let state = match XenbusState::from_node(value.as_deref()) {
            Ok(state) => state,
            Err(err) => {
                self.event(FrontendEvent::BadBackendState(err));
                return;
            }
        };
        self.backend = state;
        self.event(FrontendEvent::BackendState(state));
        if matches!(state, XenbusState::InitWait | XenbusState::Connected) {
            self.restarting = false;
        }
        match state {
            XenbusState::InitWait => {
                if self.own == XenbusState::Initialising {
                    self.publish();
                }
            }
            XenbusState::Connected => match self.own {
                XenbusState::Initialising => {
                    // The backend skipped ahead: do the InitWait work first.
                    self.publish();
                    self.start_read();
                }
                XenbusState::Initialised if self.read.is_none() => self.start_read(),
                _ => {}
            },
            XenbusState::Closing => {
                if self.own != XenbusState::Closed {
                    self.close_now();
                }
            }
            XenbusState::Closed => {
                // A missed Closing, unless we are restarting and the backend has not seen
                // our Initialising yet.
                if self.own != XenbusState::Closed && !self.restarting {
                    self.close_now();
                }
            }
            XenbusState::Unknown => {
                // The backend directory is gone.
                if self.own != XenbusState::Closed {
                    self.close_now();
                }
                self.stop(Phase::Finished, FrontendEvent::Finished);
            }
            XenbusState::Initialising
            | XenbusState::Initialised
            | XenbusState::Reconfiguring
            | XenbusState::Reconfigured => {}
        }
    }

    fn on_key(&mut self, generation: u32, index: usize, value: Option<String>) {
        let Some(read) = self.read.as_mut() else {
            return;
        };
        if read.generation != generation || !read.record(index, value) {
            return;
        }
        let result = read.finish(&self.config.backend_keys, self.config.check);
        self.read = None;
        if self.own != XenbusState::Initialised {
            return;
        }
        match result {
            Ok(backend) => {
                self.switch(XenbusState::Connected, Vec::new());
                self.event(FrontendEvent::Connected { backend });
            }
            Err(err) => {
                self.event(FrontendEvent::ConnectFailed(err));
                self.switch(XenbusState::Closing, Vec::new());
            }
        }
    }

    fn publish(&mut self) {
        let keys = self
            .config
            .transport
            .iter()
            .map(|(key, value)| TxnOp::write(self.config.areas.frontend_key(key), value.clone()))
            .collect();
        self.switch(XenbusState::Initialised, keys);
    }

    fn start_read(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let keys: Vec<String> = self
            .config
            .backend_keys
            .iter()
            .map(|k| k.name.clone())
            .collect();
        self.read = Some(KeyRead::new(generation, keys.len()));
        if keys.is_empty() {
            self.on_key(generation, 0, None);
            return;
        }
        for (index, key) in keys.iter().enumerate() {
            let path = self.config.areas.backend_key(key);
            self.request(Purpose::ReadKey { generation, index }, XsOp::Read { path });
        }
    }

    fn close_now(&mut self) {
        self.restarting = false;
        self.read = None;
        self.close_deadline = None;
        self.switch(XenbusState::Closed, Vec::new());
    }

    fn switch(&mut self, to: XenbusState, extra: Vec<TxnOp>) {
        if self.own == to {
            return;
        }
        let from = self.own;
        self.own = to;
        let state_path = self.config.areas.frontend_key("state");
        self.request(Purpose::WriteState, write_state(state_path, to, extra));
        if from == XenbusState::Connected {
            self.event(FrontendEvent::Disconnected);
        }
        self.event(FrontendEvent::StateChanged { from, to });
    }

    fn stop(&mut self, phase: Phase, event: FrontendEvent) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = phase;
        self.read = None;
        self.close_deadline = None;
        self.event(event);
        let path = self.backend_state_path();
        self.request(
            Purpose::Unwatch,
            XsOp::Unwatch {
                token: self.token(),
                path,
            },
        );
    }

    fn request(&mut self, purpose: Purpose, op: XsOp) {
        self.requests.request(purpose, op);
    }

    fn event(&mut self, event: FrontendEvent) {
        self.requests.event(event);
    }

    fn token(&self) -> String {
        format!("{}:backend-state", self.config.areas.frontend_path())
    }

    fn backend_state_path(&self) -> String {
        self.config.areas.backend_key("state")
    }
}

xsio_ops::impl_machine!(Frontend, FrontendEvent, watch: handle_watch);

impl End for Frontend {
    fn running(&self) -> bool {
        self.phase == Phase::Running
    }

    fn fail(&mut self, err: OpError) {
        self.stop(Phase::Failed, FrontendEvent::Failed(err));
    }
}
