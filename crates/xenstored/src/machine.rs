//! The server as a [`xsio_core::Machine`], the shape every driver and harness steps.

use crate::server::{ConnId, Output, Server};

/// What a driver feeds the server: bytes a connection sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerInput<'a> {
    /// The connection the bytes came from.
    pub conn: ConnId,
    /// The bytes, in any split.
    pub bytes: &'a [u8],
}

xsio_core::impl_protocol_machine!(impl Machine for Server {
    input<'a> = ServerInput<'a>;
    output = Output;
    |server, now, input| server.handle_input(now, input.conn, input.bytes)
});
