//! The `transact` job: start, every op pipelined, commit or abort, retry on `EAGAIN`.

use std::time::Instant;

use xsio_core::OpId;
use xsio_xs_wire::{ErrorKind, Reply, Request};

use super::{Client, plain_response};
use crate::jobs::{Role, TxStep};
use crate::types::{Error, Response, TxId};

impl Client {
    // ---- transactions -------------------------------------------------------------------

    pub(super) fn tx_begin(&mut self, op: OpId) {
        self.send_or_fail(op, 0, Request::TransactionStart, Role::Tx(TxStep::Start));
    }

    pub(super) fn on_tx_reply(
        &mut self,
        now: Instant,
        op: OpId,
        step: TxStep,
        result: Result<Reply, ErrorKind>,
    ) {
        let _ = now;
        let Some(job) = self.tx_jobs.get_mut(&op) else {
            return;
        };
        match step {
            TxStep::Start => match result {
                Ok(Reply::TransactionStart(id)) => {
                    job.started(TxId(id));
                    let requests = job.requests();
                    if requests.is_empty() {
                        self.tx_end(op, true);
                        return;
                    }
                    for (index, request) in requests {
                        if !self.send_or_fail(op, id, request, Role::Tx(TxStep::Op(index))) {
                            return;
                        }
                    }
                }
                Ok(_) => self.finish_err(op, Error::Protocol("bad transaction id".into())),
                Err(kind) => self.finish_err(op, Error::Xs(kind)),
            },
            TxStep::Op(index) => {
                let result = result.map(plain_response).map_err(Error::Xs);
                if job.op_done(index, result) {
                    let commit = !job.failed();
                    self.tx_end(op, commit);
                }
            }
            TxStep::End { commit } => {
                let attempts_max = self.config.transact_attempts;
                match (commit, result) {
                    (true, Ok(_)) => {
                        let job = self.tx_jobs.remove(&op).expect("job present");
                        self.finish(op, Ok(Response::List(job.into_results())));
                    }
                    (true, Err(ErrorKind::Eagain)) => self.tx_retry(op, attempts_max),
                    (true, Err(kind)) => self.finish_err(op, Error::Xs(kind)),
                    // An abort after a failed op: retry if the failure was a conflict.
                    (false, _) => match job.failure() {
                        Some(Error::Xs(ErrorKind::Eagain)) => self.tx_retry(op, attempts_max),
                        Some(err) => self.finish_err(op, err),
                        None => self.finish_err(op, Error::Protocol("abort without cause".into())),
                    },
                }
            }
        }
    }

    pub(super) fn tx_end(&mut self, op: OpId, commit: bool) {
        let Some(tx) = self.tx_jobs.get_mut(&op).and_then(|j| j.tx) else {
            return;
        };
        let role = Role::Tx(TxStep::End { commit });
        if self.send_or_fail(op, tx.0, Request::TransactionEnd { commit }, role) {
            if let Some(job) = self.tx_jobs.get_mut(&op) {
                job.ending();
            }
        }
    }

    pub(super) fn tx_retry(&mut self, op: OpId, attempts_max: u32) {
        let Some(job) = self.tx_jobs.get_mut(&op) else {
            return;
        };
        if job.attempts >= attempts_max {
            let attempts = job.attempts;
            self.finish_err(op, Error::Conflict { attempts });
            return;
        }
        job.restart();
        self.tx_begin(op);
    }
}
