//! Test harness: a server, named message types, and per-connection inboxes.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Instant;

use xsio_xenstored::{CloseReason, Config, ConnId, Origin, Output, Server};
use xsio_xs_wire::{FrameDecoder, Header};

pub const DIRECTORY: u32 = 1;
pub const READ: u32 = 2;
pub const GET_PERMS: u32 = 3;
pub const WATCH: u32 = 4;
pub const UNWATCH: u32 = 5;
pub const TX_START: u32 = 6;
pub const TX_END: u32 = 7;
pub const INTRODUCE: u32 = 8;
pub const RELEASE: u32 = 9;
pub const GET_DOMAIN_PATH: u32 = 10;
pub const WRITE: u32 = 11;
pub const MKDIR: u32 = 12;
pub const RM: u32 = 13;
pub const SET_PERMS: u32 = 14;
pub const IS_DOMAIN_INTRODUCED: u32 = 17;
pub const RESUME: u32 = 18;
pub const SET_TARGET: u32 = 19;
pub const RESET_WATCHES: u32 = 21;
pub const DIRECTORY_PART: u32 = 22;

/// One reply: the payload on success, the error name on failure.
pub type Reply = Result<Vec<u8>, String>;

pub struct Harness {
    pub server: Server,
    pub now: Instant,
    pub events: BTreeMap<ConnId, Vec<(String, String)>>,
    pub closed: Vec<(ConnId, CloseReason)>,
    pub dropped: Vec<(ConnId, usize)>,
    /// (domid, memory) of each soft-quota report.
    pub memory_reports: Vec<(u32, usize)>,
    decoders: BTreeMap<ConnId, FrameDecoder>,
    next_req: u32,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        #[allow(clippy::disallowed_methods)] // The test epoch.
        let now = Instant::now();
        Harness {
            server: Server::new(config, now),
            now,
            events: BTreeMap::new(),
            closed: Vec::new(),
            dropped: Vec::new(),
            memory_reports: Vec::new(),
            decoders: BTreeMap::new(),
            next_req: 1,
        }
    }

    /// A fresh server and one dom0 connection: how most tests begin.
    pub fn with_dom0() -> (Self, ConnId) {
        let mut h = Self::new();
        let c = h.dom0();
        (h, c)
    }

    pub fn dom0(&mut self) -> ConnId {
        self.server.connect(self.now, Origin::Socket)
    }

    /// A connection of unprivileged domain `domid` (introduced first, as the daemon does).
    pub fn domain(&mut self, domid: u32) -> ConnId {
        self.server.introduce_domain(self.now, domid);
        self.drain_unexpected();
        self.server.connect(self.now, Origin::Domain(domid))
    }

    fn drain_unexpected(&mut self) {
        let mut sink = Vec::new();
        self.drain(None, &mut sink);
    }

    /// Drains every output, decoding each connection's bytes; replies to `conn` are returned
    /// through `replies` as (type, req_id, tx_id, payload), events go to `self.events`.
    fn drain(&mut self, conn: Option<ConnId>, replies: &mut Vec<(u32, u32, u32, Vec<u8>)>) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Transmit { conn: to, bytes } => {
                    let decoder = self.decoders.entry(to).or_default();
                    decoder.feed(&bytes);
                    while let Some(frame) = decoder.next_frame().unwrap() {
                        let h = frame.header;
                        let payload = frame.payload.to_vec();
                        if h.msg_type == 15 {
                            assert_eq!((h.req_id, h.tx_id), (0, 0));
                            let mut parts = payload.split(|&b| b == 0);
                            let path = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
                            let token = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
                            assert_eq!(parts.next(), Some(&b""[..]), "event ends with a NUL");
                            assert_eq!(parts.next(), None, "event has two fields");
                            self.events.entry(to).or_default().push((path, token));
                        } else {
                            assert_eq!(
                                Some(to),
                                conn,
                                "a reply for a connection that sent nothing"
                            );
                            replies.push((h.msg_type, h.req_id, h.tx_id, payload));
                        }
                    }
                    assert!(decoder.is_at_boundary(), "transmits carry whole messages");
                }
                Output::Close { conn, reason } => self.closed.push((conn, reason)),
                Output::EventsDropped { conn, count, .. } => self.dropped.push((conn, count)),
                Output::MemoryQuota { domid, memory, .. } => {
                    self.memory_reports.push((domid, memory))
                }
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    /// Sends one request as wire bytes and returns its reply.
    pub fn raw(&mut self, conn: ConnId, kind: u32, tx_id: u32, payload: &[u8]) -> Reply {
        let req_id = self.next_req;
        self.next_req += 1;
        let wire = frame(kind, req_id, tx_id, payload);
        self.server.handle_input(self.now, conn, &wire);
        let mut replies = Vec::new();
        self.drain(Some(conn), &mut replies);
        assert_eq!(replies.len(), 1, "exactly one reply per request");
        let (reply_kind, reply_req, reply_tx, payload) = replies.pop().unwrap();
        assert_eq!((reply_req, reply_tx), (req_id, tx_id), "ids echoed");
        self.server.check_invariants().unwrap();
        if reply_kind == 16 {
            let name = payload
                .strip_suffix(b"\0")
                .expect("error names end with NUL");
            Err(String::from_utf8(name.to_vec()).unwrap())
        } else {
            assert_eq!(reply_kind, kind, "a reply has the request's type");
            Ok(payload)
        }
    }

    pub fn write(&mut self, conn: ConnId, tx: u32, path: &str, value: &str) -> Reply {
        let mut payload = path.as_bytes().to_vec();
        payload.push(0);
        payload.extend_from_slice(value.as_bytes());
        self.raw(conn, WRITE, tx, &payload)
    }

    /// Writes each (path, value) outside any transaction; every write must succeed.
    pub fn seed(&mut self, conn: ConnId, nodes: &[(&str, &str)]) {
        for (path, value) in nodes {
            self.write(conn, 0, path, value).unwrap();
        }
    }

    /// Gives domain `domid` its home `/local/domain/<domid>`, owned by it, through `dom0`.
    pub fn give_home(&mut self, dom0: ConnId, domid: u32) {
        let home = format!("/local/domain/{domid}");
        self.write(dom0, 0, &home, "").unwrap();
        self.op(dom0, SET_PERMS, 0, &[&home, &format!("n{domid}")])
            .unwrap();
    }

    /// Registers a watch and takes its initial event, which must be the only one pending.
    pub fn watch(&mut self, conn: ConnId, path: &str, token: &str) {
        assert_eq!(self.op(conn, WATCH, 0, &[path, token]), ok());
        assert_eq!(
            self.take_events(conn),
            vec![ev(path, token)],
            "initial event"
        );
    }

    /// Sends each (type, arguments) request of a table and checks its reply.
    pub fn answers(&mut self, conn: ConnId, cases: &[(u32, &[&str], Reply)]) {
        for (kind, args, expected) in cases {
            let reply = self.op(conn, *kind, 0, args);
            assert_eq!(&reply, expected, "type {kind} {args:?}");
        }
    }

    pub fn op(&mut self, conn: ConnId, kind: u32, tx: u32, args: &[&str]) -> Reply {
        let mut payload = Vec::new();
        for arg in args {
            payload.extend_from_slice(arg.as_bytes());
            payload.push(0);
        }
        self.raw(conn, kind, tx, &payload)
    }

    pub fn read(&mut self, conn: ConnId, tx: u32, path: &str) -> Result<String, String> {
        self.op(conn, READ, tx, &[path])
            .map(|v| String::from_utf8(v).unwrap())
    }

    pub fn dir(&mut self, conn: ConnId, tx: u32, path: &str) -> Result<Vec<String>, String> {
        self.op(conn, DIRECTORY, tx, &[path]).map(|v| split_nul(&v))
    }

    pub fn start(&mut self, conn: ConnId) -> u32 {
        let id = self.op(conn, TX_START, 0, &[""]).unwrap();
        split_nul(&id)[0].parse().unwrap()
    }

    pub fn end(&mut self, conn: ConnId, tx: u32, commit: bool) -> Reply {
        self.op(conn, TX_END, tx, &[if commit { "T" } else { "F" }])
    }

    pub fn take_events(&mut self, conn: ConnId) -> Vec<(String, String)> {
        self.events.remove(&conn).unwrap_or_default()
    }
}

/// One message as wire bytes: header and payload.
pub fn frame(msg_type: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        msg_type,
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut wire = header.to_bytes().to_vec();
    wire.extend_from_slice(payload);
    wire
}

/// `count` messages back to back, req_ids from 0, no transaction, the payload of each
/// made from its index: what a client sends when it floods.
pub fn frames(msg_type: u32, count: u32, payload: impl Fn(u32) -> Vec<u8>) -> Vec<u8> {
    (0..count)
        .flat_map(|i| frame(msg_type, i, 0, &payload(i)))
        .collect()
}

pub fn ok() -> Reply {
    Ok(b"OK\0".to_vec())
}

pub fn err<T>(name: &str) -> Result<T, String> {
    Err(name.to_owned())
}

pub fn split_nul(bytes: &[u8]) -> Vec<String> {
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub fn ev(path: &str, token: &str) -> (String, String) {
    (path.to_owned(), token.to_owned())
}
