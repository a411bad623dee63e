//! Byte streams on several connections (dom0, guests, one later released), with output
//! paused and resumed and time passing: the server never panics, every transmit is whole
//! messages, and the tree invariants hold after every step.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use xsio_xenstored::{Config, Origin, Output, Quotas, Server};
use xsio_xs_wire::{FrameDecoder, Header};

/// Pieces payloads are built from, so that the fuzzer reaches past path validation quickly.
const PIECES: &[&[u8]] = &[
    b"/a", b"/a/b", b"/local/domain/1", b"/local/domain/1/x", b"rel", b"@introduceDomain",
    b"@releaseDomain", b"\0", b"T\0", b"F\0", b"b0\0", b"r1\0", b"n2\0", b"w1", b"1\0", b"0\0",
    b"value", b"/", b"tok\0", b"check\0",
];

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)] // The fuzz target is its own driver.
    let mut now = Instant::now();
    let mut quotas = Quotas::default();
    quotas.nodes_per_domain = 8;
    quotas.watches_per_domain = 4;
    quotas.transactions_per_domain = 2;
    quotas.outstanding_requests = 3;
    let mut config = Config::default();
    config.quotas = quotas;
    config.watch_event_timeout = std::time::Duration::from_millis(50);
    let mut server = Server::new(config, now);
    server.introduce_domain(now, 1);
    server.introduce_domain(now, 2);
    let mut conns = vec![
        server.connect(now, Origin::Socket),
        server.connect(now, Origin::Domain(1)),
        server.connect(now, Origin::Domain(2)),
        server.connect(now, Origin::Domain(1)),
    ];
    let mut decoders: Vec<FrameDecoder> = (0..conns.len()).map(|_| FrameDecoder::default()).collect();
    let mut rest = data;
    while let [control, kind, tx, count, tail @ ..] = rest {
        let idx = usize::from(control % 4);
        let take = usize::from(*count).min(tail.len());
        let (chunk, after) = tail.split_at(take);
        rest = after;
        let mut wire = Vec::new();
        if control & 0x80 != 0 {
            // Raw bytes: partial headers, garbage, oversize lengths.
            wire.extend_from_slice(chunk);
        } else {
            let mut payload = Vec::new();
            if control & 0x40 != 0 {
                for b in chunk {
                    payload.extend_from_slice(PIECES[usize::from(*b) % PIECES.len()]);
                }
            } else {
                payload.extend_from_slice(chunk);
            }
            let header = Header {
                msg_type: u32::from(kind % 28),
                req_id: u32::from(*count),
                tx_id: u32::from(tx % 4),
                len: payload.len() as u32,
            };
            wire.extend_from_slice(&header.to_bytes());
            wire.extend_from_slice(&payload);
        }
        match control & 0x30 {
            0x30 if idx == 3 => {
                server.disconnect(now, conns[3]);
                conns[3] = server.connect(now, Origin::Domain(1));
                decoders[3] = FrameDecoder::default();
            }
            0x20 if *kind == 0xff => {
                server.release_domain(now, 2);
            }
            0x10 if *kind == 0xfe => server.pause_output(now, conns[idx]),
            0x10 if *kind == 0xfd => server.resume_output(now, conns[idx]),
            _ => server.handle_input(now, conns[idx], &wire),
        }
        // Time passes (up to 255 ms a step); what is due is handled.
        now += std::time::Duration::from_millis(u64::from(*tx));
        if server.poll_timeout().is_some_and(|at| at <= now) {
            server.handle_timeout(now);
        }
        // Take output only some of the time, so queues and the outstanding limit fill up.
        if control & 0x08 == 0 {
            while let Some(output) = server.poll_output() {
                if let Output::Transmit { conn, bytes } = output {
                    if let Some(i) = conns.iter().position(|c| *c == conn) {
                        decoders[i].feed(&bytes);
                        while let Some(_frame) = decoders[i].next_frame().expect("server frames are valid") {}
                        assert!(decoders[i].is_at_boundary(), "transmits carry whole messages");
                    }
                }
            }
        }
        if let Err(problem) = server.check_invariants() {
            panic!("tree invariant broken: {problem}");
        }
    }
});
