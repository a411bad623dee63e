//! `xsio device add|remove|destroy-all`: one device (or every device of a domain) added or
//! removed by the `xsio-device` machine, through `xsio-io-std`'s L2 driver, against the
//! xenstored at `XENSTORED_PATH` (or `--xenstored`). Without a hypervisor the guest's state
//! and the device model's liveness come from `--guest` and `--dm-alive`; hotplug scripts
//! run as real child processes. Each step is printed with its time; a failure exits 1 with
//! the typed error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xsio_device::disk::{DiskBackend, DiskSpec};
use xsio_device::{
    AddSpec, Completion, Config, Device, DeviceEvent, DeviceOp, Force, MultiDev, MultiEvent,
};
use xsio_harness::{Harness, Record};
use xsio_io_std::host::Host;
use xsio_io_std::l2::{XsLinks, run_until_with};
use xsio_io_std::xenstore::XsConn;
use xsio_ops::DomainState;

/// libxl's default hotplug script for a kernel block backend.
const DEFAULT_BLOCK_SCRIPT: &str = "/etc/xen/scripts/block";

/// Arguments of `xsio device`.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(clap::Subcommand)]
enum DeviceCommand {
    /// Add a device: the toolstack entry and both directories in one transaction, the
    /// backend's InitWait (unless QEMU serves it), the hotplug script.
    Add(OneDevice),
    /// Remove a device: libxl's removal with its QEMU bodge, force auto/on/off, the hotplug
    /// script, then the areas and their empty parents.
    Remove(OneDevice),
    /// Remove every device of a domain at once, with force on (domain destruction).
    DestroyAll {
        /// The guest.
        #[arg(long)]
        domain: u32,
        #[command(flatten)]
        host: HostArgs,
    },
}

#[derive(clap::Args)]
struct OneDevice {
    /// The guest.
    #[arg(long)]
    domain: u32,
    /// The frontend kind (`vbd`; follows from --disk).
    #[arg(long)]
    kind: Option<String>,
    /// The device id (follows from --disk's vdev).
    #[arg(long)]
    devid: Option<u32>,
    /// The domain running the backend.
    #[arg(long, default_value_t = 0)]
    backend_domain: u32,
    /// The backend kind: `vbd` (a kernel backend, with a hotplug script) or `qdisk` (QEMU).
    #[arg(long, value_parser = ["vbd", "qdisk"])]
    backend_kind: Option<String>,
    /// The hotplug script written into the backend (`script`); a kernel disk gets libxl's
    /// default otherwise.
    #[arg(long)]
    script: Option<PathBuf>,
    /// How hard a removal tries.
    #[arg(long, value_enum, default_value_t = ForceArg::Auto)]
    force: ForceArg,
    /// xl's disk specification, e.g. `vdev=xvda,format=raw,access=rw,devtype=disk,target=PATH`.
    #[arg(long)]
    disk: Option<String>,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(clap::Args)]
struct HostArgs {
    /// The guest's state, as a hypervisor would report it.
    #[arg(long, value_enum, default_value_t = GuestArg::Running)]
    guest: GuestArg,
    /// Whether the device model (QEMU) is alive; unknown when not given.
    #[arg(long, value_parser = ["yes", "no"])]
    dm_alive: Option<String>,
    /// Multiply every timeout by this (0.1: ten times faster, for tests).
    #[arg(long, default_value_t = 1.0)]
    timeout_scale: f64,
    /// The xenstored socket (default: XENSTORED_PATH, then the usual places).
    #[arg(long)]
    xenstored: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ForceArg {
    Auto,
    On,
    Off,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GuestArg {
    Running,
    Paused,
    Dying,
    Shutdown,
}

/// Runs one `xsio device` command.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        DeviceCommand::Add(one) => {
            let spec = add_spec(one)?;
            let config = config(&one.host)?;
            let ok = one_op(&one.host, config.clone(), |now| {
                DeviceOp::add(config, spec, now)
            })?;
            Ok(exit(ok))
        }
        DeviceCommand::Remove(one) => {
            let device = device(one)?;
            let force = match one.force {
                ForceArg::Auto => Force::Auto,
                ForceArg::On => Force::On,
                ForceArg::Off => Force::Off,
            };
            let config = config(&one.host)?;
            let ok = one_op(&one.host, config.clone(), |now| {
                DeviceOp::remove(config, device, force, now)
            })?;
            Ok(exit(ok))
        }
        DeviceCommand::DestroyAll { domain, host } => destroy_all(*domain, host),
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn config(host: &HostArgs) -> anyhow::Result<Config> {
    Ok(Config::default().scaled(host.timeout_scale)?)
}

/// The device named by --kind/--devid or by --disk.
fn device(one: &OneDevice) -> anyhow::Result<Device> {
    let spec = one.disk.as_deref().map(DiskSpec::parse).transpose()?;
    let kind = match (&one.kind, &spec) {
        (Some(kind), _) => kind.clone(),
        (None, Some(_)) => "vbd".to_owned(),
        (None, None) => bail!("--kind is needed (or --disk)"),
    };
    let devid = match (one.devid, &spec) {
        (Some(devid), _) => devid,
        (None, Some(spec)) => spec.devid(),
        (None, None) => bail!("--devid is needed (or --disk)"),
    };
    let backend_kind = one.backend_kind.clone().unwrap_or_else(|| kind.clone());
    Ok(Device::new(kind, one.domain, devid).with_backend(one.backend_domain, backend_kind))
}

/// What `add` writes: libxl's disk keys with --disk, else the generic keys (and `script`).
fn add_spec(one: &OneDevice) -> anyhow::Result<AddSpec> {
    let device = device(one)?;
    let script = one.script.as_ref().map(|p| p.display().to_string());
    let Some(disk) = one.disk.as_deref() else {
        return Ok(AddSpec {
            device,
            backend_keys: script
                .map(|s| ("script".to_owned(), s))
                .into_iter()
                .collect(),
            frontend_keys: Vec::new(),
        });
    };
    let mut disk = DiskSpec::parse(disk)?;
    if script.is_some() {
        disk.script = script;
    }
    let backend = match device.backend_kind.as_str() {
        "qdisk" => DiskBackend::Qdisk,
        _ => DiskBackend::Phy,
    };
    let mut spec = disk.add_spec(
        one.domain,
        one.backend_domain,
        backend,
        DEFAULT_BLOCK_SCRIPT,
    );
    spec.device = device;
    Ok(spec)
}

/// The driver's host: scripts as children, the guest and device model from the flags.
fn host(args: &HostArgs) -> Host {
    let guest = match args.guest {
        GuestArg::Running => DomainState::Running,
        GuestArg::Paused => DomainState::Paused,
        GuestArg::Dying => DomainState::Dying,
        GuestArg::Shutdown => DomainState::Shutdown,
    };
    let alive = args.dm_alive.as_deref().map(|yes| yes == "yes");
    Host::new()
        .domain_info(move |_| Ok(guest))
        .device_model(move |_| alive)
}

fn links(args: &HostArgs) -> XsLinks {
    XsLinks::default().with_host(host(args))
}

fn connect(args: &HostArgs) -> anyhow::Result<XsConn> {
    match &args.xenstored {
        Some(path) => {
            XsConn::connect(path).with_context(|| format!("connecting to {}", path.display()))
        }
        None => XsConn::open().context("connecting to xenstored"),
    }
}

/// Long enough for every wait of one operation, twice (an escalation) and some.
fn limit(config: &Config) -> Duration {
    let waits = [
        config.init_timeout,
        config.destroy_timeout,
        config.destroy_timeout,
        config.frontend_close_timeout,
        config.frontend_close_timeout,
        config.hotplug_timeout,
        config.hotplug_timeout,
        config.kill_grace,
        config.qemu_bodge_timeout,
        Duration::from_secs(5),
    ];
    waits
        .iter()
        .fold(Duration::ZERO, |a, b| a.saturating_add(*b))
}

/// Prints `  1234 ms  what` for each step.
fn say(start: Instant, what: impl std::fmt::Display) {
    let ms = xsio_io_std::now()
        .saturating_duration_since(start)
        .as_millis();
    println!("{ms:>6} ms  {what}");
}

/// Runs one operation to its completion, printing its steps; true when it succeeded.
fn one_op(
    args: &HostArgs,
    config: Config,
    make: impl FnOnce(Instant) -> DeviceOp,
) -> anyhow::Result<bool> {
    let start = xsio_io_std::now();
    let mut world: Harness<DeviceOp> = Harness::new(start);
    let mut links = links(args);
    let conn = links.add(&mut world, connect(args)?);
    let op = world.add(conn, make(start));
    say(start, format!("{}", world.actor(op).device()));
    world.drain(op);
    let mut completion: Option<Completion> = None;
    run_until_with(&mut world, &mut links, limit(&config), |w| {
        for record in w.take_log() {
            if let Record::Event { event, .. } = record {
                if let DeviceEvent::Done(done) = &event {
                    completion = Some(done.clone());
                }
                say(start, event);
            }
        }
        completion.is_some()
    })
    .context("running the operation")?;
    match completion {
        Some(done) if done.is_ok() => Ok(true),
        Some(done) => {
            eprintln!("xsio device: {}", done.error().unwrap_or_default());
            Ok(false)
        }
        None => bail!("the operation did not complete"),
    }
}

fn destroy_all(domain: u32, args: &HostArgs) -> anyhow::Result<ExitCode> {
    let config = config(args)?;
    let start = xsio_io_std::now();
    let mut world: Harness<MultiDev> = Harness::new(start);
    let mut links = links(args);
    let conn = links.add(&mut world, connect(args)?);
    let multi = MultiDev::remove_all(config.clone(), domain, Force::On, start);
    let id = world.add(conn, multi);
    say(start, format!("every device of domain {domain}, force on"));
    world.drain(id);
    let mut result = None;
    run_until_with(&mut world, &mut links, limit(&config), |w| {
        for record in w.take_log() {
            let Record::Event { event, .. } = record else {
                continue;
            };
            match event {
                MultiEvent::Found { devices, bad } => {
                    say(start, format!("found {} device(s)", devices.len()));
                    for entry in bad {
                        say(start, format!("skipping {entry}"));
                    }
                }
                MultiEvent::Device { device, event } => {
                    say(start, format!("{} {}: {event}", device.kind, device.devid));
                }
                MultiEvent::Done(done) => result = Some(done),
                _ => {}
            }
        }
        result.is_some()
    })
    .context("running the operations")?;
    match result {
        Some(Ok(done)) => {
            for (device, completion) in &done.devices {
                if let Some(error) = completion.error() {
                    eprintln!("xsio device: {} {}: {error}", device.kind, device.devid);
                }
            }
            for entry in &done.bad_entries {
                eprintln!("xsio device: {entry}");
            }
            say(
                start,
                if done.is_ok() {
                    "all removed"
                } else {
                    "done, with errors"
                },
            );
            Ok(exit(done.is_ok()))
        }
        Some(Err(err)) => {
            eprintln!("xsio device: {err}");
            Ok(ExitCode::FAILURE)
        }
        None => bail!("the operations did not complete"),
    }
}
