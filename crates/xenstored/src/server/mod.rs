//! The server: its public surface and state. The concerns live in submodules: connections
//! and their input (`conn`), output queues, outstanding requests and event timeouts
//! (`flow`), request decoding and dispatch (`dispatch`), watches and event fan-out (`watch`),
//! quotas (`quota`), transactions (`transaction`), and the `CONTROL` commands (`control`).

mod conn;
mod conns;
mod control;
mod dispatch;
mod flow;
mod quota;
mod transaction;
mod watch;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use xsio_xs_wire::{Packet, Request};

use crate::Config;
use crate::perms::{Access, Caller, Perms};
use crate::tree::Tree;

use conn::Conn;
use conns::Conns;
use flow::{SourceId, Sources};
use quota::Usage;
use watch::WatchIndex;

/// The special watch path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special watch path fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// Identifies one client connection of a [`Server`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl ConnId {
    /// The raw number (for logs).
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Where a connection comes from, which decides who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The daemon's Unix socket: the control domain, privileged, home `/local/domain/0`.
    Socket,
    /// A domain's ring (here, a socket standing in for it): domain 0 is privileged, any other
    /// is not; home `/local/domain/<domid>`.
    Domain(u32),
}

/// Why the server dropped a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client broke the framing (a header announcing more than 4096 payload bytes).
    Protocol(xsio_xs_wire::FrameError),
    /// Its domain was released.
    DomainReleased,
}

/// What the server asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Write `bytes` (whole messages) to `conn`, after everything written to it before.
    Transmit {
        /// The destination.
        conn: ConnId,
        /// One or more encoded messages.
        bytes: Bytes,
    },
    /// Close `conn` after sending what was queued for it; the server has already forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Watch events queued for `conn` (of unprivileged domain `domid`) were not taken within
    /// the watch-event timeout and were dropped; the driver logs it. They are counted in the
    /// domain's `quota` report.
    EventsDropped {
        /// The connection.
        conn: ConnId,
        /// Its domain.
        domid: u32,
        /// How many events.
        count: usize,
    },
    /// Unprivileged domain `domid` holds more memory than its soft quota (reported once per
    /// crossing; the driver logs it). Past the hard quota its connections are not read.
    MemoryQuota {
        /// The domain.
        domid: u32,
        /// The bytes it holds.
        memory: usize,
        /// Its soft quota.
        soft: usize,
        /// Its hard quota.
        hard: usize,
    },
}

#[derive(Clone, Debug, Default)]
struct Domain {
    target: Option<u32>,
}

/// The in-memory xenstore daemon core.
///
/// Method groups:
/// - connections: [`connect`](Server::connect), [`disconnect`](Server::disconnect),
///   [`is_connected`](Server::is_connected);
/// - inputs: [`handle_input`](Server::handle_input) with the bytes read from a client (any
///   split), or [`handle_request`](Server::handle_request) with one typed request (for
///   in-process drivers such as a simulator); domains come and go with
///   [`introduce_domain`](Server::introduce_domain) and
///   [`release_domain`](Server::release_domain);
/// - timers: [`poll_timeout`](Server::poll_timeout) gives the next deadline (`None` while
///   there is none), [`handle_timeout`](Server::handle_timeout) is called once it passed;
/// - outputs: [`poll_output`](Server::poll_output), drained until `None` after every input:
///   write each [`Output::Transmit`] to its connection in order, close each
///   [`Output::Close`]; flow control with [`pause_output`](Server::pause_output) and
///   [`resume_output`](Server::resume_output) (a connection whose socket is full) and
///   [`wants_input`](Server::wants_input) (whether to read a connection at all);
/// - inspection: [`check_invariants`](Server::check_invariants),
///   [`node_count`](Server::node_count), [`queued_replies`](Server::queued_replies),
///   [`buffered_input`](Server::buffered_input), [`save`](Server::save).
///
/// Poll order after each input: drain [`poll_output`](Server::poll_output) until `None`,
/// then ask [`poll_timeout`](Server::poll_timeout). `now` never goes backwards; an earlier
/// `now` is taken as the latest one seen.
///
/// The server reads no clock and does no I/O: every result depends only on the inputs, in
/// order. Requests are decoded with `xsio-xs-wire`'s lenient grammar
/// ([`Packet::decode_lenient`]), which accepts what Xen's C daemon accepts, and every reply
/// is encoded by `xsio-xs-wire`.
#[derive(Debug)]
pub struct Server {
    config: Config,
    tree: Tree,
    conns: Conns,
    domains: BTreeMap<u32, Domain>,
    special_perms: BTreeMap<&'static str, Perms>,
    /// Connections with queued output, not paused, in the order they got it.
    ready: VecDeque<ConnId>,
    /// Connections with requests a quota holds back.
    blocked: BTreeSet<ConnId>,
    /// Outstanding requests (see `flow`).
    sources: Sources,
    /// The request being answered, when the events it causes must hold it outstanding.
    answering: Option<SourceId>,
    /// Per unprivileged domain: outstanding requests, memory, dropped events.
    usage: BTreeMap<u32, Usage>,
    /// The latest `now` seen, for requests answered from inside `poll_output`.
    last_now: Instant,
    /// Outputs other than transmits, in order.
    notices: VecDeque<Output>,
    /// Every connection's watches by watched path.
    watch_index: WatchIndex,
    /// Scratch of `fire` (connections it queued events on), kept to reuse its memory.
    fired: Vec<(ConnId, usize)>,
    /// Scratch of `fire` (the watches a change matches), likewise.
    matched: Vec<(ConnId, u64)>,
    /// Scratch of the changes a request makes outside a transaction, kept likewise.
    changes: Vec<crate::view::Change>,
}

impl Server {
    /// A server with the initial tree (`/`, `/tool`, `/tool/xenstored`) and domain 0 known.
    pub fn new(config: Config, now: Instant) -> Self {
        Self::with_tree(config, Tree::default(), now)
    }

    pub(crate) fn with_tree(config: Config, tree: Tree, now: Instant) -> Self {
        let mut domains = BTreeMap::new();
        domains.insert(0, Domain::default());
        let special = Perms::owned_by(0, Access::None);
        Server {
            config,
            tree,
            conns: Conns::default(),
            domains,
            special_perms: BTreeMap::from([
                (INTRODUCE_DOMAIN, special.clone()),
                (RELEASE_DOMAIN, special),
            ]),
            ready: VecDeque::new(),
            blocked: BTreeSet::new(),
            sources: Sources::default(),
            answering: None,
            usage: BTreeMap::new(),
            last_now: now,
            notices: VecDeque::new(),
            watch_index: WatchIndex::default(),
            fired: Vec::new(),
            matched: Vec::new(),
            changes: Vec::new(),
        }
    }

    pub(crate) fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A number that changes whenever the committed tree changes: a driver that saves the
    /// state periodically skips a save when it has not moved.
    pub fn tree_generation(&self) -> u64 {
        self.tree.generation()
    }

    /// How many nodes the committed tree holds.
    pub fn node_count(&self) -> usize {
        self.tree.len()
    }

    /// Checks the tree's structural invariants (every node's parent exists and lists it once,
    /// every listed child exists, per-owner counts match) and that the index of watches by
    /// path lists exactly the connections' watches. `Err` names the first broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.tree.check()?;
        self.check_pins()?;
        self.check_watch_index()
    }

    /// Handles bytes received from `conn`, in any split: every complete request is answered,
    /// up to the outstanding-request limit (the rest wait in the buffer until the driver has
    /// taken the replies with [`poll_output`](Server::poll_output)). A header announcing more
    /// than 4096 payload bytes is a protocol violation: the connection is closed
    /// ([`Output::Close`]). Bytes for unknown connections are ignored.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.advance(now);
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        state.decoder.feed(bytes);
        self.pump(conn);
    }

    /// Handles one typed request from `conn`, as if its bytes had arrived: its reply (and any
    /// watch events it causes) are queued for [`poll_output`](Server::poll_output). Requests
    /// on unknown connections are ignored.
    pub fn handle_request(&mut self, now: Instant, conn: ConnId, request: Packet<Request>) {
        self.advance(now);
        if self.conns.contains_key(&conn) {
            self.answer_packet(conn, request);
        }
    }

    fn advance(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    /// Makes `domid` known (as INTRODUCE does) and fires `@introduceDomain` if it was not.
    pub fn introduce_domain(&mut self, now: Instant, domid: u32) {
        self.advance(now);
        self.add_domain(domid);
    }

    /// Forgets `domid` (as RELEASE does): closes its connections and fires `@releaseDomain`.
    /// Returns whether it was known.
    pub fn release_domain(&mut self, now: Instant, domid: u32) -> bool {
        self.advance(now);
        self.remove_domain(domid)
    }

    fn add_domain(&mut self, domid: u32) {
        if let std::collections::btree_map::Entry::Vacant(entry) = self.domains.entry(domid) {
            entry.insert(Domain::default());
            self.fire_special(INTRODUCE_DOMAIN);
        }
    }

    /// The unprivileged connections of domain `domid`: those its own quotas and its
    /// release apply to.
    fn guest_conns(&self, domid: u32) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.domid == domid && !c.privileged)
            .map(|(id, _)| id)
            .collect()
    }

    fn remove_domain(&mut self, domid: u32) -> bool {
        if self.domains.remove(&domid).is_none() {
            return false;
        }
        for conn in self.guest_conns(domid) {
            self.drop_conn(conn, CloseReason::DomainReleased);
        }
        self.remove_owned_by(domid);
        self.fire_special(RELEASE_DOMAIN);
        true
    }

    /// Removes every node `domid` owns, with its subtree, as a privileged RM would (watches
    /// fire the same way), in tree order. Xen's daemon does this when a domain goes, so that
    /// a later domain given the same id inherits nothing.
    fn remove_owned_by(&mut self, domid: u32) {
        let mut roots: Vec<String> = Vec::new();
        for (path, node) in self.tree.walk() {
            let inside_earlier = roots
                .last()
                .is_some_and(|r| xsio_xs_wire::path::is_at_or_below(&path, r));
            if path != "/" && node.perms().owner() == domid && !inside_earlier {
                roots.push(path);
            }
        }
        let quotas = self.config.quotas.clone();
        let who = crate::ops::Who {
            caller: Caller {
                domid: 0,
                privileged: true,
                target: None,
            },
            quotas: &quotas,
        };
        for root in roots {
            let mut view = crate::view::View::new(&mut self.tree, None, Vec::new());
            // Cannot fail: the node exists and the caller is privileged.
            let _ = crate::ops::rm(&mut view, who, &root);
            let changes = std::mem::take(&mut view.changes);
            for change in &changes {
                self.fire(change, &changes);
            }
        }
    }

    /// INTRODUCE of a domain already known: Xen re-binds its event channel and resets its
    /// connection (its watches and transactions go, as after RESET_WATCHES).
    fn reset_domain(&mut self, domid: u32) {
        for conn_id in self.guest_conns(domid) {
            self.clear_watches(conn_id);
            self.end_transactions(conn_id);
        }
    }

    fn caller(&self, conn: &Conn) -> Caller {
        Caller {
            domid: conn.domid,
            privileged: conn.privileged,
            // The access rule looks at a target only for unprivileged callers.
            target: if conn.privileged {
                None
            } else {
                self.domains.get(&conn.domid).and_then(|d| d.target)
            },
        }
    }
}
