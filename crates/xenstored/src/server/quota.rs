//! Quotas that span connections: per-domain totals and the outstanding-request limit.

use xsio_xs_wire::ErrorKind;

use super::Server;
use super::conn::Conn;

impl Server {
    /// `count` summed over every connection of `domid`: per-domain quotas (transactions,
    /// watches) hold across all of a domain's connections, not per connection.
    pub(super) fn domain_total(&self, domid: u32, count: impl Fn(&Conn) -> usize) -> usize {
        self.conns
            .values()
            .filter(|c| c.domid == domid)
            .map(count)
            .sum()
    }

    /// Replies `conn` may have queued before its further requests wait unread.
    pub(super) fn outstanding_limit(&self, conn: &Conn) -> usize {
        if conn.privileged {
            self.config.privileged_outstanding_requests
        } else {
            self.config.quotas.outstanding_requests
        }
    }

    /// ENOSPC when an unprivileged domain already holds its quota of open transactions.
    pub(super) fn check_transaction_quota(&self, conn: &Conn) -> Result<(), ErrorKind> {
        if !conn.privileged {
            let open = self.domain_total(conn.domid, |c| c.txs.len());
            if open >= self.config.quotas.transactions_per_domain {
                return Err(ErrorKind::Enospc);
            }
        }
        Ok(())
    }

    /// E2BIG when an unprivileged domain already holds its quota of watches.
    pub(super) fn check_watch_quota(&self, conn: &Conn) -> Result<(), ErrorKind> {
        if !conn.privileged {
            let held = self.domain_total(conn.domid, |c| c.watches.len());
            if held >= self.config.quotas.watches_per_domain {
                return Err(ErrorKind::E2big);
            }
        }
        Ok(())
    }
}
