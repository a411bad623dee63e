//! Comparing what the two daemons sent, with the accepted differences.
//!
//! Each rule recognises one known difference by its exact shape (the operation, what each
//! daemon sent) and names it; the names are those of the table in `xsio-xenstored`'s crate
//! docs. A difference no rule recognises fails the test.

use std::collections::BTreeMap;

use xsio_xs_wire::MsgType;

use super::generate::{Op, TxRef};
use super::{Batch, Seen};

/// One client's messages for one operation, on each side.
pub struct Case<'a> {
    /// The operation.
    pub op: &'a Op,
    /// Whether this client sent the operation (else it only saw events).
    pub sender: bool,
    /// What Xen's daemon sent this client.
    pub xen: &'a [Seen],
    /// What ours sent.
    pub xsio: &'a [Seen],
}

impl Case<'_> {
    fn is(&self, kind: MsgType) -> bool {
        self.op.kind == kind.as_u32()
    }

    /// Both sent exactly one message, an error each: (Xen's, ours).
    fn errors(&self) -> Option<(&[u8], &[u8])> {
        match (self.xen, self.xsio) {
            ([x], [o]) if x.kind() == Some(16) && o.kind() == Some(16) => {
                Some((x.payload(), o.payload()))
            }
            _ => None,
        }
    }
}

/// A known difference: its name (a row of the table) and how to recognise it.
struct Rule {
    name: &'static str,
    matches: fn(&Case<'_>) -> bool,
}

const RULES: &[Rule] = &[
    Rule {
        // A request whose arguments are not exactly what its type takes (a missing final NUL,
        // an extra string): we answer EINVAL; Xen answers a stale errno left by an earlier
        // system call, or, when that errno is 0, nothing at all, and then never reads that
        // connection again.
        name: "malformed-arguments",
        matches: |c| {
            let xen_refused = match c.xen {
                [] | [Seen::Timeout] => true,
                [x] => x.kind() == Some(16),
                _ => false,
            };
            c.sender
                && !well_formed(c.op)
                && xen_refused
                && matches!(c.xsio, [o] if o.kind() == Some(16) && o.payload() == b"EINVAL\0")
        },
    },
    Rule {
        // A number argument (a domain id, a DIRECTORY_PART offset) that is not decimal: Xen
        // reads it with atoi ("abc" is domain 0, offset 0); we refuse it with EINVAL.
        name: "non-numeric-argument",
        matches: |c| {
            // The NUL-terminated arguments (a trailing piece without NUL is not one).
            let mut args: Vec<&[u8]> = c.op.payload.split(|&b| b == 0).collect();
            args.pop();
            let numbers: &[&[u8]] = if takes_domids(c.op.kind) {
                &args
            } else if c.is(MsgType::DirectoryPart) && args.len() > 1 {
                &args[1..2]
            } else {
                &[]
            };
            c.sender
                && numbers
                    .iter()
                    .any(|s| s.is_empty() || !s.iter().all(u8::is_ascii_digit))
                && matches!(c.xsio, [o] if o.kind() == Some(16) && o.payload() == b"EINVAL\0")
        },
    },
    Rule {
        // SET_PERMS on an `@` path that is refused (another name than the two special
        // ones, or a guest changing a special one): Xen's answer is a stale errno (ENOENT
        // at first, EAGAIN once a non-blocking read has set it), not a defined answer to
        // match. We answer EINVAL for other names, as Xen does to GET_PERMS there, and
        // EACCES to a guest.
        name: "special-path-set-perms",
        matches: |c| {
            let special = c.op.payload.starts_with(b"@introduceDomain\0")
                || c.op.payload.starts_with(b"@releaseDomain\0");
            let guest = super::generate::DOMIDS[c.op.client] != 0;
            let ours_refused = match c.errors() {
                Some((_, b"EINVAL\0")) => !special,
                Some((_, b"EACCES\0")) => special && guest,
                _ => false,
            };
            c.sender && c.is(MsgType::SetPerms) && c.op.payload.starts_with(b"@") && ours_refused
        },
    },
    Rule {
        // DIRECTORY_PART from an offset that points at the NUL ending a name (libxenstore
        // only ever sends offsets at name starts): Xen lists an empty name first; our
        // encoder refuses an empty name and the reply is EINVAL.
        name: "directory-part-empty-name",
        matches: |c| match (c.xen, c.xsio) {
            ([x], [o]) if c.sender && c.is(MsgType::DirectoryPart) => {
                let body = x
                    .payload()
                    .splitn(2, |&b| b == 0)
                    .nth(1)
                    .unwrap_or_default();
                x.kind() == Some(c.op.kind)
                    && body.len() > 1
                    && body[0] == 0
                    && o.kind() == Some(16)
                    && o.payload() == b"EINVAL\0"
            }
            _ => false,
        },
    },
    Rule {
        // A permission naming a negative domain id (`b-1`, taken by both daemons' strtol
        // reading): Xen prints it back signed, we print the unsigned 32-bit id.
        name: "signed-domid-print",
        matches: |c| match (c.xen, c.xsio) {
            ([x], [o]) if c.is(MsgType::GetPerms) && x.kind() == o.kind() => {
                let unsigned = |entry: &[u8]| -> Option<Vec<u8>> {
                    let (letter, id) = entry.split_first()?;
                    let id: i64 = std::str::from_utf8(id).ok()?.parse().ok()?;
                    Some(format!("{}{}", *letter as char, id as u32).into_bytes())
                };
                let theirs: Option<Vec<_>> = x
                    .payload()
                    .split(|&b| b == 0)
                    .filter(|e| !e.is_empty())
                    .map(unsigned)
                    .collect();
                let ours: Vec<_> = o
                    .payload()
                    .split(|&b| b == 0)
                    .filter(|e| !e.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect();
                theirs == Some(ours)
            }
            _ => false,
        },
    },
];

impl History {
    /// DIRECTORY_PART replies start with the node's generation, a number each daemon counts
    /// its own way: the replies are the same when the names are, and the generations
    /// correspond one to one, per node, over the whole run (the same generation of theirs
    /// always goes with the same of ours, so "changed since the last chunk" means the same
    /// on both sides).
    fn same_listing(&mut self, op: &Op, xen: &[Seen], xsio: &[Seen]) -> bool {
        if op.kind != MsgType::DirectoryPart.as_u32() {
            return false;
        }
        let ([x], [o]) = (xen, xsio) else {
            return false;
        };
        if x.kind() != Some(op.kind) || o.kind() != Some(op.kind) {
            return false;
        }
        let split = |p: &[u8]| -> Option<(Vec<u8>, Vec<u8>)> {
            let cut = p.iter().position(|&b| b == 0)?;
            Some((p[..cut].to_vec(), p[cut..].to_vec()))
        };
        let (Some((xen_gen, xen_names)), Some((our_gen, our_names))) =
            (split(x.payload()), split(o.payload()))
        else {
            return false;
        };
        if xen_names != our_names
            && !chunk_cut_by_generation(&xen_gen, &xen_names, &our_gen, &our_names)
        {
            return false;
        }
        let domid = super::generate::DOMIDS[op.client];
        let path = super::generate::first_arg(&op.payload).to_vec();
        let forward = self
            .generations
            .entry((domid, path.clone(), xen_gen.clone()))
            .or_insert_with(|| our_gen.clone())
            .clone();
        let back = self
            .generations_back
            .entry((domid, path, our_gen.clone()))
            .or_insert(xen_gen.clone())
            .clone();
        forward == our_gen && back == xen_gen
    }
}

/// Whether the type's arguments are domain ids (INTRODUCE's frame and port included).
fn takes_domids(kind: u32) -> bool {
    [
        MsgType::Introduce,
        MsgType::Release,
        MsgType::GetDomainPath,
        MsgType::IsDomainIntroduced,
        MsgType::Resume,
        MsgType::SetTarget,
    ]
    .iter()
    .any(|t| t.as_u32() == kind)
}

/// Whether the payload has the shape its type takes (strings each ending in NUL, as many
/// as the type wants); WRITE's value is free.
fn well_formed(op: &Op) -> bool {
    let p = &op.payload;
    let strings = p.iter().filter(|&&b| b == 0).count();
    let ends = p.last() == Some(&0);
    let Some(kind) = MsgType::from_u32(op.kind) else {
        return true;
    };
    match kind {
        MsgType::Write => strings >= 1,
        MsgType::Watch | MsgType::Unwatch | MsgType::DirectoryPart | MsgType::SetTarget => {
            ends && strings == 2
        }
        MsgType::Introduce => ends && strings == 3,
        MsgType::SetPerms => ends && strings >= 2,
        MsgType::Control => ends,
        _ => ends && strings == 1,
    }
}

/// Every name a difference can be accepted under: the rules above and the ones the
/// history applies itself.
pub fn rule_names() -> Vec<&'static str> {
    let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
    names.extend([
        "directory-part-generation",
        "duplicate-events",
        "doomed-transaction",
    ]);
    names
}

/// What the comparison remembers across operations: how often each rule applied, and
/// which DIRECTORY_PART generation of ours stands for which of Xen's.
#[derive(Debug, Default)]
pub struct History {
    /// Rule name -> times it accepted a difference.
    pub(super) applied: BTreeMap<&'static str, usize>,
    /// (domain, path as sent, Xen's generation) -> ours.
    generations: BTreeMap<(u32, Vec<u8>, Vec<u8>), Vec<u8>>,
    /// (domain, path as sent, our generation) -> Xen's.
    generations_back: BTreeMap<(u32, Vec<u8>, Vec<u8>), Vec<u8>>,
    /// Differences inside transaction (client, id of its start), accepted only if it never commits.
    pending: BTreeMap<(usize, u32), Vec<String>>,
}

impl History {
    /// Compares one operation's batches; `Err` describes a difference no rule accepts.
    pub fn compare(&mut self, op: &Op, xen: &Batch, xsio: &Batch) -> Result<(), String> {
        let mut unexplained = Vec::new();
        for (client, (theirs, ours)) in xen.iter().zip(xsio).enumerate() {
            if theirs == ours {
                continue;
            }
            if client == op.client && self.same_listing(op, theirs, ours) {
                *self.applied.entry("directory-part-generation").or_default() += 1;
                continue;
            }
            if theirs == &coalesced(ours) {
                *self.applied.entry("duplicate-events").or_default() += 1;
                continue;
            }
            let case = Case {
                op,
                sender: client == op.client,
                xen: theirs,
                xsio: ours,
            };
            match RULES.iter().find(|rule| (rule.matches)(&case)) {
                Some(rule) => *self.applied.entry(rule.name).or_default() += 1,
                None => unexplained.push(client),
            }
        }
        let report = describe(op, xen, xsio, &unexplained);
        let tx = match op.tx {
            TxRef::Of(start) => Some((op.client, start)),
            TxRef::None => None,
        };
        let is = |kind: MsgType| op.kind == kind.as_u32();
        if is(MsgType::TransactionEnd)
            && let Some(tx) = tx
            && let Some(pending) = self.pending.remove(&tx)
        {
            let error = |name: &[u8]| matches!(&xen[op.client][..], [x] if x.kind() == Some(16) && x.payload() == name);
            let eagain = error(b"EAGAIN\0");
            let aborted = op.payload == b"F\0";
            let still_open = error(b"EINVAL\0"); // a malformed end ends nothing
            if unexplained.is_empty() && still_open {
                self.pending.insert(tx, pending);
            } else if unexplained.is_empty() && (eagain || aborted) {
                *self.applied.entry("doomed-transaction").or_default() += pending.len();
            } else {
                return Err(pending.join("") + "and then, the transaction ended:\n" + &report);
            }
        }
        // RESET_WATCHES ends the caller's transactions uncommitted; INTRODUCE of a known
        // domain does that to the domain's connection.
        let reset = if is(MsgType::ResetWatches) {
            Some(op.client)
        } else if is(MsgType::Introduce) {
            let domid: Option<u32> = op
                .payload
                .split(|&b| b == 0)
                .next()
                .and_then(|d| std::str::from_utf8(d).ok()?.parse().ok());
            super::generate::DOMIDS
                .iter()
                .position(|d| Some(*d) == domid && *d != 0)
        } else {
            None
        };
        if let Some(client) = reset
            && xen[op.client] == xsio[op.client]
            && matches!(&xen[op.client][..], [x] if x.kind() == Some(op.kind))
        {
            let gone: Vec<_> = self
                .pending
                .keys()
                .filter(|k| k.0 == client)
                .copied()
                .collect();
            for key in gone {
                let count = self.pending.remove(&key).map_or(0, |p| p.len());
                *self.applied.entry("doomed-transaction").or_default() += count;
            }
        }
        if unexplained.is_empty() {
            return Ok(());
        }
        if unexplained == [op.client]
            && let Some(tx) = tx
            && !is(MsgType::TransactionEnd)
            && !is(MsgType::TransactionStart)
        {
            // Decided when the transaction ends (see `doomed-transaction`).
            self.pending.entry(tx).or_default().push(report);
            return Ok(());
        }
        Err(report)
    }

    /// Transactions (client, id of the start) with differences still waiting for their end.
    pub fn pending(&self) -> Vec<(usize, u32)> {
        self.pending.keys().copied().collect()
    }
}

/// Two DIRECTORY_PART chunks from the same offset that differ only in where they stop,
/// because the generations in front of them differ in length: a name goes into a chunk
/// while `names so far + name < 4096 - (generation + NUL) - 1` (Xen's rule), so a name
/// right at the edge fits behind the shorter generation only. `names` are each chunk's
/// bytes from its generation's NUL on.
fn chunk_cut_by_generation(gen_a: &[u8], names_a: &[u8], gen_b: &[u8], names_b: &[u8]) -> bool {
    let list = |names: &[u8]| -> (Vec<Vec<u8>>, bool) {
        let body = &names[1..];
        let last = body.ends_with(b"\0\0") || body == b"\0";
        let items = body
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        (items, last)
    };
    let (a, a_last) = list(names_a);
    let (b, b_last) = list(names_b);
    let ((short, short_last, short_gen), (long, long_gen)) = if a.len() < b.len() {
        ((a, a_last, gen_a), (b, gen_b))
    } else {
        ((b, b_last, gen_b), (a, gen_a))
    };
    if short_last || short.len() >= long.len() || long[..short.len()] != short[..] {
        return false;
    }
    let budget = |generation: &[u8]| 4096 - (generation.len() + 1) - 1;
    let used: usize = short.iter().map(|n| n.len() + 1).sum();
    let next = long[short.len()].len();
    used + next >= budget(short_gen) && used + next < budget(long_gen)
}

/// `seen` without the watch events identical to one earlier in it (Xen's daemon drops an
/// event identical to one still queued for the connection; `@` events excepted).
fn coalesced(seen: &[Seen]) -> Vec<Seen> {
    let mut out: Vec<Seen> = Vec::new();
    for s in seen {
        let duplicate = s.is_event()
            && !s.payload().starts_with(b"@")
            && out.iter().any(|earlier| earlier == s);
        if !duplicate {
            out.push(s.clone());
        }
    }
    out
}

/// The text of a difference: the operation, and what each side sent each client named.
fn describe(op: &Op, xen: &Batch, xsio: &Batch, clients: &[usize]) -> String {
    let mut report = format!("operation: {op}\n");
    for &client in clients {
        report.push_str(&format!("client {client}:\n  Xen's C xenstored sent:\n"));
        for seen in &xen[client] {
            report.push_str(&format!("    {seen}\n"));
        }
        report.push_str("  xsio xenstored sent:\n");
        for seen in &xsio[client] {
            report.push_str(&format!("    {seen}\n"));
        }
    }
    report
}
