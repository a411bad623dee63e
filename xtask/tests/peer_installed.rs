//! The real peers that `cargo xtask test` installs are present and are the versions the
//! design notes were verified against (shared/design/peers.md). Under CI a missing peer
//! fails here, loudly, before any protocol test could be mistaken for a skip.

use std::process::Command;

use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::{qemu, xenstored};

const TEST_XENSTORE: &str = "/usr/lib/xen-4.17/bin/test-xenstore";

/// stdout and stderr of `program args`, which must run.
fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn qemu_7_2_is_installed() {
    let v = output(qemu::QEMU, &["--version"]);
    assert!(v.contains("version 7.2"), "unexpected QEMU: {v}");
}

fn xen_test_xenstore_lists_its_twelve_tests() {
    let list = output(TEST_XENSTORE, &["-l"]);
    assert_eq!(
        list.lines().filter(|l| l.contains(": ")).count(),
        12,
        "{list}"
    );
    assert!(
        list.contains("ta err    : Transaction with conflict"),
        "{list}"
    );
}

fn xenstore_utils_4_17_are_installed() {
    // The declared peer found every tool on PATH; they are Debian's, of Xen 4.17.
    let version = output("dpkg-query", &["-W", "-f", "${Version}", "xenstore-utils"]);
    assert!(
        version.starts_with("4.17"),
        "unexpected xenstore-utils: {version}"
    );
}

fn pyxs_imports_under_debian_python() {
    let out = output("/usr/bin/python3", &["-c", "import pyxs; print('pyxs-ok')"]);
    assert!(out.contains("pyxs-ok"), "{out}");
}

fn main() -> std::process::ExitCode {
    let qemu = qemu::peer();
    let suite = Peer::file(TEST_XENSTORE);
    let utils = xenstored::xenstore_utils();
    let python = Peer::file("/usr/bin/python3");
    Tests::new()
        .test("qemu_7_2_is_installed", &[&qemu], qemu_7_2_is_installed)
        .test(
            "xen_test_xenstore_lists_its_twelve_tests",
            &[&suite],
            xen_test_xenstore_lists_its_twelve_tests,
        )
        .test(
            "xenstore_utils_4_17_are_installed",
            &[&utils],
            xenstore_utils_4_17_are_installed,
        )
        .test(
            "pyxs_imports_under_debian_python",
            &[&python],
            pyxs_imports_under_debian_python,
        )
        .run()
}
