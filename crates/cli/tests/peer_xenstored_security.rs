//! A hostile guest: Xen's clients on a domain socket play domain 3 against `xsio xenstored`.
//! It may not read, list, write, remove, chmod or watch-leak what it has no permission for,
//! and quotas stop its floods with xenstored's errors while other domains carry on.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, stdout_within};
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xenstored::xenstore_utils;

// The tests through xenstore-utils.
const WITH_UTILS: &[(&str, fn())] = xsio_testkit::tests![
    a_guest_cannot_touch_what_it_may_not,
    a_guest_watch_does_not_leak_unreadable_nodes
];

// The quota test, which floods through pyxs.
const WITH_PYXS: &[(&str, fn())] = xsio_testkit::tests![quotas_stop_a_flooding_guest_only];

const PYXS: &str = "/usr/lib/python3/dist-packages/pyxs/__init__.py";

/// dom0 prepares a secret, a node guest 3 may read, and the guest's home.
fn prepared(extra: &[&str]) -> Daemon {
    let d = Daemon::start(&[3, 4], extra);
    d.ok("xenstore-write", &["/vm/secret", "key", "/public/key", "v"]);
    d.ok("xenstore-chmod", &["/public/key", "n0", "r3"]);
    for domid in ["3", "4"] {
        let home = format!("/local/domain/{domid}");
        d.ok("xenstore-write", &[&home, ""]);
        d.ok("xenstore-chmod", &[&home, &format!("n{domid}")]);
    }
    d
}

fn a_guest_cannot_touch_what_it_may_not() {
    let d = prepared(&[]);
    let guest = d.domain_socket(3);
    let as_guest = |tool: &str, args: &[&str]| Daemon::run_on(&guest, tool, args);
    for (tool, args) in [
        ("xenstore-read", vec!["/vm/secret"]),
        ("xenstore-read", vec!["/vm/nothing"]),
        ("xenstore-ls", vec!["/vm"]),
        ("xenstore-list", vec!["/vm"]),
        ("xenstore-write", vec!["/vm/secret", "mine"]),
        ("xenstore-write", vec!["/vm/planted", "mine"]),
        ("xenstore-rm", vec!["/vm/secret"]),
        ("xenstore-chmod", vec!["/vm/secret", "b3"]),
        ("xenstore-write", vec!["/local/domain/4/x", "mine"]),
        ("xenstore-control", vec!["check"]),
    ] {
        let out = as_guest(tool, &args);
        assert!(!out.status.success(), "guest {tool} {args:?} succeeded");
    }
    let denied = as_guest("xenstore-ls", &["/vm"]);
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    // Nothing changed.
    assert_eq!(d.ok("xenstore-read", &["/vm/secret"]), "key\n");
    assert_eq!(d.ok("xenstore-list", &["/vm"]), "secret\n");
    // What it may do, it can.
    let read = as_guest("xenstore-read", &["/public/key"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout), "v\n");
    let write = as_guest("xenstore-write", &["data/x", "1"]);
    assert!(write.status.success());
    assert_eq!(d.ok("xenstore-read", &["/local/domain/3/data/x"]), "1\n");
}

fn a_guest_watch_does_not_leak_unreadable_nodes() {
    let d = prepared(&[]);
    let watcher = Daemon::watch_on(&d.domain_socket(3), "/", 2);
    assert_eq!(watcher.first, "/");
    d.ok("xenstore-write", &["/vm/secret", "changed"]);
    d.ok("xenstore-write", &["/vm/another-secret", "new"]);
    d.ok("xenstore-write", &["/public/key", "changed"]);
    assert_eq!(watcher.finish(), ["/public/key"]);
}

const FLOOD: &str = r#"
import sys, pyxs
dom0, guest, other = sys.argv[1], sys.argv[2], sys.argv[3]
def flood(step):
    n = 0
    while True:
        try:
            step(n)
        except pyxs.PyXSError as e:
            return n, e.args[0]
        n += 1
        if n > 10000:
            return n, None
with pyxs.Client(unix_socket_path=guest) as g:
    print("nodes", *flood(lambda i: g.write(b"/local/domain/3/n%d" % i, b"x")))
    print("size", *flood(lambda i: g.write(b"/local/domain/3/n0", b"x" * (1000 * (i + 1)))))
    m = g.monitor()
    print("watches", *flood(lambda i: m.watch(b"/local/domain/3/n%d" % i, b"t")))
with pyxs.Client(unix_socket_path=other) as o:
    o.write(b"/local/domain/4/fine", b"1")
    print("other domain", o.read(b"/local/domain/4/fine"))
with pyxs.Client(unix_socket_path=dom0) as c:
    for i in range(100):
        c.write(b"/dom0/n%d" % i, b"x")
    print("dom0", len(c.list(b"/dom0")), len(c.list(b"/local/domain/3")))
"#;

fn quotas_stop_a_flooding_guest_only() {
    let d = prepared(&["--quota-nodes", "20", "--quota-watches", "8"]);
    let out = stdout_within(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(FLOOD)
            .arg(&d.socket)
            .arg(d.domain_socket(3))
            .arg(d.domain_socket(4)),
        Duration::from_secs(30),
        "python3",
    );
    // The home node is the guest's own: 19 more fit in a quota of 20. ENOSPC is 28, E2BIG 7.
    // Values of 1000 and 2000 bytes fit the 2048-byte node quota, 3000 does not.
    assert_eq!(
        out,
        "nodes 19 28\nsize 2 28\nwatches 8 7\nother domain b'1'\ndom0 100 19\n"
    );
}

fn main() -> std::process::ExitCode {
    let utils = xenstore_utils();
    let pyxs = Peer::file(PYXS);
    Tests::new()
        .each(&[&utils], WITH_UTILS)
        .each(&[&utils, &pyxs], WITH_PYXS)
        .run()
}
