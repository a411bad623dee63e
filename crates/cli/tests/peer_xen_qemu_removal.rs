//! `xsio-device`'s removal (through `xsio-io-std`'s L2 driver) of a disk that QEMU's real
//! Xen PV backend serves (`qemu-system-xen`, `-machine xenpv`, under the testkit's shim),
//! on our `xsio xenstored` and on Xen 4.17's own C xenstored (the guest then reaches it over
//! a real ring). The disk is added as a toolstack adds it (`DeviceOp::add`, qdisk) and
//! QEMU, started after, picks it up; the guest's frontend is our `Frontend` machine while
//! the guest runs, or keys written by the test for a guest that connected and was then
//! paused (nothing in it answers). The device model's liveness comes from QEMU's process.
//!
//! The scenarios: a normal unplug (QEMU writes 6 and deletes both directories),
//! QEMU's clean exit in the middle of a removal (the directories vanish: a clean end),
//! QEMU killed with a paused guest (nothing answers: the bodge, at once when the process
//! is known gone, after the blind wait when the host cannot tell), QEMU alive with a paused
//! guest (no blind close: QEMU closes once the guest, unpaused, does). QEMU's xenstore
//! connections go through the testkit's recording proxy, so the tests check who wrote what.

mod common;
mod xen_qemu;

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use common::Daemon;
use xen_qemu::{
    BACKEND, FRONTEND, PORT, RING_REF, backend_state, frontend_config, qemu_requests_after,
    wait_backend_init_wait,
};
use xsio_device::disk::{DiskBackend, DiskSpec};
use xsio_device::{BackendEnd, Completion, Config, DeviceEvent, DeviceOp, Force, Removed};
use xsio_harness::{ActorId, Conn, Harness, Record as HarnessRecord};
use xsio_io_std::host::Host;
use xsio_io_std::l2::{DriveError, XsLinks, run_until, run_until_with};
use xsio_io_std::unix::{UnixConn, now};
use xsio_io_std::xenstore::XsConn;
use xsio_ops::DomainState;
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xen::{
    EventChannel, Flavour, GuestMemory, Record, Recorder, World, XEN_QEMU, XenQemu, XenStored,
};
use xsio_xenbus::{Frontend, FrontendEvent, XenbusState};
use xsio_xs_wire::{Access, Perm};

// The removals on our xenstored.
const ON_OURS: &[(&str, fn())] = xsio_testkit::tests![
    normal_unplug_on_our_xenstored,
    clean_exit_in_the_middle_of_a_removal_on_our_xenstored,
    killed_qemu_with_a_paused_guest_is_bodged_on_our_xenstored,
    live_qemu_with_a_paused_guest_is_not_closed_blind_on_our_xenstored,
    live_qemu_with_a_guest_paused_throughout_escalates
];

// The same removals on Xen's C xenstored.
const ON_XEN: &[(&str, fn())] = xsio_testkit::tests![
    normal_unplug_on_xen_c_xenstored,
    clean_exit_in_the_middle_of_a_removal_on_xen_c_xenstored,
    killed_qemu_with_a_paused_guest_is_bodged_on_xen_c_xenstored,
    live_qemu_with_a_paused_guest_is_not_closed_blind_on_xen_c_xenstored
];

xsio_harness::actors! {
    /// The guest's frontend and the toolstack's operations, side by side.
    enum Machine / Event {
        Frontend(Frontend, FrontendEvent),
        Op(DeviceOp, DeviceEvent),
    }
}

const TOOLSTACK: &str = "/libxl/1/device/vbd/51712";
const QEMU_STARTS: &str = "QEMU starts (no -device: it finds the toolstack's qdisk)";

/// Which xenstored holds the store.
#[derive(Clone, Copy, Debug)]
enum Store {
    /// `xsio xenstored`, the guest on its domain socket.
    Ours,
    /// Xen 4.17's C xenstored, the guest over a real ring.
    XenC,
}

/// The daemon, kept alive for the test's length (stopped on drop).
type Running = (Option<Daemon>, Option<XenStored>);

/// How the host answers "is the device model alive?".
#[derive(Clone, Copy, Debug)]
enum Liveness {
    /// From QEMU's process (`/proc/<pid>` exists).
    Process,
    /// The host cannot tell.
    Unknown,
}

/// A guest's disk added by the toolstack and served by QEMU, its frontend Connected.
struct Bed {
    _daemon: Running,
    _world: World,
    qemu: XenQemu,
    recorder: Recorder,
    dom0: XsConn,
    harness: Harness<Machine>,
    links: XsLinks,
    tool: Conn,
    /// The guest's connection, when our `Frontend` machine runs on it.
    guest_conn: Option<Conn>,
    /// The guest's connection, when the test writes the frontend's keys itself.
    hand: Option<XsConn>,
    frontend: Option<ActorId>,
    guest: Rc<Cell<DomainState>>,
    /// The removal running, and its events so far.
    removal: Option<ActorId>,
    events: Vec<DeviceEvent>,
    _memory: GuestMemory,
    _channel: EventChannel,
}

fn disk_spec(image: &std::path::Path) -> DiskSpec {
    DiskSpec::parse(&format!(
        "vdev=xvda,format=raw,access=rw,devtype=disk,target={}",
        image.display()
    ))
    .unwrap()
}

impl Bed {
    /// Checks that QEMU, from the note starting with `after` on, wrote Closed (6) to its
    /// backend's state and deleted each of the directories `gone`.
    fn assert_qemu_closed_and_removed(&self, after: &str, gone: &[&str]) {
        let qemu = qemu_requests_after(&self.recorder.records(), after);
        assert!(
            qemu_wrote(&qemu, &format!("{BACKEND}/state"), "6"),
            "QEMU closed: {qemu:?}"
        );
        for dir in gone {
            assert!(qemu_removed(&qemu, dir), "QEMU deleted {dir}: {qemu:?}");
        }
    }

    /// The store, the toolstack's add, QEMU, and the frontend Connected: our `Frontend`
    /// machine when `running_frontend`, else keys the test writes (a guest paused after
    /// it connected).
    fn new(store: Store, liveness: Liveness, running_frontend: bool) -> Bed {
        let world = World::new().expect("cc is there: the harness checked");
        // The guest's memory before any ring is introduced: the xenstore ring is its page
        // 1, the blkif ring page 8 (a file is never shrunk while mapped).
        let memory = GuestMemory::create(&world, 1, 16).unwrap();
        let channel = EventChannel::open(&world, 1, PORT).unwrap();
        let (daemon, dom0_socket, guest) = match store {
            Store::Ours => {
                let d = Daemon::start(&[1], &[]);
                let guest = XsConn::connect(d.domain_socket(1)).unwrap();
                let socket = d.socket.clone();
                ((Some(d), None), socket, guest)
            }
            Store::XenC => {
                let d = XenStored::start(&world, Flavour::C, &[]).expect("checked");
                let mut toolstack = XsConn::connect(d.socket()).unwrap();
                toolstack.write("/local/domain/1", "").unwrap();
                toolstack
                    .set_perms("/local/domain/1", &[Perm::new(Access::None, 1)])
                    .unwrap();
                let ring = d.introduce(1).expect("introduce guest 1");
                let guest = XsConn::from_conn(
                    UnixConn::from_stream(ring),
                    xsio_xs_client::Config::default(),
                );
                let socket = d.socket().to_owned();
                ((None, Some(d)), socket, guest)
            }
        };
        let guest_state = Rc::new(Cell::new(DomainState::Running));
        let pid = Rc::new(Cell::new(None::<u32>));
        let host = {
            let guest_state = guest_state.clone();
            let pid = pid.clone();
            Host::new()
                .domain_info(move |_| Ok(guest_state.get()))
                .device_model(move |_| match liveness {
                    Liveness::Process => Some(
                        pid.get()
                            .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists()),
                    ),
                    Liveness::Unknown => None,
                })
        };
        let start = now();
        let mut harness: Harness<Machine> = Harness::new(start);
        let mut links = XsLinks::default().with_host(host);
        let tool = links.add(&mut harness, XsConn::connect(&dom0_socket).unwrap());
        let (guest_conn, hand) = if running_frontend {
            (Some(links.add(&mut harness, guest)), None)
        } else {
            (None, Some(guest))
        };

        // The toolstack's add (qdisk: QEMU serves it, no wait for InitWait).
        let image = world.path("disk.img");
        std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
        let spec = disk_spec(&image).add_spec(1, 0, DiskBackend::Qdisk, "");
        let add = harness.add(
            tool,
            Machine::Op(DeviceOp::add(Config::default(), spec, start)),
        );
        harness.drain(add);
        run_until(&mut harness, &mut links, Duration::from_secs(20), |w| {
            op_of(w, add).is_done()
        })
        .expect("the add completes");
        assert!(
            matches!(
                op_of(&harness, add).completion(),
                Some(Completion::Added(Ok(_)))
            ),
            "{:?}",
            op_of(&harness, add).completion()
        );
        harness.take_log();

        let recorder = Recorder::start(&world, &dom0_socket, "qemu-xenstore").unwrap();
        recorder.note(QEMU_STARTS);
        let qemu = XenQemu::builder(&world, recorder.socket(), 1)
            .start()
            .expect("qemu-system-xen is there: the harness checked");
        pid.set(Some(qemu.pid()));
        let mut dom0 = XsConn::connect(&dom0_socket).unwrap();
        wait_backend_init_wait(&mut dom0, &qemu);
        let mut bed = Bed {
            _daemon: daemon,
            _world: world,
            qemu,
            recorder,
            dom0,
            harness,
            links,
            tool,
            guest_conn,
            hand,
            frontend: None,
            guest: guest_state,
            removal: None,
            events: Vec::new(),
            _memory: memory,
            _channel: channel,
        };
        if running_frontend {
            bed.connect_frontend_machine(&image);
        } else {
            bed.connect_by_hand();
        }
        assert_eq!(backend_state(&mut bed.dom0), XenbusState::Connected);
        bed.recorder.note("frontend Connected");
        bed
    }

    /// Our `Frontend` machine on the guest's connection, run to Connected.
    fn connect_frontend_machine(&mut self, image: &std::path::Path) {
        let frontend = Frontend::new(frontend_config(image), self.harness.now());
        self.recorder
            .note("frontend: our Frontend machine connects");
        let conn = self
            .guest_conn
            .expect("the guest's connection is the harness's");
        let id = self.harness.add(conn, Machine::Frontend(frontend));
        self.harness.drain(id);
        let qemu = &self.qemu;
        run_until(
            &mut self.harness,
            &mut self.links,
            Duration::from_secs(20),
            |w| matches!(w.actor(id), Machine::Frontend(f) if f.state() == XenbusState::Connected),
        )
        .unwrap_or_else(|e| panic!("not connected ({e:?}): {}", qemu.log()));
        self.frontend = Some(id);
    }

    /// The guest's kernel connecting, written by the test on the guest's connection: the
    /// ring and channel keys and Initialised, then Connected once the backend is.
    fn connect_by_hand(&mut self) {
        self.recorder
            .note("frontend (by hand): ring-ref, event-channel, protocol, state=3");
        let guest = self.hand.as_mut().expect("a guest played by hand");
        guest
            .transaction(|tx| {
                tx.write(&format!("{FRONTEND}/ring-ref"), RING_REF.to_string())?;
                tx.write(&format!("{FRONTEND}/event-channel"), PORT.to_string())?;
                tx.write(&format!("{FRONTEND}/protocol"), "x86_64-abi")?;
                tx.write(&format!("{FRONTEND}/state"), "3")
            })
            .unwrap();
        let waited = now() + Duration::from_secs(20);
        while backend_state(&mut self.dom0) != XenbusState::Connected {
            assert!(now() < waited, "QEMU did not connect: {}", self.qemu.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        self.frontend_writes("4");
    }

    /// The guest's kernel writing its frontend state.
    fn frontend_writes(&mut self, state: &str) {
        self.recorder
            .note(format!("frontend (by hand): state={state}"));
        let guest = self.hand.as_mut().expect("a guest played by hand");
        guest
            .write(&format!("{FRONTEND}/state"), state.to_owned())
            .unwrap();
    }

    /// Starts a removal with `config`, the guest as `guest` (force AUTO).
    fn start_removal(&mut self, config: Config, guest: DomainState) {
        self.guest.set(guest);
        self.recorder
            .note(format!("toolstack: removal starts, guest {guest:?}"));
        let device = xsio_device::Device::new("vbd", 1, 51712).with_backend(0, "qdisk");
        let op = DeviceOp::remove(config, device, Force::Auto, self.harness.now());
        let id = self.harness.add(self.tool, Machine::Op(op));
        self.harness.drain(id);
        self.removal = Some(id);
    }

    /// Runs the removal for `limit` at most: its completion, or `None` if it is still
    /// running then. `during` sees each event as it happens (to act in the middle); every
    /// event is kept in `events` and noted in the recording.
    fn run_removal(
        &mut self,
        limit: Duration,
        mut during: impl FnMut(&DeviceEvent, &mut XenQemu, &Recorder),
    ) -> Option<Completion> {
        let mut done = None;
        let (qemu, recorder, events) = (&mut self.qemu, &self.recorder, &mut self.events);
        let run = run_until_with(&mut self.harness, &mut self.links, limit, |w| {
            for record in w.take_log() {
                if let HarnessRecord::Event {
                    event: Event::Op(event),
                    ..
                } = record
                {
                    recorder.note(format!("toolstack: {event}"));
                    during(&event, qemu, recorder);
                    if let DeviceEvent::Done(completion) = &event {
                        done = Some(completion.clone());
                    }
                    events.push(event);
                }
            }
            done.is_some()
        });
        match run {
            Ok(()) => done,
            Err(DriveError::TimedOut(_)) => None,
            Err(e) => panic!("driving the removal: {e}: {:?}", self.events),
        }
    }

    /// A removal from start to completion (60 s at most).
    fn remove(
        &mut self,
        config: Config,
        guest: DomainState,
        during: impl FnMut(&DeviceEvent, &mut XenQemu, &Recorder),
    ) -> Completion {
        self.start_removal(config, guest);
        self.run_removal(Duration::from_secs(60), during)
            .unwrap_or_else(|| panic!("the removal did not complete: {:?}", self.events))
    }

    /// The device's three areas are gone, and the parents they alone kept.
    fn assert_pruned(&mut self) {
        for gone in [
            BACKEND,
            FRONTEND,
            TOOLSTACK,
            "/libxl/1",
            "/local/domain/1/device",
            "/local/domain/0/backend",
        ] {
            assert!(!self.dom0.exists(gone).unwrap(), "{gone} is left");
        }
    }

    /// After a removal that QEMU, alive, answered by closing: waits (10 s at most) for
    /// QEMU's own deletion of its backend directory to land, then checks the device's
    /// three areas are gone. QEMU writes its backend state without checking the directory
    /// is still there (it writes Closed twice), so a write of QEMU's that lands after the
    /// removal's prune recreates the backend's parents, and QEMU's own deletion then
    /// removes only the backend directory: the empty parents are checked gone unless the
    /// recording shows such a late write (then they are what it left; reported).
    fn settle_and_assert_pruned(&mut self) {
        let waited = now() + Duration::from_secs(10);
        loop {
            let records = self.recorder.records();
            let qemu = qemu_requests_after(&records, "toolstack: removal starts");
            if qemu_removed(&qemu, BACKEND) && !self.dom0.exists(BACKEND).unwrap() {
                break;
            }
            assert!(
                now() < waited,
                "QEMU did not delete its backend directory: {}",
                self.recorder.transcript(&[])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for gone in [BACKEND, FRONTEND, TOOLSTACK, "/libxl/1"] {
            assert!(!self.dom0.exists(gone).unwrap(), "{gone} is left");
        }
        let records = self.recorder.records();
        let late: Vec<Record> = qemu_requests_after(&records, "toolstack: removed /")
            .into_iter()
            .filter(|r| {
                matches!(r, Record::Message { kind, fields, .. }
                if kind == "WRITE" && fields.first().is_some_and(|p| p.starts_with(BACKEND)))
            })
            .collect();
        if late.is_empty() {
            self.assert_pruned();
        } else {
            eprintln!(
                "QEMU wrote after the prune, recreating the backend's parents: {late:?}; left: {:?}",
                self.dom0.directory("/local/domain/0/backend/qdisk/1")
            );
        }
    }

    /// Writes the recording to `testdata/xen-qemu/<name>.txt` when recording.
    fn save(&self, name: &str, test: &str, store: Store, what: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/xen-qemu")
            .join(format!("{name}.txt"));
        let daemon = match store {
            Store::Ours => "xsio xenstored",
            Store::XenC => "Xen 4.17's C xenstored",
        };
        let first = format!(
            "QEMU 7.2 (Debian qemu-system-xen: -machine xenpv -xen-domid 1 -xen-attach, no -device) on {daemon}, the disk added by xsio-device as a toolstack does (qdisk, params aio:IMG)"
        );
        let produced = format!(
            "recorded by crates/cli/tests/peer_xen_qemu_removal.rs ({test}) with XSIO_RECORD_TRANSCRIPTS=1"
        );
        let header = [
            first.as_str(),
            produced.as_str(),
            what,
            "every message of QEMU's xenstore connections through xsio_testkit::xen::Recorder (format: crates/testkit/src/xen/record.rs); '!' lines are the test's actions and the removal's steps",
        ];
        self.recorder.save_if_recording(&path, &header).unwrap();
    }
}

fn op_of(w: &Harness<Machine>, id: ActorId) -> &DeviceOp {
    match w.actor(id) {
        Machine::Op(op) => op,
        Machine::Frontend(_) => panic!("not an operation"),
    }
}

/// Whether QEMU wrote `value` to `path` among `records`.
fn qemu_wrote(records: &[Record], path: &str, value: &str) -> bool {
    records
        .iter()
        .any(|r| r.is_request("WRITE", path, Some(value)))
}

fn qemu_removed(records: &[Record], path: &str) -> bool {
    records.iter().any(|r| r.is_request("RM", path, None))
}

/// Whether any of `records` is a request that changes the store.
fn changes_the_store(records: &[Record]) -> bool {
    records.iter().any(|r| {
        matches!(r, Record::Message { kind, .. }
            if ["WRITE", "RM", "MKDIR", "SET_PERMS"].contains(&kind.as_str()))
    })
}

fn removed(completion: &Completion) -> &Removed {
    match completion {
        Completion::Removed(removal) => {
            assert!(removal.pruned, "{removal:?}");
            removal.result.as_ref().unwrap_or_else(|e| panic!("{e}"))
        }
        other => panic!("not a removal: {other:?}"),
    }
}

/// Checks that `completion` is a removal that QEMU, seen alive, answered: its backend
/// Closed (or already gone), with no escalation and no bodge in `events`.
fn assert_closed_by_qemu(completion: &Completion, events: &[DeviceEvent]) {
    let removed = removed(completion);
    assert!(
        matches!(removed.backend, BackendEnd::Closed | BackendEnd::Gone),
        "{removed:?}: {events:?}"
    );
    assert!(!removed.escalated && !bodged(events), "{events:?}");
    assert!(events.contains(&DeviceEvent::DeviceModel { alive: Some(true) }));
}

fn bodged(events: &[DeviceEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, DeviceEvent::BodgeWait(_) | DeviceEvent::Bodged { .. }))
}

/// A normal unplug, the guest running: the removal asks (online=0, Closing), our frontend
/// follows, QEMU writes Closed and deletes both directories at once; the removal ends
/// cleanly (the backend seen Closed or already gone) and prunes the rest.
fn normal_unplug(store: Store, test: &str) {
    let mut bed = Bed::new(store, Liveness::Process, true);
    let completion = bed.remove(Config::default(), DomainState::Running, |_, _, _| {});
    assert_closed_by_qemu(&completion, &bed.events);
    let frontend = bed.frontend.unwrap();
    run_until(
        &mut bed.harness,
        &mut bed.links,
        Duration::from_secs(10),
        |w| matches!(w.actor(frontend), Machine::Frontend(f) if f.is_stopped()),
    )
    .expect("the frontend stops");
    bed.settle_and_assert_pruned();
    bed.assert_qemu_closed_and_removed("toolstack: removal", &[FRONTEND, BACKEND]);
    bed.save(
        &format!("removal-unplug-{}", store_name(store)),
        test,
        store,
        "xsio-device removes the disk, guest running, our frontend connected: QEMU writes 6 and deletes both directories",
    );
}

fn store_name(store: Store) -> &'static str {
    match store {
        Store::Ours => "xsio",
        Store::XenC => "xen-c",
    }
}

fn normal_unplug_on_our_xenstored() {
    normal_unplug(Store::Ours, "normal_unplug_on_our_xenstored");
}

fn normal_unplug_on_xen_c_xenstored() {
    normal_unplug(Store::XenC, "normal_unplug_on_xen_c_xenstored");
}

/// The guest paused after it connected (nothing in it answers), QEMU alive: QEMU goes to
/// Closing and waits for the frontend; in the middle of that wait QEMU exits cleanly and
/// deletes both directories. The removal ends cleanly (backend gone), prunes, no bodge.
fn clean_exit_in_the_middle_of_a_removal(store: Store, test: &str) {
    let mut bed = Bed::new(store, Liveness::Process, false);
    let mut terminated = false;
    let completion = bed.remove(
        Config::default(),
        DomainState::Paused,
        |event, qemu, recorder| {
            if !terminated
                && matches!(
                    event,
                    DeviceEvent::StillWaiting {
                        state: XenbusState::Closing,
                        ..
                    }
                )
            {
                recorder.note("SIGTERM to QEMU");
                qemu.terminate();
                terminated = true;
            }
        },
    );
    let events = &bed.events;
    assert!(
        terminated,
        "the removal never waited on a Closing backend: {events:?}"
    );
    let removed = removed(&completion);
    assert_eq!(removed.backend, BackendEnd::Gone, "{events:?}");
    assert!(!removed.escalated && !bodged(events), "{events:?}");
    assert!(bed.qemu.wait_exit(Duration::from_secs(20)).success());
    bed.assert_pruned();
    let qemu = qemu_requests_after(&bed.recorder.records(), "SIGTERM to QEMU");
    assert!(qemu_removed(&qemu, FRONTEND) && qemu_removed(&qemu, BACKEND));
    assert!(!qemu_wrote(&qemu, &format!("{BACKEND}/state"), "6"));
    bed.save(
        &format!("removal-clean-exit-{}", store_name(store)),
        test,
        store,
        "xsio-device removes the disk, guest paused after connecting: QEMU waits in Closing, then SIGTERM: it deletes both directories",
    );
}

fn clean_exit_in_the_middle_of_a_removal_on_our_xenstored() {
    clean_exit_in_the_middle_of_a_removal(
        Store::Ours,
        "clean_exit_in_the_middle_of_a_removal_on_our_xenstored",
    );
}

fn clean_exit_in_the_middle_of_a_removal_on_xen_c_xenstored() {
    clean_exit_in_the_middle_of_a_removal(
        Store::XenC,
        "clean_exit_in_the_middle_of_a_removal_on_xen_c_xenstored",
    );
}

/// QEMU killed, the guest paused: nothing will ever close the backend. With QEMU's
/// process known gone the removal closes it itself at once (the bodge, inside a
/// transaction); when the host cannot tell, after libxl's blind wait. Either way the
/// removal succeeds and prunes everything QEMU left.
fn killed_qemu_with_a_paused_guest_is_bodged(store: Store, test: &str) {
    for (liveness, blind) in [(Liveness::Process, false), (Liveness::Unknown, true)] {
        let mut bed = Bed::new(store, liveness, false);
        bed.recorder.note("SIGKILL to QEMU");
        bed.qemu.kill();
        bed.qemu.wait_exit(Duration::from_secs(20));
        assert!(
            bed.dom0.exists(BACKEND).unwrap(),
            "a killed QEMU cleans nothing"
        );
        let config = Config::default().scaled(0.1).unwrap();
        let completion = bed.remove(config, DomainState::Paused, |_, _, _| {});
        let events = &bed.events;
        let removed = removed(&completion);
        assert_eq!(removed.backend, BackendEnd::Bodged, "{events:?}");
        assert_eq!(
            events
                .iter()
                .any(|e| matches!(e, DeviceEvent::BodgeWait(_))),
            blind,
            "{liveness:?}: {events:?}"
        );
        let alive = match liveness {
            Liveness::Process => Some(false),
            Liveness::Unknown => None,
        };
        assert!(
            events.contains(&DeviceEvent::DeviceModel { alive }),
            "{events:?}"
        );
        assert!(
            events.contains(&DeviceEvent::Bodged { wrote: true }),
            "{events:?}"
        );
        bed.assert_pruned();
        // A read QEMU had in flight may still pass the proxy; nothing that changes the
        // store does.
        let qemu = qemu_requests_after(&bed.recorder.records(), "SIGKILL to QEMU");
        assert!(
            !changes_the_store(&qemu),
            "QEMU cleaned after its kill: {qemu:?}"
        );
        if !blind {
            bed.save(
                &format!("removal-killed-paused-{}", store_name(store)),
                test,
                store,
                "QEMU killed, guest paused: xsio-device closes the backend itself (the bodge); QEMU changes nothing after the kill",
            );
        }
    }
}

fn killed_qemu_with_a_paused_guest_is_bodged_on_our_xenstored() {
    killed_qemu_with_a_paused_guest_is_bodged(
        Store::Ours,
        "killed_qemu_with_a_paused_guest_is_bodged_on_our_xenstored",
    );
}

fn killed_qemu_with_a_paused_guest_is_bodged_on_xen_c_xenstored() {
    killed_qemu_with_a_paused_guest_is_bodged(
        Store::XenC,
        "killed_qemu_with_a_paused_guest_is_bodged_on_xen_c_xenstored",
    );
}

/// QEMU alive, the guest paused: libxl would close the backend blind after 2 s, under a
/// guest whose ring is still mapped. Ours asks QEMU's process, finds it alive, and waits:
/// QEMU goes to Closing and waits for the frontend; past the bodge timeout the guest is
/// unpaused and its frontend closes; QEMU then closes and deletes both directories. The
/// toolstack never wrote the backend's state past Closing.
fn live_qemu_with_a_paused_guest_is_not_closed_blind(store: Store, test: &str) {
    let mut bed = Bed::new(store, Liveness::Process, false);
    // libxl's constants halved: the blind close would come after 1 s, the destroy timeout
    // after 5 s.
    let config = Config::default().scaled(0.5).unwrap();
    let bodge_after = config.qemu_bodge_timeout;
    bed.start_removal(config, DomainState::Paused);
    let still = bed.run_removal(bodge_after * 2, |_, _, _| {});
    assert_eq!(
        still, None,
        "ended while the guest was paused: {:?}",
        bed.events
    );
    assert_eq!(
        backend_state(&mut bed.dom0),
        XenbusState::Closing,
        "QEMU waits for the guest"
    );
    assert!(!bodged(&bed.events), "{:?}", bed.events);
    // The user unpauses the guest; its kernel sees the backend Closing and closes
    // (Closing, then Closed: QEMU closes its end on the frontend's Closed).
    bed.frontend_writes("5");
    bed.frontend_writes("6");
    let completion = bed
        .run_removal(Duration::from_secs(20), |_, _, _| {})
        .unwrap_or_else(|| panic!("not done after the unpause: {:?}", bed.events));
    assert_closed_by_qemu(&completion, &bed.events);
    bed.settle_and_assert_pruned();
    bed.assert_qemu_closed_and_removed("frontend (by hand): state=6", &[FRONTEND, BACKEND]);
    bed.save(
        &format!("removal-live-paused-{}", store_name(store)),
        test,
        store,
        "guest paused, QEMU alive: xsio-device asks, QEMU waits in Closing for the guest; unpaused, the frontend writes 5 then 6, and QEMU writes 6 and deletes both directories",
    );
}

fn live_qemu_with_a_paused_guest_is_not_closed_blind_on_our_xenstored() {
    live_qemu_with_a_paused_guest_is_not_closed_blind(
        Store::Ours,
        "live_qemu_with_a_paused_guest_is_not_closed_blind_on_our_xenstored",
    );
}

fn live_qemu_with_a_paused_guest_is_not_closed_blind_on_xen_c_xenstored() {
    live_qemu_with_a_paused_guest_is_not_closed_blind(
        Store::XenC,
        "live_qemu_with_a_paused_guest_is_not_closed_blind_on_xen_c_xenstored",
    );
}

/// QEMU alive, the guest paused throughout: nothing is closed blind; QEMU waits in
/// Closing for the guest until the destroy timeout, then force AUTO escalates to ON, whose
/// request removes the frontend directory with the close request; QEMU, seeing its
/// frontend gone, closes itself and deletes both directories. The removal succeeds,
/// escalated, without ever writing the backend's state past Closing.
fn live_qemu_with_a_guest_paused_throughout_escalates() {
    let mut bed = Bed::new(Store::Ours, Liveness::Process, false);
    // libxl's constants by a fifth: bodge after 400 ms, destroy timeout 2 s.
    let config = Config::default().scaled(0.2).unwrap();
    let completion = bed.remove(config, DomainState::Paused, |_, _, _| {});
    let events = &bed.events;
    let removed = removed(&completion);
    assert!(removed.escalated, "{events:?}");
    assert!(
        matches!(removed.backend, BackendEnd::Closed | BackendEnd::Gone),
        "{events:?}"
    );
    assert!(!bodged(events), "{events:?}");
    assert!(events.contains(&DeviceEvent::RemovalRequested {
        backend: XenbusState::Closing,
        force: Force::On
    }));
    bed.settle_and_assert_pruned();
    bed.assert_qemu_closed_and_removed("toolstack: timed out with force auto", &[BACKEND]);
    bed.save(
        "removal-live-paused-escalated-xsio",
        "live_qemu_with_a_guest_paused_throughout_escalates",
        Store::Ours,
        "guest paused throughout, QEMU alive: QEMU waits in Closing; at the destroy timeout force ON removes the frontend directory with the request, and QEMU writes 6 and deletes the backend",
    );
}

fn main() -> std::process::ExitCode {
    let cc = Peer::runs("cc", "cc", &["--version"]);
    let qemu = Peer::file(XEN_QEMU);
    let xen = Peer::file(Flavour::C.program());
    let ours: &[&Peer] = &[&cc, &qemu];
    let with_xen: &[&Peer] = &[&cc, &qemu, &xen];
    Tests::new()
        .each(ours, ON_OURS)
        .each(with_xen, ON_XEN)
        .run()
}
