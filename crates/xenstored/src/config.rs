//! Limits and quotas.

use std::time::Duration;

/// Per-domain quotas. They bind unprivileged domains only; dom0 and socket clients are exempt,
/// as in the C daemon (so Xen's test suite may store 3000-byte values from dom0). The defaults
/// are xenstored 4.17's (memory: soft 2 MiB, hard 2.5 MiB).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quotas {
    /// Nodes a domain may own (ENOSPC beyond).
    pub nodes_per_domain: u32,
    /// Bytes of one node's record, which must stay below this: a 24-byte header, 8 per
    /// permission entry, the value, child names with their NULs (ENOSPC otherwise).
    pub node_size: usize,
    /// Watches a domain may hold (E2BIG beyond).
    pub watches_per_domain: usize,
    /// Transactions a domain may have open (ENOSPC beyond).
    pub transactions_per_domain: usize,
    /// Distinct nodes one transaction may touch (ENOSPC beyond).
    pub nodes_per_transaction: usize,
    /// Entries in one permission list (ENOSPC beyond).
    pub perms_per_node: usize,
    /// Requests not yet complete, across all of a domain's connections: a request is
    /// outstanding until its reply and every watch event it caused were taken by the driver
    /// (or dropped). Past it the server answers none of that domain's further requests.
    pub outstanding_requests: usize,
    /// Memory a domain may hold, in bytes, across all of its connections: the nodes it owns
    /// (each charged its record header, path, value, child names and permissions), the
    /// replies and watch events queued for it, and the requests it sent that wait unread.
    /// Past it none of its requests is answered, nor its input read, until it drops below
    /// (others are served as before). 0: no limit.
    pub memory_per_domain: usize,
    /// Past this much memory a domain is reported ([`Output::MemoryQuota`]), once per
    /// crossing. 0: never.
    ///
    /// [`Output::MemoryQuota`]: crate::Output::MemoryQuota
    pub memory_per_domain_soft: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            nodes_per_domain: 1000,
            node_size: 2048,
            watches_per_domain: 128,
            transactions_per_domain: 10,
            nodes_per_transaction: 1024,
            perms_per_node: 5,
            outstanding_requests: 20,
            memory_per_domain: 2_621_440,
            memory_per_domain_soft: 2_097_152,
        }
    }
}

/// How a [`Server`](crate::Server) behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Quotas for unprivileged domains.
    pub quotas: Quotas,
    /// Longest node path, counted after a `/local/domain/<id>/` prefix (all callers).
    pub path_max: usize,
    /// Replies a privileged connection may have queued before its input stops being read.
    pub privileged_outstanding_requests: usize,
    /// How long a watch event may wait for an unprivileged connection to take it before it
    /// is dropped (C xenstored's 20 s). Events for privileged connections never expire.
    pub watch_event_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quotas: Quotas::default(),
            path_max: 2048,
            privileged_outstanding_requests: 1024,
            watch_event_timeout: Duration::from_secs(20),
        }
    }
}
