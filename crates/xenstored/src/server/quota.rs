//! Quotas that span connections: per-domain totals and the outstanding-request limit.

use xsio_xs_wire::ErrorKind;

use super::Server;
use super::conn::Conn;

/// What an unprivileged domain holds across all of its connections.
#[derive(Clone, Debug, Default)]
pub(super) struct Usage {
    /// Requests not yet complete (see `flow`).
    pub(super) outstanding: usize,
    /// Watch events dropped because they were not taken in time.
    pub(super) dropped_events: u64,
}

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

    /// Whether `conn` may have one more request answered now: an unprivileged domain has
    /// its outstanding-request quota across all of its connections, a privileged connection
    /// a limit of its own.
    pub(super) fn may_answer(&self, conn: &Conn) -> bool {
        if conn.privileged {
            return conn.outstanding < self.config.privileged_outstanding_requests;
        }
        let usage = self.usage.get(&conn.domid);
        usage.map_or(0, |u| u.outstanding) < self.config.quotas.outstanding_requests
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
