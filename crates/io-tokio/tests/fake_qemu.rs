//! The async driver against a scripted peer on a socket pair, with tokio's paused clock:
//! deadlines fire through `sleep_until`, and fds arrive with their command's bytes.

use std::io::Write;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use xsio_io_tokio::qmp::{self, Error};
use xsio_qmp::{Command, CommandError, Config, typed};

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n";

/// Reads until `n` newlines arrived; returns the text.
async fn read_lines(peer: &mut UnixStream, n: usize) -> String {
    let mut text = Vec::new();
    while text.iter().filter(|&&b| b == b'\n').count() < n {
        let mut buf = [0u8; 4096];
        let got = peer.read(&mut buf).await.unwrap();
        assert!(got > 0, "driver closed early");
        text.extend_from_slice(&buf[..got]);
    }
    String::from_utf8(text).unwrap()
}

/// Reads the next command the driver sends and checks it is `expected` (its line).
async fn expect_command(peer: &mut UnixStream, expected: &str) {
    assert_eq!(read_lines(peer, 1).await, format!("{expected}\n"));
}

/// Answers command `id` with an empty return, as QEMU 7.2 writes it.
async fn return_empty(peer: &mut UnixStream, id: u64) {
    let reply = format!("{{\"return\": {{}}, \"id\": {id}}}\r\n");
    peer.write_all(reply.as_bytes()).await.unwrap();
}

async fn negotiated(config: Config) -> (qmp::QmpHandle, UnixStream) {
    let (ours, mut peer) = UnixStream::pair().unwrap();
    peer.write_all(GREETING).await.unwrap();
    let connecting = tokio::spawn(qmp::with_stream(ours, config));
    expect_command(&mut peer, r#"{"execute":"qmp_capabilities","id":0}"#).await;
    return_empty(&mut peer, 0).await;
    let (handle, _events) = connecting.await.unwrap().unwrap();
    (handle, peer)
}

#[tokio::test(start_paused = true)]
async fn a_command_without_reply_times_out_on_the_paused_clock() {
    let (qmp, mut peer) = negotiated(Config::default()).await;
    let slow = tokio::spawn({
        let qmp = qmp.clone();
        async move {
            qmp.execute(Command::new("slow").timeout(Duration::from_secs(5)))
                .await
        }
    });
    expect_command(&mut peer, r#"{"execute":"slow","id":1}"#).await;
    let start = tokio::time::Instant::now();
    match slow.await.unwrap() {
        Err(Error::Command(CommandError::Timeout)) => {}
        other => panic!("{other:?}"),
    }
    assert!(tokio::time::Instant::now() - start >= Duration::from_secs(5));
    // The connection still works: a late reply is ignored, the next command is answered.
    return_empty(&mut peer, 1).await;
    let next = tokio::spawn(async move { qmp.execute(typed::stop()).await });
    expect_command(&mut peer, r#"{"execute":"stop","id":2}"#).await;
    return_empty(&mut peer, 2).await;
    assert_eq!(next.await.unwrap().unwrap().as_str(), "{}");
}

#[tokio::test]
async fn the_fd_arrives_with_the_first_byte_of_its_command() {
    let (qmp, peer) = negotiated(Config::default()).await;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"image").unwrap();
    let fd: OwnedFd = file.into();
    let adding = tokio::spawn(async move { qmp.execute(typed::add_fd(fd, Some(3), None)).await });

    peer.readable().await.unwrap();
    let mut buf = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = peer
        .try_io(tokio::io::Interest::READABLE, || {
            recvmsg(
                &peer,
                &mut [std::io::IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)
        })
        .unwrap();
    let fds: Vec<OwnedFd> = control
        .drain()
        .flat_map(|m| match m {
            RecvAncillaryMessage::ScmRights(fds) => fds.collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(fds.len(), 1, "one fd with the command");
    assert!(got.bytes > 0);
    assert_eq!(
        &buf[..got.bytes],
        b"{\"execute\":\"add-fd\",\"arguments\":{\"fdset-id\":3},\"id\":1}\n"
    );
    let mut peer = peer;
    peer.write_all(b"{\"return\": {\"fd\": 20, \"fdset-id\": 3}, \"id\": 1}\r\n")
        .await
        .unwrap();
    let info: typed::AddFdInfo = adding.await.unwrap().unwrap().parse().unwrap();
    assert_eq!(info.fdset_id, 3);
}
