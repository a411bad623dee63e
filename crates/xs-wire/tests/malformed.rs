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

#[test]
fn requests() {
    use PayloadError::*;
    assert_eq!(request(2, b"/a"), Err(MissingNul));
    assert_eq!(
        request(2, b""),
        Err(FieldCount {
            expected: 1,
            found: 0
        })
    );
    assert_eq!(
        request(2, b"/a\0/b\0"),
        Err(FieldCount {
            expected: 1,
            found: 2
        })
    );
    assert_eq!(request(2, b"/\xff\0"), Err(NotUtf8));
    assert_eq!(
        request(4, b"/a\0tok\0\x31\0"),
        Err(FieldCount {
            expected: 2,
            found: 3
        })
    );
    assert_eq!(request(7, b"X\0"), Err(BadFlag("X".into())));
    assert_eq!(request(10, b"01\0"), Err(BadNumber("01".into())));
    assert_eq!(request(10, b"-1\0"), Err(BadNumber("-1".into())));
    assert_eq!(request(11, b"/a"), Err(MissingNul));
    assert_eq!(
        request(14, b"/a\0"),
        Err(FieldCount {
            expected: 2,
            found: 1
        })
    );
    assert_eq!(
        request(14, b"/a\0q1\0"),
        Err(BadPerm {
            text: "q1".into(),
            source: PermError::BadLetter
        })
    );
    for server_only in [15, 16, 20, 23, 26, 27, 0xffff, u32::MAX] {
        assert_eq!(
            request(server_only, b"\0"),
            Err(UnsupportedType(server_only))
        );
    }
    // Payloads daemons ignore.
    assert_eq!(request(6, b""), Ok(Request::TransactionStart));
    assert_eq!(request(21, b"junk"), Ok(Request::ResetWatches));
    // A value may hold NULs and need not end with one.
    assert_eq!(
        request(11, b"/a\0b\0c"),
        Ok(Request::Write {
            path: "/a".into(),
            value: "b\0c".into()
        })
    );
}

#[test]
fn replies() {
    use PayloadError::*;
    assert_eq!(reply(11, b"OK"), Err(NotOk));
    assert_eq!(reply(11, b"ok\0"), Err(NotOk));
    assert_eq!(reply(16, b"ENOENT"), Err(MissingNul));
    assert_eq!(reply(16, b"EWHAT\0"), Err(UnknownErrorName("EWHAT".into())));
    assert_eq!(reply(16, b"EAGAIN\0"), Ok(Reply::Error(ErrorKind::Eagain)));
    assert_eq!(
        reply(15, b"/a\0"),
        Err(FieldCount {
            expected: 2,
            found: 1
        })
    );
    assert_eq!(reply(6, b"x\0"), Err(BadNumber("x".into())));
    assert_eq!(
        reply(3, b""),
        Err(FieldCount {
            expected: 1,
            found: 0
        })
    );
    assert_eq!(reply(22, b"5\0a\0\0b\0"), Err(DataAfterEnd));
    assert_eq!(reply(1, b""), Ok(Reply::Directory(vec![])));
    assert_eq!(
        reply(22, b"5\0\0"),
        Ok(Reply::DirectoryPart {
            generation: 5,
            children: vec![],
            complete: true
        })
    );
    assert_eq!(
        reply(22, b"5\0a\0b\0"),
        Ok(Reply::DirectoryPart {
            generation: 5,
            children: vec!["a".into(), "b".into()],
            complete: false
        })
    );
    assert_eq!(
        reply(2, b"raw\0value"),
        Ok(Reply::Read("raw\0value".into()))
    );
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
