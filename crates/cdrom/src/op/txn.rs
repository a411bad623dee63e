//! The transactions that write `type` and `params` into the backend directory and the
//! toolstack entry: the drive's description read inside it first (a device being removed
//! is not written back), every conflict retried a bounded number of times.

use std::collections::VecDeque;

use xsio_core::OpId;
use xsio_ops::{
    InputError, OpError, OpErrorKind, Reply, TxnOp, XsOp, expect_committed, expect_done,
    split_checked,
};

use super::{MediaChange, Purpose, TxnRun, Write};
use crate::config::params;
use crate::error::CdromError;

impl MediaChange {
    pub(super) fn start_txn(&mut self, write: Write) {
        let medium = match write {
            Write::Final => self.change.medium(),
            Write::Intermediate | Write::Reconcile => None,
        };
        let params = params(&self.backend_type, medium);
        self.start_txn_with(write, params);
    }

    pub(super) fn start_txn_with(&mut self, write: Write, params: String) {
        self.txn = Some(TxnRun {
            write,
            params,
            id: None,
            steps: VecDeque::new(),
            attempts: 0,
        });
        self.begin_txn();
    }

    /// (Re)starts the transaction in `self.txn`.
    pub(super) fn begin_txn(&mut self) {
        let Some(device) = &self.device else {
            return;
        };
        let Some(run) = &mut self.txn else {
            return;
        };
        run.attempts = run.attempts.saturating_add(1);
        run.id = None;
        let mut steps = VecDeque::new();
        for dir in [device.backend_path(), device.toolstack_path()] {
            steps.push_back(TxnOp::write(format!("{dir}/type"), &self.backend_type));
            steps.push_back(TxnOp::write(format!("{dir}/params"), &run.params));
        }
        run.steps = steps;
        self.request(Purpose::TxnStart, XsOp::TxnStart);
    }

    /// The transaction's work goes on: the change runs, or it is the cleanup's own write.
    pub(super) fn txn_goes_on(&self) -> bool {
        self.running()
            || self
                .txn
                .as_ref()
                .is_some_and(|run| run.write == Write::Reconcile)
    }

    pub(super) fn next_txn_step(&mut self) {
        if !self.txn_goes_on() {
            return; // the cleanup aborts it
        }
        let Some(run) = &mut self.txn else {
            return;
        };
        let Some(txn) = run.id else {
            return;
        };
        match run.steps.pop_front() {
            Some(op) => {
                self.request(Purpose::TxnApply, XsOp::TxnApply { txn, op });
            }
            None => {
                self.request(Purpose::TxnEnd, XsOp::TxnEnd { txn, commit: true });
            }
        }
    }

    pub(super) fn on_txn_end(
        &mut self,
        id: OpId,
        result: Result<Reply, OpError>,
    ) -> Result<(), InputError> {
        let Some(mut run) = self.txn.take() else {
            // An abort's answer: nothing waits on it.
            return split_checked(expect_done(id, result)).1;
        };
        run.id = None;
        let (committed, refused) = split_checked(expect_committed(id, result));
        match committed {
            Ok(()) => self.txn_done(run.write),
            Err(err) if err.kind == OpErrorKind::Conflict => {
                if run.attempts < self.config.transaction_attempts && self.txn_goes_on_for(&run) {
                    self.txn = Some(run);
                    self.begin_txn();
                } else if run.write == Write::Reconcile {
                    // Given up: what QEMU holds stays unwritten.
                } else {
                    self.fail(CdromError::Conflicts(run.attempts));
                }
            }
            Err(source) => {
                if run.write != Write::Reconcile {
                    self.fail(CdromError::Xenstore {
                        step: "committing type and params",
                        source,
                    });
                }
            }
        }
        refused
    }

    pub(super) fn txn_goes_on_for(&self, run: &TxnRun) -> bool {
        self.running() || run.write == Write::Reconcile
    }

    pub(super) fn txn_done(&mut self, write: Write) {
        match write {
            Write::Intermediate => {
                if self.running() {
                    self.open_image();
                }
            }
            Write::Final => {
                self.final_written = true;
                if self.running() {
                    self.succeed();
                }
            }
            Write::Reconcile => {}
        }
    }

    /// A step inside the transaction failed: the change fails (the cleanup aborts the
    /// transaction); a reconciling write is given up.
    pub(super) fn txn_failed(&mut self, error: CdromError) {
        let reconcile = self
            .txn
            .as_ref()
            .is_some_and(|run| run.write == Write::Reconcile);
        if reconcile {
            if let Some(run) = &mut self.txn {
                run.steps.clear();
                if run.id.is_none() {
                    self.txn = None;
                }
            }
            // An open one is aborted by the cleanup, as after any failure.
            self.reconcile_abort();
        } else {
            self.fail(error);
        }
    }

    /// Aborts a reconciling transaction still open.
    pub(super) fn reconcile_abort(&mut self) {
        if let Some(txn) = self.txn.as_ref().and_then(|run| run.id) {
            self.txn = None;
            self.request(Purpose::TxnEnd, XsOp::TxnEnd { txn, commit: false });
        }
    }
}
