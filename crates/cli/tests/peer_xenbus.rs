//! The xenbus machines driven through `xsio-io-std`'s blocking xenstore client against the
//! `xsio xenstored` daemon: a toolstack and a backend on the control socket, the frontend on
//! guest 1's socket. The device directories are then listed with `ls -p`: by our own
//! `xsio xs ls` in a test that needs no peer and always runs, and by Xen's own
//! `xenstore-ls` in a second run of the same handshake that needs xenstore-utils.

mod common;
mod xenbus_std;

use std::time::Duration;

use common::{Daemon, stdout_within};
use xenbus_std::{drive, toolstack};
use xsio_device::BackendEnd;
use xsio_harness::Harness;
use xsio_io_std::l2::XsLinks;
use xsio_io_std::unix::now;
use xsio_io_std::xenstore::XsConn;
use xsio_ops::{Reply, XsOp};
use xsio_testkit::block;
use xsio_testkit::xenbus::{Machine, add_ends, completion_of, removal_of, start_removal, state_of};
use xsio_xenbus::XenbusState;

// The check through xenstore-ls.
const WITH_UTILS: &[(&str, fn())] = xsio_testkit::tests![xenstore_ls_shows_the_device_directories];

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
    let out = stdout_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_xsio"))
            .args(["xs", "ls", "-p", dir])
            .env("XENSTORED_PATH", &d.socket),
        Duration::from_secs(20),
        "xsio xs ls -p",
    );
    collapsed(&out)
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
    let connect =
        |path: &std::path::Path| XsConn::connect(path).expect("connect to xsio xenstored");
    let start = now();
    let mut world: Harness<Machine> = Harness::new(start);
    let host = xsio_io_std::host::Host::new()
        .domain_info(|_| Ok(xsio_ops::DomainState::Running))
        .device_model(|_| Some(true));
    let mut links = XsLinks::default().with_host(host);
    let tool = links.add(&mut world, connect(&d.socket));
    let back = links.add(&mut world, connect(&d.socket));
    let front = links.add(&mut world, connect(&d.domain_socket(1)));

    let disk = block::disk();
    let cdrom = block::cdrom();
    let mut ends = Vec::new();
    let mut frontends = Vec::new();
    for (i, dev) in [&disk, &cdrom].into_iter().enumerate() {
        let (areas, create) = block::create(dev);
        assert_eq!(
            toolstack(&mut links, tool, XsOp::Transaction(create)),
            Ok(Reply::Committed)
        );
        let ends_of_dev = block::ends(dev, &areas, i as u32, start);
        let (b, f) = add_ends(&mut world, back, front, ends_of_dev);
        ends.extend([b, f]);
        frontends.push(f);
    }
    let all =
        |w: &Harness<Machine>, want: XenbusState| ends.iter().all(|&id| state_of(w, id) == want);
    drive(&mut world, &mut links, |w| all(w, XenbusState::Connected));

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

    // Removal: xsio-device's (online=0 + Closing, the waits, the prune), the guest
    // running and its QEMU alive as the host says.
    let removals: Vec<_> = [&disk, &cdrom]
        .into_iter()
        .map(|dev| start_removal(&mut world, tool, dev.devid()))
        .collect();
    drive(&mut world, &mut links, |w| {
        removals.iter().all(|&id| completion_of(w, id).is_some())
    });
    for &id in &removals {
        let removal = removal_of(&world, id);
        assert!(removal.pruned);
        assert_eq!(removal.result.map(|r| r.backend), Ok(BackendEnd::Closed));
    }
    // The frontends notice the backend directories are gone and stop watching.
    drive(&mut world, &mut links, |w| {
        frontends
            .iter()
            .all(|&id| matches!(w.actor(id), Machine::Frontend(f) if f.is_stopped()))
    });
    // Pruned: the areas and every parent they alone kept, up to the domains' homes.
    let homes = [ls(&d, "/local/domain/0"), ls(&d, "/local/domain/1")];
    for (home, gone) in homes.iter().zip(["backend", "device"]) {
        assert!(
            !home.iter().any(|l| l.starts_with(gone)),
            "{gone}: {home:?}"
        );
    }
}

// The in-process run, which needs no peer.
const IN_PROCESS: &[(&str, fn())] =
    xsio_testkit::tests![disk_and_cdrom_connect_and_close_through_our_xenstored];

fn main() -> std::process::ExitCode {
    let utils = xsio_testkit::xenstored::xenstore_utils();
    xsio_testkit::peer::Tests::new()
        .each(&[], IN_PROCESS)
        .each(&[&utils], WITH_UTILS)
        .run()
}
