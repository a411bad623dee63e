//! Peer test: Xen's own xenstore-utils (and pyxs), replayed against the golden transcripts, still send
//! exactly the recorded bytes, so the vectors in `testdata/xenstore/` (and the byte-identity
//! tests of `xsio xs` built on them) speak for the installed libxenstore.

mod golden;

use golden::{Replay, run, transcript};
use xsio_testkit::peer::{Peer, Tests};
use xsio_testkit::xenstored::xenstore_utils;

// The test, against xenstore-utils and pyxs.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![xenstore_utils_send_the_recorded_bytes];

const TRANSCRIPTS: &[&str] = &[
    "write-single",
    "write-multi",
    "write-empty-value",
    "read-single",
    "read-multi",
    "read-enoent",
    "read-relative",
    "exists",
    "rm",
    "list",
    "ls",
    "ls-perms",
    "chmod",
    "watch",
    "pyxs-session",
];

fn xenstore_utils_send_the_recorded_bytes() {
    for name in TRANSCRIPTS {
        let t = transcript(name);
        let replay = Replay::start(&t);
        let out = run(&t.argv[0], &t.argv[1..], &replay.socket);
        let sent = replay.received();
        assert_eq!(sent, t.client_frames(), "{name}: {}", out.stderr);
        let expected_status = if *name == "read-enoent" { 1 } else { 0 };
        assert_eq!(out.status, expected_status, "{name}: {}", out.stderr);
    }
}

fn main() -> std::process::ExitCode {
    let utils = xenstore_utils();
    let pyxs = Peer::runs("python3-pyxs", "/usr/bin/python3", &["-c", "import pyxs"]);
    Tests::new().each(&[&utils, &pyxs], TESTS).run()
}
