//! The differential harness: one operation sequence played against Xen's C xenstored and
//! against `xsio xenstored`, client by client, and every reply and watch event compared.
//!
//! Clients ([`generate::DOMIDS`]): two dom0 connections on each daemon's socket, and guests
//! 1 and 2, which reach Xen's daemon over real rings (through the testkit's shim) and ours
//! over its domain sockets. After each operation, every client that ever set a watch
//! sends a barrier (GET_DOMAIN_PATH, which touches no node) and everything it received
//! before the barrier's reply belongs to that operation: watch events are compared at the
//! same points on both sides.

#![allow(dead_code, unreachable_pub)]

pub mod accepted;
pub mod generate;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use generate::{CLIENTS, DOMIDS, Op, SPARE_DOMAINS, TxRef, show};
use xsio_testkit::xen::{EventChannel, Flavour, GuestMemory, World, XenStored};
use xsio_xs_wire::MsgType;

/// How long one reply may take before the client is declared dead.
const REPLY_WAIT: Duration = Duration::from_secs(2);
/// req_ids of barriers have this bit set (operations use their index + 1).
const BARRIER: u32 = 0x8000_0000;
/// A transaction id neither daemon hands out in these runs.
const UNKNOWN_TX: u32 = 0x7fff_0000;

/// What a client received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A message.
    Msg {
        /// Type number.
        kind: u32,
        /// Echoed req_id (0 for events).
        req_id: u32,
        /// Echoed tx_id.
        tx_id: u32,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Nothing came within the wait: the client is given up.
    Timeout,
    /// The daemon closed the connection.
    Closed,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Msg {
                kind,
                req_id,
                tx_id,
                payload,
            } => {
                let name = MsgType::from_u32(*kind)
                    .map_or_else(|| format!("type {kind}"), |t| format!("{t:?}"));
                write!(f, "{name} req {req_id} tx {tx_id} {}", show(payload))
            }
            Seen::Timeout => f.write_str("(no reply)"),
            Seen::Closed => f.write_str("(connection closed)"),
        }
    }
}

impl Seen {
    /// The message type, for messages.
    pub fn kind(&self) -> Option<u32> {
        match self {
            Seen::Msg { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether this is a watch event.
    pub fn is_event(&self) -> bool {
        self.kind() == Some(MsgType::WatchEvent.as_u32())
    }

    /// The payload, for messages.
    pub fn payload(&self) -> &[u8] {
        match self {
            Seen::Msg { payload, .. } => payload,
            _ => &[],
        }
    }
}

/// What every client received because of one operation (index = client).
pub type Batch = Vec<Vec<Seen>>;

struct Client {
    stream: UnixStream,
    dead: bool,
    /// The id each TRANSACTION_START (by operation id) returned (None: it failed).
    tx_ids: std::collections::BTreeMap<u32, Option<u32>>,
}

impl Client {
    fn new(stream: UnixStream) -> io::Result<Client> {
        stream.set_read_timeout(Some(REPLY_WAIT))?;
        Ok(Client {
            stream,
            dead: false,
            tx_ids: Default::default(),
        })
    }

    fn send(&mut self, kind: u32, req_id: u32, tx_id: u32, payload: &[u8]) {
        let mut frame = Vec::with_capacity(16 + payload.len());
        for word in [kind, req_id, tx_id, payload.len() as u32] {
            frame.extend_from_slice(&word.to_le_bytes());
        }
        frame.extend_from_slice(payload);
        if self.stream.write_all(&frame).is_err() {
            self.dead = true;
        }
    }

    fn receive(&mut self) -> Seen {
        let mut header = [0u8; 16];
        let seen = match self.stream.read_exact(&mut header) {
            Ok(()) => {
                let word =
                    |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
                let mut payload = vec![0; word(3) as usize];
                match self.stream.read_exact(&mut payload) {
                    Ok(()) => {
                        return Seen::Msg {
                            kind: word(0),
                            req_id: word(1),
                            tx_id: word(2),
                            payload,
                        };
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        self.dead = true;
        if seen.kind() == io::ErrorKind::UnexpectedEof {
            Seen::Closed
        } else {
            Seen::Timeout
        }
    }

    /// Everything up to (and including) the non-event message with `req_id`.
    fn until_reply(&mut self, req_id: u32, into: &mut Vec<Seen>) {
        while !self.dead {
            let seen = self.receive();
            let done = matches!(&seen, Seen::Msg { req_id: r, .. } if *r == req_id && !seen.is_event())
                || matches!(seen, Seen::Timeout | Seen::Closed);
            into.push(seen);
            if done {
                return;
            }
        }
    }
}

/// One daemon and its four clients.
pub struct Side {
    /// "xen" or "xsio".
    pub name: &'static str,
    clients: Vec<Client>,
    /// The dom0 socket, for reconnecting a dom0 client.
    socket: std::path::PathBuf,
    /// The daemon (killed when the side is dropped).
    daemon: Daemon,
}

enum Daemon {
    Xen(XenStored),
    Xsio(xsio_testkit::xenstored::Daemon),
}

/// Quotas both daemons run with, low enough for random operations to reach them.
pub struct Limits {
    /// Nodes per domain.
    pub nodes: u32,
    /// Watches per domain.
    pub watches: u32,
}

impl Side {
    /// Xen's C xenstored, guests over rings; `None` under the missing-peer rule.
    pub fn xen(limits: &Limits) -> Option<Side> {
        let world = World::new()?;
        // Xen's watch and transaction checks admit one more than the configured number
        // (row "quota-off-by-one" of the table in xsio-xenstored's docs): it is given one
        // less, so that both daemons admit the same count.
        let nodes = limits.nodes.to_string();
        let watches = (limits.watches - 1).to_string();
        let daemon = XenStored::start(
            &world,
            Flavour::C,
            &["-E", &nodes, "-W", &watches, "-t", "9"],
        )?;
        for domid in SPARE_DOMAINS {
            GuestMemory::create(&world, domid, 2).unwrap();
            EventChannel::open(&world, domid, domid + 10).unwrap();
        }
        let mut clients = Vec::new();
        for domid in DOMIDS {
            let stream = if domid == 0 {
                UnixStream::connect(daemon.socket()).unwrap()
            } else {
                daemon.introduce(domid).unwrap()
            };
            clients.push(Client::new(stream).unwrap());
        }
        Some(Side {
            name: "xen",
            socket: daemon.socket().to_owned(),
            clients,
            daemon: Daemon::Xen(daemon),
        })
    }

    /// `xsio xenstored` (`xsio` is the binary), guests on domain sockets.
    pub fn xsio(xsio: &std::path::Path, limits: &Limits) -> Side {
        let nodes = limits.nodes.to_string();
        let watches = limits.watches.to_string();
        let daemon = xsio_testkit::xenstored::Daemon::start(
            xsio,
            &[1, 2],
            &["--quota-nodes", &nodes, "--quota-watches", &watches],
        );
        let clients = DOMIDS
            .iter()
            .map(|&domid| {
                let path = if domid == 0 {
                    daemon.socket.clone()
                } else {
                    daemon.domain_socket(domid)
                };
                Client::new(UnixStream::connect(path).unwrap()).unwrap()
            })
            .collect();
        Side {
            name: "xsio",
            socket: daemon.socket.clone(),
            clients,
            daemon: Daemon::Xsio(daemon),
        }
    }

    /// Plays operation number `index`, then the barriers of the clients in `watching`.
    /// The sender's barrier goes out right behind the operation, so an operation the daemon
    /// never answers shows as a batch without a reply (not as a wait).
    pub fn step(&mut self, index: usize, op: &Op, watching: &[bool; CLIENTS]) -> Batch {
        let mut batch: Batch = vec![Vec::new(); CLIENTS];
        let req_id = index as u32 + 1;
        let barrier = BARRIER | req_id;
        let client = &mut self.clients[op.client];
        if !client.dead {
            let tx_id = match op.tx {
                TxRef::None => 0,
                TxRef::Of(start) => client
                    .tx_ids
                    .get(&start)
                    .copied()
                    .flatten()
                    .unwrap_or(UNKNOWN_TX),
            };
            client.send(op.kind, req_id, tx_id, &op.payload);
            client.send(MsgType::GetDomainPath.as_u32(), barrier, 0, b"0\0");
            client.until_reply(barrier, &mut batch[op.client]);
            if op.kind == MsgType::TransactionStart.as_u32() && op.tx == TxRef::None {
                let id = batch[op.client].iter().find_map(|seen| match seen {
                    Seen::Msg {
                        kind,
                        req_id: r,
                        payload,
                        ..
                    } if *kind == op.kind && *r == req_id => {
                        std::str::from_utf8(payload.strip_suffix(b"\0").unwrap_or(payload))
                            .ok()
                            .and_then(|s| s.parse().ok())
                    }
                    _ => None,
                });
                client.tx_ids.insert(op.id, id);
            }
        }
        for (c, watches) in watching.iter().enumerate() {
            let client = &mut self.clients[c];
            if *watches && c != op.client && !client.dead {
                client.send(MsgType::GetDomainPath.as_u32(), barrier, 0, b"0\0");
                client.until_reply(barrier, &mut batch[c]);
            }
        }
        for seen in &mut batch {
            if let Some(Seen::Msg { req_id, .. }) = seen.last()
                && *req_id == barrier
            {
                seen.pop();
            }
        }
        batch
    }
}

impl Side {
    /// Whether `client`'s connection is given up (no reply in time, or closed).
    pub fn is_dead(&self, client: usize) -> bool {
        self.clients[client].dead
    }

    /// `Err` with the daemon's last words if it is no longer running.
    pub fn check_running(&mut self) -> Result<(), String> {
        let running = match &mut self.daemon {
            Daemon::Xen(daemon) => daemon.is_running(),
            Daemon::Xsio(daemon) => daemon.is_running(),
        };
        if running {
            return Ok(());
        }
        let log = match &self.daemon {
            Daemon::Xen(daemon) => daemon.log(),
            Daemon::Xsio(_) => String::new(),
        };
        Err(format!("{} xenstored exited: {log}\n", self.name))
    }

    /// Gives `client`'s connection up: a guest's for good, a dom0 client's by connecting
    /// afresh (no watches, no transactions).
    pub fn replace(&mut self, client: usize) {
        if DOMIDS[client] == 0
            && let Ok(stream) = UnixStream::connect(&self.socket)
        {
            self.clients[client] = Client::new(stream).unwrap();
        } else {
            let _ = self.clients[client]
                .stream
                .shutdown(std::net::Shutdown::Both);
            self.clients[client].dead = true;
        }
    }
}

/// Where the two daemons first answered differently.
#[derive(Debug)]
pub struct Divergence {
    /// The index of the operation.
    pub index: usize,
    /// What differs, as text.
    pub report: String,
}

/// The toolstack's part before any operation: the guests' homes, owned by them.
pub fn prelude() -> Vec<Op> {
    let mut ops = Vec::new();
    for domid in [1u32, 2] {
        let home = format!("/local/domain/{domid}");
        ops.push(Op {
            id: u32::MAX - 2 * domid,
            client: 0,
            kind: MsgType::Write.as_u32(),
            tx: TxRef::None,
            payload: format!("{home}\0").into_bytes(),
        });
        ops.push(Op {
            id: u32::MAX - 2 * domid - 1,
            client: 0,
            kind: MsgType::SetPerms.as_u32(),
            tx: TxRef::None,
            payload: format!("{home}\0n{domid}\0").into_bytes(),
        });
    }
    ops
}

/// What a run that found no unaccepted difference saw (so that a run which compared
/// little can be told from one that compared much).
#[derive(Debug, Default)]
pub struct Summary {
    /// Operations played (prelude included).
    pub ops: usize,
    /// Successful replies (identical on both sides).
    pub ok_replies: usize,
    /// Error replies.
    pub error_replies: usize,
    /// Watch events.
    pub events: usize,
    /// Accepted differences, by row of the table.
    pub accepted: std::collections::BTreeMap<&'static str, usize>,
    /// Client connections given up during the run.
    pub given_up: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} operations: {} ok replies, {} error replies, {} watch events identical; \
             {} connections given up; accepted differences: {:?}",
            self.ops,
            self.ok_replies,
            self.error_replies,
            self.events,
            self.given_up,
            self.accepted
        )
    }
}

impl Summary {
    fn count(&mut self, batch: &Batch) {
        for seen in batch.iter().flatten() {
            match seen.kind() {
                Some(15) => self.events += 1,
                Some(16) => self.error_replies += 1,
                Some(_) => self.ok_replies += 1,
                None => {}
            }
        }
    }
}

/// Plays `ops` (after the [`prelude`]) on fresh daemons from `start`: a [`Summary`], or
/// the first difference not in the accepted table.
pub fn play(start: &mut dyn FnMut() -> (Side, Side), ops: &[Op]) -> Result<Summary, Divergence> {
    let mut summary = Summary::default();
    let (mut xen, mut xsio) = start();
    let mut watching = [false; CLIENTS];
    let mut history = accepted::History::default();
    let all: Vec<Op> = prelude().into_iter().chain(ops.iter().cloned()).collect();
    let skip = all.len() - ops.len();
    for (index, op) in all.iter().enumerate() {
        if op.kind == MsgType::Watch.as_u32() {
            watching[op.client] = true;
        }
        let theirs = xen.step(index, op, &watching);
        let ours = xsio.step(index, op, &watching);
        if let Err(report) = history.compare(op, &theirs, &ours) {
            return Err(Divergence {
                index: index.saturating_sub(skip),
                report,
            });
        }
        summary.ops += 1;
        summary.count(&ours);
        for side in [&mut xen, &mut xsio] {
            if let Err(report) = side.check_running() {
                return Err(Divergence {
                    index: index.saturating_sub(skip),
                    report: format!("operation: {op}\n{report}"),
                });
            }
        }
        // A connection one daemon gave up on (Xen's stops answering a connection after
        // some malformed requests: row "malformed-arguments") is given up on both sides.
        if xen.is_dead(op.client) || xsio.is_dead(op.client) {
            summary.given_up += 1;
            xen.replace(op.client);
            xsio.replace(op.client);
            watching[op.client] = false;
        }
    }
    // Transactions with differences inside them still open: commit them, so that the
    // difference is accepted only if the commit fails on both sides.
    for (n, (client, start)) in history.pending().into_iter().enumerate() {
        let op = Op {
            id: u32::MAX - 100 - n as u32,
            client,
            kind: MsgType::TransactionEnd.as_u32(),
            tx: TxRef::Of(start),
            payload: b"T\0".to_vec(),
        };
        let index = all.len() + n;
        let theirs = xen.step(index, &op, &watching);
        let ours = xsio.step(index, &op, &watching);
        if let Err(report) = history.compare(&op, &theirs, &ours) {
            return Err(Divergence {
                index: ops.len().saturating_sub(1),
                report: report + "(at the end of the run)\n",
            });
        }
    }
    summary.accepted = history.applied;
    Ok(summary)
}

/// Shrinks a failing sequence: cuts it after the first divergence, then removes chunks
/// (halves, quarters, ... single operations) while the sequence still diverges, for at
/// most `budget` of replays. Returns the shortest failing sequence found and its divergence.
pub fn minimise(
    start: &mut dyn FnMut() -> (Side, Side),
    ops: &[Op],
    first: Divergence,
    budget: Duration,
) -> (Vec<Op>, Divergence) {
    #[allow(clippy::disallowed_methods)] // the test's own time budget
    let deadline = std::time::Instant::now() + budget;
    #[allow(clippy::disallowed_methods)]
    let in_time = || std::time::Instant::now() < deadline;
    let mut best: Vec<Op> = ops[..=first.index.min(ops.len() - 1)].to_vec();
    let mut found = first;
    let mut chunk = best.len().div_ceil(2);
    while chunk >= 1 && in_time() {
        let mut at = 0;
        let mut shrunk = false;
        while at < best.len() && in_time() {
            let mut candidate = best.clone();
            candidate.drain(at..(at + chunk).min(best.len()));
            match play(start, &candidate) {
                Err(divergence) => {
                    candidate.truncate(divergence.index + 1);
                    best = candidate;
                    found = divergence;
                    shrunk = true;
                }
                Ok(_) => at += chunk,
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    (best, found)
}

/// The text of a failure: the seed, the minimised sequence and the divergence.
pub fn failure(seed: u64, ops: &[Op], divergence: &Divergence) -> String {
    let mut text = format!(
        "xsio xenstored differs from Xen's C xenstored (XSIO_DIFF_SEED={seed}); minimised \
         sequence ({} operations after the prelude):\n",
        ops.len()
    );
    for (i, op) in ops.iter().enumerate() {
        text.push_str(&format!("  {i:3}: {op}\n"));
    }
    text.push_str(&divergence.report);
    text
}
