//! The `xsio xenstored` daemon loop: many Unix socket clients served by one
//! [`xsio_xenstored::Server`], with `poll(2)`, non-blocking sockets and bounded queues.
//!
//! One thread, one loop: wait until a listener, a client, the stop socket or the server's
//! next deadline is ready; accept, read (at most one read per client per turn, so a flooding
//! client cannot starve the others), hand the bytes to the server, drain its output into
//! per-client write buffers, and write what each socket takes without blocking.
//!
//! Flow control is the server's (`xsio_xenstored`'s XSA-326 rules): a client whose socket did
//! not take everything is paused in the server, which keeps its further messages (where they
//! hold the requests that caused them, and expire for a guest after the watch-event
//! timeout), and resumed once its socket drained. So this loop holds at most one transmit per
//! client, and never disconnects a client for being slow. It reads a client only while the
//! server wants its input, so a client held back by a quota is held at its own socket.
//!
//! Sockets are created owner-only (0600) whatever the umask (domain sockets may be opened
//! wider by configuration), beside a lock file (`<socket>.lock`, an exclusive `flock` held
//! while the daemon runs); a socket file is replaced only if nothing answers on it, so a
//! second daemon never takes the socket of a live one.
//!
//! `--state` (see `state_file`) is checked at start (its directory exists and takes a new
//! file), loaded whole or refused with the file named and what is wrong, and saved through a
//! temporary file, fsync and rename (and the directory fsynced), at stop and, optionally,
//! every save interval.
//!
//! When the process runs out of descriptors, accepting backs off (see `listen`): the
//! listeners are not polled until a connection closes or a second passed, and the episode is
//! logged once, instead of spinning on a listener that stays readable.

mod listen;
mod state_file;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, poll};
use tracing::{debug, error, info, warn};
use xsio_xenstored::{Config, ConnId, Origin, Output, Server};

use crate::unix::now;
use listen::{Listeners, bind};

/// How the daemon is set up.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DaemonConfig {
    /// The control socket: every client on it is dom0, privileged.
    pub socket: PathBuf,
    /// One socket per simulated guest: clients on it are that unprivileged domain.
    pub domain_sockets: Vec<(u32, PathBuf)>,
    /// The mode of the domain sockets (owner-only, 0600, by default). The control socket is
    /// always 0600: a client there is dom0.
    pub domain_socket_mode: u32,
    /// Load the tree from here at start (if the file exists) and save it here on stop. The
    /// directory is checked at start; a damaged file is refused.
    pub state: Option<PathBuf>,
    /// Also save the state this often (when the tree changed), so a crash loses at most
    /// one interval.
    pub save_interval: Option<std::time::Duration>,
    /// The server's quotas and limits.
    pub server: Config,
}

impl DaemonConfig {
    /// A daemon on `socket` with default limits, no domain sockets and no state file.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        DaemonConfig {
            socket: socket.into(),
            domain_sockets: Vec::new(),
            domain_socket_mode: 0o600,
            state: None,
            save_interval: None,
            server: Config::default(),
        }
    }
}

/// Bytes read from one client per turn of the loop.
const READ_CHUNK: usize = 64 * 1024;

struct Client {
    stream: UnixStream,
    out: Vec<u8>,
    /// Where the unwritten part of `out` starts.
    written: usize,
    /// Paused in the server: `out` holds what the socket did not take yet.
    paused: bool,
}

impl Client {
    fn pending(&self) -> usize {
        self.out.len() - self.written
    }

    /// Writes what the socket takes now. `Err` means the client is gone.
    fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        }
        Ok(())
    }
}

/// Binds the sockets, loads the state, then serves until `stop` becomes readable (the CLI
/// connects it to SIGTERM/SIGINT); then saves the state and removes the socket files.
pub fn run(config: DaemonConfig, stop: UnixStream) -> io::Result<()> {
    let start = now();
    let mut server = match &config.state {
        Some(path) => {
            state_file::check_writable(path)?;
            match state_file::load(path, &config.server, start)? {
                Some(server) => {
                    info!(path = %path.display(), nodes = server.node_count(), "state loaded");
                    server
                }
                None => Server::new(config.server.clone(), start),
            }
        }
        None => Server::new(config.server.clone(), start),
    };
    let mut wanted = vec![(&config.socket, 0o600, Origin::Socket)];
    for (domid, path) in &config.domain_sockets {
        wanted.push((path, config.domain_socket_mode, Origin::Domain(*domid)));
    }
    let mut sockets = Vec::new();
    for (path, mode, origin) in wanted {
        match bind(path, mode) {
            Ok(bound) => sockets.push((bound, origin)),
            Err(e) => {
                // Leave no socket of ours behind for a daemon that did not start.
                Listeners::new(sockets).remove_files();
                return Err(e);
            }
        }
    }
    for (domid, _) in &config.domain_sockets {
        server.introduce_domain(start, *domid);
    }
    let mut listeners = Listeners::new(sockets);
    // Nobody is connected yet: the introduction events have no audience.
    while server.poll_output().is_some() {}
    info!(socket = %config.socket.display(), domains = config.domain_sockets.len(), "xenstored listening");

    let mut saver = config.state.as_ref().and_then(|path| {
        let interval = config.save_interval?;
        Some(Saver {
            path: path.clone(),
            interval,
            next: xsio_core::deadline(start, interval),
            saved: server.tree_generation(),
        })
    });
    let result = serve(&mut server, &mut listeners, saver.as_mut(), &stop);

    listeners.remove_files();
    if let Some(path) = &config.state {
        state_file::save(path, &server)?;
        info!(path = %path.display(), nodes = server.node_count(), "state saved");
    }
    info!("xenstored stopped");
    result
}

/// Periodic saves (`--save-interval`): a crash loses at most one interval.
struct Saver {
    path: PathBuf,
    interval: std::time::Duration,
    /// The next save; `None` if the interval reaches past the end of time.
    next: Option<Instant>,
    /// The tree generation last saved: an unchanged tree is not written again.
    saved: u64,
}

impl Saver {
    fn handle_timeout(&mut self, server: &Server, now: Instant) {
        if self.next.is_none_or(|at| at > now) {
            return;
        }
        self.next = xsio_core::deadline(now, self.interval);
        let generation = server.tree_generation();
        if generation == self.saved {
            return;
        }
        match state_file::save(&self.path, server) {
            Ok(()) => {
                self.saved = generation;
                debug!(path = %self.path.display(), "state saved");
            }
            // The daemon keeps serving; the next interval tries again.
            Err(e) => error!(error = %e, "periodic save failed"),
        }
    }
}

fn serve(
    server: &mut Server,
    listeners: &mut Listeners,
    mut saver: Option<&mut Saver>,
    stop: &UnixStream,
) -> io::Result<()> {
    let mut clients: BTreeMap<ConnId, Client> = BTreeMap::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let ids: Vec<ConnId> = clients.keys().copied().collect();
        let save_at = saver.as_ref().and_then(|s| s.next);
        let deadline = [server.poll_timeout(), listeners.deadline(), save_at]
            .into_iter()
            .flatten()
            .min();
        let timeout = deadline.map(|at| at.saturating_duration_since(now()));
        let (readable, writable, stop_now, accept) = {
            let mut fds = Vec::with_capacity(1 + listeners.len() + clients.len());
            fds.push(PollFd::new(stop, PollFlags::IN));
            fds.extend(listeners.poll_fds());
            for id in &ids {
                let client = &clients[id];
                let mut flags = PollFlags::empty();
                if server.wants_input(*id) {
                    flags |= PollFlags::IN;
                }
                if client.pending() > 0 {
                    flags |= PollFlags::OUT;
                }
                fds.push(PollFd::new(&client.stream, flags));
            }
            wait(&mut fds, timeout)?;
            let stop_now = !fds[0].revents().is_empty();
            let accept: Vec<bool> = fds[1..=listeners.len()]
                .iter()
                .map(|f| !f.revents().is_empty())
                .collect();
            let client_fds = &fds[1 + listeners.len()..];
            let readable: Vec<ConnId> = ids
                .iter()
                .zip(client_fds)
                .filter(|(_, f)| {
                    f.revents()
                        .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
                })
                .map(|(id, _)| *id)
                .collect();
            let writable: Vec<ConnId> = ids
                .iter()
                .zip(client_fds)
                .filter(|(_, f)| f.revents().contains(PollFlags::OUT))
                .map(|(id, _)| *id)
                .collect();
            (readable, writable, stop_now, accept)
        };
        if stop_now {
            info!("stop requested");
            return Ok(());
        }
        let now = now();
        if server.poll_timeout().is_some_and(|at| at <= now) {
            server.handle_timeout(now);
        }
        listeners.handle_timeout(now);
        if let Some(saver) = saver.as_mut() {
            saver.handle_timeout(server, now);
        }
        for (idx, ready) in accept.into_iter().enumerate() {
            if !ready {
                continue;
            }
            for (stream, origin) in listeners.accept(idx, now) {
                stream.set_nonblocking(true)?;
                let id = server.connect(now, origin);
                debug!(conn = id.get(), ?origin, "client connected");
                clients.insert(
                    id,
                    Client {
                        stream,
                        out: Vec::new(),
                        written: 0,
                        paused: false,
                    },
                );
            }
        }
        for id in readable {
            let Some(client) = clients.get_mut(&id) else {
                continue;
            };
            // What other clients sent this turn may have put a quota of this one's domain
            // over: ask again before reading.
            if !server.wants_input(id) {
                continue;
            }
            match client.stream.read(&mut buf) {
                Ok(0) => {
                    debug!(conn = id.get(), "client closed");
                    server.disconnect(now, id);
                    clients.remove(&id);
                    listeners.descriptor_freed();
                }
                Ok(n) => server.handle_input(now, id, &buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    debug!(conn = id.get(), error = %e, "read failed");
                    server.disconnect(now, id);
                    clients.remove(&id);
                    listeners.descriptor_freed();
                }
            }
        }
        drain(server, &mut clients);
        for id in writable {
            flush_or_drop(server, &mut clients, id);
        }
        // Clients that drained their sockets were resumed: what waited for them comes now.
        drain(server, &mut clients);
    }
}

/// `poll` until something is ready or `timeout` passed (`None`: no deadline).
fn wait(fds: &mut [PollFd<'_>], timeout: Option<std::time::Duration>) -> io::Result<()> {
    let timeout = timeout.map(|t| {
        // Round up, so the deadline has passed when poll returns.
        rustix::event::Timespec::try_from(t + std::time::Duration::from_nanos(999_999)).unwrap_or(
            rustix::event::Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            },
        )
    });
    loop {
        match poll(fds, timeout.as_ref()) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Moves the server's output into the clients' write buffers and writes what fits now.
fn drain(server: &mut Server, clients: &mut BTreeMap<ConnId, Client>) {
    while let Some(output) = server.poll_output() {
        match output {
            Output::Transmit { conn, bytes } => {
                let Some(client) = clients.get_mut(&conn) else {
                    continue;
                };
                client.out.extend_from_slice(&bytes);
                flush_or_drop(server, clients, conn);
            }
            Output::Close { conn, reason } => {
                warn!(conn = conn.get(), ?reason, "closing client");
                if let Some(mut client) = clients.remove(&conn) {
                    let _ = client.flush();
                }
            }
            Output::MemoryQuota {
                domid,
                memory,
                soft,
                hard,
            } => {
                warn!(
                    domid,
                    memory, soft, hard, "domain past its soft memory quota"
                );
            }
            Output::EventsDropped { conn, domid, count } => {
                warn!(
                    conn = conn.get(),
                    domid, count, "watch events dropped: not read within the timeout"
                );
            }
            _ => {}
        }
    }
}

/// Writes what the socket of `id` takes; pauses the client in the server while bytes are
/// left, resumes it once they are gone; drops it if the socket failed.
fn flush_or_drop(server: &mut Server, clients: &mut BTreeMap<ConnId, Client>, id: ConnId) {
    let Some(client) = clients.get_mut(&id) else {
        return;
    };
    if let Err(e) = client.flush() {
        debug!(conn = id.get(), error = %e, "write failed");
        server.disconnect(now(), id);
        clients.remove(&id);
        return;
    }
    let full = client.pending() > 0;
    if full != client.paused {
        client.paused = full;
        if full {
            server.pause_output(now(), id);
        } else {
            server.resume_output(now(), id);
        }
    }
}
