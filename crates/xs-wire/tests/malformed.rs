//! Frames that are well framed but not valid messages give the named error, never a panic.

use xsio_xs_wire::{ErrorKind, Frame, Header, Packet, PayloadError, PermError, Reply, Request};

fn frame(msg_type: u32, payload: &[u8]) -> Frame {
    Frame {
        header: Header {
            msg_type,
            req_id: 3,
            tx_id: 0,
            len: payload.len() as u32,
        },
        payload: bytes::Bytes::copy_from_slice(payload),
    }
}

fn request(msg_type: u32, payload: &[u8]) -> Result<Request, PayloadError> {
    Packet::<Request>::decode(&frame(msg_type, payload)).map(|p| p.body)
}

fn reply(msg_type: u32, payload: &[u8]) -> Result<Reply, PayloadError> {
    Packet::<Reply>::decode(&frame(msg_type, payload)).map(|p| p.body)
}

/// `FieldCount`: the fields a type needs (a minimum for list types), and what was there.
fn fields(expected: usize, found: usize) -> PayloadError {
    PayloadError::FieldCount { expected, found }
}

#[test]
fn requests() {
    use PayloadError::*;
    let cases: &[(u32, &[u8], Result<Request, PayloadError>)] = &[
        (2, b"/a", Err(MissingNul)),
        (2, b"", Err(fields(1, 0))),
        (2, b"/a\0/b\0", Err(fields(1, 2))),
        (2, b"/\xff\0", Err(NotUtf8)),
        (4, b"/a\0tok\0\x31\0", Err(fields(2, 3))),
        (7, b"X\0", Err(BadFlag("X".into()))),
        (10, b"01\0", Err(BadNumber("01".into()))),
        (10, b"-1\0", Err(BadNumber("-1".into()))),
        (11, b"/a", Err(MissingNul)),
        (14, b"/a\0", Err(fields(2, 1))),
        (
            14,
            b"/a\0q1\0",
            Err(BadPerm {
                text: "q1".into(),
                source: PermError::BadLetter,
            }),
        ),
        // Payloads daemons ignore.
        (6, b"", Ok(Request::TransactionStart)),
        (21, b"junk", Ok(Request::ResetWatches)),
        // A value may hold NULs and need not end with one.
        (
            11,
            b"/a\0b\0c",
            Ok(Request::Write {
                path: "/a".into(),
                value: "b\0c".into(),
            }),
        ),
    ];
    for (msg_type, payload, expected) in cases {
        assert_eq!(
            &request(*msg_type, payload),
            expected,
            "type {msg_type} {payload:?}"
        );
    }
    for server_only in [15, 16, 20, 23, 26, 27, 0xffff, u32::MAX] {
        assert_eq!(
            request(server_only, b"\0"),
            Err(UnsupportedType(server_only))
        );
    }
}

#[test]
fn replies() {
    use PayloadError::*;
    let directory_part = |children: &[&str], complete| {
        Ok(Reply::DirectoryPart {
            generation: 5,
            children: children.iter().map(|c| c.to_string()).collect(),
            complete,
        })
    };
    let cases: &[(u32, &[u8], Result<Reply, PayloadError>)] = &[
        (11, b"OK", Err(NotOk)),
        (11, b"ok\0", Err(NotOk)),
        (16, b"ENOENT", Err(MissingNul)),
        (16, b"EWHAT\0", Err(UnknownErrorName("EWHAT".into()))),
        (16, b"EAGAIN\0", Ok(Reply::Error(ErrorKind::Eagain))),
        (15, b"/a\0", Err(fields(2, 1))),
        (6, b"x\0", Err(BadNumber("x".into()))),
        (3, b"", Err(fields(1, 0))),
        (22, b"5\0a\0\0b\0", Err(DataAfterEnd)),
        (1, b"", Ok(Reply::Directory(vec![]))),
        (22, b"5\0\0", directory_part(&[], true)),
        (22, b"5\0a\0b\0", directory_part(&["a", "b"], false)),
        (2, b"raw\0value", Ok(Reply::Read("raw\0value".into()))),
    ];
    for (msg_type, payload, expected) in cases {
        assert_eq!(
            &reply(*msg_type, payload),
            expected,
            "type {msg_type} {payload:?}"
        );
    }
    for client_only in [20, 23, 0xffff, 1000] {
        assert_eq!(
            reply(client_only, b"OK\0"),
            Err(UnsupportedType(client_only))
        );
    }
}

#[test]
fn encode_refuses_what_cannot_be_framed() {
    use xsio_xs_wire::EncodeError;
    let nul_path = Packet::new(
        0,
        0,
        Request::Read {
            path: "/a\0b".into(),
        },
    );
    assert_eq!(nul_path.to_bytes(), Err(EncodeError::NulInField));
    let big = Packet::new(
        0,
        0,
        Request::Write {
            path: "/a".into(),
            value: vec![b'x'; 4094].into(),
        },
    );
    assert_eq!(
        big.to_bytes(),
        Err(EncodeError::TooLarge {
            len: 4097,
            max: 4096
        })
    );
    let fits = Packet::new(
        0,
        0,
        Request::Write {
            path: "/a".into(),
            value: vec![b'x'; 4093].into(),
        },
    );
    assert_eq!(fits.to_bytes().unwrap().len(), 16 + 4096);
    let no_perms = Packet::new(
        0,
        0,
        Request::SetPerms {
            path: "/a".into(),
            perms: vec![],
        },
    );
    assert_eq!(no_perms.to_bytes(), Err(EncodeError::EmptyList));
    let empty_child = Packet::new(
        0,
        0,
        Reply::DirectoryPart {
            generation: 1,
            children: vec![String::new()],
            complete: false,
        },
    );
    assert_eq!(empty_child.to_bytes(), Err(EncodeError::EmptyName));
}
