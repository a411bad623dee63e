//! Replies and events nested deeper than `serde_json` builds values (128 levels): valid JSON
//! that QEMU could send. The client completes the command with the reply's text; decoding it
//! into a value is a typed error, never a silent `Null`.

mod common;

use serde_json::{Value, json};
use xsio_core::Input;
use xsio_qmp::{CloseReason, Command, CommandError, Config, Output, ProtocolError, Return};

use common::{epoch, ready};

/// `depth` nested arrays around `1`.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Runs one command on a negotiated client and answers it with `reply`.
fn reply_to_one_command(reply: &str) -> Return {
    let now = epoch();
    let mut qmp = ready(Config::default(), now);
    let op = qmp.execute(now, Command::new("query-deep"));
    assert!(matches!(qmp.poll_output(), Some(Output::Transmit(_))));
    let message = format!(r#"{{"return": {reply}, "id": 1}}"#);
    qmp.handle_input(now, Input::Bytes(message.as_bytes()));
    match qmp.poll_output() {
        Some(Output::Done { id, result: Ok(r) }) if id == op => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reply_too_deep_for_a_value_is_a_bad_reply_and_keeps_its_text() {
    let text = nested(200);
    let reply = reply_to_one_command(&text);
    assert_eq!(reply.as_str(), text);
    match reply.to_value() {
        Err(CommandError::BadReply { reason }) => {
            assert!(reason.contains("recursion limit"), "{reason}");
        }
        other => panic!("expected BadReply, got {other:?}"),
    }
    assert!(matches!(
        reply.parse::<Value>(),
        Err(CommandError::BadReply { .. })
    ));
}

#[test]
fn a_reply_within_the_limit_decodes_to_its_value() {
    let reply = reply_to_one_command(&nested(100));
    let mut expected = json!(1);
    for _ in 0..100 {
        expected = json!([expected]);
    }
    assert_eq!(reply.to_value().unwrap(), expected);
    let reply = reply_to_one_command(r#"{"status": "running", "running": true}"#);
    assert_eq!(
        reply.to_value().unwrap(),
        json!({"status": "running", "running": true})
    );
}

#[test]
fn an_event_too_deep_for_a_value_ends_the_connection_with_a_typed_error() {
    let now = epoch();
    let mut qmp = ready(Config::default(), now);
    let op = qmp.execute(now, Command::new("cont"));
    assert!(matches!(qmp.poll_output(), Some(Output::Transmit(_))));
    let event = format!(
        r#"{{"event": "DEEP", "data": {{"x": {}}}, "timestamp": {{"seconds": 1, "microseconds": 2}}}}"#,
        nested(200)
    );
    qmp.handle_input(now, Input::Bytes(event.as_bytes()));
    let Some(Output::Done {
        id,
        result: Err(CommandError::Protocol(error)),
    }) = qmp.poll_output()
    else {
        panic!("the pending command fails with the protocol error");
    };
    assert_eq!(id, op);
    let Some(Output::Closed(CloseReason::Protocol(ProtocolError::Wire(wire)))) = qmp.poll_output()
    else {
        panic!("the connection closes with the protocol error");
    };
    assert_eq!(ProtocolError::Wire(wire.clone()), error);
    assert!(wire.to_string().contains("recursion limit"), "{wire}");
}
