//! `xenstore::connect` on a path that is not a socket opens it as the xenbus device and
//! speaks the same wire with `read`/`write`. There is no `/dev/xen/xenbus` without a
//! hypervisor, so a FIFO stands in for it: what the client writes comes back to it, so a
//! `READ` request returns as the reply to itself, with its own payload as the value.

use rustix::fs::{CWD, Mode, mkfifoat};
use xsio_io_tokio::xenstore::{self, ClientError, Config, Error};

#[tokio::test]
async fn a_path_that_is_not_a_socket_is_opened_as_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("xenbus");
    mkfifoat(CWD, &fifo, Mode::RUSR | Mode::WUSR).unwrap();
    let xs = xenstore::connect(&fifo, Config::default()).await.unwrap();
    // The request's frame, read back: type READ, the same req_id, payload "/vm/name\0".
    assert_eq!(&xs.read("/vm/name").await.unwrap()[..], b"/vm/name\0");
    // Pipelined from many tasks: each reply (its own request) finds its caller.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let xs = xs.clone();
        tasks.push(tokio::spawn(async move {
            xs.read(&format!("/vm/{i}")).await.unwrap()
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), format!("/vm/{i}\0"));
    }
    xs.close().await;
    let err = xs.read("/vm/name").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Op(ClientError::NotConnected | ClientError::ConnectionLost)
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"").unwrap();
    // A regular file cannot be waited on (epoll refuses it): a connect error, not a hang.
    let err = xenstore::connect(&file, Config::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
}
