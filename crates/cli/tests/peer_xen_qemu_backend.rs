//! Our xenbus `Frontend` machine (guest 1, on `xsio xenstored`'s domain socket) against
//! QEMU's real Xen PV block backend (`qemu-system-xen`, `-machine xenpv`, `xen-disk`) on
//! our daemon, QEMU running without a hypervisor under the testkit's shim: the ring page is
//! in the guest's memory file, the event channel a pair of FIFOs.
//!
//! QEMU's xenstore connections go through the testkit's recording proxy, so each test also
//! checks what QEMU itself sent (a state it writes and deletes within a millisecond
//! included). With `XSIO_RECORD_TRANSCRIPTS=1` the recordings are written to
//! `testdata/xen-qemu/` (the simulator's QEMU is checked against them).

mod common;
mod xen_qemu;

use std::path::PathBuf;
use std::time::Duration;

use common::Daemon;
use xen_qemu::{
    BACKEND, FRONTEND, PORT, RING_REF, backend_state, frontend_config, qemu_requests_after,
    wait_backend_init_wait,
};
use xsio_harness::Harness;
use xsio_io_std::l2::{XsLinks, run_until};
use xsio_io_std::unix::now;
use xsio_io_std::xenstore::XsConn;
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xen::blkif::{
    BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_OKAY, BlkifRing, PageRequest, SECTOR,
};
use xsio_testkit::xen::{
    EventChannel, GuestMemory, PAGE_SIZE, Record, Recorder, World, XEN_QEMU, XenQemu,
};
use xsio_xenbus::{Frontend, FrontendEvent, XenbusState};

// The tests `main` runs, each with QEMU's Xen backend under the shim.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    frontend_connects_reads_writes_and_closes_with_qemu,
    toolstack_unplug_ends_the_frontend,
    clean_exit_with_the_device_connected,
    killed_qemu_cleans_nothing
];

xsio_harness::actors! {
    /// The one machine of the test.
    enum Machine / Event {
        Frontend(Frontend, FrontendEvent),
    }
}

const DISK_BYTES: usize = 1 << 20;

fn frontend_state(world: &Harness<Machine>, id: xsio_harness::ActorId) -> XenbusState {
    let Machine::Frontend(f) = world.actor(id);
    f.state()
}

/// A guest's disk served by QEMU on our daemon, its frontend ours, Connected on both ends.
struct Setup {
    d: Daemon,
    qemu: XenQemu,
    recorder: Recorder,
    dom0: XsConn,
    harness: Harness<Machine>,
    links: XsLinks,
    id: xsio_harness::ActorId,
    ring: BlkifRing,
    image: PathBuf,
    _world: World,
}

/// QEMU's backend reaches InitWait by itself; our frontend initialises its blkif ring,
/// publishes it and its event channel, and QEMU connects.
fn connected() -> Setup {
    let d = Daemon::start(&[1], &[]);
    let world = World::new().expect("cc is there: the harness checked");
    let memory = GuestMemory::create(&world, 1, 16).unwrap();
    let channel = EventChannel::open(&world, 1, PORT).unwrap();
    let ring = BlkifRing::init(memory, RING_REF, channel);
    let image = world.path("disk.img");
    std::fs::write(&image, vec![0u8; DISK_BYTES]).unwrap();
    let recorder = Recorder::start(&world, &d.socket, "qemu-xenstore").unwrap();
    recorder.note("QEMU starts (-device xen-disk,vdev=xvda)");
    let qemu = XenQemu::builder(&world, recorder.socket(), 1)
        .disk(&image, "xvda")
        .start()
        .expect("qemu-system-xen is there: the harness checked");
    let mut dom0 = XsConn::connect(&d.socket).unwrap();
    wait_backend_init_wait(&mut dom0, &qemu);
    let start = now();
    let mut harness: Harness<Machine> = Harness::new(start);
    let mut links = XsLinks::default();
    let front = links.add(&mut harness, XsConn::connect(d.domain_socket(1)).unwrap());
    let frontend = Frontend::new(frontend_config(&image), start);
    recorder.note("frontend: ring-ref, event-channel, protocol, state=3 (our Frontend)");
    let id = harness.add(front, Machine::Frontend(frontend));
    harness.drain(id);
    run_until(&mut harness, &mut links, Duration::from_secs(20), |w| {
        frontend_state(w, id) == XenbusState::Connected
    })
    .unwrap_or_else(|e| panic!("not connected ({e:?}): {}", qemu.log()));
    assert_eq!(backend_state(&mut dom0), XenbusState::Connected);
    recorder.note("frontend Connected");
    Setup {
        d,
        qemu,
        recorder,
        dom0,
        harness,
        links,
        id,
        ring,
        image,
        _world: world,
    }
}

impl Setup {
    /// Submits `request` on the blkif ring and checks that QEMU answers it with success
    /// (10 s at most; QEMU's log in the message otherwise).
    fn blkif_ok(&mut self, request: PageRequest) {
        let (id, operation) = (request.id, request.operation);
        self.ring.submit(request).unwrap();
        let response = self.ring.response(Duration::from_secs(10)).unwrap();
        assert_eq!(
            response.map(|r| (r.id, r.operation, r.status)),
            Some((id, operation, BLKIF_RSP_OKAY)),
            "{}",
            self.qemu.log()
        );
    }

    /// Writes the recording to `testdata/xen-qemu/<name>.txt` when recording.
    fn save(&self, name: &str, test: &str, what: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/xen-qemu")
            .join(format!("{name}.txt"));
        let produced = format!(
            "recorded by crates/cli/tests/peer_xen_qemu_backend.rs ({test}) with XSIO_RECORD_TRANSCRIPTS=1"
        );
        let header = [
            "QEMU 7.2 (Debian qemu-system-xen: -machine xenpv -xen-domid 1 -xen-attach, -device xen-disk,vdev=xvda) on xsio xenstored",
            produced.as_str(),
            what,
            "every message of QEMU's xenstore connections through xsio_testkit::xen::Recorder (format: crates/testkit/src/xen/record.rs); '!' lines are the test's actions",
        ];
        self.recorder.save_if_recording(&path, &header).unwrap();
    }

    /// Waits (10 s at most) until dom0 sees neither directory.
    fn wait_both_directories_gone(&mut self) {
        let waited = now() + Duration::from_secs(10);
        while self.dom0.exists(BACKEND).unwrap() || self.dom0.exists(FRONTEND).unwrap() {
            assert!(
                now() < waited,
                "QEMU left the directories: {}",
                self.qemu.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the frontend until it has stopped (it saw its backend vanish).
    fn wait_frontend_stopped(&mut self) {
        let id = self.id;
        run_until(
            &mut self.harness,
            &mut self.links,
            Duration::from_secs(20),
            |w| {
                let Machine::Frontend(f) = w.actor(id);
                f.is_stopped()
            },
        )
        .unwrap_or_else(|e| panic!("frontend not stopped ({e:?}): {}", self.qemu.log()));
    }
}

/// The index of the first of `records` that is request `kind` on `path` (with `value`).
fn find(records: &[Record], kind: &str, path: &str, value: Option<&str>) -> Option<usize> {
    records.iter().position(|r| r.is_request(kind, path, value))
}

/// Whether QEMU wrote anything under `dir` among `records`.
fn wrote_under(records: &[Record], dir: &str) -> bool {
    records.iter().any(|r| {
        matches!(r, Record::Message { kind, fields, .. }
            if kind == "WRITE" && fields.first().is_some_and(|p| p.starts_with(dir)))
    })
}

/// Connected; then one blkif write and one read of a page through the ring (data pages
/// granted by reference, the event channel kicked): the written bytes are in the disk
/// image where the request said, and the read bytes are what the image holds; then the
/// frontend closes and QEMU follows to Closed.
fn frontend_connects_reads_writes_and_closes_with_qemu() {
    let mut s = connected();
    // Write: page 10 of the guest's memory to sectors 8..16.
    let written: Vec<u8> = (0..PAGE_SIZE).map(|i| (i * 7 + 3) as u8).collect();
    s.ring.memory().write(10, 0, &written);
    s.recorder
        .note("frontend: blkif WRITE of grant 10 to sector 8");
    s.blkif_ok(PageRequest {
        operation: BLKIF_OP_WRITE,
        id: 41,
        sector: 8,
        gref: 10,
    });
    let image = std::fs::read(&s.image).unwrap();
    let at = (8 * SECTOR) as usize;
    assert_eq!(&image[at..at + PAGE_SIZE], &written[..]);
    assert!(image[..at].iter().all(|b| *b == 0), "nothing before it");
    assert!(
        image[at + PAGE_SIZE..].iter().all(|b| *b == 0),
        "nothing after it"
    );

    // Read: sectors 16..24 of the image (written from outside) into page 11.
    let stored: Vec<u8> = (0..PAGE_SIZE).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    let mut image = image;
    let from = (16 * SECTOR) as usize;
    image[from..from + PAGE_SIZE].copy_from_slice(&stored);
    std::fs::write(&s.image, &image).unwrap();
    s.recorder
        .note("frontend: blkif READ of sector 16 into grant 11");
    s.blkif_ok(PageRequest {
        operation: BLKIF_OP_READ,
        id: 42,
        sector: 16,
        gref: 11,
    });
    assert_eq!(s.ring.memory().read(11, 0, PAGE_SIZE), stored);

    s.recorder.note("frontend: state=5 (our Frontend closes)");
    let at = s.harness.now();
    let Machine::Frontend(f) = s.harness.actor_mut(s.id);
    f.close(at);
    s.harness.drain(s.id);
    let id = s.id;
    run_until(&mut s.harness, &mut s.links, Duration::from_secs(20), |w| {
        frontend_state(w, id) == XenbusState::Closed
    })
    .unwrap_or_else(|e| panic!("not closed ({e:?}): {}", s.qemu.log()));
    let waited = now() + Duration::from_secs(10);
    while backend_state(&mut s.dom0) != XenbusState::Closed {
        assert!(
            now() < waited,
            "QEMU's backend never reached Closed: {}",
            s.qemu.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    s.recorder.note("frontend and backend Closed");
    let records = s.recorder.records();
    let all = qemu_requests_after(&records, "QEMU starts (-device xen-disk,vdev=xvda)");
    let state = format!("{BACKEND}/state");
    let init_wait = find(&all, "WRITE", &state, Some("2")).expect("QEMU wrote InitWait");
    let connected = find(&all, "WRITE", &state, Some("4")).expect("QEMU wrote Connected");
    let closing = find(&all, "WRITE", &state, Some("5")).expect("QEMU wrote Closing");
    let closed = find(&all, "WRITE", &state, Some("6")).expect("QEMU wrote Closed");
    assert!(init_wait < connected && connected < closing && closing < closed);
    // Connected only once the frontend had published its ring.
    let after_front = qemu_requests_after(
        &records,
        "frontend: ring-ref, event-channel, protocol, state=3 (our Frontend)",
    );
    assert!(find(&after_front, "WRITE", &state, Some("4")).is_some());
    s.save(
        "connect-io-close",
        "frontend_connects_reads_writes_and_closes_with_qemu",
        "start, our frontend connects, one blkif write and one read, the frontend closes, QEMU follows to Closed",
    );
}

/// The toolstack's unplug as libxl does it (backend `online=0` and `state=5` in one
/// transaction): QEMU writes Closed and at once deletes both directories, without waiting
/// for the frontend. Our frontend, which only sees watch events, follows: it ends stopped,
/// and nothing of the device is left in the store.
fn toolstack_unplug_ends_the_frontend() {
    let mut s = connected();
    s.recorder
        .note("toolstack: one transaction: backend online=0, state=5");
    s.dom0
        .transaction(|tx| {
            tx.write(&format!("{BACKEND}/online"), "0")?;
            tx.write(&format!("{BACKEND}/state"), "5")
        })
        .unwrap();
    s.wait_frontend_stopped();
    s.wait_both_directories_gone();
    s.recorder.note("both directories gone, frontend stopped");
    let records = s.recorder.records();
    let after = qemu_requests_after(
        &records,
        "toolstack: one transaction: backend online=0, state=5",
    );
    let closed =
        find(&after, "WRITE", &format!("{BACKEND}/state"), Some("6")).expect("QEMU wrote Closed");
    let rm_fe = find(&after, "RM", FRONTEND, None).expect("QEMU removed the frontend");
    let rm_be = find(&after, "RM", BACKEND, None).expect("QEMU removed the backend");
    assert!(
        closed < rm_fe && closed < rm_be,
        "Closed first, then the removals"
    );
    let gap = after[rm_fe.max(rm_be)].at() - after[closed].at();
    eprintln!("QEMU: Closed to both directories removed in {gap:?}");
    s.save(
        "unplug",
        "toolstack_unplug_ends_the_frontend",
        "start, our frontend connects, the toolstack's unplug (online=0, state=5): QEMU writes 6 and deletes both directories",
    );
    drop(s.d);
}

/// QEMU's clean exit (SIGTERM) with the device Connected: it deletes both directories
/// without writing Closing or Closed first; the frontend sees them vanish and stops.
fn clean_exit_with_the_device_connected() {
    let mut s = connected();
    s.recorder.note("SIGTERM to QEMU");
    s.qemu.terminate();
    let status = s.qemu.wait_exit(Duration::from_secs(20));
    s.recorder.note("QEMU exited");
    assert!(status.success(), "QEMU's clean exit: {status}");
    s.wait_both_directories_gone();
    s.wait_frontend_stopped();
    let records = s.recorder.records();
    let after = qemu_requests_after(&records, "SIGTERM to QEMU");
    assert!(
        find(&after, "RM", FRONTEND, None).is_some(),
        "QEMU removed the frontend"
    );
    assert!(
        find(&after, "RM", BACKEND, None).is_some(),
        "QEMU removed the backend"
    );
    assert!(
        !wrote_under(&after, BACKEND),
        "no Closing or Closed written on the way out: {after:?}"
    );
    s.save(
        "clean-exit",
        "clean_exit_with_the_device_connected",
        "start, our frontend connects, SIGTERM to QEMU: it deletes both directories, no Closing first",
    );
}

/// QEMU killed (SIGKILL) with the device Connected: it cleans nothing, both directories
/// stay as they were (the backend Connected), and QEMU changed nothing after the kill.
fn killed_qemu_cleans_nothing() {
    let mut s = connected();
    s.recorder.note("SIGKILL to QEMU");
    s.qemu.kill();
    s.qemu.wait_exit(Duration::from_secs(20));
    // Long enough for a stray message to arrive if QEMU could still send one.
    std::thread::sleep(Duration::from_millis(300));
    s.recorder.note("QEMU gone");
    assert_eq!(backend_state(&mut s.dom0), XenbusState::Connected);
    assert!(s.dom0.exists(FRONTEND).unwrap());
    assert_eq!(
        s.dom0.read(&format!("{FRONTEND}/state")).unwrap(),
        b"4".to_vec()
    );
    let records = s.recorder.records();
    // A read QEMU had in flight may still pass the proxy; nothing that changes the store
    // does.
    let after = qemu_requests_after(&records, "SIGKILL to QEMU");
    assert!(
        !after
            .iter()
            .any(|r| matches!(r, Record::Message { kind, .. }
            if ["WRITE", "RM", "MKDIR", "SET_PERMS"].contains(&kind.as_str()))),
        "QEMU cleaned after its kill: {after:?}"
    );
    s.save(
        "killed",
        "killed_qemu_cleans_nothing",
        "start, our frontend connects, SIGKILL to QEMU: nothing is cleaned",
    );
}

fn main() -> std::process::ExitCode {
    let cc = Peer::runs("cc", "cc", &["--version"]);
    let qemu = Peer::file(XEN_QEMU);
    Tests::new().each(&[&cc, &qemu], TESTS).run()
}
