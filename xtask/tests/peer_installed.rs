//! The real peers that `cargo xtask test` installs are present and are the versions the
//! design notes were verified against (shared/design/peers.md). Under CI a missing peer
//! fails here, loudly, before any protocol test could be mistaken for a skip.

use xsio_testkit::peer;

#[test]
fn qemu_7_2_is_installed() {
    let qemu = "qemu-system-x86_64";
    if let Some(v) = peer::output(qemu, qemu, &["--version"], |_| true) {
        assert!(v.contains("version 7.2"), "unexpected QEMU: {v}");
    }
}

#[test]
fn xen_test_xenstore_lists_its_twelve_tests() {
    let bin = "/usr/lib/xen-4.17/bin/test-xenstore";
    if let Some(list) = peer::output(bin, bin, &["-l"], |_| true) {
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
}

#[test]
fn xenstore_utils_are_installed() {
    for tool in [
        "xenstore-read",
        "xenstore-write",
        "xenstore-ls",
        "xenstore-watch",
    ] {
        peer::path(&format!("/usr/bin/{tool}"));
    }
}

#[test]
fn pyxs_imports_under_debian_python() {
    peer::output(
        "python3-pyxs",
        "/usr/bin/python3",
        &["-c", "import pyxs; print('pyxs-ok')"],
        |o| o.contains("pyxs-ok"),
    );
}
