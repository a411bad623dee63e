//! Quotas that span connections: per-domain totals and the outstanding-request limit.

use xsio_xs_wire::ErrorKind;

use super::conn::Conn;
use super::{ConnId, Output, Server};

/// What an unprivileged domain holds across all of its connections.
#[derive(Clone, Debug, Default)]
pub(super) struct Usage {
    /// Requests not yet complete (see `flow`).
    pub(super) outstanding: usize,
    /// Bytes queued for its connections and received from them, not yet handled.
    pub(super) io: usize,
    /// Watch events dropped because they were not taken in time.
    pub(super) dropped_events: u64,
    /// Its memory is past the soft quota, and that was reported.
    pub(super) over_soft: bool,
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
        let quotas = &self.config.quotas;
        let outstanding = self.usage.get(&conn.domid).map_or(0, |u| u.outstanding);
        let hard = quotas.memory_per_domain;
        outstanding < quotas.outstanding_requests
            && (hard == 0 || self.domain_memory(conn.domid) < hard)
    }

    /// The memory an unprivileged domain holds: the nodes it owns, and what is queued for
    /// and from its connections.
    pub(super) fn domain_memory(&self, domid: u32) -> usize {
        self.tree.memory_of(domid) + self.usage.get(&domid).map_or(0, |u| u.io)
    }

    /// Brings the domain's count of `conn_id`'s queued and buffered bytes up to date, and
    /// reports the domain once when it passes its soft quota.
    pub(super) fn charge(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.privileged {
            return;
        }
        let io = conn.out.len() + conn.decoder.buffered();
        let (old, domid) = (std::mem::replace(&mut conn.charged_io, io), conn.domid);
        let usage = self.usage.entry(domid).or_default();
        usage.io = (usage.io + io).saturating_sub(old);
        self.check_soft_quota(domid);
    }

    /// Takes a closing connection's bytes off its domain's count.
    pub(super) fn uncharge(&mut self, conn: &Conn) {
        if let Some(usage) = self.usage.get_mut(&conn.domid) {
            usage.io = usage.io.saturating_sub(conn.charged_io);
        }
    }

    fn check_soft_quota(&mut self, domid: u32) {
        let (soft, hard) = (
            self.config.quotas.memory_per_domain_soft,
            self.config.quotas.memory_per_domain,
        );
        let memory = self.domain_memory(domid);
        let Some(usage) = self.usage.get_mut(&domid) else {
            return;
        };
        let over = soft != 0 && memory > soft;
        if over && !usage.over_soft {
            self.notices.push_back(Output::MemoryQuota {
                domid,
                memory,
                soft,
                hard,
            });
        }
        usage.over_soft = over;
    }

    /// ENOSPC when an unprivileged domain already holds its quota of open transactions.
    pub(super) fn check_transaction_quota(&self, conn: &Conn) -> Result<(), ErrorKind> {
        let limit = self.config.quotas.transactions_per_domain;
        self.check_domain_quota(conn, |c| c.txs.len(), limit, ErrorKind::Enospc)
    }

    /// E2BIG when an unprivileged domain already holds its quota of watches.
    pub(super) fn check_watch_quota(&self, conn: &Conn) -> Result<(), ErrorKind> {
        let limit = self.config.quotas.watches_per_domain;
        self.check_domain_quota(conn, |c| c.watches.len(), limit, ErrorKind::E2big)
    }

    /// `error` when `conn` is unprivileged and its domain already holds `limit` of what
    /// `count` counts, across its connections.
    fn check_domain_quota(
        &self,
        conn: &Conn,
        count: impl Fn(&Conn) -> usize,
        limit: usize,
        error: ErrorKind,
    ) -> Result<(), ErrorKind> {
        if !conn.privileged && self.domain_total(conn.domid, count) >= limit {
            return Err(error);
        }
        Ok(())
    }
}
