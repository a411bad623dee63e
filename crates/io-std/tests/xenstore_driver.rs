//! The blocking xenstore client against a scripted daemon on a real Unix socket.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use xsio_io_std::now;
use xsio_io_std::xenstore::{XsConn, XsError};
use xsio_xs_client::{Config, Error, TxOp, WatchItem};
use xsio_xs_wire::{ErrorKind, FrameDecoder, Packet, Reply, Request};

type Script =
    Box<dyn FnMut(&Packet<Request>, &mut BTreeMap<String, Bytes>) -> Vec<Packet<Reply>> + Send>;

/// A daemon on a temporary socket that answers each request with `script` and records
/// what it received. It serves one connection; dropping the client ends it.
struct Fake {
    _dir: tempfile::TempDir,
    path: PathBuf,
    seen: Arc<Mutex<Vec<Packet<Request>>>>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(mut script: Script) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut tree = BTreeMap::new();
            let mut decoder = FrameDecoder::default();
            let mut buf = [0u8; 4096];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                decoder.feed(&buf[..n]);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    let request = Packet::<Request>::decode(&frame).unwrap();
                    log.lock().unwrap().push(request.clone());
                    for reply in script(&request, &mut tree) {
                        if stream.write_all(&reply.to_bytes().unwrap()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Fake {
            _dir: dir,
            path,
            seen,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.body.clone())
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A plausible daemon: a flat map of values, transactions that conflict `conflicts` times.
fn store(mut conflicts: u32) -> Script {
    Box::new(move |req, tree| {
        let body = match &req.body {
            Request::Read { path } => tree
                .get(path)
                .cloned()
                .map_or(Reply::Error(ErrorKind::Enoent), Reply::Read),
            Request::Write { path, value } => {
                tree.insert(path.clone(), value.clone());
                Reply::Write
            }
            Request::Directory { path } => Reply::Directory(
                tree.keys()
                    .filter_map(|k| k.strip_prefix(&format!("{path}/")))
                    .map(str::to_owned)
                    .collect(),
            ),
            Request::TransactionStart => Reply::TransactionStart(1),
            Request::TransactionEnd { commit: true } if conflicts > 0 => {
                conflicts -= 1;
                Reply::Error(ErrorKind::Eagain)
            }
            Request::TransactionEnd { .. } => Reply::TransactionEnd,
            Request::Watch { path, token } => {
                return vec![
                    req.reply(Reply::Watch),
                    Packet::new(
                        0,
                        0,
                        Reply::WatchEvent {
                            path: path.clone(),
                            token: token.clone(),
                        },
                    ),
                    Packet::new(
                        0,
                        0,
                        Reply::WatchEvent {
                            path: format!("{path}/child"),
                            token: token.clone(),
                        },
                    ),
                ];
            }
            Request::GetDomainPath { domid } => {
                Reply::GetDomainPath(format!("/local/domain/{domid}"))
            }
            _ => Reply::Error(ErrorKind::Enosys),
        };
        vec![req.reply(body)]
    })
}

#[test]
fn reads_writes_and_typed_values() {
    let fake = Fake::start(store(0));
    let mut xs = XsConn::connect(&fake.path).unwrap();
    xs.write("/vm/name", "guest").unwrap();
    assert_eq!(&xs.read("/vm/name").unwrap()[..], b"guest");
    xs.set("/vm/count", &41u32).unwrap();
    assert_eq!(xs.get::<u32>("/vm/count").unwrap(), 41);
    assert!(matches!(xs.get::<bool>("/vm/name"), Err(XsError::Value(_))));
    let err = xs.read("/nope").unwrap_err();
    assert_eq!(err.xs_kind(), Some(ErrorKind::Enoent));
    assert!(!xs.exists("/nope").unwrap());
    assert!(xs.exists("/vm/name").unwrap());
    assert_eq!(xs.get_domain_path(3).unwrap(), "/local/domain/3");
    drop(xs);
    assert_eq!(
        fake.requests()[0],
        Request::Write {
            path: "/vm/name".into(),
            value: "guest".into()
        }
    );
}

#[test]
fn transactions_retry_on_conflict() {
    let fake = Fake::start(store(2));
    let mut xs = XsConn::connect(&fake.path).unwrap();
    xs.write("/c", "1").unwrap();
    let mut runs = 0;
    let value = xs
        .transaction(|tx| {
            runs += 1;
            let n: u32 = tx.get("/c")?;
            tx.set("/c", &(n + 1))?;
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!(runs, 3, "two conflicts, then a commit");
    // This fake has no isolation (writes apply at once), so the runs read 1, 2, then 3.
    assert_eq!(value, 4);
    drop(xs);
    let starts = fake
        .requests()
        .iter()
        .filter(|r| **r == Request::TransactionStart)
        .count();
    assert_eq!(starts, 3);
}

#[test]
fn transaction_gives_up_with_a_typed_error() {
    let fake = Fake::start(store(u32::MAX));
    let mut config = Config::default();
    config.transact_attempts = 4;
    let mut xs = XsConn::connect_with(&fake.path, config).unwrap();
    let err = xs.transaction(|tx| tx.write("/x", "1")).unwrap_err();
    assert!(
        matches!(err, XsError::Op(Error::Conflict { attempts: 4 })),
        "{err}"
    );
    let err = xs
        .transact(vec![TxOp::Write("/y".into(), "1".into())])
        .unwrap_err();
    assert!(
        matches!(err, XsError::Op(Error::Conflict { attempts: 4 })),
        "{err}"
    );
}

#[test]
fn watch_events_arrive_in_order() {
    let fake = Fake::start(store(0));
    let mut xs = XsConn::connect(&fake.path).unwrap();
    let w = xs.watch("/be", "tok").unwrap();
    let deadline = Some(now() + Duration::from_secs(10));
    let event = |item: Option<WatchItem>| match item {
        Some(WatchItem::Event(event)) => event,
        other => panic!("not an event: {other:?}"),
    };
    let first = event(xs.next_event(deadline).unwrap());
    let second = event(xs.next_event(deadline).unwrap());
    assert_eq!(
        (first.watch, first.path.as_str(), first.token.as_str()),
        (w, "/be", "tok")
    );
    assert_eq!(second.path, "/be/child");
    let none = xs
        .next_event(Some(now() + Duration::from_millis(50)))
        .unwrap();
    assert_eq!(none, None);
}

/// A daemon whose writes fire an event on each watch above them, `flood` events for a
/// write under `/busy` (a busy subtree), and which answers everything else as [`store`]
/// does.
fn flooding(flood: u32) -> Script {
    let mut inner = store(0);
    let mut watches: Vec<(String, String)> = Vec::new();
    Box::new(move |req, tree| {
        let mut replies = inner(req, tree);
        match &req.body {
            Request::Watch { path, token } => watches.push((path.clone(), token.clone())),
            Request::Write { path, .. } => {
                for (watched, token) in &watches {
                    if path.starts_with(watched.as_str()) {
                        let count = if path.starts_with("/busy/") { flood } else { 1 };
                        for n in 0..count {
                            let body = Reply::WatchEvent {
                                path: format!("{path}/{n}"),
                                token: token.clone(),
                            };
                            // Before the write's own reply, as a busy daemon interleaves them.
                            replies.insert(0, Packet::new(0, 0, body));
                        }
                    }
                }
            }
            _ => {}
        }
        replies
    })
}

#[test]
fn a_watch_nobody_reads_overflows_explicitly_and_replies_keep_flowing() {
    let fake = Fake::start(flooding(50));
    let mut config = Config::default();
    config.max_queued_events = 8;
    let mut xs = XsConn::connect_with(&fake.path, config).unwrap();
    let busy = xs.watch("/busy", "busy").unwrap();
    let quiet = xs.watch("/quiet", "quiet").unwrap();
    // Nobody takes events while 3 x 50 of them arrive: every reply still comes.
    for round in 0..3 {
        xs.write("/busy/x", round.to_string()).unwrap();
        assert_eq!(xs.read("/busy/x").unwrap(), round.to_string());
    }
    xs.write("/quiet/y", "1").unwrap();
    let mut items = Vec::new();
    while let Some(item) = xs
        .next_event(Some(now() + Duration::from_millis(100)))
        .unwrap()
    {
        items.push(item);
    }
    // The busy watch: its two first events and 150 more were too many for 8 slots. One
    // marker stands for all but the last few, which follow it; nothing vanished unsaid.
    let busy_items: Vec<&WatchItem> = items.iter().filter(|i| i.watch() == busy).collect();
    let WatchItem::Overflow(overflow) = busy_items[0] else {
        panic!("the busy watch starts with its overflow marker: {busy_items:?}")
    };
    assert_eq!(
        (overflow.path.as_str(), overflow.token.as_str()),
        ("/busy", "busy")
    );
    let after = busy_items.len() as u64 - 1;
    assert!(after <= 8);
    assert_eq!(
        overflow.lost + after,
        2 + 150,
        "every event is delivered or counted"
    );
    assert_eq!(xs.lost_events(), overflow.lost);
    // The quiet watch lost nothing: its initial event and its one change, in order.
    let quiet_paths: Vec<&str> = items
        .iter()
        .filter(|i| i.watch() == quiet)
        .map(|i| match i {
            WatchItem::Event(e) => e.path.as_str(),
            other => panic!("quiet watch overflowed: {other:?}"),
        })
        .collect();
    assert_eq!(quiet_paths, ["/quiet", "/quiet/child", "/quiet/y/0"]);
}

#[test]
fn a_silent_daemon_times_out_and_a_closing_one_fails_the_op() {
    let fake = Fake::start(Box::new(|_, _| vec![]));
    let mut config = Config::default();
    config.request_timeout = Some(Duration::from_millis(200));
    let mut xs = XsConn::connect_with(&fake.path, config).unwrap();
    let started = now();
    let err = xs.read("/a").unwrap_err();
    assert!(matches!(err, XsError::Op(Error::Timeout)), "{err}");
    assert!(now() >= started + Duration::from_millis(200));
    drop(xs);
    drop(fake);

    // A daemon that hangs up on the first request.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socket");
    let listener = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 64];
        let _ = s.read(&mut b);
    });
    let mut xs = XsConn::connect(&path).unwrap();
    let err = xs.read("/a").unwrap_err();
    assert!(matches!(err, XsError::Op(Error::ConnectionLost)), "{err}");
    t.join().unwrap();
    let err = xs.read("/a").unwrap_err();
    assert!(matches!(err, XsError::Op(Error::NotConnected)), "{err}");
}

#[test]
fn no_daemon_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = XsConn::connect(dir.path().join("none")).unwrap_err();
    assert!(matches!(err, XsError::Connect { .. }));
}

#[test]
fn a_daemon_that_stops_reading_cannot_hold_an_op_past_its_deadline() {
    let (ours, daemon) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut config = Config::default();
    config.request_timeout = Some(Duration::from_millis(300));
    let mut xs = XsConn::from_conn(xsio_io_std::UnixConn::from_stream(ours), config);
    // Requests pipelined on the machine: about 1.2 MB, far more than the socket buffer.
    let value = Bytes::from(vec![b'v'; 3000]);
    // The deadlines count from the submissions, so the wait is measured from there too.
    let started = now();
    let ops: Vec<_> = (0..400)
        .map(|i| {
            xs.client_mut()
                .write(now(), None, &format!("/big/{i}"), value.clone())
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiting = std::thread::spawn(move || {
        let last = xs.wait(*ops.last().unwrap());
        let first = xs.wait(ops[0]);
        tx.send((last, first, now() - started)).unwrap();
    });
    let (last, first, waited) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a write to a daemon that does not read must not block past the deadline");
    assert!(matches!(last, Err(XsError::Op(Error::Timeout))), "{last:?}");
    assert!(
        matches!(first, Err(XsError::Op(Error::Timeout))),
        "{first:?}"
    );
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    waiting.join().unwrap();
    drop(daemon);
}
