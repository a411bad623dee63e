//! Golden vectors from Xen's own clients (`testdata/xenstore/*.txt`, recorded by
//! `testdata/xenstore/record.py` from Debian xenstore-utils talking to a recording socket):
//! every frame decodes, and re-encodes to exactly the bytes libxenstore sent.

use std::collections::BTreeMap;

use bytes::Bytes;
use xsio_xs_wire::{Access, ErrorKind, FrameDecoder, Packet, Perm, Reply, Request};

struct Vector {
    client: Vec<Vec<u8>>,
    daemon: Vec<Vec<u8>>,
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn vectors() -> BTreeMap<String, Vector> {
    let dir = format!("{}/../../testdata/xenstore", env!("CARGO_MANIFEST_DIR"));
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "txt") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut vector = Vector {
            client: vec![],
            daemon: vec![],
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            match line.split_at(2) {
                ("> ", rest) => vector.client.push(hex(rest)),
                ("< ", rest) => vector.daemon.push(hex(rest)),
                _ => panic!("{}: bad line {line:?}", path.display()),
            }
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        out.insert(name, vector);
    }
    assert!(out.len() >= 15, "golden vectors missing from {dir}");
    out
}

fn decode_all<B: xsio_xs_wire::Body>(frames: &[Vec<u8>]) -> Vec<Packet<B>> {
    let stream: Vec<u8> = frames.concat();
    let mut decoder = FrameDecoder::default();
    decoder.feed(&stream);
    let mut out = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        let packet = Packet::<B>::decode(&frame).unwrap_or_else(|e| panic!("{:?}: {e}", frame));
        out.push(packet);
    }
    assert!(decoder.is_at_boundary());
    assert_eq!(out.len(), frames.len());
    out
}

#[test]
fn every_frame_re_encodes_byte_identically() {
    for (name, vector) in vectors() {
        assert_re_encodes::<Request>(&name, &vector.client);
        assert_re_encodes::<Reply>(&name, &vector.daemon);
    }
}

/// Each of `frames` decodes as a `B` that encodes to the same bytes.
fn assert_re_encodes<B: xsio_xs_wire::Body + std::fmt::Debug>(name: &str, frames: &[Vec<u8>]) {
    for (packet, bytes) in decode_all::<B>(frames).iter().zip(frames) {
        assert_eq!(
            &packet.to_bytes().unwrap()[..],
            &bytes[..],
            "{name}: {packet:?}"
        );
    }
}

#[test]
fn every_client_stream_frames_the_same_at_every_split() {
    for (name, vector) in vectors() {
        let stream = vector.client.concat();
        for at in 0..=stream.len() {
            let mut decoder = FrameDecoder::default();
            let mut frames = Vec::new();
            for part in [&stream[..at], &stream[at..]] {
                decoder.feed(part);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame.to_bytes().to_vec());
                }
            }
            assert_eq!(frames, vector.client, "{name} split at {at}");
        }
    }
}

fn requests(name: &str) -> Vec<Request> {
    let all = vectors();
    decode_all::<Request>(&all[name].client)
        .into_iter()
        .map(|p| {
            // libxenstore sends req_id 0 on every request.
            assert_eq!(p.req_id, 0, "{name}");
            p.body
        })
        .collect()
}

/// What libxenstore sends, spelled out (the bytes are also in peers.md).
#[test]
fn the_requests_mean_what_xenstore_utils_asked() {
    assert_eq!(
        requests("write-single"),
        [Request::Write {
            path: "/a".into(),
            value: Bytes::from_static(b"b")
        }]
    );
    assert_eq!(
        requests("read-single"),
        [Request::Read { path: "/a".into() }]
    );
    assert_eq!(
        requests("read-relative"),
        [Request::Read {
            path: "name".into()
        }]
    );
    assert_eq!(
        requests("write-empty-value"),
        [Request::Write {
            path: "/local/domain/1/name".into(),
            value: Bytes::new()
        }]
    );
    assert_eq!(
        requests("write-multi"),
        [
            Request::TransactionStart,
            Request::Write {
                path: "/x/y".into(),
                value: Bytes::from_static(b"1")
            },
            Request::Write {
                path: "/x/z".into(),
                value: Bytes::from_static(b"2")
            },
            Request::TransactionEnd { commit: true },
        ]
    );
    assert_eq!(
        requests("watch"),
        [Request::Watch {
            path: "/x".into(),
            token: "/x".into()
        }]
    );
    assert_eq!(
        requests("chmod")[1],
        Request::SetPerms {
            path: "/x/y".into(),
            perms: vec![Perm::new(Access::None, 0), Perm::new(Access::Read, 5)]
        }
    );
    assert_eq!(
        requests("rm"),
        [
            Request::TransactionStart,
            Request::Rm { path: "/a".into() },
            Request::TransactionEnd { commit: true },
        ]
    );
    // The ops of a transaction carry its id in the header.
    let all = vectors();
    let write_multi = decode_all::<Request>(&all["write-multi"].client);
    assert_eq!(
        write_multi.iter().map(|p| p.tx_id).collect::<Vec<_>>(),
        [0, 1, 1, 1]
    );
    let enoent = decode_all::<Reply>(&all["read-enoent"].daemon);
    assert_eq!(enoent[0].body, Reply::Error(ErrorKind::Enoent));
}

/// pyxs, the second client: it counts req_ids and puts its transaction's id in the header.
#[test]
fn pyxs_counts_req_ids_and_carries_its_transaction() {
    let all = vectors();
    let packets = decode_all::<Request>(&all["pyxs-session"].client);
    let req_ids: Vec<u32> = packets.iter().map(|p| p.req_id).collect();
    assert_eq!(req_ids, (0..11).collect::<Vec<u32>>());
    let in_tx: Vec<&Request> = packets
        .iter()
        .filter(|p| p.tx_id == 1)
        .map(|p| &p.body)
        .collect();
    assert_eq!(
        in_tx,
        [
            &Request::Write {
                path: "/x/z".into(),
                value: Bytes::from_static(b"3")
            },
            &Request::TransactionEnd { commit: true },
        ]
    );
    assert_eq!(packets[6].body, Request::GetDomainPath { domid: 3 });
    let replies = decode_all::<Reply>(&all["pyxs-session"].daemon);
    assert_eq!(
        replies[6].body,
        Reply::GetDomainPath("/local/domain/3".into())
    );
}
