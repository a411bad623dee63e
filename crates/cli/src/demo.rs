//! `xsio demo`: a guest's disk and CD-ROM through the whole xenbus handshake and back, in
//! one process.
//!
//! The toolstack, the backend (as QEMU would run it) and the frontend (as the guest kernel
//! would) each have their own xenstore connection to our in-memory xenstored core; the
//! xenbus machines do the protocol, a small driver (`demo/bus.rs`) moves the bytes. Time is
//! virtual (one millisecond per message), so the trace is the same on every run.

mod bus;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use xsio_device::{BackendEnd, Completion, Config, Device, DeviceOp, Force};
use xsio_ops::Reply;
use xsio_vbd::Vbd;
use xsio_xenbus::block::{BlockDevice, BlockKind, BlockTransport, Mode, Protocol};
use xsio_xenbus::{Backend, Frontend, XenbusState};

use bus::Bus;

/// Arguments of `xsio demo`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The guest's domain id.
    #[arg(long, default_value_t = 1)]
    domid: u32,
}

/// The guest's devices: a `xen-disk` `xvda` and a `xen-cdrom` `hdc`.
fn devices() -> anyhow::Result<Vec<BlockDevice>> {
    let mut disk = BlockDevice::new(
        BlockKind::Disk,
        Vbd::parse("xvda")?,
        "/srv/guest/disk.img",
        Mode::ReadWrite,
    );
    disk.sectors = 16_777_216; // 8 GiB in 512-byte units
    let mut cdrom = BlockDevice::new(
        BlockKind::Cdrom,
        Vbd::parse("hdc")?,
        "/srv/iso/install.iso",
        Mode::ReadOnly,
    );
    cdrom.sectors = 1_331_200; // 650 MiB
    cdrom.sector_size = 2048;
    Ok(vec![disk, cdrom])
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    #[allow(clippy::disallowed_methods)] // the driver's epoch; all later times are virtual
    let epoch = Instant::now();
    let mut bus = Bus::new(epoch, args.domid, true);
    run_scenario(&mut bus, args.domid)?;
    Ok(ExitCode::SUCCESS)
}

/// The whole story: create, connect, show the tree, remove, show the tree.
pub(crate) fn run_scenario(bus: &mut Bus, domid: u32) -> anyhow::Result<()> {
    println!("== xsio demo: domain {domid} gets a xen-disk xvda and a xen-cdrom hdc");
    println!("   (virtual time; each line: time, who, what it wrote, read or saw)");
    let devices = devices()?;
    for (i, dev) in devices.iter().enumerate() {
        let areas = dev.areas(0, domid);
        let name = format!("{} {}", dev.vdev, dev.kind.qemu_driver());
        let transport = BlockTransport {
            ring_ref: 8 + 8 * i as u32,
            event_channel: 20 + i as u32,
            protocol: Some(Protocol::X86_64),
        };
        let now = bus.now();
        bus.add_device(
            dev.vdev.to_string(),
            Backend::new(dev.backend_config(areas.clone()), now),
            Frontend::new(dev.frontend_config(areas.clone(), &transport), now),
        );
        bus.say(
            "toolstack",
            format!("add {name} (device id {})", dev.devid()),
        );
        let create = areas.create(
            &dev.toolstack_backend_keys(),
            &dev.toolstack_frontend_keys(),
        );
        bus.toolstack_txn(i, create);
        bus.run_until_quiet()?;
        ensure!(
            matches!(
                bus.devices[i].toolstack_results.last(),
                Some(Ok(Reply::Committed))
            ),
            "creating {name} failed: {:?}",
            bus.devices[i].toolstack_results
        );
    }

    println!("\n== backends and frontends start");
    for i in 0..bus.devices.len() {
        bus.start(bus.devices[i].backend);
        bus.start(bus.devices[i].frontend);
    }
    bus.run_until_quiet()?;
    for (i, dev) in bus.devices.iter().enumerate() {
        let (backend, frontend) = (bus.backend(i).state(), bus.frontend(i).state());
        ensure!(
            backend == XenbusState::Connected && frontend == XenbusState::Connected,
            "{} did not connect: backend {backend}, frontend {frontend}",
            dev.name,
        );
    }
    println!(
        "\n== both devices Connected at {} ms; the tree:",
        bus.elapsed().as_millis()
    );
    print_tree(bus, domid)?;

    println!(
        "\n== the toolstack removes both devices (xsio-device: online=0, state=5, wait for 6, prune)"
    );
    for i in 0..bus.devices.len() {
        let areas = bus.backend(i).config().areas.clone();
        let device = Device::new(
            areas.frontend_kind.clone(),
            areas.frontend_domid,
            areas.devid,
        )
        .with_backend(areas.backend_domid, areas.backend_kind.clone());
        let removal = DeviceOp::remove(Config::default(), device, Force::Auto, bus.now());
        bus.add_removal(i, removal);
    }
    bus.run_until_quiet()?;
    for (i, dev) in bus.devices.iter().enumerate() {
        let done = bus.removal(i).and_then(DeviceOp::completion);
        let removed = match done {
            Some(Completion::Removed(removal)) => removal,
            other => bail!("{}: removal ended with {other:?}", dev.name),
        };
        ensure!(
            removed.pruned
                && removed
                    .result
                    .as_ref()
                    .is_ok_and(|r| r.backend == BackendEnd::Closed),
            "{}: removal ended with {removed:?}",
            dev.name
        );
        let (backend, frontend) = (bus.backend(i), bus.frontend(i));
        ensure!(
            backend.state() == XenbusState::Closed && frontend.state() == XenbusState::Closed,
            "{} did not close: backend {}, frontend {}",
            dev.name,
            backend.state(),
            frontend.state()
        );
        ensure!(
            backend.is_stopped(),
            "{}: backend still running after removal",
            dev.name
        );
        ensure!(
            frontend.is_stopped(),
            "{}: frontend still watching after removal",
            dev.name
        );
        ensure!(dev.problems.is_empty(), "{}: {:?}", dev.name, dev.problems);
    }
    println!(
        "\n== both devices Closed and removed at {} ms; the final tree:",
        bus.elapsed().as_millis()
    );
    print_tree(bus, domid)?;
    println!();
    for dev in &bus.devices {
        let path: Vec<String> = dev
            .history
            .iter()
            .map(|(who, s)| format!("{who} {s}"))
            .collect();
        println!("{}: {}", dev.name, path.join(", "));
    }
    Ok(())
}

fn print_tree(bus: &mut Bus, domid: u32) -> anyhow::Result<()> {
    for root in [
        "/local/domain/0/backend".to_owned(),
        format!("/local/domain/{domid}/device"),
    ] {
        let lines = bus.tree(&root).with_context(|| format!("listing {root}"))?;
        if lines.is_empty() {
            println!("{root}: (absent)");
        }
        for line in lines {
            println!("{line}");
        }
    }
    if bus.trace.is_empty() {
        bail!("the demo printed no trace");
    }
    Ok(())
}
