//! The xenbus machines driven through `xsio-io-std`'s blocking xenstore client against the
//! `xsio xenstored` daemon: a toolstack and a backend on the control socket, the frontend on
//! guest 1's socket. The device directories are then listed with `ls -p`: by our own
//! `xsio xs ls` in a test that needs no peer and always runs, and by Xen's own
//! `xenstore-ls` in a second run of the same handshake that needs xenstore-utils.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, output_within};
use xsio_core::OpId;
use xsio_io_std::xenbus::{self, Watches};
use xsio_io_std::xenstore::XsConn;
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{
    Backend, Frontend, Output, Reply, Request, StateWaiter, WaiterConfig, XenbusState, XsError,
    XsOp,
};

/// One xenstore connection and the watches registered on it.
struct Link {
    conn: XsConn,
    watches: Watches,
}

impl Link {
    /// Executes one machine request, blocking, and returns the machine's reply.
    fn execute(&mut self, op: &XsOp) -> Result<Reply, XsError> {
        xenbus::execute(&mut self.conn, op, &mut self.watches)
    }
}

fn stringify<E: std::fmt::Debug>(output: Output<E>) -> Output<String> {
    match output {
        Output::Request(r) => Output::Request(r),
        Output::Event(e) => Output::Event(format!("{e:?}")),
    }
}

/// The machines of one party, all on one link.
enum Machine {
    Backend(Backend),
    Frontend(Frontend),
    Waiter(StateWaiter),
}

impl Machine {
    fn next(&mut self) -> Option<Output<String>> {
        match self {
            Machine::Backend(m) => m.poll_output().map(stringify),
            Machine::Frontend(m) => m.poll_output().map(stringify),
            Machine::Waiter(m) => m.poll_output().map(stringify),
        }
    }

    fn reply(&mut self, id: OpId, reply: Result<Reply, XsError>) {
        #[allow(clippy::disallowed_methods)] // a driver reads the clock
        let now = Instant::now();
        let result = match self {
            Machine::Backend(m) => m.handle_reply(now, id, reply),
            Machine::Frontend(m) => m.handle_reply(now, id, reply),
            Machine::Waiter(m) => m.handle_reply(now, id, reply),
        };
        result.expect("the machine accepts its reply");
    }

    fn watch(&mut self, path: &str, token: &str) {
        #[allow(clippy::disallowed_methods)] // a driver reads the clock
        let now = Instant::now();
        match self {
            Machine::Backend(m) => m.handle_watch(now, path, token),
            Machine::Frontend(m) => m.handle_watch(now, path, token),
            Machine::Waiter(m) => m.handle_watch(now, path, token),
        }
    }
}

/// Runs the machines of each link until `done` holds (10 s at most).
fn drive(
    links: &mut [Link],
    machines: &mut [Vec<Machine>],
    done: impl Fn(&[Vec<Machine>]) -> bool,
) {
    #[allow(clippy::disallowed_methods)] // a driver reads the clock
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        for (link, ms) in links.iter_mut().zip(machines.iter_mut()) {
            for m in ms.iter_mut() {
                while let Some(out) = m.next() {
                    match out {
                        Output::Request(Request { id, op }) => {
                            let reply = link.execute(&op);
                            m.reply(id, reply);
                        }
                        Output::Event(e) => assert!(!e.contains("Failed"), "{e}"),
                    }
                }
            }
        }
        if done(machines) {
            return;
        }
        #[allow(clippy::disallowed_methods)] // a driver reads the clock
        let now = Instant::now();
        assert!(now < give_up, "the handshake did not settle within 10 s");
        for (link, ms) in links.iter_mut().zip(machines.iter_mut()) {
            if let Some(event) = link
                .conn
                .next_event(Some(now + Duration::from_millis(5)))
                .unwrap()
            {
                for m in ms.iter_mut() {
                    m.watch(&event.path, &event.token);
                }
            }
        }
    }
}

fn state_of(machines: &[Vec<Machine>], party: usize, index: usize) -> XenbusState {
    match &machines[party][index] {
        Machine::Backend(m) => m.state(),
        Machine::Frontend(m) => m.state(),
        Machine::Waiter(_) => XenbusState::Unknown,
    }
}

/// One `name = "value" (perms)` per line of a `ls -p` output, with the tool's padding
/// (spaces and ` . . .` leaders before the permissions) collapsed.
fn collapsed(listing: &str) -> Vec<String> {
    listing
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter(|word| *word != ".")
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Lists a directory of the daemon with `ls -p`, one collapsed line per node.
type Lister = fn(&Daemon, &str) -> Vec<String>;

/// `xsio xs ls -p DIR`: our own client, no peer needed.
fn xsio_ls(d: &Daemon, dir: &str) -> Vec<String> {
    let out = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_xsio"))
            .args(["xs", "ls", "-p", dir])
            .env("XENSTORED_PATH", &d.socket),
        Duration::from_secs(20),
        "xsio xs ls",
    );
    assert!(
        out.status.success(),
        "xsio xs ls -p {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    collapsed(&String::from_utf8(out.stdout).unwrap())
}

/// `xenstore-ls -p DIR`: Xen's own client.
fn xenstore_ls(d: &Daemon, dir: &str) -> Vec<String> {
    collapsed(&d.ok("xenstore-ls", &["-p", dir]))
}

fn disk_and_cdrom_connect_and_close_through_our_xenstored() {
    handshake_listed_by(xsio_ls);
}

fn xenstore_ls_shows_the_device_directories() {
    handshake_listed_by(xenstore_ls);
}

/// Creates a disk and a CD-ROM, runs both through Connected, checks their directories with
/// `ls`, removes them, runs both to Closed and checks that `ls` shows nothing left.
fn handshake_listed_by(ls: Lister) {
    let d = Daemon::start(&[1], &[]);
    let link = |path: &std::path::Path| Link {
        conn: XsConn::connect(path).expect("connect to xsio xenstored"),
        watches: Watches::default(),
    };
    const TOOLSTACK: usize = 0;
    const BACKEND: usize = 1;
    const FRONTEND: usize = 2;
    let mut links = vec![link(&d.socket), link(&d.socket), link(&d.domain_socket(1))];
    #[allow(clippy::disallowed_methods)] // a driver reads the clock
    let now = Instant::now();

    let mut disk = BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda").unwrap(),
        "/img/disk",
        Mode::ReadWrite,
    );
    disk.sectors = 2048;
    let cdrom = BlockDevice::new(
        BlockKind::Cdrom,
        Vbd::parse("hdc").unwrap(),
        "/img/cd.iso",
        Mode::ReadOnly,
    );
    let mut machines: Vec<Vec<Machine>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for (i, dev) in [&disk, &cdrom].into_iter().enumerate() {
        let areas = dev.areas(0, 1);
        let create = areas.create(
            &dev.toolstack_backend_keys(),
            &dev.toolstack_frontend_keys(),
        );
        assert_eq!(
            links[TOOLSTACK].execute(&XsOp::Transaction(create)),
            Ok(Reply::Committed)
        );
        let transport = BlockTransport {
            ring_ref: 8 + i as u32,
            event_channel: 3 + i as u32,
            protocol: Some(Protocol::X86_64),
        };
        machines[BACKEND].push(Machine::Backend(Backend::new(
            dev.backend_config(areas.clone()),
            now,
        )));
        machines[FRONTEND].push(Machine::Frontend(Frontend::new(
            dev.frontend_config(areas, &transport),
            now,
        )));
    }
    let all = |ms: &[Vec<Machine>], want: XenbusState| {
        (0..2).all(|i| state_of(ms, BACKEND, i) == want && state_of(ms, FRONTEND, i) == want)
    };
    drive(&mut links, &mut machines, |ms| {
        all(ms, XenbusState::Connected)
    });

    // What a client sees: every key the protocol prescribes, with the backend's
    // directory owned by dom0 and readable by the guest, and the reverse.
    let be = ls(&d, "/local/domain/0/backend/qdisk/1/51712");
    let expected_be = [
        "frontend = \"/local/domain/1/device/vbd/51712\" (n0,r1)",
        "frontend-id = \"1\" (n0,r1)",
        "online = \"1\" (n0,r1)",
        "state = \"4\" (n0,r1)",
        "params = \"/img/disk\" (n0,r1)",
        "mode = \"w\" (n0,r1)",
        "type = \"qdisk\" (n0,r1)",
        "device-type = \"disk\" (n0,r1)",
        "removable = \"0\" (n0,r1)",
        "dev = \"xvda\" (n0,r1)",
        "feature-flush-cache = \"1\" (n0,r1)",
        "feature-discard = \"0\" (n0,r1)",
        "max-ring-page-order = \"0\" (n0,r1)",
        "sectors = \"2048\" (n0,r1)",
        "info = \"0\" (n0,r1)",
        "sector-size = \"512\" (n0,r1)",
    ];
    assert_eq!(be, expected_be);
    let fe = ls(&d, "/local/domain/1/device/vbd/51712");
    let expected_fe = [
        "backend = \"/local/domain/0/backend/qdisk/1/51712\" (n1,r0)",
        "backend-id = \"0\" (n1,r0)",
        "state = \"4\" (n1,r0)",
        "virtual-device = \"51712\" (n1,r0)",
        "device-type = \"disk\" (n1,r0)",
        "ring-ref = \"8\" (n1,r0)",
        "event-channel = \"3\" (n1,r0)",
        "protocol = \"x86_64-abi\" (n1,r0)",
    ];
    assert_eq!(fe, expected_fe);
    let cd = ls(&d, "/local/domain/0/backend/qdisk/1/5632");
    for line in [
        "device-type = \"cdrom\" (n0,r1)",
        "removable = \"1\" (n0,r1)",
        "info = \"7\" (n0,r1)",
        "mode = \"r\" (n0,r1)",
    ] {
        assert!(cd.iter().any(|l| l == line), "{line} not in {cd:?}");
    }

    // Removal: online=0 + Closing, wait for Closed, destroy.
    for (i, dev) in [&disk, &cdrom].into_iter().enumerate() {
        let areas = dev.areas(0, 1);
        assert_eq!(
            links[TOOLSTACK].execute(&XsOp::Transaction(areas.request_removal())),
            Ok(Reply::Committed)
        );
        machines[TOOLSTACK].push(Machine::Waiter(StateWaiter::new(
            WaiterConfig {
                path: areas.backend_key("state"),
                wanted: vec![XenbusState::Closed],
                timeout: Duration::from_secs(10),
                token: format!("wait-{i}"),
            },
            now,
        )));
    }
    drive(&mut links, &mut machines, |ms| {
        ms[TOOLSTACK]
            .iter()
            .all(|m| matches!(m, Machine::Waiter(w) if w.is_done()))
    });
    for m in &machines[TOOLSTACK] {
        let Machine::Waiter(w) = m else {
            unreachable!()
        };
        assert_eq!(w.result(), Some(&Ok(XenbusState::Closed)));
    }
    drive(&mut links, &mut machines, |ms| all(ms, XenbusState::Closed));
    for dev in [&disk, &cdrom] {
        let destroy = dev.areas(0, 1).destroy();
        assert_eq!(
            links[TOOLSTACK].execute(&XsOp::Transaction(destroy)),
            Ok(Reply::Committed)
        );
    }
    // The frontends notice the backend directories are gone and stop watching.
    drive(&mut links, &mut machines, |ms| {
        ms[FRONTEND]
            .iter()
            .all(|m| matches!(m, Machine::Frontend(f) if f.is_stopped()))
    });
    assert_eq!(
        ls(&d, "/local/domain/0/backend/qdisk/1"),
        Vec::<String>::new()
    );
    assert_eq!(ls(&d, "/local/domain/1/device/vbd"), Vec::<String>::new());
}

fn main() -> std::process::ExitCode {
    let utils = xsio_testkit::xenstored::xenstore_utils();
    xsio_testkit::peer::Tests::new()
        .test(
            "disk_and_cdrom_connect_and_close_through_our_xenstored",
            &[],
            disk_and_cdrom_connect_and_close_through_our_xenstored,
        )
        .test(
            "xenstore_ls_shows_the_device_directories",
            &[&utils],
            xenstore_ls_shows_the_device_directories,
        )
        .run()
}
