//! Socket ownership: owner-only sockets whatever the umask, and a live socket is never
//! taken over by a second daemon.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;

use xsio_xs_wire::Reply;

use crate::support::{Client, Launch, Xenstored, spawn, wait_exit};

#[test]
fn sockets_are_owner_only_under_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    let d = Xenstored::start(dir.path(), Launch::new().shell("umask 000").domain(3));
    for socket in [d.socket.clone(), d.domain_socket(3)] {
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", socket.display());
    }
}

#[test]
fn a_second_daemon_refuses_a_live_socket() {
    let dir = tempfile::tempdir().unwrap();
    let first = Xenstored::start(dir.path(), Launch::new());
    let mut client = Client::connect(&first.socket);
    client.write("/mine", "first");
    let (mut second, stderr) = spawn(dir.path(), &Launch::new(), "second.stderr");
    let status = wait_exit(&mut second);
    let log = std::fs::read_to_string(stderr).unwrap();
    assert!(!status.success(), "the second daemon ran: {log}");
    assert!(
        log.contains(&first.socket.display().to_string()),
        "the error names the socket: {log}"
    );
    // The first daemon still owns its socket: a new client reaches it.
    let mut again = Client::connect(&first.socket);
    assert_eq!(again.read("/mine"), Reply::Read("first".into()));
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    drop(UnixListener::bind(dir.path().join("socket")).unwrap());
    let d = Xenstored::start(dir.path(), Launch::new());
    let mut client = Client::connect(&d.socket);
    client.write("/ok", "1");
}

#[test]
fn a_socket_another_kind_of_daemon_listens_on_is_not_taken() {
    // A live listener without our lock file, as Xen's own xenstored would hold it.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("socket");
    let foreign = UnixListener::bind(&socket).unwrap();
    let (mut child, stderr) = spawn(dir.path(), &Launch::new(), "stderr");
    let status = wait_exit(&mut child);
    let log = std::fs::read_to_string(stderr).unwrap();
    assert!(!status.success(), "the daemon took a live socket: {log}");
    assert!(log.contains("in use"), "{log}");
    // The foreign daemon still gets its clients.
    let _client = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    assert!(foreign.accept().is_ok());
}

#[test]
fn a_flag_opens_domain_sockets_wider_and_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::new()
        .shell("umask 000")
        .domain(3)
        .arg("--domain-socket-mode")
        .arg("660");
    let d = Xenstored::start(dir.path(), launch);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket), 0o600);
    assert_eq!(mode(&d.domain_socket(3)), 0o660);
}
