//! A machine inside a process that can die: once its process is gone (QEMU crashed or
//! exited, the guest destroyed) it takes no more input and asks nothing more, while the
//! answers already on their way are still delivered to it (and dropped), as the harness
//! promises every request one answer.

use std::time::Instant;

use xsio_core::Machine;
use xsio_ops::{Input, InputError, Output};

/// `M`, alive until [`kill`](Gated::kill).
#[derive(Debug)]
pub(crate) struct Gated<M> {
    inner: M,
    alive: bool,
}

impl<M> Gated<M> {
    pub(crate) fn new(inner: M) -> Gated<M> {
        Gated { inner, alive: true }
    }

    /// The machine, as it was when its process died.
    pub(crate) fn inner(&self) -> &M {
        &self.inner
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive
    }

    /// Its process is gone.
    pub(crate) fn kill(&mut self) {
        self.alive = false;
    }
}

impl<M, E> Machine for Gated<M>
where
    M: for<'a> Machine<Input<'a> = Input<'a>, Output = Output<E>, Error = InputError>,
{
    type Input<'a> = Input<'a>;
    type Output = Output<E>;
    type Error = InputError;

    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        if self.alive {
            self.inner.handle_input(now, input)
        } else {
            Ok(())
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.alive {
            self.inner.handle_timeout(now);
        }
    }

    fn poll_output(&mut self) -> Option<Output<E>> {
        if self.alive {
            self.inner.poll_output()
        } else {
            None
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.alive {
            self.inner.poll_timeout()
        } else {
            None
        }
    }
}
