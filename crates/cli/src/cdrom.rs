//! `xsio cdrom insert|eject`: a guest's CD-ROM medium changed by `xsio-cdrom`'s machine,
//! against the xenstored at `XENSTORED_PATH` (or `--xenstored`), and with `--qmp` through
//! the guest's running QEMU (attached by its QMP socket: the image is opened here and
//! passed as a descriptor); without `--qmp`, by the xenstore rewrite alone (PV and
//! qemu-traditional backends). The per-domain lock is a lock file in `--lock-dir`, so two
//! changes to one domain wait for each other, across processes too. A failure exits 1
//! with the typed error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use xsio_cdrom::{Change, Config, DeviceModel, Format, MediaChange, Medium};
use xsio_harness::Harness;
use xsio_io_std::dm::QemuLinks;
use xsio_io_std::host::Host;
use xsio_io_std::l2::{XsLinks, run_until};
use xsio_io_std::xenstore::XsConn;

/// Arguments of `xsio cdrom`.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: CdromCommand,
}

#[derive(clap::Subcommand)]
enum CdromCommand {
    /// Put an image in the drive (ejecting what is there): with --qmp the image is opened
    /// here, read-only, and passed to QEMU as a descriptor.
    Insert {
        #[command(flatten)]
        drive: Drive,
        /// The image.
        #[arg(long)]
        image: PathBuf,
        /// The image's format.
        #[arg(long, value_enum, default_value_t = FormatArg::Raw)]
        format: FormatArg,
    },
    /// Leave the drive empty.
    Eject {
        #[command(flatten)]
        drive: Drive,
    },
}

#[derive(clap::Args)]
struct Drive {
    /// The guest.
    #[arg(long)]
    domain: u32,
    /// The drive, by the guest's name for it (hdc).
    #[arg(long)]
    vdev: String,
    /// The guest's QEMU's QMP socket (upstream QEMU); without it the change is the
    /// xenstore rewrite (PV, qemu-traditional).
    #[arg(long)]
    qmp: Option<PathBuf>,
    /// The xenstored socket (default: XENSTORED_PATH, then the usual places).
    #[arg(long)]
    xenstored: Option<PathBuf>,
    /// Where the per-domain lock files live.
    #[arg(long, default_value = "/run/xen")]
    lock_dir: PathBuf,
    /// Seconds the whole change may take (libxl's 40).
    #[arg(long, default_value_t = 40)]
    timeout: u64,
    /// Eject without `force`: a tray the guest locked stays shut (libxl's choice).
    #[arg(long)]
    no_force: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Raw,
    Qcow2,
    Vhd,
}

/// Runs one `xsio cdrom` command.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (drive, change) = match &args.command {
        CdromCommand::Insert {
            drive,
            image,
            format,
        } => {
            let path = std::path::absolute(image)
                .with_context(|| format!("{}: not a path", image.display()))?;
            let format = match format {
                FormatArg::Raw => Format::Raw,
                FormatArg::Qcow2 => Format::Qcow2,
                FormatArg::Vhd => Format::Vhd,
            };
            let medium = Medium {
                path: path.display().to_string(),
                format,
            };
            (drive, Change::Insert(medium))
        }
        CdromCommand::Eject { drive } => (drive, Change::Eject),
    };
    change_medium(drive, change)
}

fn change_medium(drive: &Drive, change: Change) -> anyhow::Result<ExitCode> {
    let model = if drive.qmp.is_some() {
        DeviceModel::Qmp
    } else {
        DeviceModel::Xenstore
    };
    let mut config = Config::new(drive.domain, drive.vdev.clone(), model);
    config.timeout = Duration::from_secs(drive.timeout);
    config.force = !drive.no_force;
    let xenstore = match &drive.xenstored {
        Some(path) => {
            XsConn::connect(path).with_context(|| format!("connecting to {}", path.display()))?
        }
        None => XsConn::open().context("connecting to xenstored")?,
    };
    let start = xsio_io_std::now();
    let mut world: Harness<MediaChange> = Harness::new(start);
    let mut xs_links = XsLinks::default().with_host(Host::new().lock_dir(&drive.lock_dir));
    let conn = xs_links.add(&mut world, xenstore);
    let mut qemu_links = QemuLinks::default();
    if let Some(qmp) = &drive.qmp {
        qemu_links.attach_to(conn, qmp);
    }
    let id = world.add(conn, MediaChange::new(config.clone(), change, start));
    world.drain(id);
    // The QEMU driver first: it takes its operations off the shared connection.
    let mut links = (qemu_links, xs_links);
    // The machine keeps its own deadline; the cleanup after it gets a little more.
    let limit = config.timeout.saturating_add(Duration::from_secs(5));
    let ran = run_until(&mut world, &mut links, limit, |w| w.actor(id).is_settled());
    let Some(result) = world.actor(id).result().cloned() else {
        ran.context("running the change")?;
        bail!("the change did not complete");
    };
    let ms = xsio_io_std::now()
        .saturating_duration_since(start)
        .as_millis();
    match result {
        Ok(changed) => {
            let what = if changed.params.is_empty() {
                "ejected".to_owned()
            } else {
                format!("inserted {}", changed.params)
            };
            let mut line = format!("{what} in {} {} ({ms} ms", drive.vdev, changed.device);
            if let Some(qemu) = changed.qemu {
                line.push_str(&format!(", QEMU {qemu}"));
            }
            if let Some(set) = changed.fdset {
                line.push_str(&format!(", through fd set {set}"));
            }
            println!("{line})");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("xsio cdrom: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}
