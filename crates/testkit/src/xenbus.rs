//! The machines of the xenbus tests on one harness: our backends and frontends and the
//! toolstack's device operations (`xsio-device`'s add and removal), with the few
//! questions every such test asks of the world (a machine's xenbus state, an operation's
//! completion, whether anything failed).
//!
//! ```
//! use std::time::Instant;
//!
//! use xsio_harness::Harness;
//! use xsio_testkit::xenbus::{Machine, state_of};
//! use xsio_testkit::block;
//!
//! let now = Instant::now();
//! let mut world: Harness<Machine> = Harness::new(now);
//! let conn = world.connect();
//! let disk = block::disk();
//! let (areas, _create) = block::create(&disk);
//! let (backend, _frontend) = block::ends(&disk, &areas, 0, now);
//! let b = world.add(conn, Machine::Backend(backend));
//! // A backend waits for its frontend from the start.
//! assert_eq!(state_of(&world, b), xsio_xenbus::XenbusState::InitWait);
//! ```

use xsio_device::{Completion, DeviceEvent, DeviceOp};
use xsio_harness::{ActorId, Harness};
use xsio_xenbus::{Backend, BackendEvent, Frontend, FrontendEvent, XenbusState};

xsio_harness::actors! {
    /// The machines of a xenbus test: backends, frontends, the toolstack's device
    /// operations.
    pub enum Machine / Event {
        Backend(Backend, BackendEvent),
        Frontend(Frontend, FrontendEvent),
        Device(DeviceOp, DeviceEvent),
    }
}

/// The xenbus state of backend or frontend `id` (`Unknown` for a device operation).
pub fn state_of(world: &Harness<Machine>, id: ActorId) -> XenbusState {
    match world.actor(id) {
        Machine::Backend(m) => m.state(),
        Machine::Frontend(m) => m.state(),
        Machine::Device(_) => XenbusState::Unknown,
    }
}

/// The completion of device operation `id` (`None` while it runs, and for an end).
pub fn completion_of(world: &Harness<Machine>, id: ActorId) -> Option<Completion> {
    match world.actor(id) {
        Machine::Device(op) => op.completion().cloned(),
        _ => None,
    }
}

/// Takes the world's log and fails on any record of a failure (a machine's `Failed`
/// event or error).
pub fn assert_nothing_failed(world: &mut Harness<Machine>) {
    for record in world.take_log() {
        let text = format!("{record:?}");
        assert!(!text.contains("Failed"), "{text}");
    }
}
