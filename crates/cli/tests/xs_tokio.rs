//! End to end: the async xenstore client of `xsio-io-tokio` against our daemon
//! (`xsio xenstored`), over its socket and over the device transport (the same wire read
//! and written as a file, as `/dev/xen/xenbus` is).

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::Daemon;
use xsio_io_tokio::xenstore::{self, ClientError, Config, Error, Transport, WatchItem, XsHandle};
use xsio_xs_wire::{Access, ErrorKind, Perm};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(d: &Daemon) -> XsHandle {
    xenstore::connect(&d.socket, Config::default())
        .await
        .unwrap()
}

/// The same calls on a handle, whatever its transport.
async fn basics(xs: &XsHandle, base: &str) {
    xs.write(&format!("{base}/name"), "guest").await.unwrap();
    assert_eq!(
        &xs.read(&format!("{base}/name")).await.unwrap()[..],
        b"guest"
    );
    xs.set(&format!("{base}/count"), &41u32).await.unwrap();
    assert_eq!(xs.get::<u32>(&format!("{base}/count")).await.unwrap(), 41);
    assert!(matches!(
        xs.get::<bool>(&format!("{base}/name")).await,
        Err(Error::Value(_))
    ));
    let missing = xs.read(&format!("{base}/nope")).await.unwrap_err();
    assert_eq!(missing.xs_kind(), Some(ErrorKind::Enoent));
    assert!(!xs.exists(&format!("{base}/nope")).await.unwrap());
    assert_eq!(
        xs.directory(base).await.unwrap(),
        ["name".to_owned(), "count".to_owned()]
    );
    let perms = [Perm::new(Access::None, 0), Perm::new(Access::Read, 3)];
    xs.set_perms(&format!("{base}/name"), &perms).await.unwrap();
    assert_eq!(xs.get_perms(&format!("{base}/name")).await.unwrap(), perms);
    assert_eq!(xs.get_domain_path(3).await.unwrap(), "/local/domain/3");
    xs.rm_tree(base).await.unwrap();
    xs.rm_tree(base).await.unwrap();
    assert!(!xs.exists(base).await.unwrap());
}

#[test]
fn reads_and_writes_over_the_socket_and_the_device_transport() {
    let d = Daemon::start(&[], &[]);
    runtime().block_on(async {
        let socket = connect(&d).await;
        basics(&socket, "/sock").await;
        // The device transport: `read`/`write` on the descriptor, as on /dev/xen/xenbus.
        let fd = OwnedFd::from(UnixStream::connect(&d.socket).unwrap());
        let device = xenstore::from_fd(fd, Transport::Device, Config::default()).unwrap();
        basics(&device, "/dev").await;
        // Many calls at once from many tasks, pipelined on one connection.
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let xs = device.clone();
            tasks.push(tokio::spawn(async move {
                xs.set(&format!("/many/{i}"), &i).await.unwrap();
                xs.get::<u32>(&format!("/many/{i}")).await.unwrap()
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), i as u32);
        }
    });
}

#[test]
fn transactions_are_retried_on_a_real_conflict_then_give_up_with_a_typed_error() {
    let d = Daemon::start(&[], &[]);
    runtime().block_on(async {
        let xs = connect(&d).await;
        let other = connect(&d).await;
        xs.set("/c", &1u32).await.unwrap();
        // The first run reads /c, then someone else writes it: the daemon refuses the
        // commit with EAGAIN and the body runs again, on what is there now.
        let runs = Arc::new(AtomicU32::new(0));
        let value = xs
            .transaction(|tx| {
                let (runs, other) = (runs.clone(), other.clone());
                async move {
                    let n: u32 = tx.get("/c").await?;
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        other.set("/c", &10u32).await?;
                    }
                    tx.set("/c", &(n + 1)).await?;
                    Ok(n + 1)
                }
            })
            .await
            .unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "one conflict, then a commit"
        );
        assert_eq!(value, 11);
        assert_eq!(xs.get::<u32>("/c").await.unwrap(), 11);

        // Conflicting every time: after `transact_attempts` runs, a typed error, and none
        // of the runs' writes is there.
        let mut config = Config::default();
        config.transact_attempts = 3;
        let limited = xenstore::connect(&d.socket, config).await.unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let err = limited
            .transaction(|tx| {
                let (runs, other) = (runs.clone(), other.clone());
                async move {
                    let n: u32 = tx.get("/c").await?;
                    let run = runs.fetch_add(1, Ordering::SeqCst);
                    other.set("/c", &(100 + run)).await?;
                    tx.set("/d", &n).await
                }
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Op(ClientError::Conflict { attempts: 3 })),
            "{err}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(!xs.exists("/d").await.unwrap());

        // A body's own error aborts the transaction: its write is not there.
        let err = xs
            .transaction(|tx| async move {
                tx.write("/aborted", "x").await?;
                tx.read("/missing").await.map(drop)
            })
            .await
            .unwrap_err();
        assert_eq!(err.xs_kind(), Some(ErrorKind::Enoent));
        assert!(!xs.exists("/aborted").await.unwrap());
    });
}

#[test]
fn watch_streams_deliver_every_event_in_order_until_unwatched() {
    let d = Daemon::start(&[], &[]);
    runtime().block_on(async {
        let xs = connect(&d).await;
        let mut watch = xs.watch("/w", "w").await.unwrap();
        let path = |item: Option<WatchItem>| match item {
            Some(WatchItem::Event(event)) => event.path,
            other => panic!("not an event: {other:?}"),
        };
        assert_eq!(path(watch.next().await), "/w", "the initial event");
        for child in ["a", "b", "c"] {
            xs.write(&format!("/w/{child}"), "1").await.unwrap();
        }
        for child in ["a", "b", "c"] {
            assert_eq!(path(watch.next().await), format!("/w/{child}"));
        }
        watch.unwatch().await.unwrap();
        // The token is free again, and the new watch sees only what happens from now on.
        let mut again = xs.watch("/w", "w").await.unwrap();
        assert_eq!(path(again.next().await), "/w");
        xs.write("/w/d", "1").await.unwrap();
        assert_eq!(path(again.next().await), "/w/d");

        // The connection's end ends the stream, after what was queued.
        xs.write("/w/e", "1").await.unwrap();
        xs.close().await;
        assert_eq!(path(again.next().await), "/w/e");
        assert_eq!(again.next().await, None);
        let err = xs.read("/w").await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Op(ClientError::NotConnected | ClientError::ConnectionLost)
            ),
            "{err}"
        );
    });
}

/// A watch whose consumer does not read while its subtree changes 500 times: meanwhile
/// another task's reads on the same connection all complete; then the consumer finds an
/// explicit overflow standing for exactly the events that are not queued any more, and
/// another watch on the same connection lost nothing.
#[test]
fn a_stalled_watch_overflows_explicitly_and_never_delays_replies() {
    const WRITES: u32 = 500;
    const BOUND: usize = 16;
    let d = Daemon::start(&[], &[]);
    runtime().block_on(async {
        let mut config = Config::default();
        config.max_queued_events = BOUND;
        let xs = xenstore::connect(&d.socket, config).await.unwrap();
        let writer = connect(&d).await;
        xs.write("/other", "o").await.unwrap();
        let mut stalled = xs.watch("/flood", "flood").await.unwrap();
        let mut quiet = xs.watch("/quiet", "quiet").await.unwrap();

        let flood = tokio::spawn(async move {
            for i in 0..WRITES {
                writer.write(&format!("/flood/{i}"), "x").await.unwrap();
                if i % 100 == 0 {
                    writer.write("/quiet/tick", i.to_string()).await.unwrap();
                }
            }
        });
        let reader = xs.clone();
        let reads = tokio::spawn(async move {
            let mut done = 0u32;
            for _ in 0..WRITES {
                assert_eq!(&reader.read("/other").await.unwrap()[..], b"o");
                done += 1;
            }
            done
        });
        // Every read completed, while the stalled consumer has taken nothing.
        assert_eq!(reads.await.unwrap(), WRITES);
        flood.await.unwrap();
        // A reply on this connection comes after every event queued for it before.
        assert_eq!(&xs.read("/other").await.unwrap()[..], b"o");

        let WatchItem::Overflow(overflow) = stalled.next().await.unwrap() else {
            panic!("the stalled watch starts with its overflow marker")
        };
        assert_eq!(
            (overflow.path.as_str(), overflow.token.as_str()),
            ("/flood", "flood")
        );
        let mut rest = Vec::new();
        xs.close().await;
        while let Some(item) = stalled.next().await {
            match item {
                WatchItem::Event(event) => rest.push(event.path),
                other => panic!("a second marker: {other:?}"),
            }
        }
        assert!(rest.len() <= BOUND);
        // Nothing vanished unsaid: the initial event and one per write, each either
        // counted by the marker or still queued, and the queued ones are the newest.
        assert_eq!(overflow.lost + rest.len() as u64, 1 + u64::from(WRITES));
        let newest: Vec<String> = (WRITES - rest.len() as u32..WRITES)
            .map(|i| format!("/flood/{i}"))
            .collect();
        assert_eq!(rest, newest);

        let mut ticks = Vec::new();
        while let Some(item) = quiet.next().await {
            match item {
                WatchItem::Event(event) => ticks.push(event.path),
                other => panic!("the quiet watch overflowed: {other:?}"),
            }
        }
        let mut expected = vec!["/quiet".to_owned()];
        expected.extend((0..WRITES).step_by(100).map(|_| "/quiet/tick".to_owned()));
        assert_eq!(ticks, expected);
    });
}

#[test]
fn a_missing_daemon_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = runtime()
        .block_on(xenstore::connect(
            dir.path().join("none"),
            Config::default(),
        ))
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
}
