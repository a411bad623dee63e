//! Xen's command-line clients (xenstore-utils 4.17) scripted against `xsio xenstored`.

mod common;

use common::Daemon;
use xsio_testkit::peer::Tests;
use xsio_testkit::xenstored::xenstore_utils;

// The tests `main` runs, each through xenstore-utils.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    write_read_list_exists_rm,
    chmod_sets_permissions_that_ls_shows,
    a_watch_sees_another_clients_write,
    the_tree_survives_a_clean_restart,
    large_directories_list_through_directory_part
];

fn write_read_list_exists_rm() {
    let d = Daemon::start(&[], &[]);
    d.ok("xenstore-write", &["/vm/name", "demo", "/vm/uuid", "1234"]);
    assert_eq!(d.ok("xenstore-read", &["/vm/name"]), "demo\n");
    assert_eq!(
        d.ok("xenstore-read", &["/vm/name", "/vm/uuid"]),
        "demo\n1234\n"
    );
    assert_eq!(d.ok("xenstore-list", &["/vm"]), "name\nuuid\n");
    assert_eq!(
        d.ok("xenstore-ls", &["/vm"]),
        "name = \"demo\"\nuuid = \"1234\"\n"
    );
    assert!(d.run("xenstore-exists", &["/vm/name"]).status.success());
    assert!(!d.run("xenstore-exists", &["/vm/nope"]).status.success());
    let missing = d.run("xenstore-read", &["/vm/nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("couldn't read path /vm/nope"));
    d.ok("xenstore-rm", &["/vm/name"]);
    assert_eq!(d.ok("xenstore-list", &["/vm"]), "uuid\n");
    // Relative paths land under dom0's home.
    d.ok("xenstore-write", &["rel/key", "v"]);
    assert_eq!(d.ok("xenstore-read", &["/local/domain/0/rel/key"]), "v\n");
    // rm -t removes emptied parents too.
    d.ok("xenstore-write", &["/tidy/a/b", "x"]);
    d.ok("xenstore-rm", &["-t", "/tidy/a/b"]);
    assert!(!d.run("xenstore-exists", &["/tidy"]).status.success());
}

fn chmod_sets_permissions_that_ls_shows() {
    let d = Daemon::start(&[], &[]);
    d.ok("xenstore-write", &["/p/q", "v"]);
    d.ok("xenstore-chmod", &["/p", "r3", "b5"]);
    let listing = d.ok("xenstore-ls", &["-p", "/"]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("p = ") && l.ends_with("(r3,b5)")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(" q = ") && l.ends_with("(n0)")),
        "{listing}"
    );
    d.ok("xenstore-chmod", &["-r", "/p", "w7"]);
    let listing = d.ok("xenstore-ls", &["-p", "/p"]);
    assert!(listing.trim_end().ends_with("(w7)"), "{listing}");
}

fn a_watch_sees_another_clients_write() {
    let d = Daemon::start(&[], &[]);
    d.ok("xenstore-write", &["/w", ""]);
    let watcher = Daemon::watch_on(&d.socket, "/w", 3);
    assert_eq!(watcher.first, "/w", "the initial event");
    d.ok("xenstore-write", &["/w/x", "1"]);
    d.ok("xenstore-rm", &["/w/x"]);
    assert_eq!(watcher.finish(), ["/w/x", "/w/x"]);
}

fn the_tree_survives_a_clean_restart() {
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("state").display().to_string();
    let d = Daemon::start(&[], &["--state", &state]);
    d.ok("xenstore-write", &["/keep/me", "binary\tvalue"]);
    d.ok("xenstore-chmod", &["/keep", "r2"]);
    let (status, _dir) = d.stop();
    assert!(
        status.success(),
        "SIGTERM ends the daemon cleanly: {status}"
    );
    let d = Daemon::start(&[], &["--state", &state]);
    // xenstore-read prints a tab escaped.
    assert_eq!(d.ok("xenstore-read", &["/keep/me"]), "binary\\tvalue\n");
    assert!(d.ok("xenstore-ls", &["-p", "/"]).contains("(r2)"));
}

fn large_directories_list_through_directory_part() {
    let d = Daemon::start(&[], &[]);
    // 400 names of about 28 bytes: the listing is over 11 KB, so DIRECTORY answers E2BIG and
    // libxenstore falls back to DIRECTORY_PART chunks. One transaction writes them all.
    let names: Vec<String> = (0..400)
        .map(|i| format!("child-with-a-long-name-{i:04}"))
        .collect();
    let mut args = Vec::new();
    for name in &names {
        args.push(format!("/big/{name}"));
        args.push("x".to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    d.ok("xenstore-write", &args);
    let listed = d.ok("xenstore-list", &["/big"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), names);
}

fn main() -> std::process::ExitCode {
    let utils = xenstore_utils();
    Tests::new().each(&[&utils], TESTS).run()
}
