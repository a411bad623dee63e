//! `xsio`: the command-line face of xen-sansio.
//!
//! Each subcommand lives in its own module and is a thin driver over a machine crate.
#![forbid(unsafe_code)]

mod cdrom;
mod device;
mod dm;
mod qmp;
mod sim;
mod vbd;
mod xenstored;
mod xs;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc, not glibc's allocator: `xsio sim` on a host of thousands of guests allocates a
/// string per name of every directory listing (libxl's cleanup lists a directory with one
/// entry per guest for each guest it destroys), and glibc spent half of such a run sorting
/// its free lists.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "xsio",
    version,
    about = "Sans-IO Xen toolstack protocols, from the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run whole Xen hosts in one deterministic process: a scenario (built-in when none is
    /// given) under a seed, printing the trace and a summary, or many seeds in parallel.
    Sim(sim::Args),
    /// Add or remove a device (libxl's removal with the QEMU bodge, hotplug scripts),
    /// against XENSTORED_PATH; or remove every device of a domain.
    Device(device::Args),
    /// Insert or eject a guest's CD-ROM medium: through its QEMU (--qmp, the image passed
    /// as a descriptor) or by the xenstore rewrite, against XENSTORED_PATH.
    Cdrom(cdrom::Args),
    /// Run QEMU as a device model on a QMP socket bound here first (no polling), and save
    /// its device state, resume, pause or quit it through that socket.
    Dm(dm::Args),
    /// Translate Xen VBD names (xvda, hdc2, d536p37) to xenstore `virtual-device` numbers.
    Vbd(vbd::Args),
    /// Serve an in-memory xenstore on Unix sockets (dom0 and simulated guests).
    Xenstored(xenstored::Args),
    /// Run one QMP command on a QEMU monitor socket and print the reply, or print its events.
    Qmp(qmp::Args),
    /// Read, write, list, remove and watch xenstore nodes (honours XENSTORED_PATH).
    Xs(xs::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim::run(&args),
        Command::Device(args) => device::run(&args),
        Command::Dm(args) => dm::run(&args),
        Command::Cdrom(args) => cdrom::run(&args),
        Command::Vbd(args) => vbd::run(&args),
        Command::Xenstored(args) => xenstored::run(&args),
        Command::Qmp(args) => qmp::run(&args),
        Command::Xs(args) => xs::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xsio: {err:#}");
            ExitCode::FAILURE
        }
    }
}
