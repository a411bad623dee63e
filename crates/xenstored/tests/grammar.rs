//! The request grammar the daemon accepts: Xen's C daemon's (xs-wire's lenient decoder),
//! checked through the server with byte vectors, and the order of its checks.

mod common;

use common::*;

/// (GET_DOMAIN_PATH argument, the path the daemon answers, or its error). The accepted
/// forms are those C's `atoi` reads whole; the refused ones C reads a prefix of, or nothing.
const DOMID_VECTORS: &[(&str, Result<&str, &str>)] = &[
    ("7", Ok("/local/domain/7")),
    ("+7", Ok("/local/domain/7")),
    ("007", Ok("/local/domain/7")),
    ("010", Ok("/local/domain/10")),
    (" 7", Ok("/local/domain/7")),
    ("\t+12", Ok("/local/domain/12")),
    ("-1", Ok("/local/domain/4294967295")),
    ("4294967295", Ok("/local/domain/4294967295")),
    ("4294967296", Err("EINVAL")),
    ("abc", Err("EINVAL")),
    ("", Err("EINVAL")),
    ("7abc", Err("EINVAL")),
    ("7 ", Err("EINVAL")),
    ("0x10", Err("EINVAL")),
    ("+", Err("EINVAL")),
];

#[test]
fn domids_follow_the_c_daemon_where_it_reads_the_whole_field() {
    let (mut h, c) = Harness::with_dom0();
    for (arg, expected) in DOMID_VECTORS {
        let reply = h.op(c, GET_DOMAIN_PATH, 0, &[arg]);
        let expected = expected
            .map(|path| format!("{path}\0").into_bytes())
            .map_err(str::to_owned);
        assert_eq!(reply, expected, "GET_DOMAIN_PATH {arg:?}");
    }
}

#[test]
fn every_domid_field_uses_the_same_grammar() {
    let (mut h, c) = Harness::with_dom0();
    h.answers(
        c,
        &[
            (INTRODUCE, &["+007", "0012", " 5"], ok()),
            (IS_DOMAIN_INTRODUCED, &["7"], Ok(b"T\0".to_vec())),
            (IS_DOMAIN_INTRODUCED, &[" +7"], Ok(b"T\0".to_vec())),
            (IS_DOMAIN_INTRODUCED, &["7x"], err("EINVAL")),
            (RESUME, &["007"], ok()),
            (SET_TARGET, &["+7", "00"], ok()),
            (RELEASE, &["7 "], err("EINVAL")),
            (RELEASE, &["07"], ok()),
            (IS_DOMAIN_INTRODUCED, &["7"], Ok(b"F\0".to_vec())),
        ],
    );
    // DIRECTORY_PART's offset is a C decimal too.
    h.write(c, 0, "/d/a", "").unwrap();
    assert_eq!(
        h.op(c, DIRECTORY_PART, 0, &["/d", "+0"]),
        h.op(c, DIRECTORY_PART, 0, &["/d", "0"])
    );
    assert_eq!(h.op(c, DIRECTORY_PART, 0, &["/d", "0x0"]), err("EINVAL"));
}

#[test]
fn introduce_and_set_target_ignore_extra_arguments_as_c_does() {
    let (mut h, c) = Harness::with_dom0();
    h.answers(
        c,
        &[
            // xend sent the domain's path as a fourth argument.
            (INTRODUCE, &["3", "1234", "5", "/local/domain/3"], ok()),
            (INTRODUCE, &["4", "1234"], err("EINVAL")),
            (INTRODUCE, &["4", "1234", "5"], ok()),
            (SET_TARGET, &["3", "4", "junk"], ok()),
            (SET_TARGET, &["3"], err("EINVAL")),
            // Other types take exactly their arguments.
            (GET_DOMAIN_PATH, &["3", "4"], err("EINVAL")),
            (WATCH, &["/w", "t", "0"], err("EINVAL")),
        ],
    );
}

#[test]
fn permission_domids_follow_strtol_base_zero() {
    let (mut h, c) = Harness::with_dom0();
    h.write(c, 0, "/p", "").unwrap();
    for (given, stored) in [
        (&["b0", "r0x10", "w010"][..], &b"b0\0r16\0w8\0"[..]),
        (&["n5", "r-1"], b"n5\0r4294967295\0"),
        (&["n 5", "r+7"], b"n5\0r7\0"),
    ] {
        let mut args = vec!["/p"];
        args.extend_from_slice(given);
        assert_eq!(h.op(c, SET_PERMS, 0, &args), ok(), "{given:?}");
        assert_eq!(h.op(c, GET_PERMS, 0, &["/p"]), Ok(stored.to_vec()));
    }
    for bad in ["r08", "r0x", "r5 ", "r", "x1", "r4294967296"] {
        assert_eq!(h.op(c, SET_PERMS, 0, &["/p", bad]), err("EINVAL"), "{bad}");
    }
}

#[test]
fn checks_come_in_the_c_daemons_order() {
    let (mut h, c) = Harness::with_dom0();
    let g = h.domain(3);
    // Privilege before arguments: a guest's malformed INTRODUCE is EACCES.
    assert_eq!(h.raw(g, INTRODUCE, 0, b"junk"), err("EACCES"));
    // The transaction of a node request before its arguments.
    assert_eq!(h.raw(c, READ, 9, b"no-nul"), err("ENOENT"));
    assert_eq!(h.raw(c, READ, 0, b"no-nul"), err("EINVAL"));
    // Unknown types and types a client may not send, whatever the payload.
    assert_eq!(h.raw(c, 26, 0, b"\xff"), err("ENOSYS"));
    assert_eq!(h.raw(c, 16, 0, b"EINVAL\0"), err("ENOSYS"));
    // A reply that cannot fit one message is E2BIG.
    for i in 0..300 {
        h.write(c, 0, &format!("/big/a-long-child-name-{i:04}"), "")
            .unwrap();
    }
    assert_eq!(h.dir(c, 0, "/big"), err("E2BIG"));
}

#[test]
fn typed_requests_take_the_same_path_as_bytes() {
    use xsio_xs_wire::{FrameDecoder, Packet, Reply, Request};
    let mut h = Harness::new();
    let g = h.domain(3);
    let introduce = Request::Introduce {
        domid: 9,
        gfn: 0,
        evtchn: 1,
    };
    h.server
        .handle_request(h.now, g, Packet::new(5, 0, introduce));
    let mut decoder = FrameDecoder::default();
    while let Some(out) = h.server.poll_output() {
        if let xsio_xenstored::Output::Transmit { bytes, .. } = out {
            decoder.feed(&bytes);
        }
    }
    let frame = decoder.next_frame().unwrap().unwrap();
    let reply = Packet::<Reply>::decode(&frame).unwrap();
    assert_eq!(
        reply,
        Packet::new(5, 0, Reply::Error(xsio_xenstored::ErrorKind::Eacces))
    );
    assert_eq!(h.server.poll_timeout(), None, "no deadline without events");
}
