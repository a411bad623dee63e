//! Seeded random operation sequences for the differential test: every message type a
//! dom0 or guest client may send, aimed at a small set of paths so that operations meet
//! (conflicts, watches firing, permission denials, quotas), with malformed variants.

use xsio_xs_wire::MsgType;

/// The clients of a run: two dom0 socket connections, then guests 1 and 2.
pub const CLIENTS: usize = 4;
/// The domain of each client.
pub const DOMIDS: [u32; CLIENTS] = [0, 0, 1, 2];
/// Domains that exist for the daemons but have no client: dom0 introduces and releases
/// them (their memory and event channel are laid out beforehand for Xen's daemon).
pub const SPARE_DOMAINS: [u32; 2] = [3, 4];

/// Which transaction an operation runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxRef {
    /// None (header tx_id 0).
    None,
    /// The id the TRANSACTION_START operation with this [`Op::id`] returned, or an id no
    /// daemon hands out when that start failed or is not in the sequence (so removing
    /// operations while minimising never makes a reference point elsewhere).
    Of(u32),
}

/// One request, from one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Stable name of the operation in its sequence (transactions refer to their start
    /// by it).
    pub id: u32,
    /// Index into the clients ([`DOMIDS`]).
    pub client: usize,
    /// The message type number.
    pub kind: u32,
    /// The transaction in the header.
    pub tx: TxRef,
    /// The payload, exactly as sent.
    pub payload: Vec<u8>,
}

/// The first argument of a payload: the bytes before its first NUL (all of it without one).
pub fn first_arg(payload: &[u8]) -> &[u8] {
    payload.split(|&b| b == 0).next().unwrap_or_default()
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = MsgType::from_u32(self.kind)
            .map_or_else(|| format!("type {}", self.kind), |t| format!("{t:?}"));
        write!(
            f,
            "#{} client {} (dom{}) {name} tx {:?} {}",
            self.id,
            self.client,
            DOMIDS[self.client],
            self.tx,
            show(&self.payload)
        )
    }
}

/// Bytes as text, with NULs as `\0` and other odd bytes escaped; long runs shortened.
pub fn show(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = bytes[i..].iter().take_while(|&&c| c == b).count();
        if run > 12 {
            out.push_str(&format!("<{run} x {}>", escape(b)));
            i += run;
            continue;
        }
        out.push_str(&escape(b));
        i += 1;
    }
    out.push('"');
    out
}

fn escape(b: u8) -> String {
    match b {
        0 => "\\0".to_owned(),
        b'"' | b'\\' => format!("\\{}", b as char),
        0x20..=0x7e => (b as char).to_string(),
        _ => format!("\\x{b:02x}"),
    }
}

/// Whether requests of type `kind` carry exactly one NUL-terminated string.
fn takes_one_string(kind: u32) -> bool {
    [
        MsgType::Read,
        MsgType::Directory,
        MsgType::GetPerms,
        MsgType::Mkdir,
        MsgType::Rm,
        MsgType::TransactionEnd,
        MsgType::GetDomainPath,
        MsgType::IsDomainIntroduced,
        MsgType::Release,
        MsgType::Resume,
        MsgType::ResetWatches,
    ]
    .iter()
    .any(|t| t.as_u32() == kind)
}

/// SplitMix64: small, seedable, the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Generates operation sequences; remembers what each client did so far (how many
/// transactions it started, which watches it set), to aim later operations at them.
pub struct Generator {
    rng: Rng,
    /// Per client, the ids of its TRANSACTION_START operations.
    starts: [Vec<u32>; CLIENTS],
    next_id: u32,
    watches: Vec<(usize, Vec<u8>, Vec<u8>)>,
}

impl Generator {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng::new(seed),
            starts: Default::default(),
            next_id: 0,
            watches: Vec::new(),
        }
    }

    /// `count` operations.
    pub fn ops(&mut self, count: usize) -> Vec<Op> {
        (0..count).map(|_| self.op()).collect()
    }

    fn op(&mut self) -> Op {
        let client = *self.rng.pick(&[0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3]);
        let (kind, mut payload) = self.request(client);
        if takes_one_string(kind) {
            // Xen's daemon answers a malformed one-string request with a stale errno, or
            // not at all, and then aborts on the connection's next request (an assertion):
            // not an answer to compare (row "malformed-arguments"). They are not sent.
            payload = first_arg(&payload).to_vec();
            payload.push(0);
        }
        let tx = self.tx_for(client, kind);
        if kind == MsgType::DirectoryPart.as_u32() && tx != TxRef::None {
            // A non-numeric offset is refused before the node is read here, while Xen
            // reads it (row "non-numeric-argument"): inside a transaction that would
            // change which commits conflict, so offsets there are numbers.
            payload = first_arg(&payload).to_vec();
            payload.extend(b"\x000\0");
        }
        let id = self.next_id;
        self.next_id += 1;
        if kind == MsgType::TransactionStart.as_u32() && tx == TxRef::None {
            self.starts[client].push(id);
        }
        // Payloads past 4096 bytes break the framing: Xen's daemon drops such a request
        // silently, ours closes the connection (row "oversize-request"); both are
        // covered by each daemon's own tests, not compared here.
        payload.truncate(4096);
        Op {
            id,
            client,
            kind,
            tx,
            payload,
        }
    }

    /// Mostly outside any transaction; often in one of the client's recent ones.
    fn tx_for(&mut self, client: usize, kind: u32) -> TxRef {
        let started = self.starts[client].len();
        let in_tx = if kind == MsgType::TransactionEnd.as_u32() {
            95
        } else if kind == MsgType::TransactionStart.as_u32() {
            3 // EBUSY: a start inside a transaction
        } else {
            35
        };
        if started == 0 || !self.rng.chance(in_tx) {
            if kind == MsgType::TransactionEnd.as_u32() && self.rng.chance(50) {
                return TxRef::Of(u32::MAX); // never started: unknown id
            }
            return TxRef::None;
        }
        // Mostly the latest few; sometimes an old (likely ended) one.
        let back = if self.rng.chance(85) {
            self.rng.below(started.min(3))
        } else {
            self.rng.below(started)
        };
        TxRef::Of(self.starts[client][started - 1 - back])
    }

    fn request(&mut self, client: usize) -> (u32, Vec<u8>) {
        let r = &mut self.rng;
        let roll = r.below(1000);
        let kind = match roll {
            0..=159 => MsgType::Write,
            160..=279 => MsgType::Read,
            280..=339 => MsgType::Mkdir,
            340..=419 => MsgType::Rm,
            420..=479 => MsgType::Directory,
            480..=509 => MsgType::DirectoryPart,
            510..=549 => MsgType::GetPerms,
            550..=619 => MsgType::SetPerms,
            620..=689 => MsgType::Watch,
            690..=719 => MsgType::Unwatch,
            720..=789 => MsgType::TransactionStart,
            790..=869 => MsgType::TransactionEnd,
            870..=884 => MsgType::GetDomainPath,
            885..=899 => MsgType::IsDomainIntroduced,
            900..=914 => MsgType::Introduce,
            915..=929 => MsgType::Release,
            930..=939 => MsgType::Resume,
            940..=949 => MsgType::SetTarget,
            950..=959 => MsgType::ResetWatches,
            960..=969 => MsgType::Control,
            _ => {
                let kind = *r.pick(&[15u32, 16, 20, 23, 24, 25, 26, 27, 99, 65535]);
                return (kind, self.path_payload());
            }
        };
        let payload = match kind {
            MsgType::Write => {
                let mut p = self.path_arg();
                if !self.rng.chance(3) {
                    p.push(0);
                    p.extend(self.value());
                }
                p
            }
            MsgType::DirectoryPart => {
                let mut p = self.path_arg();
                p.push(0);
                let offset = match self.rng.below(10) {
                    0 => "x".to_owned(),
                    1 => String::new(),
                    n => (n * 2 - 4).to_string(),
                };
                p.extend(offset.as_bytes());
                p.push(0);
                p
            }
            MsgType::SetPerms => {
                let mut p = self.path_arg();
                let mut perms = self.perms();
                if p == b"/" && !perms.is_empty() {
                    // The root stays dom0's: Xen 4.17 deletes the whole store when a domain
                    // owning the root is released (row "root-owner-released").
                    perms[0].truncate(1);
                    perms[0].push(b'0');
                }
                p.push(0);
                for perm in perms {
                    p.extend(perm);
                    p.push(0);
                }
                p
            }
            MsgType::Watch => {
                let path = self.path_arg();
                let token = self.rng.pick(&[&b"t1"[..], b"t2", b"t3"]).to_vec();
                self.watches.push((client, path.clone(), token.clone()));
                self.two_strings(path, token)
            }
            MsgType::Unwatch => {
                let mine: Vec<_> = self.watches.iter().filter(|w| w.0 == client).collect();
                let (path, token) = if !mine.is_empty() && self.rng.chance(80) {
                    let w = mine[self.rng.below(mine.len())];
                    (w.1.clone(), w.2.clone())
                } else {
                    (self.path_arg(), b"t1".to_vec())
                };
                self.two_strings(path, token)
            }
            MsgType::TransactionStart => b"\0".to_vec(),
            MsgType::TransactionEnd => self
                .rng
                .pick(&[
                    &b"T\0"[..],
                    b"T\0",
                    b"T\0",
                    b"F\0",
                    b"F\0",
                    b"X\0",
                    b"T",
                    b"",
                ])
                .to_vec(),
            MsgType::GetDomainPath | MsgType::IsDomainIntroduced | MsgType::Resume => {
                self.domid_arg()
            }
            MsgType::Introduce => {
                let domid = *self.rng.pick(&SPARE_DOMAINS);
                match self.rng.below(8) {
                    // Port domid + 10, ring in grant 1: as laid out for Xen's daemon.
                    0..=5 => format!("{domid}\x001\0{}\0", domid + 10).into_bytes(),
                    6 => format!("{domid}\0").into_bytes(),
                    _ => b"1\x001\x0011\0".to_vec(), // a live guest again
                }
            }
            MsgType::Release => {
                let domid = *self.rng.pick(&[3u32, 4, 4, 3, 9]);
                format!("{domid}\0").into_bytes()
            }
            // Targets are live guests only: Xen keeps a released domain alive while another
            // targets it (row "release-of-a-target" of the table), which is not compared.
            MsgType::SetTarget => self
                .rng
                .pick(&[
                    &b"3\x001\0"[..],
                    b"4\x002\0",
                    b"2\x001\0",
                    b"3\0",
                    b"3\0x\0",
                ])
                .to_vec(),
            MsgType::ResetWatches => {
                self.watches.retain(|w| w.0 != client);
                b"\0".to_vec()
            }
            MsgType::Control => self
                .rng
                .pick(&[&b"no-such-command\0"[..], b"\0", b""])
                .to_vec(),
            _ => self.path_payload(),
        };
        (kind.as_u32(), payload)
    }

    /// A path argument with its NUL (and, rarely, malformed: no NUL, or two strings).
    fn path_payload(&mut self) -> Vec<u8> {
        let mut p = self.path_arg();
        match self.rng.below(40) {
            0 => {}
            1 => p.extend(b"\0extra\0"),
            _ => p.push(0),
        }
        p
    }

    fn two_strings(&mut self, mut first: Vec<u8>, second: Vec<u8>) -> Vec<u8> {
        first.push(0);
        match self.rng.below(30) {
            0 => {}
            1 => {
                first.extend(&second);
                first.extend(b"\0more\0");
            }
            _ => {
                first.extend(&second);
                first.push(0);
            }
        }
        first
    }

    /// A path (without NUL): mostly a few names under `/`, the guests' homes, relative
    /// to the caller's home; sometimes special, odd or malformed.
    fn path_arg(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        let names = ["a", "b", "c"];
        let rel = |r: &mut Rng, depth: usize| -> String {
            (0..1 + r.below(depth))
                .map(|_| *r.pick(&names))
                .collect::<Vec<_>>()
                .join("/")
        };
        let path = match r.below(100) {
            0..=29 => format!("/{}", rel(r, 3)),
            30..=49 => {
                let domid = r.pick(&[1, 2, 1, 2, 0, 3]);
                format!("/local/domain/{domid}/{}", rel(r, 2))
            }
            50..=69 => rel(r, 3),
            70..=74 => r
                .pick(&["/", "/local", "/local/domain", "/tool/xenstored"])
                .to_string(),
            75..=79 => format!("/local/domain/{}", r.pick(&[0, 1, 2, 3])),
            80..=84 => r
                .pick(&["@introduceDomain", "@releaseDomain", "@other", "@"])
                .to_string(),
            85..=94 => r
                .pick(&["/a/", "/a//b", "a b", "/a/.", "", "//", "/a\u{7f}", "-_@x"])
                .to_string(),
            _ => {
                // Around the path length limit (2048 after a domain prefix).
                let len = *r.pick(&[2040usize, 2047, 2048, 2049, 3100]);
                let mut p = if r.chance(50) {
                    "/".to_owned()
                } else {
                    String::new()
                };
                while p.len() < len {
                    p.push('q');
                }
                p
            }
        };
        path.into_bytes()
    }

    fn value(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        match r.below(20) {
            0..=2 => Vec::new(),
            3 => b"with\0nul".to_vec(),
            4 => {
                // Near the 2048-byte node-size quota.
                let len = *r.pick(&[1990usize, 2015, 2016, 2030, 2047, 2100]);
                vec![b'v'; len]
            }
            _ => {
                let len = 1 + r.below(8);
                (0..len).map(|_| b'a' + r.below(26) as u8).collect()
            }
        }
    }

    fn domid_arg(&mut self) -> Vec<u8> {
        self.rng
            .pick(&[
                &b"0\0"[..],
                b"1\0",
                b"2\0",
                b"3\0",
                b"4\0",
                b"9\0",
                b"32752\0",
                b"abc\0",
                b"",
            ])
            .to_vec()
    }

    /// A permission list, each entry without NUL: mostly well formed, for domains 0 to 3.
    fn perms(&mut self) -> Vec<Vec<u8>> {
        let r = &mut self.rng;
        let count = if r.chance(5) { 0 } else { 1 + r.below(6) };
        (0..count)
            .map(|_| {
                if r.chance(4) {
                    return r
                        .pick(&[&b"x1"[..], b"r", b"rabc", b"r0x1", b"r01", b"b-1"])
                        .to_vec();
                }
                let letter = *r.pick(b"nrwb");
                let domid = *r.pick(&[0, 1, 2, 1, 2, 3]);
                format!("{}{domid}", letter as char).into_bytes()
            })
            .collect()
    }
}
