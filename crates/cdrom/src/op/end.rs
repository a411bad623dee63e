//! How a change ends: success, failure, and the cleanup in between (transaction aborted,
//! descriptor closed, fd set removed, xenstore set to what QEMU holds, lock given back).

use xsio_ops::{FileOp, HostOp, OpError, OpErrorKind, QmpOp, XsOp};

use super::{Completion, Lock, MediaChange, Purpose, Write};
use crate::config::params;
use crate::error::{CdromError, Changed, QmpStep};

impl MediaChange {
    pub(super) fn succeed(&mut self) {
        let Some(device) = self.device.clone() else {
            return;
        };
        let result = match self.cleanup_error.take() {
            Some(error) => Err(error),
            None => Ok(Changed {
                device,
                params: params(&self.backend_type, self.change.medium()),
                qemu: self.qemu,
                fdset: self.new_fdset,
            }),
        };
        self.release_lock();
        self.complete(result);
    }

    pub(super) fn fail(&mut self, error: CdromError) {
        if self.failure.is_none() && self.completed.is_none() {
            self.failure = Some(error);
        }
    }

    /// A QMP step failed: QEMU's exit, when it came first, says why better than the
    /// connection error it caused.
    pub(super) fn qmp_fail(&mut self, step: QmpStep, source: OpError) {
        if source.kind == OpErrorKind::Connection {
            self.qmp_closed = true;
            if let Some(exit) = &self.exited {
                return self.fail(CdromError::Exited(exit.clone()));
            }
        }
        self.fail(CdromError::Qmp { step, source });
    }

    pub(super) fn release_lock(&mut self) {
        if let Lock::Held(lock) = self.lock {
            self.lock = Lock::Released;
            self.request(Purpose::Unlock, HostOp::Unlock { lock });
        }
    }

    /// After a failure, once no step is in flight: abort the open transaction, close the
    /// descriptor held, remove the fd set, write into xenstore what QEMU holds, give the
    /// lock back, complete. One blocking request at a time.
    pub(super) fn advance(&mut self) {
        if self.failure.is_none() {
            return;
        }
        let lock = self.lock;
        let busy = self.requests.purposes().any(|p| match p {
            Purpose::Unlock | Purpose::Close => false,
            Purpose::Lock => lock != Lock::Released,
            _ => true,
        });
        if busy {
            return;
        }
        if let Some(run) = self.txn.take() {
            if let Some(txn) = run.id {
                self.request(Purpose::TxnEnd, XsOp::TxnEnd { txn, commit: false });
                return;
            }
        }
        if let Some(fd) = self.fd.take() {
            self.request(Purpose::Close, FileOp::Close(fd));
        }
        let usable = !self.qmp_closed && self.exited.is_none();
        if let Some(set) = self.fdset.take() {
            if usable {
                self.remove_fd(set);
                return;
            }
        }
        if self.eject_sent && !self.final_written && !self.reconciled && self.device.is_some() {
            self.reconciled = true;
            if self.exited.is_some() {
                // QEMU is gone, and its drive with it: empty.
                self.start_txn_with(Write::Reconcile, String::new());
            } else if self.qmp_closed {
                // Someone closed the connection, not QEMU's end: a new one asks it.
                self.request(Purpose::Reconnect, QmpOp::Connect);
            } else {
                self.query_block();
            }
            return;
        }
        self.release_lock();
        if self.completed.is_none() {
            if let Some(failure) = self.failure.clone() {
                self.complete(Err(failure));
            }
        }
    }

    pub(super) fn complete(&mut self, result: Completion) {
        if self.completed.is_none() {
            self.completed = Some(result.clone());
            self.requests.event(result);
        }
    }
}
