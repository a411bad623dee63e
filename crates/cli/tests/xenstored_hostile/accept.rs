//! Accept under fd exhaustion: the daemon backs off quietly and serves again once a
//! connection closes.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use xsio_xs_wire::Reply;

use crate::support::{Client, Launch, Xenstored};

#[test]
fn fd_exhaustion_backs_off_quietly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = Xenstored::start(dir.path(), Launch::new().shell("ulimit -n 24"));
    // More clients than the daemon has descriptors for; the kernel queues the rest.
    let clients: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let log_before = d.log().len();
    let cpu_before = d.cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = d.cpu_ticks() - cpu_before;
    let logged = d.log().len() - log_before;
    // Clock ticks are 1/100 s: 2 s of spinning would be about 200.
    assert!(cpu < 40, "the daemon spun: {cpu} ticks of CPU in 2 s");
    assert!(logged < 4096, "the daemon logged {logged} bytes in 2 s");
    let log = d.log();
    let episodes = log.lines().filter(|l| l.contains("accept failed")).count();
    assert_eq!(episodes, 1, "one line per episode: {log}");
    // Freeing descriptors lets the queued clients in, and a new one is served.
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fresh = Client::connect(&d.socket);
    fresh
        .stream
        .set_read_timeout(Some(deadline - Instant::now()))
        .unwrap();
    assert_eq!(fresh.read("/tool"), Reply::Read("".into()));
}
