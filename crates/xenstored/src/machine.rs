//! The server as a [`xsio_core::Machine`], the shape every driver and harness steps.

use std::time::Instant;

use xsio_core::Machine;

use crate::server::{ConnId, Output, Server};

/// What a driver feeds the server: bytes a connection sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerInput<'a> {
    /// The connection the bytes came from.
    pub conn: ConnId,
    /// The bytes, in any split.
    pub bytes: &'a [u8],
}

impl Machine for Server {
    type Input<'a> = ServerInput<'a>;
    type Output = Output;
    type Error = std::convert::Infallible;

    fn handle_input(&mut self, now: Instant, input: ServerInput<'_>) -> Result<(), Self::Error> {
        Server::handle_input(self, now, input.conn, input.bytes);
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        Server::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        Server::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Server::poll_timeout(self)
    }
}
