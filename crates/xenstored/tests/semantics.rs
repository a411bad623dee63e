//! Node operations as Xen 4.17's C xenstored answers them.

mod common;

use common::*;

#[test]
fn write_creates_parents_and_read_returns_raw_bytes() {
    let (mut h, c) = Harness::with_dom0();
    assert_eq!(h.write(c, 0, "/a/b/c", "v\0x"), ok());
    assert_eq!(h.op(c, READ, 0, &["/a/b/c"]), Ok(b"v\0x".to_vec()));
    assert_eq!(h.read(c, 0, "/a/b"), Ok(String::new()));
    assert_eq!(h.dir(c, 0, "/"), Ok(vec!["tool".into(), "a".into()]));
    assert_eq!(h.read(c, 0, "/nope"), err("ENOENT"));
}

#[test]
fn relative_paths_live_under_the_connection_home() {
    let (mut h, c) = Harness::with_dom0();
    assert_eq!(h.write(c, 0, "xenstore-test/1", ""), ok());
    assert_eq!(
        h.dir(c, 0, "/local/domain/0"),
        Ok(vec!["xenstore-test".into()])
    );
    let g = h.domain(7);
    assert_eq!(
        h.op(g, GET_DOMAIN_PATH, 0, &["7"]),
        Ok(b"/local/domain/7\0".to_vec())
    );
    assert_eq!(h.write(c, 0, "/local/domain/7/x", "1"), ok());
    assert_eq!(h.op(c, SET_PERMS, 0, &["/local/domain/7/x", "b7"]), ok());
    assert_eq!(h.read(g, 0, "x"), Ok("1".into()));
}

#[test]
fn invalid_paths_and_arguments_are_einval() {
    let (mut h, c) = Harness::with_dom0();
    for bad in ["/a/", "/a//b", "/a b", "", "@introduceDomain"] {
        assert_eq!(h.read(c, 0, bad), err("EINVAL"), "{bad:?}");
    }
    // One-argument requests need exactly one NUL, at the end.
    assert_eq!(h.raw(c, READ, 0, b"/tool"), err("EINVAL"));
    assert_eq!(h.raw(c, READ, 0, b"/tool\0\0"), err("EINVAL"));
    assert_eq!(h.raw(c, WRITE, 0, b"/novalue"), err("EINVAL"));
    let long = format!("/{}", "x".repeat(2048));
    assert_eq!(h.write(c, 0, &long, ""), err("EINVAL"));
    assert_eq!(h.raw(c, 999, 0, b""), err("ENOSYS"));
    assert_eq!(h.raw(c, 15, 0, b""), err("ENOSYS"));
    assert_eq!(h.raw(c, 20, 0, b""), err("ENOSYS"));
}

#[test]
fn mkdir_is_a_no_op_on_existing_nodes() {
    let (mut h, c) = Harness::with_dom0();
    h.write(c, 0, "/m", "keep").unwrap();
    assert_eq!(h.op(c, MKDIR, 0, &["/m"]), ok());
    assert_eq!(h.read(c, 0, "/m"), Ok("keep".into()));
    assert_eq!(h.op(c, MKDIR, 0, &["/m/n/o"]), ok());
    assert_eq!(h.read(c, 0, "/m/n/o"), Ok(String::new()));
}

#[test]
fn rm_rules() {
    let (mut h, c) = Harness::with_dom0();
    h.write(c, 0, "/r/a/b", "1").unwrap();
    h.write(c, 0, "/r/c", "2").unwrap();
    assert_eq!(h.op(c, RM, 0, &["/r/a"]), ok());
    assert_eq!(h.dir(c, 0, "/r"), Ok(vec!["c".into()]));
    assert_eq!(h.read(c, 0, "/r/a/b"), err("ENOENT"));
    // Missing node under an existing parent: fine. Missing parent: ENOENT.
    assert_eq!(h.op(c, RM, 0, &["/r/zz"]), ok());
    assert_eq!(h.op(c, RM, 0, &["/r/zz/yy"]), err("ENOENT"));
    assert_eq!(h.op(c, RM, 0, &["/"]), err("EINVAL"));
}

#[test]
fn directory_part_pages_large_lists() {
    let (mut h, c) = Harness::with_dom0();
    let mut names = Vec::new();
    for i in 0..400 {
        let name = format!("child-with-a-long-name-{i:04}");
        h.write(c, 0, &format!("/big/{name}"), "").unwrap();
        names.push(name);
    }
    assert_eq!(h.dir(c, 0, "/big"), err("E2BIG"));
    let mut got = Vec::new();
    let mut offset = 0usize;
    let mut generation = None;
    loop {
        let reply = h
            .op(c, DIRECTORY_PART, 0, &["/big", &offset.to_string()])
            .unwrap();
        assert!(reply.len() <= 4096);
        let cut = reply.iter().position(|&b| b == 0).unwrap();
        let this_gen = String::from_utf8(reply[..cut].to_vec()).unwrap();
        assert_eq!(*generation.get_or_insert(this_gen.clone()), this_gen);
        let chunk = &reply[cut + 1..];
        if chunk == b"\0" {
            break;
        }
        let last = chunk.ends_with(b"\0\0");
        let body = if last {
            &chunk[..chunk.len() - 1]
        } else {
            chunk
        };
        offset += body.len();
        got.extend(split_nul(body));
        if last {
            break;
        }
    }
    assert_eq!(got, names);
    assert_eq!(
        h.op(c, DIRECTORY_PART, 0, &["/big", "999999"]),
        Ok(format!("{}\0\0", generation.unwrap()).into_bytes())
    );
}

#[test]
fn permissions_round_trip_and_inherit() {
    let (mut h, c) = Harness::with_dom0();
    h.write(c, 0, "/p", "").unwrap();
    assert_eq!(h.op(c, GET_PERMS, 0, &["/p"]), Ok(b"n0\0".to_vec()));
    assert_eq!(h.op(c, SET_PERMS, 0, &["/p", "r3", "w0x5"]), ok());
    assert_eq!(h.op(c, GET_PERMS, 0, &["/p"]), Ok(b"r3\0w5\0".to_vec()));
    h.write(c, 0, "/p/child", "").unwrap();
    assert_eq!(
        h.op(c, GET_PERMS, 0, &["/p/child"]),
        Ok(b"r3\0w5\0".to_vec())
    );
    assert_eq!(h.op(c, SET_PERMS, 0, &["/p", "x3"]), err("EINVAL"));
    assert_eq!(h.op(c, SET_PERMS, 0, &["/p"]), err("EINVAL"));
    assert_eq!(h.op(c, SET_PERMS, 0, &["/nope/x", "b0"]), err("ENOENT"));
    // The special names' permissions can be set but not read back (Xen 4.17: EINVAL).
    assert_eq!(h.op(c, GET_PERMS, 0, &["@releaseDomain"]), err("EINVAL"));
}

#[test]
fn domain_registry() {
    let (mut h, c) = Harness::with_dom0();
    h.answers(
        c,
        &[
            (IS_DOMAIN_INTRODUCED, &["3"], Ok(b"F\0".to_vec())),
            (INTRODUCE, &["3", "1234", "5"], ok()),
            (IS_DOMAIN_INTRODUCED, &["3"], Ok(b"T\0".to_vec())),
            (IS_DOMAIN_INTRODUCED, &["32752"], Ok(b"T\0".to_vec())),
            (RELEASE, &["3"], ok()),
            (RELEASE, &["3"], err("ENOENT")),
            (IS_DOMAIN_INTRODUCED, &["x"], err("EINVAL")),
            (SET_TARGET, &["4", "0"], err("ENOENT")),
            (0, &["check"], Ok(b"OK\0".to_vec())),
            (0, &["frobnicate"], err("EINVAL")),
        ],
    );
}

#[test]
fn state_round_trips() {
    let (mut h, c) = Harness::with_dom0();
    h.write(c, 0, "/s/b", "\u{1}bin\0ary").unwrap();
    h.write(c, 0, "/s/a", "x").unwrap();
    h.op(c, SET_PERMS, 0, &["/s/a", "r4", "b9"]).unwrap();
    let saved = h.server.save();
    let loaded =
        xsio_xenstored::Server::load(xsio_xenstored::Config::default(), h.now, &saved).unwrap();
    loaded.check_invariants().unwrap();
    assert_eq!(loaded.save(), saved);
    let mut h2 = Harness::new();
    h2.server = loaded;
    let c2 = h2.dom0();
    assert_eq!(h2.dir(c2, 0, "/s"), Ok(vec!["b".into(), "a".into()]));
    assert_eq!(h2.read(c2, 0, "/s/b"), Ok("\u{1}bin\0ary".into()));
    assert_eq!(h2.op(c2, GET_PERMS, 0, &["/s/a"]), Ok(b"r4\0b9\0".to_vec()));
    assert!(xsio_xenstored::Server::load(Default::default(), h.now, b"junk").is_err());
    let mut broken = saved.clone();
    broken.extend_from_slice(b"/orphan/x b0 \n");
    assert!(xsio_xenstored::Server::load(Default::default(), h.now, &broken).is_err());
}
