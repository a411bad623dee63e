//! The machines of the xenbus tests on one harness: our backends and frontends and the
//! toolstack's device operations (`xsio-device`'s add and removal), with the few
//! questions every such test asks of the world (a machine's xenbus state, an operation's
//! completion or removal, whether anything failed).
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

use std::path::Path;

use xsio_core::OpId;
use xsio_device::{
    BackendEnd, Completion, Config, Device, DeviceEvent, DeviceOp, Force, Removal, Removed,
};
use xsio_harness::{ActorId, Conn, Harness, Owner, Record};
use xsio_ops::{OpError, Reply};
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

/// Adds the two `ends` of a device (as [`crate::block::ends`] makes them), the backend on
/// connection `back` and the frontend on `front`, and lets each take its first steps;
/// their ids.
pub fn add_ends(
    world: &mut Harness<Machine>,
    back: Conn,
    front: Conn,
    ends: (Backend, Frontend),
) -> (ActorId, ActorId) {
    let b = world.add(back, Machine::Backend(ends.0));
    let f = world.add(front, Machine::Frontend(ends.1));
    world.drain(b);
    world.drain(f);
    (b, f)
}

/// Whether both `ends` are in `state`.
pub fn both_in(world: &Harness<Machine>, ends: (ActorId, ActorId), state: XenbusState) -> bool {
    state_of(world, ends.0) == state && state_of(world, ends.1) == state
}

/// Starts `xsio-device`'s removal (force AUTO, default timings) of guest 1's block device
/// `devid`, its backend dom0's `qdisk`, by the toolstack on connection `tool`; its id.
pub fn start_removal(world: &mut Harness<Machine>, tool: Conn, devid: u32) -> ActorId {
    let device = Device::new("vbd", 1, devid).with_backend(0, "qdisk");
    let op = DeviceOp::remove(Config::default(), device, Force::Auto, world.now());
    let id = world.add(tool, Machine::Device(op));
    world.drain(id);
    id
}

/// The completion of device operation `id` (`None` while it runs, and for an end).
pub fn completion_of(world: &Harness<Machine>, id: ActorId) -> Option<Completion> {
    match world.actor(id) {
        Machine::Device(op) => op.completion().cloned(),
        _ => None,
    }
}

/// The removal device operation `id` completed; panics (with what there is) when it has
/// not completed, or completed something else.
pub fn removal_of(world: &Harness<Machine>, id: ActorId) -> Removal {
    match completion_of(world, id) {
        Some(Completion::Removed(removal)) => removal,
        other => panic!("not a removal: {other:?}"),
    }
}

/// Checks that `removal` is a device's clean end: its backend Closed with no escalation,
/// `scripts` hotplug scripts run (each exiting 0), and its areas pruned.
pub fn assert_removed_cleanly(removal: &Removal, scripts: u32) {
    assert_eq!(
        removal.result,
        Ok(Removed {
            backend: BackendEnd::Closed,
            escalated: false,
            scripts
        })
    );
    assert!(removal.pruned, "the areas are pruned: {removal:?}");
}

/// The keys of a device that a removal finds closed: both ends in state 6 (Closed), the
/// backend's hotplug `script`, and the toolstack's entry pointing at the backend; as
/// `(path, value)` writes for any client.
pub fn closed_device_keys(device: &Device, script: &Path) -> Vec<(String, String)> {
    let be = device.backend_path();
    vec![
        (format!("{be}/state"), "6".to_owned()),
        (format!("{be}/script"), script.display().to_string()),
        (device.frontend_key("state"), "6".to_owned()),
        (format!("{}/backend", device.toolstack_path()), be),
    ]
}

/// What a clean removal of guest 1's `device` prunes: its backend and frontend
/// directories, the toolstack's entries of the domain, and the parents the device alone
/// kept (dom0's `backend`, the guest's `device`).
pub fn pruned_paths(device: &Device) -> Vec<String> {
    vec![
        device.backend_path(),
        device.frontend_path(),
        "/libxl/1".to_owned(),
        "/local/domain/0/backend".to_owned(),
        "/local/domain/1/device".to_owned(),
    ]
}

/// Takes the world's log and returns the caller's answer to operation `id` (`None` when
/// it is not answered yet), failing on any other record of a failure.
pub fn take_answer(world: &mut Harness<Machine>, id: OpId) -> Option<Result<Reply, OpError>> {
    let is_answer = |record: &Record<Event>| matches!(record, Record::Reply { owner: Owner::Caller, id: done, .. } if *done == id);
    let (answers, others): (Vec<_>, Vec<_>) = world.take_log().into_iter().partition(is_answer);
    for other in others {
        assert!(!format!("{other:?}").contains("Failed"), "{other:?}");
    }
    answers.into_iter().find_map(|answer| match answer {
        Record::Reply { result, .. } => Some(result),
        _ => None,
    })
}

/// Takes the world's log and fails on any record of a failure (a machine's `Failed`
/// event or error).
pub fn assert_nothing_failed(world: &mut Harness<Machine>) {
    for record in world.take_log() {
        let text = format!("{record:?}");
        assert!(!text.contains("Failed"), "{text}");
    }
}
