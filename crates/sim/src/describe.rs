//! One way to say in words what a toolstack machine asked and was told, for every trace
//! of the simulator.

use xsio_device::DeviceEvent;
use xsio_ops::{
    FileAccess, FileOp, HostOp, Op, OpError, PeerEvent, ProcessOp, QmpOp, Reply, TxnOp, XsOp,
};
use xsio_xenbus::{BackendEvent, FrontendEvent, WaitEvent, XenbusState};

/// A request in words: `watch PATH`, `write (if state exists): state=4 (Connected) ...`;
/// `None` for a read (its answer is what is worth showing).
pub fn request(op: &Op) -> Option<String> {
    let op = match op {
        Op::Xs(op) => op,
        Op::Host(HostOp::DomainInfo { domid }) => return Some(format!("domain info of {domid}?")),
        Op::Host(HostOp::DeviceModelAlive { domid }) => {
            return Some(format!("device model of {domid} alive?"));
        }
        Op::Host(HostOp::Spawn { argv, .. }) => return Some(format!("run {}", argv.join(" "))),
        Op::Host(HostOp::Kill { .. }) => return Some("kill the script".into()),
        Op::Host(HostOp::Lock { domid }) => return Some(format!("lock domain {domid}")),
        Op::Host(HostOp::Unlock { .. }) => return Some("unlock".into()),
        Op::Qmp(QmpOp::Connect) => return Some("qmp connect".into()),
        Op::Qmp(QmpOp::Command(command)) => {
            let args = command
                .arguments
                .as_ref()
                .map_or(String::new(), |a| format!(" {a}"));
            let fds = match command.fds.len() {
                0 => String::new(),
                n => format!(" (+{n} fd)"),
            };
            return Some(format!("qmp {}{args}{fds}", command.command));
        }
        Op::File(FileOp::Open(open)) => {
            let access = match open.access {
                FileAccess::ReadOnly => "read-only",
                FileAccess::WriteOnly => "write-only",
                FileAccess::ReadWrite => "read-write",
            };
            return Some(format!("open {} ({access})", open.path));
        }
        Op::File(FileOp::Close(fd)) => return Some(format!("close {fd}")),
        Op::Process(ProcessOp::Kill) => return Some("kill QEMU".into()),
        other => return Some(format!("{other:?}")),
    };
    match op {
        XsOp::Watch { path, .. } => Some(format!("watch {path}")),
        XsOp::Unwatch { path, .. } => Some(format!("unwatch {path}")),
        XsOp::Read { .. } => None,
        XsOp::Transaction(txn) => {
            let mut parts = Vec::new();
            let mut perms = 0;
            for op in &txn.ops {
                match op {
                    TxnOp::Write { path, value } => {
                        let key = path.rsplit('/').next().unwrap_or(path);
                        parts.push(match (key, XenbusState::parse(value)) {
                            ("state", Ok(state)) => format!("state={value} ({state})"),
                            _ => format!("{key}={value}"),
                        });
                    }
                    TxnOp::Rm { path } => parts.push(format!("rm {path}")),
                    TxnOp::Mkdir { path } => parts.push(format!("mkdir {path}")),
                    TxnOp::SetPerms { .. } => perms += 1,
                }
            }
            if perms > 0 {
                parts.push(format!("+{perms} set-perms"));
            }
            let guard = if txn.only_if_exists.is_some() {
                " (if state exists)"
            } else {
                ""
            };
            Some(format!("write{guard}: {}", parts.join(" ")))
        }
        // The steps of an interactive transaction; its reads show with their answers.
        XsOp::TxnStart => Some("transaction start".into()),
        XsOp::TxnRead { .. } | XsOp::TxnDirectory { .. } | XsOp::Directory { .. } => None,
        XsOp::TxnApply { op, .. } => Some(match op {
            TxnOp::Write { path, value } => {
                let key = path.rsplit('/').next().unwrap_or(path);
                match (key, XenbusState::parse(value)) {
                    ("state", Ok(state)) => format!("  write state={value} ({state})"),
                    _ => format!("  write {key}={value}"),
                }
            }
            TxnOp::Rm { path } => format!("  rm {path}"),
            TxnOp::Mkdir { path } => format!("  mkdir {path}"),
            TxnOp::SetPerms { path, .. } => format!("  set-perms {path}"),
        }),
        XsOp::TxnEnd { commit: true, .. } => Some("transaction commit".into()),
        XsOp::TxnEnd { commit: false, .. } => Some("transaction abort".into()),
    }
}

/// An answer in words, for reads only: `read PATH = 4 (Connected)`, `read PATH: Access`.
pub fn reply(op: &Op, result: &Result<Reply, OpError>) -> Option<String> {
    let path = match op {
        Op::Xs(XsOp::Read { path } | XsOp::TxnRead { path, .. }) => path,
        Op::Xs(XsOp::Directory { path } | XsOp::TxnDirectory { path, .. }) => {
            return Some(match result {
                Ok(Reply::Children(Some(names))) => format!("list {path} = [{}]", names.join(" ")),
                Ok(_) => format!("list {path} = (missing)"),
                Err(err) => format!("list {path}: {:?}", err.kind),
            });
        }
        Op::Xs(XsOp::TxnEnd { commit: true, .. }) => {
            return result
                .as_ref()
                .err()
                .map(|err| format!("transaction commit: {:?}", err.kind));
        }
        Op::Qmp(QmpOp::Command(command)) => {
            return Some(match result {
                Ok(Reply::Qmp(value)) if value.as_object().is_some_and(|o| o.is_empty()) => {
                    format!("qmp {}: ok", command.command)
                }
                Ok(Reply::Qmp(value)) => format!("qmp {} = {value}", command.command),
                Ok(other) => format!("qmp {}: {other:?}", command.command),
                Err(err) => format!("qmp {} failed: {err}", command.command),
            });
        }
        Op::Qmp(QmpOp::Connect) => {
            return Some(match result {
                Ok(Reply::QmpConnected(session)) => {
                    format!("qmp connected: QEMU {}", session.version)
                }
                Ok(other) => format!("qmp connect: {other:?}"),
                Err(err) => format!("qmp connect failed: {err}"),
            });
        }
        Op::File(FileOp::Open(open)) => {
            return Some(match result {
                Ok(Reply::Fd(fd)) => format!("opened {} as {fd}", open.path),
                Ok(other) => format!("open {}: {other:?}", open.path),
                Err(err) => format!("open {} failed: {err}", open.path),
            });
        }
        _ => return None,
    };
    match result {
        Err(err) => Some(format!("read {path}: {:?}", err.kind)),
        Ok(Reply::Value(value)) => {
            let shown = value.as_deref().map_or("(missing)".to_owned(), |v| {
                match (path.ends_with("/state"), XenbusState::parse(v)) {
                    (true, Ok(state)) => format!("{v} ({state})"),
                    _ => v.to_owned(),
                }
            });
            Some(format!("read {path} = {shown}"))
        }
        Ok(_) => None,
    }
}

/// Something QEMU did on its own, in words.
pub fn peer_event(event: &PeerEvent) -> String {
    match event {
        PeerEvent::Qmp(event)
            if event.data.is_null() || event.data.as_object().is_some_and(|o| o.is_empty()) =>
        {
            format!("event {}", event.name)
        }
        PeerEvent::Qmp(event) => format!("event {} {}", event.name, event.data),
        PeerEvent::QmpClosed => "QMP connection closed".into(),
        PeerEvent::Exited(Some(exit)) => format!("exited: {exit}"),
        PeerEvent::Exited(None) => "exited".into(),
        other => format!("{other:?}"),
    }
}

/// A backend's event in words; `None` for what a trace need not show.
pub fn backend_event(event: &BackendEvent) -> Option<String> {
    match event {
        BackendEvent::StateChanged { from, to } => Some(format!("state {from} -> {to}")),
        BackendEvent::FrontendState(_) => None,
        BackendEvent::Connected { frontend } => Some(format!("connected: ring {}", kv(frontend))),
        other => Some(format!("{other:?}")),
    }
}

/// A frontend's event in words; `None` for what a trace need not show.
pub fn frontend_event(event: &FrontendEvent) -> Option<String> {
    match event {
        FrontendEvent::StateChanged { from, to } => Some(format!("state {from} -> {to}")),
        FrontendEvent::BackendState(_) => None,
        FrontendEvent::Connected { backend } => Some(format!("connected: disk {}", kv(backend))),
        other => Some(format!("{other:?}")),
    }
}

/// A device operation's event in words.
pub fn device_event(event: &DeviceEvent) -> String {
    event.to_string()
}

/// A toolstack waiter's event in words.
pub fn wait_event(event: &WaitEvent) -> String {
    match event {
        WaitEvent::Done(result) => format!("wait for backend Closed: {result:?}"),
        WaitEvent::StillWaiting(state) => format!("still waiting (backend {state})"),
        other => format!("{other:?}"),
    }
}

fn kv(values: &[(String, String)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
