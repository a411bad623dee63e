//! pyxs (python3-pyxs), an independent client implementation, against `xsio xenstored`:
//! reads, writes, permissions, transactions (commit, abort, conflict) and watches.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, stdout_within};
use xsio_testkit::peer::{Peer, Tests};

// The tests `main` runs, each through pyxs.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    reads_writes_and_permissions,
    transactions_commit_abort_and_conflict,
    watches_fire_for_other_clients_writes
];

const PYXS: &str = "/usr/lib/python3/dist-packages/pyxs/__init__.py";

/// Runs `script` with `/usr/bin/python3`; `sys.argv[1]` is dom0's socket, `sys.argv[2]` the
/// socket of guest 3. Returns stdout; fails on a non-zero exit.
fn python(daemon: &Daemon, script: &str) -> String {
    stdout_within(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(&daemon.socket)
            .arg(daemon.domain_socket(3)),
        Duration::from_secs(30),
        "python3",
    )
}

const BASICS: &str = r#"
import sys, pyxs
with pyxs.Client(unix_socket_path=sys.argv[1]) as c:
    c.write(b"/py/a", b"1")
    c.mkdir(b"/py/d")
    print(c.read(b"/py/a"), sorted(c.list(b"/py")), c.exists(b"/py/a"), c.exists(b"/py/zz"))
    c.set_perms(b"/py/d", [b"b0", b"r3"])
    print(c.get_perms(b"/py/d"))
    print(c.get_domain_path(7))
    c.delete(b"/py/d")
    print(c.list(b"/py"))
    try:
        c.read(b"/py/zz")
    except pyxs.PyXSError as e:
        print("error", e.args[0])
"#;

fn reads_writes_and_permissions() {
    let d = Daemon::start(&[3], &[]);
    assert_eq!(
        python(&d, BASICS),
        "b'1' [b'a', b'd'] True False\n[b'b0', b'r3']\nb'/local/domain/7'\n[b'a']\nerror 2\n"
    );
}

const TRANSACTIONS: &str = r#"
import sys, pyxs
sock = sys.argv[1]
with pyxs.Client(unix_socket_path=sock) as c, pyxs.Client(unix_socket_path=sock) as other:
    c.write(b"/tx/v", b"a")
    c.transaction()
    c.write(b"/tx/v", b"b")
    print("inside", c.read(b"/tx/v"), "outside", other.read(b"/tx/v"))
    print("commit", c.commit(), other.read(b"/tx/v"))
    c.transaction()
    c.write(b"/tx/v", b"dropped")
    c.rollback()
    print("after rollback", other.read(b"/tx/v"))
    c.transaction()
    c.read(b"/tx/v")
    other.write(b"/tx/v", b"outside")
    c.write(b"/tx/v", b"mine")
    print("conflict commit", c.commit(), other.read(b"/tx/v"))
"#;

fn transactions_commit_abort_and_conflict() {
    let d = Daemon::start(&[3], &[]);
    assert_eq!(
        python(&d, TRANSACTIONS),
        "inside b'b' outside b'a'\ncommit True b'b'\nafter rollback b'b'\n\
         conflict commit False b'outside'\n"
    );
}

const WATCHES: &str = r#"
import sys, pyxs
sock = sys.argv[1]
with pyxs.Client(unix_socket_path=sock) as c:
    m = c.monitor()
    m.watch(b"/wp", b"tok")
    events = m.wait()
    print(next(events))
    with pyxs.Client(unix_socket_path=sock) as other:
        other.write(b"/wp/child", b"x")
        other.write(b"/elsewhere", b"x")
        other.write(b"/wp", b"y")
    print(next(events))
    print(next(events))
    m.unwatch(b"/wp", b"tok")
"#;

fn watches_fire_for_other_clients_writes() {
    let d = Daemon::start(&[3], &[]);
    assert_eq!(
        python(&d, WATCHES),
        "Event(path=b'/wp', token=b'tok')\nEvent(path=b'/wp/child', token=b'tok')\n\
         Event(path=b'/wp', token=b'tok')\n"
    );
}

fn main() -> std::process::ExitCode {
    let pyxs = Peer::file(PYXS);
    Tests::new().each(&[&pyxs], TESTS).run()
}
