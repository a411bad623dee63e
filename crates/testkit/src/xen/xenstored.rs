//! Xen 4.17's own xenstore daemons (C `xenstored`, OCaml `oxenstored`) on a temp socket,
//! under the shim; guests introduced over real rings.

use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

use super::{EventChannel, GuestMemory, RING_REF, World, ring};

/// Xen's C xenstored (Debian's `xen-utils-4.17`).
pub const C_XENSTORED: &str = "/usr/lib/xen-4.17/bin/xenstored";
/// Xen's OCaml xenstored (same package).
pub const OXENSTORED: &str = "/usr/lib/xen-4.17/bin/oxenstored";

/// How long a daemon gets to listen.
const START_WAIT: Duration = Duration::from_secs(10);
/// How long the daemon gets to answer INTRODUCE.
const REPLY_WAIT: Duration = Duration::from_secs(10);
/// Pages of memory a ring guest gets (page [`RING_REF`] is the ring).
const GUEST_PAGES: usize = 2;

/// Which of Xen's daemons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// The C daemon, `xenstored -N` (foreground), on `XENSTORED_RUNDIR`'s socket.
    C,
    /// `oxenstored --no-fork` with a config file of ours; its hard-coded
    /// `/var/run/xenstored/socket` lands in the world's `run/`.
    OCaml,
}

impl Flavour {
    /// The binary.
    pub fn program(self) -> &'static str {
        match self {
            Flavour::C => C_XENSTORED,
            Flavour::OCaml => OXENSTORED,
        }
    }
}

/// A running Xen xenstored (killed on drop) in a [`World`], dom0 on [`XenStored::socket`].
///
/// ```no_run
/// use xsio_testkit::xen::{Flavour, World, XenStored};
///
/// let world = World::new().unwrap();
/// let daemon = XenStored::start(&world, Flavour::C, &[]).unwrap();
/// // Domain 1, unprivileged, talking over its ring (bridged to this socket).
/// let guest = daemon.introduce(1).unwrap();
/// # drop(guest);
/// ```
#[derive(Debug)]
pub struct XenStored {
    child: Child,
    world: World,
    flavour: Flavour,
    socket: PathBuf,
}

impl XenStored {
    /// Starts `flavour` in `world` under the missing-peer rule (`None` after SKIPPED, or a
    /// panic under CI, when `xen-utils-4.17` is not installed); waits until dom0 can
    /// connect. `extra` are more arguments for the C daemon (`-W 10`, ...), or more
    /// config lines (`quota-maxwatch = 10`) for oxenstored.
    pub fn start(world: &World, flavour: Flavour, extra: &[&str]) -> Option<XenStored> {
        if !crate::peer::path(flavour.program()) {
            return None;
        }
        let log = std::fs::File::create(world.path("xenstored.log")).unwrap();
        let mut command = Command::new(flavour.program());
        world.preload(&mut command);
        let socket = match flavour {
            Flavour::C => {
                command
                    .arg("-N")
                    .args(extra)
                    .env("XENSTORED_RUNDIR", world.dir())
                    .env("XENSTORED_ROOTDIR", world.dir())
                    .env("XENSTORED_PATH", world.path("socket"));
                world.path("socket")
            }
            Flavour::OCaml => {
                let config = world.path("oxenstored.conf");
                std::fs::write(&config, oxenstored_config(world, extra)).unwrap();
                command.arg("--no-fork").arg("--config-file").arg(&config);
                world.path("run/socket")
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", flavour.program()));
        let mut daemon = XenStored {
            child,
            world: world.clone(),
            flavour,
            socket,
        };
        daemon.wait_listening();
        Some(daemon)
    }

    fn wait_listening(&mut self) {
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        while waited < START_WAIT {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before listening: {}",
                    self.flavour.program(),
                    self.log()
                );
            }
            std::thread::sleep(step);
            waited += step;
        }
        panic!(
            "{} did not listen within {START_WAIT:?}: {}",
            self.flavour.program(),
            self.log()
        );
    }

    /// What the daemon printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.world.path("xenstored.log")).unwrap_or_default()
    }

    /// The dom0 (privileged) socket; point clients at it with `XENSTORED_PATH`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The world the daemon runs in.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// Which daemon this is.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: Signal) {
        kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), signal).unwrap();
    }

    /// Makes `domid` a guest talking over a real ring, as a toolstack and the guest's
    /// kernel would: lays out its memory (the ring in grant [`RING_REF`]) and event channel
    /// (port `domid + 10`), sends INTRODUCE on a dom0 connection, and bridges the ring to a
    /// socket. Returns the test's end of it: requests written there are the guest's.
    pub fn introduce(&self, domid: u32) -> io::Result<UnixStream> {
        let memory = GuestMemory::create(&self.world, domid, GUEST_PAGES)?;
        let channel = EventChannel::open(&self.world, domid, domid + 10)?;
        let port = channel.port();
        let guest = ring::bridge(memory, channel)?;
        let payload = format!("{domid}\0{RING_REF}\0{port}\0");
        let reply = dom0_request(&self.socket, 8, payload.as_bytes())?;
        if reply != b"OK\0" {
            return Err(io::Error::other(format!(
                "INTRODUCE {domid}: {}",
                String::from_utf8_lossy(&reply)
            )));
        }
        Ok(guest)
    }
}

impl Drop for XenStored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for oxenstored that keeps every file it writes inside `world`, with `extra`
/// lines after ours (a later line wins).
fn oxenstored_config(world: &World, extra: &[&str]) -> String {
    let at = |name: &str| world.path(name).display().to_string();
    let mut lines = vec![
        format!("pid-file = {}", at("oxenstored.pid")),
        format!("xenstored-kva = {}", at("xsd_kva")),
        format!("xenstored-port = {}", at("xsd_port")),
        format!("xenstored-log-file = {}", at("oxenstored.log")),
        format!("access-log-file = {}", at("oxenstored-access.log")),
        "persistent = false".to_owned(),
    ];
    lines.extend(extra.iter().map(|l| (*l).to_owned()));
    lines.join("\n") + "\n"
}

/// Sends one request of type `kind` on a fresh connection to `socket` and returns the
/// reply's payload (an error reply's payload is its errno name).
fn dom0_request(socket: &Path, kind: u32, payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(REPLY_WAIT))?;
    let mut frame = Vec::with_capacity(16 + payload.len());
    for word in [kind, 0, 0, payload.len() as u32] {
        frame.extend_from_slice(&word.to_le_bytes());
    }
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    let mut header = [0u8; 16];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header[12..16].try_into().unwrap()) as usize;
    let mut reply = vec![0; len];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}
