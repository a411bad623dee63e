//! Peer events (a QMP event, the connection's end, the process's exit) reach every machine
//! on their connection, once, in order with the replies queued there, and no other machine.

use std::time::Instant;

use xsio_core::Machine;
use xsio_harness::{Conn, Harness, Record};
use xsio_ops::{Input, InputError, Output, PeerEvent, ProcessExit, QmpEvent};

/// Records what it is handed; asks nothing.
#[derive(Debug, Default)]
struct Listener {
    seen: Vec<PeerEvent>,
}

impl Machine for Listener {
    type Input<'a> = Input<'a>;
    type Output = Output<()>;
    type Error = InputError;

    fn handle_input(&mut self, _now: Instant, input: Input<'_>) -> Result<(), InputError> {
        match input {
            Input::Peer(event) => {
                self.seen.push(event.clone());
                Ok(())
            }
            Input::Reply { id, .. } => Err(InputError::UnknownOp(id)),
            _ => Ok(()),
        }
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_output(&mut self) -> Option<Output<()>> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[test]
fn a_peer_event_reaches_every_machine_on_its_connection_and_no_other() {
    #[allow(clippy::disallowed_methods)] // the test's epoch; later times are virtual
    let epoch = Instant::now();
    let mut world: Harness<Listener> = Harness::new(epoch);
    let qemu = world.connect();
    let other: Conn = world.connect();
    let a = world.add(qemu, Listener::default());
    let b = world.add(qemu, Listener::default());
    let c = world.add(other, Listener::default());

    let stop = PeerEvent::Qmp(QmpEvent {
        name: "STOP".into(),
        data: serde_json::Value::Null,
    });
    world.peer_event(qemu, stop.clone());
    world.peer_event(qemu, PeerEvent::QmpClosed);
    world.peer_event(qemu, PeerEvent::Exited(Some(ProcessExit::Signalled(9))));
    assert_eq!(
        world.next_delivery_for(qemu),
        None,
        "for every machine, not one owner"
    );
    while world.deliver().unwrap() {}

    let expected = vec![
        stop.clone(),
        PeerEvent::QmpClosed,
        PeerEvent::Exited(Some(ProcessExit::Signalled(9))),
    ];
    assert_eq!(world.actor(a).seen, expected);
    assert_eq!(world.actor(b).seen, expected);
    assert!(world.actor(c).seen.is_empty());
    let logged: Vec<_> = world
        .take_log()
        .into_iter()
        .filter_map(|r| match r {
            Record::Peer { conn, event } => Some((conn, event)),
            _ => None,
        })
        .collect();
    assert_eq!(logged.len(), 3);
    assert!(logged.iter().all(|(conn, _)| *conn == qemu));
    assert!(world.is_idle());
}
