//! `xsio qmp`: one QMP command, or the event stream, from a QEMU monitor socket.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xsio_io_std::qmp::{QmpConn, QmpIoError};
use xsio_qmp::{CloseReason, Command, CommandError, Config};

/// Arguments of `xsio qmp`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The QMP Unix socket (`-qmp unix:PATH,server=on,wait=off`).
    #[arg(long)]
    socket: PathBuf,
    /// Print events as JSON lines until the connection ends or you interrupt. Exits 0 when
    /// QEMU closes the connection, non-zero with the reason when it ends on an error.
    #[arg(long, conflicts_with = "command")]
    events: bool,
    /// Seconds to wait for the greeting and for the reply; a value too large to count from now
    /// (18446744073709551615) means no deadline.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// The command name (`query-status`).
    #[arg(required_unless_present = "events")]
    command: Option<String>,
    /// Its arguments, a JSON object (`'{"id": "cd0"}'`).
    arguments: Option<String>,
}

/// Runs one command and prints its reply as JSON, or prints events.
pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = Config {
        command_timeout: Duration::from_secs(args.timeout),
        negotiation_timeout: Duration::from_secs(args.timeout),
        ..Config::default()
    };
    let mut qmp = QmpConn::connect(&args.socket, config)
        .with_context(|| format!("connecting to {}", args.socket.display()))?;
    let mut out = std::io::stdout().lock();
    if args.events {
        while let Some(event) = qmp.next_event(None)? {
            let line = json!({"event": event.name, "data": event.data, "timestamp": {
                "seconds": event.timestamp.seconds, "microseconds": event.timestamp.microseconds}});
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        // QEMU closing the socket is the normal end of the stream; anything else is a failure.
        if let Some(error) = qmp.io_error() {
            bail!("the QMP connection failed: {error}");
        }
        if let Some(reason @ CloseReason::Protocol(_)) = qmp.closed() {
            bail!("the QMP connection failed: {reason}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(name) = args.command.clone() else {
        bail!("a command name is required without --events");
    };
    let mut command = Command::new(name);
    if let Some(text) = &args.arguments {
        let value: Value = serde_json::from_str(text).context("the arguments are not JSON")?;
        if !value.is_object() {
            bail!("the arguments must be a JSON object");
        }
        command = command.arguments(value);
    }
    match qmp.execute(command) {
        Ok(reply) => {
            writeln!(out, "{}", reply.as_str())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(QmpIoError::Command(CommandError::Qmp(e))) => {
            let error = json!({"error": {"class": e.class.as_str(), "desc": e.desc}});
            writeln!(out, "{error}")?;
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
