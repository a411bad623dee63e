//! `xsio xenstored`: the in-memory xenstore daemon on Unix sockets.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use signal_hook::consts::{SIGINT, SIGTERM};
use xsio_io_std::xenstored::{DaemonConfig, run as run_daemon};

/// Arguments of `xsio xenstored`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The control socket. Clients here are dom0: privileged, relative paths under
    /// /local/domain/0. Point Xen's tools at it with XENSTORED_PATH.
    #[arg(long)]
    socket: PathBuf,
    /// A socket standing in for a guest's ring, as DOMID=PATH (repeatable). Clients there are
    /// that unprivileged domain; the domain is introduced at start.
    #[arg(long = "domain-socket", value_name = "DOMID=PATH", value_parser = parse_domain_socket)]
    domain_sockets: Vec<(u32, PathBuf)>,
    /// The mode of the domain sockets, in octal. Owner-only by default, whatever the umask,
    /// like the control socket (which is always 0600).
    #[arg(long, value_name = "MODE", default_value = "600", value_parser = parse_mode)]
    domain_socket_mode: u32,
    /// Load the tree from FILE at start (if it exists) and save it there on SIGTERM/SIGINT.
    /// Its directory must exist and be writable; a damaged file is refused. Saves are
    /// crash-safe (temporary file, fsync, rename).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// With --state, also save every SECONDS (when the tree changed), so a crash loses at
    /// most that window.
    #[arg(long, value_name = "SECONDS", requires = "state")]
    save_interval: Option<u64>,
    /// Nodes an unprivileged domain may own.
    #[arg(long, default_value_t = 1000)]
    quota_nodes: u32,
    /// Watches an unprivileged domain may hold.
    #[arg(long, default_value_t = 128)]
    quota_watches: usize,
    /// Bytes an unprivileged domain may hold across all of its connections (nodes, queued
    /// replies and events, unread requests); past it its connections are not read until it
    /// drops below. 0: no limit.
    #[arg(long, value_name = "BYTES", default_value_t = 2_621_440)]
    quota_memory: usize,
    /// Past this many bytes a domain is logged, once per crossing (default: four fifths of
    /// --quota-memory). 0: never.
    #[arg(long, value_name = "BYTES")]
    quota_memory_soft: Option<usize>,
    /// Seconds a watch event may wait for a guest to read it before it is dropped (and
    /// counted); events for dom0 never expire.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    watch_event_timeout: u64,
}

fn parse_domain_socket(arg: &str) -> Result<(u32, PathBuf), String> {
    let (domid, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected DOMID=PATH, got {arg:?}"))?;
    let domid: u32 = domid
        .parse()
        .map_err(|_| format!("domid {domid:?} is not a number"))?;
    if domid == 0 {
        return Err("domain 0 is the control socket's; use --socket".into());
    }
    Ok((domid, PathBuf::from(path)))
}

fn parse_mode(arg: &str) -> Result<u32, String> {
    u32::from_str_radix(arg, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{arg:?} is not an octal mode (at most 777)"))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut seen = std::collections::BTreeSet::new();
    for (domid, _) in &args.domain_sockets {
        if !seen.insert(domid) {
            bail!("domain {domid} is given two sockets");
        }
    }
    // A signal writes a byte to `wake`; the loop polls `stop` and ends cleanly.
    let (stop, wake) = UnixStream::pair().context("socket pair for signals")?;
    for signal in [SIGTERM, SIGINT] {
        signal_hook::low_level::pipe::register(signal, wake.try_clone()?)
            .context("installing the signal handler")?;
    }
    let mut config = DaemonConfig::new(&args.socket);
    config.domain_sockets = args.domain_sockets.clone();
    config.domain_socket_mode = args.domain_socket_mode;
    config.state = args.state.clone();
    config.save_interval = args
        .save_interval
        .map(|secs| std::time::Duration::from_secs(secs.max(1)));
    config.server.quotas.nodes_per_domain = args.quota_nodes;
    config.server.quotas.watches_per_domain = args.quota_watches;
    config.server.quotas.memory_per_domain = args.quota_memory;
    config.server.quotas.memory_per_domain_soft =
        args.quota_memory_soft.unwrap_or(args.quota_memory / 5 * 4);
    config.server.watch_event_timeout = std::time::Duration::from_secs(args.watch_event_timeout);
    run_daemon(config, stop).context("xenstored")?;
    Ok(ExitCode::SUCCESS)
}
