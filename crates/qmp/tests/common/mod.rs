//! What the client-level integration tests share: an epoch, a negotiated client, and its
//! outputs rendered as short lines.
#![allow(dead_code, unreachable_pub)]

use std::time::Instant;

use xsio_core::Input;
use xsio_qmp::{Client, Config, Output};

pub const GREETING: &[u8] = br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;

#[allow(clippy::disallowed_methods)] // A test epoch.
pub fn epoch() -> Instant {
    Instant::now() // tidy:allow (a test epoch)
}

/// What came out of the client, in order, as short lines.
pub fn drain(qmp: &mut Client<u32>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(output) = qmp.poll_output() {
        lines.push(match output {
            Output::Transmit(t) => format!("tx {}", String::from_utf8_lossy(&t.bytes).trim_end()),
            Output::Connected(_) => "connected".to_owned(),
            Output::Done { id, result: Ok(r) } => format!("done {id} ok {}", r.as_str()),
            Output::Done { id, result: Err(e) } => format!("done {id} err {e:?}"),
            Output::Event(e) => format!("event {}", e.name),
            Output::Closed(reason) => format!("closed {reason:?}"),
            other => format!("{other:?}"),
        });
    }
    lines
}

/// A client created at `now` and taken through negotiation.
pub fn ready(config: Config, now: Instant) -> Client<u32> {
    let mut qmp = Client::new(config, now);
    qmp.handle_input(now, Input::Bytes(GREETING));
    assert_eq!(
        drain(&mut qmp),
        [r#"tx {"execute":"qmp_capabilities","id":0}"#]
    );
    qmp.handle_input(now, Input::Bytes(br#"{"return": {}, "id": 0}"#));
    assert_eq!(drain(&mut qmp), ["connected"]);
    qmp
}
