//! The three machines as one type, for a driver that runs them side by side.

use std::time::Instant;

use xsio_core::Machine;
use xsio_ops::{Input, InputError, Output};

use crate::{Backend, BackendEvent, Frontend, FrontendEvent, StateWaiter, WaitEvent, XenbusState};

/// Any xenbus machine: a device's backend or frontend, or the toolstack's waiter. A driver
/// that runs several of them (the harness of `xsio-harness`, a simulator, a model checker)
/// holds them as this one type; it implements [`Machine`] by delegation, its events say
/// which kind of machine reported them.
///
/// ```
/// use std::time::{Duration, Instant};
/// use xsio_core::Machine;
/// use xsio_xenbus::{StateWaiter, WaiterConfig, XenbusEvent, XenbusMachine, XenbusState};
///
/// # #[allow(clippy::disallowed_methods)] // a doc example's epoch
/// let now = Instant::now();
/// let config = WaiterConfig {
///     path: "/be/state".into(),
///     wanted: vec![XenbusState::Closed],
///     timeout: Duration::from_secs(1),
///     token: "t".into(),
/// };
/// let mut machine = XenbusMachine::from(StateWaiter::new(config, now));
/// let _watch = machine.poll_output();
/// let expiry = xsio_core::deadline(now, Duration::from_secs(1)).expect("a clock far from the end of time");
/// machine.handle_timeout(expiry);
/// assert!(matches!(
///     machine.poll_output(),
///     Some(xsio_ops::Output::Event(XenbusEvent::Waiter(_)))
/// ));
/// assert!(machine.waiter().is_some_and(StateWaiter::is_done));
/// assert_eq!(machine.state(), None, "a waiter has no xenbus state of its own");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum XenbusMachine {
    /// A device's backend.
    Backend(Backend),
    /// A device's frontend.
    Frontend(Frontend),
    /// The toolstack's wait for a state.
    Waiter(StateWaiter),
}

/// An event of a [`XenbusMachine`]: the event of the machine inside.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum XenbusEvent {
    /// From a backend.
    Backend(BackendEvent),
    /// From a frontend.
    Frontend(FrontendEvent),
    /// From a waiter.
    Waiter(WaitEvent),
}

impl XenbusMachine {
    /// The backend, if this is one.
    pub fn backend(&self) -> Option<&Backend> {
        match self {
            XenbusMachine::Backend(backend) => Some(backend),
            _ => None,
        }
    }

    /// The backend, if this is one, to call its own methods (`close`).
    pub fn backend_mut(&mut self) -> Option<&mut Backend> {
        match self {
            XenbusMachine::Backend(backend) => Some(backend),
            _ => None,
        }
    }

    /// The frontend, if this is one.
    pub fn frontend(&self) -> Option<&Frontend> {
        match self {
            XenbusMachine::Frontend(frontend) => Some(frontend),
            _ => None,
        }
    }

    /// The frontend, if this is one, to call its own methods (`close`, `restart`).
    pub fn frontend_mut(&mut self) -> Option<&mut Frontend> {
        match self {
            XenbusMachine::Frontend(frontend) => Some(frontend),
            _ => None,
        }
    }

    /// The waiter, if this is one.
    pub fn waiter(&self) -> Option<&StateWaiter> {
        match self {
            XenbusMachine::Waiter(waiter) => Some(waiter),
            _ => None,
        }
    }

    /// The state a backend or a frontend last wrote (or is about to write); `None` for a
    /// waiter.
    pub fn state(&self) -> Option<XenbusState> {
        match self {
            XenbusMachine::Backend(backend) => Some(backend.state()),
            XenbusMachine::Frontend(frontend) => Some(frontend.state()),
            XenbusMachine::Waiter(_) => None,
        }
    }
}

impl From<Backend> for XenbusMachine {
    fn from(backend: Backend) -> XenbusMachine {
        XenbusMachine::Backend(backend)
    }
}

impl From<Frontend> for XenbusMachine {
    fn from(frontend: Frontend) -> XenbusMachine {
        XenbusMachine::Frontend(frontend)
    }
}

impl From<StateWaiter> for XenbusMachine {
    fn from(waiter: StateWaiter) -> XenbusMachine {
        XenbusMachine::Waiter(waiter)
    }
}

impl Machine for XenbusMachine {
    type Input<'a> = Input<'a>;
    type Output = Output<XenbusEvent>;
    type Error = InputError;

    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        match self {
            XenbusMachine::Backend(backend) => backend.handle_input(now, input),
            XenbusMachine::Frontend(frontend) => frontend.handle_input(now, input),
            XenbusMachine::Waiter(waiter) => waiter.handle_input(now, input),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            XenbusMachine::Backend(backend) => backend.handle_timeout(now),
            XenbusMachine::Frontend(frontend) => frontend.handle_timeout(now),
            XenbusMachine::Waiter(waiter) => waiter.handle_timeout(now),
        }
    }

    fn poll_output(&mut self) -> Option<Output<XenbusEvent>> {
        fn wrap<E>(out: Output<E>, kind: fn(E) -> XenbusEvent) -> Output<XenbusEvent> {
            match out {
                Output::Request(request) => Output::Request(request),
                Output::Event(event) => Output::Event(kind(event)),
            }
        }
        match self {
            XenbusMachine::Backend(backend) => {
                Some(wrap(backend.poll_output()?, XenbusEvent::Backend))
            }
            XenbusMachine::Frontend(frontend) => {
                Some(wrap(frontend.poll_output()?, XenbusEvent::Frontend))
            }
            XenbusMachine::Waiter(waiter) => Some(wrap(waiter.poll_output()?, XenbusEvent::Waiter)),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            XenbusMachine::Backend(backend) => backend.poll_timeout(),
            XenbusMachine::Frontend(frontend) => frontend.poll_timeout(),
            XenbusMachine::Waiter(waiter) => waiter.poll_timeout(),
        }
    }
}
