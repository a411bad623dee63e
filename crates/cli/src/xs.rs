//! `xsio xs`: the xenstore-utils a toolstack author reaches for, on the xsio client.
//!
//! Like Xen's own tools, it finds the daemon through `XENSTORED_PATH` (then
//! `XENSTORED_RUNDIR`, then `/run/xenstored/socket`). When the daemon answers with an error
//! the command prints the error name on stderr and exits with status 1.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use xsio_io_std::xenstore::{XsConn, XsError};
use xsio_xs_client::WatchItem;

/// Arguments of `xsio xs`.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: XsCommand,
}

#[derive(clap::Subcommand)]
enum XsCommand {
    /// Print the value of each PATH, one per line (several paths: read in one transaction).
    Read {
        /// Nodes to read.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Write VALUE to PATH for each pair (several pairs: written in one transaction).
    Write {
        /// PATH VALUE [PATH VALUE]...
        #[arg(required = true, num_args = 2.., value_names = ["PATH", "VALUE"])]
        pairs: Vec<String>,
    },
    /// List the tree under PATH: `name = "value"`, indented one space per level.
    Ls {
        /// Also print each node's permissions, as `(n0,r5)`.
        #[arg(short = 'p')]
        perms: bool,
        /// The root of the listing.
        #[arg(default_value = "/")]
        path: String,
    },
    /// Remove PATH and everything below it.
    Rm {
        /// The node to remove.
        path: String,
    },
    /// Exit 0 if PATH exists, 1 if it does not.
    Exists {
        /// The node to check.
        path: String,
    },
    /// Watch PATH (token = PATH) and print `PATH<TAB>TOKEN` per event, the first one at once,
    /// until interrupted.
    Watch {
        /// The path to watch.
        path: String,
        /// Stop after this many events.
        #[arg(short = 'n', long)]
        count: Option<u64>,
    },
}

/// Runs one `xsio xs` command.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut xs = XsConn::open().context("connecting to xenstored")?;
    let result = match &args.command {
        XsCommand::Read { paths } => read(&mut xs, paths),
        XsCommand::Write { pairs } => write(&mut xs, pairs),
        XsCommand::Ls { perms, path } => ls(&mut xs, path, *perms),
        XsCommand::Rm { path } => xs.rm(path).map(|()| ExitCode::SUCCESS),
        XsCommand::Exists { path } => xs.exists(path).map(|yes| {
            if yes {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
        XsCommand::Watch { path, count } => watch(&mut xs, path, *count),
    };
    match result {
        Ok(code) => Ok(code),
        Err(err) => {
            match err.xs_kind() {
                // The daemon's answer: its error name, as the issue and scripts expect.
                Some(kind) => eprintln!("xsio xs: {kind}"),
                None => eprintln!("xsio xs: {err}"),
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read(xs: &mut XsConn, paths: &[String]) -> Result<ExitCode, XsError> {
    // One path: a plain READ, the exact bytes xenstore-read sends. Several: one
    // transaction, so the values are a consistent snapshot (as xenstore-read does).
    let values = if let [path] = paths {
        vec![xs.read(path)?]
    } else {
        xs.transaction(|tx| paths.iter().map(|p| tx.read(p)).collect())?
    };
    let mut out = std::io::stdout().lock();
    for value in values {
        out.write_all(&value)?;
        out.write_all(b"\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write(xs: &mut XsConn, pairs: &[String]) -> Result<ExitCode, XsError> {
    if pairs.len() % 2 != 0 {
        eprintln!("xsio xs write: PATH and VALUE come in pairs");
        return Ok(ExitCode::from(2));
    }
    let pairs: Vec<(&str, Bytes)> = pairs
        .chunks(2)
        .map(|pair| (pair[0].as_str(), Bytes::from(pair[1].clone())))
        .collect();
    if let [(path, value)] = &pairs[..] {
        xs.write(path, value.clone())?;
    } else {
        xs.transaction(|tx| {
            pairs
                .iter()
                .try_for_each(|(path, value)| tx.write(path, value.clone()))
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn ls(xs: &mut XsConn, root: &str, perms: bool) -> Result<ExitCode, XsError> {
    let mut out = std::io::stdout().lock();
    let mut stack: Vec<(String, usize)> = xs
        .directory(root)?
        .into_iter()
        .rev()
        .map(|name| (name, 0))
        .collect();
    let base = root.trim_end_matches('/').to_owned();
    let mut prefix: Vec<String> = Vec::new();
    while let Some((name, depth)) = stack.pop() {
        prefix.truncate(depth);
        prefix.push(name.clone());
        let path = format!("{base}/{}", prefix.join("/"));
        // A node removed while we walk is skipped, as xenstore-ls does.
        let value = match xs.read(&path) {
            Ok(value) => value,
            Err(err) if err.xs_kind() == Some(xsio_xs_wire::ErrorKind::Enoent) => continue,
            Err(err) => return Err(err),
        };
        write!(
            out,
            "{:indent$}{name} = \"{}\"",
            "",
            escape(&value),
            indent = depth
        )?;
        if perms {
            let list: Vec<String> = xs.get_perms(&path)?.iter().map(|p| p.to_string()).collect();
            write!(out, "  ({})", list.join(","))?;
        }
        writeln!(out)?;
        let children = match xs.directory(&path) {
            Ok(children) => children,
            Err(err) if err.xs_kind() == Some(xsio_xs_wire::ErrorKind::Enoent) => continue,
            Err(err) => return Err(err),
        };
        stack.extend(children.into_iter().rev().map(|child| (child, depth + 1)));
    }
    Ok(ExitCode::SUCCESS)
}

fn watch(xs: &mut XsConn, path: &str, count: Option<u64>) -> Result<ExitCode, XsError> {
    xs.watch(path, path)?;
    let mut out = std::io::stdout().lock();
    let mut seen = 0;
    while count.is_none_or(|n| seen < n) {
        let Some(item) = xs.next_event(None)? else {
            continue;
        };
        if let WatchItem::Overflow(overflow) = &item {
            // Printed as an event on the watched path (the reader re-reads it), and said.
            eprintln!(
                "xsio xs watch: {} events of {} were lost (not read in time); re-read it",
                overflow.lost, overflow.path
            );
        }
        writeln!(out, "{}\t{}", item.path(), item.token())?;
        out.flush()?;
        seen += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// Values as text: printable ASCII as is, `"` and `\` escaped, anything else `\xNN`.
fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}
