//! Cancelling through the async handle, by id or by dropping a command's future, against a
//! scripted QEMU on a socket pair. The machine sees the cancel: a queued command never goes
//! out and its descriptor is closed; every command completes once.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;
use xsio_io_tokio::qmp::{self, Error, QmpHandle};
use xsio_qmp::{Command, CommandError, Config};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": []}}\r\n";

/// How long any step may take before the test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(10);

/// QEMU's end of the connection: the lines it reads, and its writing half.
struct Qemu {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Qemu {
    async fn next_line(&mut self) -> String {
        timeout(GUARD, self.lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("the driver closed the connection")
    }

    async fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }
}

/// A connection with one command at a time on the wire, so that later ones wait queued.
async fn negotiated() -> (QmpHandle, Qemu) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (reader, writer) = theirs.into_split();
    let mut qemu = Qemu {
        lines: BufReader::new(reader).lines(),
        writer,
    };
    qemu.writer.write_all(GREETING).await.unwrap();
    let config = Config {
        max_in_flight: 1,
        ..Config::default()
    };
    let connecting = tokio::spawn(qmp::with_stream(ours, config));
    assert_eq!(
        qemu.next_line().await,
        r#"{"execute":"qmp_capabilities","id":0}"#
    );
    qemu.send("{\"return\": {}, \"id\": 0}\r\n").await;
    let (handle, _events) = connecting.await.unwrap().unwrap();
    (handle, qemu)
}

/// A descriptor to hand to a command, and a probe that reads EOF once every copy of it is
/// closed.
fn probe() -> (OwnedFd, UnixStream) {
    let (probe, fd) = std::os::unix::net::UnixStream::pair().unwrap();
    probe.set_nonblocking(true).unwrap();
    (OwnedFd::from(fd), UnixStream::from_std(probe).unwrap())
}

async fn assert_closed(mut probe: UnixStream) {
    let read = timeout(GUARD, probe.read(&mut [0u8; 1])).await;
    assert_eq!(
        read.expect("closed in time").unwrap(),
        0,
        "EOF: the fd was closed"
    );
}

#[tokio::test]
async fn dropping_a_queued_commands_future_cancels_it_closes_its_fd_and_it_never_goes_out() {
    let (qmp, mut qemu) = negotiated().await;
    let first = qmp.submit(Command::new("slow")).await;
    assert_eq!(qemu.next_line().await, r#"{"execute":"slow","id":1}"#);

    // Queued behind `slow` (one command on the wire at a time); its future is dropped.
    let (fd, fd_probe) = probe();
    let queued = qmp.execute(Command::new("getfd").fd(fd));
    assert!(timeout(Duration::from_millis(50), queued).await.is_err());
    // The machine dropped the command and closed its fd, with the connection still up.
    assert_closed(fd_probe).await;

    qemu.send("{\"return\": {}, \"id\": 1}\r\n").await;
    assert_eq!(first.await.unwrap().as_str(), "{}");
    let next = tokio::spawn({
        let qmp = qmp.clone();
        async move { qmp.execute(Command::new("query-status")).await }
    });
    // `getfd` (id 2) never reached QEMU.
    assert_eq!(
        qemu.next_line().await,
        r#"{"execute":"query-status","id":3}"#
    );
    qemu.send("{\"return\": {\"running\": true}, \"id\": 3}\r\n")
        .await;
    assert_eq!(
        next.await.unwrap().unwrap().as_str(),
        r#"{"running": true}"#
    );
}

#[tokio::test]
async fn cancel_by_id_completes_a_sent_command_once_and_its_late_reply_is_ignored() {
    let (qmp, mut qemu) = negotiated().await;
    let sent = qmp.submit(Command::new("slow")).await;
    let id = sent.id();
    assert_eq!(qemu.next_line().await, r#"{"execute":"slow","id":1}"#);
    qmp.cancel(id).await;
    match timeout(GUARD, sent).await.expect("completed in time") {
        Err(Error::Command(CommandError::Cancelled)) => {}
        other => panic!("{other:?}"),
    }
    // QEMU still answers it; that reply belongs to nobody now. Cancelling again is harmless.
    qemu.send("{\"return\": {}, \"id\": 1}\r\n").await;
    qmp.cancel(id).await;

    let (fd, fd_probe) = probe();
    let queued = qmp.submit(Command::new("getfd").fd(fd)).await;
    assert_eq!(qemu.next_line().await, r#"{"execute":"getfd","id":2}"#);
    qemu.send("{\"return\": {}, \"id\": 2}\r\n").await;
    assert_eq!(
        timeout(GUARD, queued).await.unwrap().unwrap().as_str(),
        "{}"
    );
    // Sent with its command, then closed by the driver; the copy QEMU got is ours here.
    drop(qemu);
    assert_closed(fd_probe).await;
}
