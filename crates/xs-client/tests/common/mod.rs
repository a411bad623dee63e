//! A harness: the client wired to a small scripted daemon, with a virtual clock.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use xsio_core::{Input, OpId};
use xsio_xs_client::{Client, CloseReason, Config, Error, Output, Response, WatchEvent};
use xsio_xs_wire::{ErrorKind, FrameDecoder, Header, Packet, Reply, Request};

#[allow(clippy::disallowed_methods)] // A test epoch.
pub fn epoch() -> Instant {
    Instant::now() // tidy:allow (a test epoch)
}

/// What the client emitted, sorted out.
#[derive(Default, Debug)]
pub struct Seen {
    pub done: Vec<(OpId, Result<Response, Error>)>,
    pub events: Vec<WatchEvent>,
    pub requests: Vec<Packet<Request>>,
    /// Every `Output::Closed`, in order (at most one is allowed).
    pub closed: Vec<CloseReason>,
    /// How many `Done`s came after the `Closed` (none is allowed).
    pub done_after_close: usize,
}

pub struct Harness {
    pub client: Client,
    pub now: Instant,
    decoder: FrameDecoder,
    pub seen: Seen,
    /// Requests sent by the client and not yet answered by the test.
    pub inbox: VecDeque<Packet<Request>>,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new(Config::default())
    }
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        let now = epoch();
        Harness {
            client: Client::new(config, now),
            now,
            decoder: FrameDecoder::default(),
            seen: Seen::default(),
            inbox: VecDeque::new(),
        }
    }

    /// Drains the client's outputs.
    pub fn drain(&mut self) {
        while let Some(output) = self.client.poll_output() {
            match output {
                Output::Transmit(t) => {
                    assert!(t.fds.is_empty());
                    self.decoder.feed(&t.bytes);
                    while let Some(frame) = self.decoder.next_frame().unwrap() {
                        let packet = Packet::<Request>::decode(&frame).unwrap();
                        self.seen.requests.push(packet.clone());
                        self.inbox.push_back(packet);
                    }
                }
                Output::Done { id, result } => {
                    if !self.seen.closed.is_empty() {
                        self.seen.done_after_close += 1;
                    }
                    self.seen.done.push((id, result))
                }
                Output::Closed(reason) => self.seen.closed.push(reason),
                Output::Event(e) => self.seen.events.push(e),
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    pub fn next_request(&mut self) -> Packet<Request> {
        self.drain();
        self.inbox.pop_front().expect("a request was sent")
    }

    /// Answers the next request the client sent with `body`; returns that request.
    pub fn answer(&mut self, body: Reply) -> Packet<Request> {
        let request = self.next_request();
        self.reply(&request, body);
        request
    }

    /// The next request the client sent, which must be `expected`.
    pub fn expect_request(&mut self, expected: Request) -> Packet<Request> {
        let request = self.next_request();
        assert_eq!(request.body, expected);
        request
    }

    /// A watch of `path` with `token`, acknowledged by the daemon at once.
    pub fn acked_watch(&mut self, path: &str, token: &str) -> OpId {
        let watch = self.client.watch(self.now, path, token);
        self.answer(Reply::Watch);
        assert_eq!(self.result_of(watch), &Ok(Response::Unit));
        watch
    }

    /// Feeds one message of the daemon's as raw bytes: a header for `payload`, then it.
    pub fn feed_raw(&mut self, msg_type: u32, req_id: u32, payload: &[u8]) {
        let header = Header {
            msg_type,
            req_id,
            tx_id: 0,
            len: payload.len() as u32,
        };
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        self.feed(&bytes);
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.client
            .handle_input(self.now, Input::<OwnedFd>::Bytes(bytes));
        self.drain();
    }

    pub fn reply(&mut self, to: &Packet<Request>, body: Reply) {
        let bytes = to.reply(body).to_bytes().unwrap();
        self.feed(&bytes);
    }

    pub fn event(&mut self, path: &str, token: &str) {
        let body = Reply::WatchEvent {
            path: path.into(),
            token: token.into(),
        };
        let bytes = Packet::new(0, 0, body).to_bytes().unwrap();
        self.feed(&bytes);
    }

    pub fn close(&mut self) {
        self.client.handle_input(self.now, Input::<OwnedFd>::Closed);
        self.drain();
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.drain();
    }

    pub fn result_of(&self, id: OpId) -> &Result<Response, Error> {
        let found: Vec<_> = self.seen.done.iter().filter(|(d, _)| *d == id).collect();
        assert_eq!(found.len(), 1, "{id} completed {} times", found.len());
        &found[0].1
    }
}

/// A tiny in-memory store that answers requests like xenstored would, for tests that want
/// plausible replies rather than scripted ones.
#[derive(Default)]
pub struct Store {
    pub nodes: BTreeMap<String, Bytes>,
    pub next_tx: u32,
    pub watches: Vec<(String, String)>,
}

impl Store {
    pub fn answer(
        &mut self,
        request: &Packet<Request>,
        commit_conflicts: bool,
    ) -> Vec<Packet<Reply>> {
        let mut out = Vec::new();
        let reply = match &request.body {
            Request::Read { path } => match self.nodes.get(path) {
                Some(v) => Reply::Read(v.clone()),
                None => Reply::Error(ErrorKind::Enoent),
            },
            Request::Write { path, value } => {
                self.nodes.insert(path.clone(), value.clone());
                for (wpath, token) in &self.watches {
                    if path == wpath || path.starts_with(&format!("{wpath}/")) {
                        out.push(Packet::new(
                            0,
                            0,
                            Reply::WatchEvent {
                                path: path.clone(),
                                token: token.clone(),
                            },
                        ));
                    }
                }
                Reply::Write
            }
            Request::Mkdir { path } => {
                self.nodes.entry(path.clone()).or_default();
                Reply::Mkdir
            }
            Request::Rm { path } => {
                let existed = self.nodes.remove(path).is_some();
                if existed {
                    Reply::Rm
                } else {
                    Reply::Error(ErrorKind::Enoent)
                }
            }
            Request::Directory { path } => {
                let prefix = format!("{path}/");
                Reply::Directory(
                    self.nodes
                        .keys()
                        .filter_map(|k| k.strip_prefix(&prefix))
                        .filter(|rest| !rest.contains('/'))
                        .map(str::to_owned)
                        .collect(),
                )
            }
            Request::GetPerms { .. } => Reply::GetPerms(vec!["n0".parse().unwrap()]),
            Request::SetPerms { .. } => Reply::SetPerms,
            Request::GetDomainPath { domid } => {
                Reply::GetDomainPath(format!("/local/domain/{domid}"))
            }
            Request::TransactionStart => {
                self.next_tx += 1;
                Reply::TransactionStart(self.next_tx)
            }
            Request::TransactionEnd { commit: true } if commit_conflicts => {
                Reply::Error(ErrorKind::Eagain)
            }
            Request::TransactionEnd { .. } => Reply::TransactionEnd,
            Request::Watch { path, token } => {
                self.watches.push((path.clone(), token.clone()));
                out.push(Packet::new(
                    0,
                    0,
                    Reply::WatchEvent {
                        path: path.clone(),
                        token: token.clone(),
                    },
                ));
                Reply::Watch
            }
            Request::Unwatch { path, token } => {
                self.watches.retain(|w| w != &(path.clone(), token.clone()));
                Reply::Unwatch
            }
            _ => Reply::Error(ErrorKind::Enosys),
        };
        out.insert(0, request.reply(reply));
        out
    }
}

pub fn wire(packets: &[Packet<Reply>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in packets {
        p.encode(&mut out).unwrap();
    }
    out.to_vec()
}
