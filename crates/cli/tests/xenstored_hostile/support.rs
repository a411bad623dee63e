//! The real `xsio xenstored` binary on temp sockets, started through `sh` so a test can set
//! its umask and fd limit, with its stderr kept in a file; and a raw xenstore client.
#![allow(dead_code)] // Each test module uses a part.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use xsio_xs_wire::{FrameDecoder, Packet, Reply, Request};

/// How long the daemon gets to come up or to exit.
const WAIT: Duration = Duration::from_secs(10);

/// How a test starts the daemon.
#[derive(Clone, Debug, Default)]
pub(crate) struct Launch {
    /// Shell commands run before `exec` (`umask 000`, `ulimit -n 40`).
    pub(crate) shell: String,
    /// Guests with a domain socket each.
    pub(crate) domains: Vec<u32>,
    /// More arguments of `xsio xenstored`.
    pub(crate) args: Vec<String>,
}

impl Launch {
    pub(crate) fn new() -> Launch {
        Launch::default()
    }

    pub(crate) fn shell(mut self, line: &str) -> Launch {
        self.shell = line.to_owned();
        self
    }

    pub(crate) fn domain(mut self, domid: u32) -> Launch {
        self.domains.push(domid);
        self
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Launch {
        self.args.push(arg.as_ref().to_string_lossy().into_owned());
        self
    }
}

/// A running daemon; killed on drop.
pub(crate) struct Xenstored {
    pub(crate) child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) stderr: PathBuf,
}

pub(crate) fn xsio() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_xsio"))
}

/// Spawns `xsio xenstored` with its control socket `dir/socket` (unless `args` name one),
/// guest sockets `dir/dom<N>`, stderr to `dir/<stderr_name>`; does not wait.
pub(crate) fn spawn(dir: &Path, launch: &Launch, stderr_name: &str) -> (Child, PathBuf) {
    let stderr = dir.join(stderr_name);
    let mut cmd = Command::new("/bin/sh");
    let script = format!("{}\nexec \"$0\" \"$@\"", launch.shell);
    cmd.arg("-c").arg(script).arg(xsio()).arg("xenstored");
    if !launch.args.iter().any(|a| a == "--socket") {
        cmd.arg("--socket").arg(dir.join("socket"));
    }
    for domid in &launch.domains {
        cmd.arg("--domain-socket").arg(format!(
            "{domid}={}",
            dir.join(format!("dom{domid}")).display()
        ));
    }
    cmd.args(&launch.args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap());
    (cmd.spawn().expect("spawn xsio xenstored"), stderr)
}

impl Xenstored {
    /// Starts the daemon in `dir` and waits until its control socket accepts.
    pub(crate) fn start(dir: &Path, launch: Launch) -> Xenstored {
        let (child, stderr) = spawn(dir, &launch, "stderr");
        let daemon = Xenstored {
            child,
            dir: dir.to_owned(),
            socket: dir.join("socket"),
            stderr,
        };
        let deadline = Instant::now() + WAIT;
        let mut sockets = vec![daemon.socket.clone()];
        sockets.extend(launch.domains.iter().map(|d| daemon.domain_socket(*d)));
        while !sockets.iter().all(|s| UnixStream::connect(s).is_ok()) {
            assert!(
                Instant::now() < deadline,
                "daemon did not come up: {}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// [`Xenstored::start`] with a domain socket for each of `guests` too, each guest given
    /// its home by dom0 ([`guest_home`]); the daemon and dom0's connection.
    pub(crate) fn start_with_guests(
        dir: &Path,
        launch: Launch,
        guests: &[u32],
    ) -> (Xenstored, Client) {
        let launch = guests.iter().fold(launch, |l, &domid| l.domain(domid));
        let d = Xenstored::start(dir, launch);
        let mut dom0 = Client::connect(&d.socket);
        for &domid in guests {
            guest_home(&mut dom0, domid);
        }
        (d, dom0)
    }

    pub(crate) fn domain_socket(&self, domid: u32) -> PathBuf {
        self.dir.join(format!("dom{domid}"))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon wrote to stderr so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Resident memory in KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// CPU time used so far (user + system), in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name, which ends with the last ')'.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// SIGTERM, then waits for the exit.
    pub(crate) fn stop(mut self) -> ExitStatus {
        signal(self.pid(), "TERM");
        wait_exit(&mut self.child)
    }

    /// SIGKILL, as a crash.
    pub(crate) fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (10 s at most) for `child` to exit.
pub(crate) fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw xenstore client: one request at a time, or pipelined; events collected apart.
pub(crate) struct Client {
    pub(crate) stream: UnixStream,
    decoder: FrameDecoder,
    next_req: u32,
    pub(crate) events: Vec<(String, String)>,
}

impl Client {
    pub(crate) fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream,
            decoder: FrameDecoder::default(),
            next_req: 1,
            events: Vec::new(),
        }
    }

    /// Sends `request` in transaction `tx`; returns its req_id.
    pub(crate) fn send(&mut self, tx: u32, request: Request) -> u32 {
        let req_id = self.next_req;
        self.next_req += 1;
        let bytes = Packet::new(req_id, tx, request).to_bytes().unwrap();
        self.stream.write_all(&bytes).unwrap();
        req_id
    }

    /// The next message; `None` once the daemon closed the connection.
    pub(crate) fn recv(&mut self) -> Option<Packet<Reply>> {
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return Some(Packet::decode(&frame).unwrap());
            }
            let mut buf = [0u8; 65536];
            let n = self.stream.read(&mut buf).unwrap();
            if n == 0 {
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    /// The next reply (not an event); events on the way are kept in `events`.
    pub(crate) fn reply(&mut self) -> Option<Packet<Reply>> {
        loop {
            let packet = self.recv()?;
            match packet.body {
                Reply::WatchEvent { path, token } => self.events.push((path, token)),
                _ => return Some(packet),
            }
        }
    }

    /// One request and its reply.
    pub(crate) fn call(&mut self, tx: u32, request: Request) -> Reply {
        let req_id = self.send(tx, request);
        let reply = self.reply().expect("connection closed");
        assert_eq!(reply.req_id, req_id);
        reply.body
    }

    /// READ of `path` outside a transaction; the reply.
    pub(crate) fn read(&mut self, path: &str) -> Reply {
        self.call(0, Request::Read { path: path.into() })
    }

    /// Sends a WRITE of `value` to each of `paths` in transaction `tx` without waiting, then
    /// checks that every one was answered with success.
    pub(crate) fn pipelined_writes(
        &mut self,
        tx: u32,
        paths: impl IntoIterator<Item = String>,
        value: &str,
    ) {
        let mut sent = 0;
        for path in paths {
            let value = value.to_owned().into();
            self.send(tx, Request::Write { path, value });
            sent += 1;
        }
        for _ in 0..sent {
            assert_eq!(self.reply().unwrap().body, Reply::Write);
        }
    }

    /// Writes `count` nodes `DIR/n0`, `DIR/n1`, ... (value `v`), pipelined 500 at a time:
    /// a flood of events for whoever watches `dir`.
    pub(crate) fn flood(&mut self, dir: &str, count: usize) {
        for batch in (0..count).step_by(500) {
            let paths = (batch..count.min(batch + 500)).map(|i| format!("{dir}/n{i}"));
            self.pipelined_writes(0, paths, "v");
        }
    }

    pub(crate) fn write(&mut self, path: &str, value: &str) {
        let request = Request::Write {
            path: path.into(),
            value: value.to_owned().into(),
        };
        assert_eq!(self.call(0, request), Reply::Write, "write {path}");
    }

    pub(crate) fn chmod(&mut self, path: &str, perms: &str) {
        let perms = perms.split(' ').map(|p| p.parse().unwrap()).collect();
        let request = Request::SetPerms {
            path: path.into(),
            perms,
        };
        assert_eq!(self.call(0, request), Reply::SetPerms, "chmod {path}");
    }

    pub(crate) fn watch(&mut self, path: &str, token: &str) {
        let request = Request::Watch {
            path: path.into(),
            token: token.into(),
        };
        assert_eq!(self.call(0, request), Reply::Watch);
    }

    /// CONTROL with `args`; the reply text.
    pub(crate) fn control(&mut self, args: &[&str]) -> String {
        let request = Request::Control {
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        match self.call(0, request) {
            Reply::Control(text) => String::from_utf8_lossy(&text)
                .trim_end_matches('\0')
                .to_owned(),
            other => panic!("control {args:?}: {other:?}"),
        }
    }

    /// Reads events until `count` arrived (20 s at most per read).
    pub(crate) fn wait_events(&mut self, count: usize) {
        while self.events.len() < count {
            match self.recv() {
                Some(Packet {
                    body: Reply::WatchEvent { path, token },
                    ..
                }) => self.events.push((path, token)),
                Some(other) => panic!("unexpected {other:?}"),
                None => panic!("closed after {} of {count} events", self.events.len()),
            }
        }
    }
}

/// dom0 gives guest `domid` its home, owned by it.
pub(crate) fn guest_home(dom0: &mut Client, domid: u32) {
    let home = format!("/local/domain/{domid}");
    dom0.write(&home, "");
    dom0.chmod(&home, &format!("n{domid}"));
}

/// The value of `name` in a `quota <domid>` report (`name   :   value` lines).
pub(crate) fn quota_value(report: &str, name: &str) -> u64 {
    report
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name:?} in {report:?}"))
}
