//! Decode and encode throughput for a realistic toolstack mix (device setup traffic: writes
//! of backend keys, reads, directory listings, a transaction, watch events, an error).
//! Run with `cargo bench -p xsio-xs-wire`; divan prints messages/s and MB/s.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use divan::counter::{BytesCount, ItemsCount};
use xsio_xs_wire::{Access, ErrorKind, FrameDecoder, Packet, Perm, Reply, Request, decode_frame};

fn main() {
    divan::main();
}

fn requests() -> Vec<Packet<Request>> {
    let be = "/local/domain/0/backend/vbd/5/51712";
    let mut out = vec![
        Packet::new(1, 0, Request::TransactionStart),
        Packet::new(
            2,
            3,
            Request::Mkdir {
                path: be.to_owned(),
            },
        ),
        Packet::new(
            3,
            3,
            Request::SetPerms {
                path: be.to_owned(),
                perms: vec![Perm::new(Access::None, 0), Perm::new(Access::Read, 5)],
            },
        ),
    ];
    for (key, value) in [
        ("frontend", "/local/domain/5/device/vbd/51712"),
        ("params", "/var/lib/xen/images/disk.img"),
        ("state", "1"),
        ("online", "1"),
        ("removable", "0"),
        ("mode", "w"),
        ("type", "phy"),
    ] {
        out.push(Packet::new(
            4,
            3,
            Request::Write {
                path: format!("{be}/{key}"),
                value: Bytes::from(value.to_owned()),
            },
        ));
    }
    out.push(Packet::new(5, 3, Request::TransactionEnd { commit: true }));
    out.push(Packet::new(
        6,
        0,
        Request::Read {
            path: format!("{be}/state"),
        },
    ));
    out.push(Packet::new(
        7,
        0,
        Request::Directory {
            path: "/local/domain/0/backend/vbd/5".to_owned(),
        },
    ));
    out.push(Packet::new(
        8,
        0,
        Request::Watch {
            path: format!("{be}/state"),
            token: "be-state".to_owned(),
        },
    ));
    out
}

fn replies() -> Vec<Packet<Reply>> {
    let mut out = vec![Packet::new(1, 0, Reply::TransactionStart(3))];
    out.extend((2..12).map(|id| Packet::new(id, 3, Reply::Write)));
    out.push(Packet::new(12, 0, Reply::Read(Bytes::from_static(b"4"))));
    out.push(Packet::new(
        13,
        0,
        Reply::Directory(vec!["51712".to_owned(), "51728".to_owned()]),
    ));
    out.push(Packet::new(
        0,
        0,
        Reply::WatchEvent {
            path: "/local/domain/0/backend/vbd/5/51712/state".to_owned(),
            token: "be-state".to_owned(),
        },
    ));
    out.push(Packet::new(14, 0, Reply::Error(ErrorKind::Enoent)));
    out
}

fn wire<B: xsio_xs_wire::Body>(packets: &[Packet<B>]) -> Bytes {
    let mut out = BytesMut::new();
    for p in packets {
        p.encode(&mut out).unwrap();
    }
    out.freeze()
}

/// Encodes every packet of `packets` into one reused buffer per iteration.
fn encode_all<B: xsio_xs_wire::Body>(bencher: divan::Bencher<'_, '_>, packets: &[Packet<B>]) {
    let len = wire(packets).len();
    let mut out = BytesMut::with_capacity(len);
    bencher
        .counter(ItemsCount::new(packets.len()))
        .counter(BytesCount::new(len))
        .bench_local(|| {
            out.clear();
            for p in black_box(packets) {
                p.encode(&mut out).unwrap();
            }
            out.len()
        });
}

#[divan::bench(name = "encode requests (mix)")]
fn encode_requests(bencher: divan::Bencher<'_, '_>) {
    encode_all(bencher, &requests());
}

/// Decodes the wire bytes of `packets` with `decode_all` (which returns something that
/// depends on every message) per iteration, counted in messages and bytes.
fn decode_each<B: xsio_xs_wire::Body>(
    bencher: divan::Bencher<'_, '_>,
    packets: &[Packet<B>],
    decode_all: impl Fn(&[u8]) -> usize,
) {
    let bytes = wire(packets);
    bencher
        .counter(ItemsCount::new(packets.len()))
        .counter(BytesCount::new(bytes.len()))
        .bench_local(|| decode_all(black_box(&bytes)));
}

#[divan::bench(name = "decode requests (mix)")]
fn decode_requests(bencher: divan::Bencher<'_, '_>) {
    decode_each(bencher, &requests(), |bytes| {
        let mut buf = BytesMut::from(bytes);
        let mut n = 0;
        while let Some(frame) = decode_frame(&mut buf, 4096).unwrap() {
            let packet = Packet::<Request>::decode(&frame).unwrap();
            n += packet.req_id as usize;
        }
        n
    });
}

#[divan::bench(name = "decode replies (mix, 64-byte reads)")]
fn decode_replies(bencher: divan::Bencher<'_, '_>) {
    decode_each(bencher, &replies(), |bytes| {
        let mut decoder = FrameDecoder::default();
        let mut n = 0;
        for chunk in bytes.chunks(64) {
            decoder.feed(chunk);
            while let Some(frame) = decoder.next_frame().unwrap() {
                let packet = Packet::<Reply>::decode(&frame).unwrap();
                n += packet.req_id as usize;
            }
        }
        n
    });
}

#[divan::bench(name = "encode replies (mix)")]
fn encode_replies(bencher: divan::Bencher<'_, '_>) {
    encode_all(bencher, &replies());
}
