//! CONTROL (xenstore-control): the commands a test harness or an operator uses.

use xsio_xs_wire::{ErrorKind, Reply};

use super::Server;

impl Server {
    pub(super) fn control(&mut self, args: &[String]) -> Result<Reply, ErrorKind> {
        let text = match args.first().map(String::as_str) {
            Some("help") => "check\nhelp\nlog\nprint\nquota\n".to_owned(),
            Some("check") => match self.tree.check() {
                Ok(()) => "OK".to_owned(),
                Err(problem) => format!("FAILED: {problem}"),
            },
            Some("log") | Some("print") => String::new(),
            Some("quota") if args.len() == 2 => self.domain_quota_report(&args[1])?,
            Some("quota") => {
                let q = &self.config.quotas;
                format!(
                    "Node quota: {}\nNode size: {}\nWatch quota: {}\nTransaction quota: {}\n\
                     Transaction node quota: {}\nPermissions per node: {}\nOutstanding requests: {}\n\
                     Memory quota: {}\nMemory soft quota: {}\n",
                    q.nodes_per_domain,
                    q.node_size,
                    q.watches_per_domain,
                    q.transactions_per_domain,
                    q.nodes_per_transaction,
                    q.perms_per_node,
                    q.outstanding_requests,
                    q.memory_per_domain,
                    q.memory_per_domain_soft
                )
            }
            _ => return Err(ErrorKind::Einval),
        };
        // xenstored answers text and a NUL; xenstore-control prints the text.
        let mut bytes = text.into_bytes();
        bytes.push(0);
        Ok(Reply::Control(bytes.into()))
    }

    /// `quota <domid>`: what the domain holds, in C xenstored's layout (`name: value`).
    fn domain_quota_report(&self, domid: &str) -> Result<String, ErrorKind> {
        let domid = xsio_xs_wire::parse_domid(domid).ok_or(ErrorKind::Einval)?;
        if !self.domains.contains_key(&domid) {
            return Err(ErrorKind::Enoent);
        }
        let usage = self.usage.get(&domid).cloned().unwrap_or_default();
        let mut report = format!("Domain {domid}:\n");
        for (name, value) in [
            ("nodes", u64::from(self.tree.entries_of(domid))),
            (
                "watches",
                self.domain_total(domid, |c| c.watches.len()) as u64,
            ),
            (
                "transactions",
                self.domain_total(domid, |c| c.txs.len()) as u64,
            ),
            ("outstanding", usage.outstanding as u64),
            ("memory", self.domain_memory(domid) as u64),
            ("dropped events", usage.dropped_events),
        ] {
            report.push_str(&format!("{name:<16}: {value:>8}\n"));
        }
        Ok(report)
    }
}
