//! `xsio dm run|save|cont|stop|quit`: QEMU as a device model, through `xsio-dm`'s
//! operations and `xsio-io-std`'s QEMU driver.
//!
//! `run` binds and listens on the QMP socket itself and starts QEMU with it (no polling
//! for the socket: QEMU's greeting says it is up), waits until QEMU reports a ready run
//! state, prints it with the time it took, and leaves QEMU running in the background (pid
//! printed) or waits for it with `--wait`. The other commands connect to that socket.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use xsio_dm::{
    Action, Control, ControlConfig, Save, SaveConfig, Shutdown, ShutdownConfig, StartConfig,
    StartUp,
};
use xsio_harness::dm::{Dm, DmEvent};
use xsio_harness::{Conn, Harness, Record};
use xsio_io_std::dm::QemuLinks;
use xsio_io_std::l2::{run_until, run_until_with};
use xsio_ops::{PeerEvent, ProcessExit};

/// The run states `xsio dm run` calls ready: a fresh `-S` start, a restore, or a guest
/// started running.
const READY_STATES: &[&str] = &["prelaunch", "inmigrate", "paused", "running"];

/// Arguments of `xsio dm`.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: DmCommand,
}

#[derive(clap::Subcommand)]
enum DmCommand {
    /// Start QEMU with a QMP monitor on a socket bound here first, wait until it is ready,
    /// print its run state and the time it took; leave it running (pid printed) or wait.
    Run {
        /// The QMP socket to create.
        #[arg(long)]
        qmp: PathBuf,
        /// Seconds QEMU has to become ready (libxl's 60).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Stay in the foreground until QEMU exits; exit with its status.
        #[arg(long)]
        wait: bool,
        /// The QEMU command line (the QMP monitor options are appended).
        #[arg(last = true, required = true, num_args = 1..)]
        qemu: Vec<String>,
    },
    /// Save QEMU's device state into FILE (stop, add-fd, xen-save-devices-state, remove-fd).
    Save {
        /// The QMP socket.
        #[arg(long)]
        qmp: PathBuf,
        /// The file to write (created, or truncated).
        #[arg(long)]
        to: PathBuf,
        /// Pass `live: true` (a live migration's checkpoint).
        #[arg(long)]
        live: bool,
        /// Seconds the save may take.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Resume the guest's vCPUs (`cont`), then remove the fd sets a save left.
    Cont(Target),
    /// Pause the guest's vCPUs (`stop`).
    Stop(Target),
    /// Quit QEMU and wait for it to exit; kill it when it does not in time.
    Quit(Target),
}

#[derive(clap::Args)]
struct Target {
    /// The QMP socket.
    #[arg(long)]
    qmp: PathBuf,
    /// Seconds the operation may take.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// Runs `xsio dm`.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        DmCommand::Run {
            qmp,
            timeout,
            wait,
            qemu,
        } => start(qmp, *timeout, *wait, qemu),
        DmCommand::Save {
            qmp,
            to,
            live,
            timeout,
        } => {
            let path = to.to_str().context("the file name is not UTF-8")?;
            let config = SaveConfig {
                live: *live,
                timeout: Duration::from_secs(*timeout),
                ..SaveConfig::to(path)
            };
            match operate(qmp, |now| Dm::Save(Save::new(config, now)))? {
                DmEvent::Save(Ok(saved)) => {
                    println!(
                        "saved: {} (through fd set {})",
                        to.display(),
                        saved.fdset_id
                    );
                    Ok(ExitCode::SUCCESS)
                }
                DmEvent::Save(Err(err)) => failed(err),
                other => bail!("unexpected completion {other:?}"),
            }
        }
        DmCommand::Cont(target) => control(target, Action::Resume),
        DmCommand::Stop(target) => control(target, Action::Pause),
        DmCommand::Quit(target) => {
            let config = ShutdownConfig {
                timeout: Duration::from_secs(target.timeout),
                ..ShutdownConfig::default()
            };
            match operate(&target.qmp, |now| Dm::Shutdown(Shutdown::new(config, now)))? {
                DmEvent::Shutdown(Ok(stopped)) => {
                    let how = if stopped.killed { "a kill" } else { "quit" };
                    println!("exited after {how}: {}", exit_text(stopped.exit.as_ref()));
                    Ok(ExitCode::SUCCESS)
                }
                DmEvent::Shutdown(Err(err)) => failed(err),
                other => bail!("unexpected completion {other:?}"),
            }
        }
    }
}

/// `xsio dm run`.
fn start(socket: &Path, timeout: u64, wait: bool, argv: &[String]) -> anyhow::Result<ExitCode> {
    let (program, args) = argv.split_first().context("no QEMU command")?;
    let mut qemu = Command::new(program);
    qemu.args(args);
    // In the background QEMU must not hold our caller's terminal or pipes: its output goes
    // to a deleted temporary file, shown if it fails to start.
    let log = if wait {
        None
    } else {
        let log = tempfile::tempfile().context("a file for QEMU's output")?;
        qemu.stdout(Stdio::null())
            .stderr(Stdio::from(log.try_clone()?));
        Some(log)
    };
    let started = xsio_io_std::now();
    let mut world: Harness<Dm> = Harness::new(started);
    let mut links = QemuLinks::default();
    let conn = links
        .spawn(&mut world, qemu, socket)
        .with_context(|| format!("starting {program}"))?;
    let config = StartConfig {
        timeout: Duration::from_secs(timeout),
        ..StartConfig::accepting(READY_STATES)
    };
    let completion = settle(&mut world, &mut links, conn, |now| {
        Dm::Start(StartUp::new(config, now))
    })?;
    let ready = match completion {
        DmEvent::Start(Ok(ready)) => ready,
        DmEvent::Start(Err(err)) => {
            if let Some(mut log) = log {
                let mut text = String::new();
                log.rewind()?;
                log.read_to_string(&mut text)?;
                eprint!("{text}");
            }
            // Dropping the links kills QEMU if it still runs.
            return failed(err);
        }
        other => bail!("unexpected completion {other:?}"),
    };
    let took = xsio_io_std::now().saturating_duration_since(started);
    let pid = links.pid(conn).map_or("?".to_owned(), |p| p.to_string());
    println!(
        "ready: {} in {} ms (QEMU {}, pid {pid})",
        ready.status,
        took.as_millis(),
        ready.session.version
    );
    std::io::stdout().flush()?;
    if !wait {
        links.detach(conn);
        return Ok(ExitCode::SUCCESS);
    }
    // In the foreground until QEMU exits. Other `xsio dm` commands drive it meanwhile, so the
    // monitor (one client at a time) is left to them.
    links.disconnect(conn);
    let mut exit = None;
    run_until_with(&mut world, &mut links, Duration::MAX, |world| {
        for record in world.take_log() {
            if let Record::Peer {
                event: PeerEvent::Exited(how),
                ..
            } = record
            {
                exit = Some(how);
            }
        }
        exit.is_some()
    })?;
    let exit = exit.flatten();
    println!("exited: {}", exit_text(exit.as_ref()));
    Ok(match exit {
        Some(ProcessExit::Exited(0)) => ExitCode::SUCCESS,
        Some(ProcessExit::Exited(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        _ => ExitCode::FAILURE,
    })
}

fn control(target: &Target, action: Action) -> anyhow::Result<ExitCode> {
    let config = ControlConfig {
        action,
        timeout: Duration::from_secs(target.timeout),
    };
    match operate(&target.qmp, |now| Dm::Control(Control::new(config, now)))? {
        DmEvent::Control(Ok(())) => {
            println!(
                "{}",
                if action == Action::Resume {
                    "running"
                } else {
                    "paused"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        DmEvent::Control(Err(err)) => failed(err),
        other => bail!("unexpected completion {other:?}"),
    }
}

/// Runs one operation against the QEMU listening on `socket`; its completion.
fn operate(socket: &Path, make: impl FnOnce(std::time::Instant) -> Dm) -> anyhow::Result<DmEvent> {
    let mut world: Harness<Dm> = Harness::new(xsio_io_std::now());
    let mut links = QemuLinks::default();
    let conn = links.attach(&mut world, socket);
    settle(&mut world, &mut links, conn, make)
}

/// Adds the operation `make` builds on `conn` and runs it until it has settled.
fn settle(
    world: &mut Harness<Dm>,
    links: &mut QemuLinks,
    conn: Conn,
    make: impl FnOnce(std::time::Instant) -> Dm,
) -> anyhow::Result<DmEvent> {
    let id = world.add(conn, make(world.now()));
    world.drain(id);
    // The operations keep their own deadlines; this bound only guards against a bug.
    run_until(world, links, Duration::from_secs(24 * 3600), |w| {
        w.actor(id).is_settled()
    })?;
    world
        .take_log()
        .into_iter()
        .find_map(|record| match record {
            Record::Event { actor, event } if actor == id => Some(event),
            _ => None,
        })
        .context("the operation ended without a completion")
}

fn failed(err: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("xsio: {err}");
    Ok(ExitCode::FAILURE)
}

fn exit_text(exit: Option<&ProcessExit>) -> String {
    match exit {
        Some(exit) => exit.to_string(),
        None => "status unknown (not our child)".to_owned(),
    }
}
