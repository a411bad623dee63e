//! Operations that take several requests: transactions run by `transact`, and chunked
//! directory listings.

use xsio_xs_wire::{ErrorKind, Reply, Request};

use crate::types::{Error, Response, TxId, TxOp};

/// What a request on the wire is for, and so what its reply means.
#[derive(Debug)]
pub(crate) enum Role {
    /// The reply is the operation's result.
    Plain,
    /// `RM` where `ENOENT` is success.
    RmTree,
    /// `READ` answering whether the node exists.
    Exists,
    /// `WATCH`: the watch's registration.
    Watch,
    /// `RESET_WATCHES`: forget every watch once acknowledged.
    ResetWatches,
    /// `UNWATCH` of this watch.
    Unwatch(xsio_core::OpId),
    /// `DIRECTORY` or `DIRECTORY_PART` of a listing.
    Directory(DirJob),
    /// One step of a `transact`.
    Tx(TxStep),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum TxStep {
    Start,
    Op(usize),
    End { commit: bool },
}

/// A `transact` in progress: the ops, the attempt number, and the results of this attempt.
#[derive(Debug)]
pub(crate) struct TxJob {
    ops: Vec<TxOp>,
    results: Vec<Option<Result<Response, Error>>>,
    outstanding: usize,
    pub(crate) attempts: u32,
    pub(crate) tx: Option<TxId>,
    ending: bool,
}

impl TxJob {
    pub(crate) fn new(ops: Vec<TxOp>) -> TxJob {
        TxJob {
            results: Vec::new(),
            outstanding: 0,
            attempts: 1,
            tx: None,
            ending: false,
            ops,
        }
    }

    pub(crate) fn started(&mut self, tx: TxId) {
        self.tx = Some(tx);
        self.results = vec![None; self.ops.len()];
        self.outstanding = self.ops.len();
    }

    /// Every op's request, in order, all sent at once (the daemon handles a connection's
    /// requests in order, so pipelining them changes nothing but the round trips).
    pub(crate) fn requests(&self) -> Vec<(usize, Request)> {
        self.ops
            .iter()
            .enumerate()
            .map(|(i, op)| (i, request_of(op)))
            .collect()
    }

    /// Records an op's result; returns whether every op of this attempt has answered.
    pub(crate) fn op_done(&mut self, index: usize, result: Result<Response, Error>) -> bool {
        if let Some(slot) = self.results.get_mut(index) {
            if slot.is_none() {
                *slot = Some(result);
                self.outstanding -= 1;
            }
        }
        self.outstanding == 0
    }

    pub(crate) fn failed(&self) -> bool {
        self.failure().is_some()
    }

    /// The error that made this attempt abort: `EAGAIN` if any op conflicted (so the
    /// attempt is retried), else the first error.
    pub(crate) fn failure(&self) -> Option<Error> {
        let errors = self
            .results
            .iter()
            .flatten()
            .filter_map(|r| r.as_ref().err());
        let mut first = None;
        for err in errors {
            if err.xs_kind() == Some(ErrorKind::Eagain) {
                return Some(err.clone());
            }
            first.get_or_insert_with(|| err.clone());
        }
        first
    }

    pub(crate) fn ending(&mut self) {
        self.ending = true;
    }

    pub(crate) fn is_ending(&self) -> bool {
        self.ending
    }

    pub(crate) fn restart(&mut self) {
        self.attempts += 1;
        self.tx = None;
        self.ending = false;
        self.results.clear();
        self.outstanding = 0;
    }

    pub(crate) fn into_results(self) -> Vec<Response> {
        self.results
            .into_iter()
            .map(|r| r.and_then(Result::ok).unwrap_or(Response::Unit))
            .collect()
    }
}

fn request_of(op: &TxOp) -> Request {
    match op.clone() {
        TxOp::Read(path) => Request::Read { path },
        TxOp::Write(path, value) => Request::Write { path, value },
        TxOp::Mkdir(path) => Request::Mkdir { path },
        TxOp::Rm(path) => Request::Rm { path },
        TxOp::SetPerms(path, perms) => Request::SetPerms { path, perms },
        TxOp::Directory(path) => Request::Directory { path },
    }
}

/// A directory listing: one `DIRECTORY`, then `DIRECTORY_PART` chunks if that was `E2BIG`.
#[derive(Debug)]
pub(crate) struct DirJob {
    path: String,
    pub(crate) tx: Option<TxId>,
    chunked: Option<Chunks>,
}

#[derive(Debug)]
struct Chunks {
    generation: Option<u64>,
    names: Vec<String>,
    offset: u32,
    bytes: usize,
    restarts: u32,
}

impl DirJob {
    pub(crate) fn new(path: String, tx: Option<TxId>) -> DirJob {
        DirJob {
            path,
            tx,
            chunked: None,
        }
    }

    /// The request for the next chunk.
    pub(crate) fn next_request(&self) -> Request {
        Request::DirectoryPart {
            path: self.path.clone(),
            offset: self.chunked.as_ref().map_or(0, |c| c.offset),
        }
    }

    /// Takes a reply: `Ok(Some(names))` when the listing is complete, `Ok(None)` when the
    /// next chunk must be asked for.
    pub(crate) fn on_reply(
        &mut self,
        result: Result<Reply, ErrorKind>,
        (max_restarts, max_bytes): (u32, usize),
    ) -> Result<Option<Vec<String>>, Error> {
        let Some(chunks) = &mut self.chunked else {
            return match result {
                Ok(Reply::Directory(names)) => Ok(Some(names)),
                Err(ErrorKind::E2big) => {
                    self.chunked = Some(Chunks {
                        generation: None,
                        names: Vec::new(),
                        offset: 0,
                        bytes: 0,
                        restarts: 0,
                    });
                    Ok(None)
                }
                Err(kind) => Err(Error::Xs(kind)),
                Ok(other) => Err(Error::Protocol(format!("{other:?} to DIRECTORY"))),
            };
        };
        let (generation, children, complete) = match result {
            Ok(Reply::DirectoryPart {
                generation,
                children,
                complete,
            }) => (generation, children, complete),
            // As libxenstore: a daemon without DIRECTORY_PART cannot list this node.
            Err(ErrorKind::Enosys) => return Err(Error::Xs(ErrorKind::E2big)),
            Err(kind) => return Err(Error::Xs(kind)),
            Ok(other) => return Err(Error::Protocol(format!("{other:?} to DIRECTORY_PART"))),
        };
        if chunks.generation.is_some_and(|g| g != generation) {
            // The node changed between chunks: start again.
            chunks.restarts += 1;
            if chunks.restarts > max_restarts {
                return Err(Error::Xs(ErrorKind::Eagain));
            }
            chunks.generation = None;
            chunks.names.clear();
            chunks.offset = 0;
            chunks.bytes = 0;
            return Ok(None);
        }
        chunks.generation = Some(generation);
        if children.is_empty() && !complete {
            return Err(Error::Protocol("empty DIRECTORY_PART chunk".into()));
        }
        for name in children {
            let len = name.len() + 1;
            chunks.bytes += len;
            if chunks.bytes > max_bytes {
                return Err(Error::Xs(ErrorKind::E2big));
            }
            chunks.offset = chunks
                .offset
                .saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
            chunks.names.push(name);
        }
        if complete {
            Ok(Some(std::mem::take(&mut chunks.names)))
        } else {
            Ok(None)
        }
    }
}
