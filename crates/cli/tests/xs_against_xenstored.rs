//! End to end: our client (`xsio xs` and the blocking `XsConn`) against our daemon
//! (`xsio xenstored`), over real sockets.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::Daemon;
use xsio_io_std::xenstore::XsConn;
use xsio_xs_client::DeviceArea;
use xsio_xs_wire::{Access, ErrorKind, Perm};

fn xs(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xsio"))
        .arg("xs")
        .args(args)
        .env("XENSTORED_PATH", &d.socket)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_commands() {
    let d = Daemon::start(&[], &[]);
    assert_eq!(
        xs(
            &d,
            &["write", "/vm/1/name", "guest1", "/vm/1/memory", "1024"]
        )
        .0,
        0
    );
    assert_eq!(
        xs(&d, &["read", "/vm/1/name"]),
        (0, "guest1\n".into(), String::new())
    );
    assert_eq!(
        xs(&d, &["read", "/vm/1/name", "/vm/1/memory"]).1,
        "guest1\n1024\n"
    );
    assert_eq!(
        xs(&d, &["ls", "-p", "/vm"]).1,
        "1 = \"\"  (n0)\n name = \"guest1\"  (n0)\n memory = \"1024\"  (n0)\n"
    );
    assert_eq!(xs(&d, &["exists", "/vm/1"]).0, 0);
    assert_eq!(xs(&d, &["exists", "/vm/2"]).0, 1);
    let (code, out, err) = xs(&d, &["read", "/vm/2/name"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err.trim(), "xsio xs: ENOENT");
    assert_eq!(xs(&d, &["rm", "/vm"]).0, 0);
    assert_eq!(xs(&d, &["exists", "/vm"]).0, 1);
    // Relative paths resolve under /local/domain/0, as for Xen's tools.
    assert_eq!(xs(&d, &["write", "name", "Domain-0"]).0, 0);
    assert_eq!(xs(&d, &["read", "/local/domain/0/name"]).1, "Domain-0\n");
}

#[test]
fn cli_watch_prints_the_initial_fire_and_changes() {
    let d = Daemon::start(&[], &[]);
    let watcher = Command::new(env!("CARGO_BIN_EXE_xsio"))
        .args(["xs", "watch", "/w", "-n", "2"])
        .env("XENSTORED_PATH", &d.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The watch is registered once its initial event is out; give it a moment, then
    // write until the watcher has seen a change (the write may race its registration).
    let mut writer = XsConn::connect(&d.socket).unwrap();
    let output = {
        let mut child = watcher;
        for i in 0..200 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            writer.write("/w/a", i.to_string()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["/w\t/w", "/w/a\t/w"]);
}

#[test]
fn transactions_conflict_and_are_retried() {
    let d = Daemon::start(&[], &[]);
    let mut a = XsConn::connect(&d.socket).unwrap();
    let mut b = XsConn::connect(&d.socket).unwrap();
    a.set("/counter", &0u32).unwrap();
    let mut runs = 0;
    let result = a.transaction(|tx| {
        runs += 1;
        let n: u32 = tx.get("/counter")?;
        if runs == 1 {
            // Another client changes what this transaction read: its commit must fail.
            b.set("/counter", &100u32)?;
        }
        tx.set("/counter", &(n + 1))?;
        Ok(n + 1)
    });
    assert_eq!(result.unwrap(), 101);
    assert_eq!(runs, 2);
    assert_eq!(a.get::<u32>("/counter").unwrap(), 101);
}

#[test]
fn concurrent_increments_lose_nothing() {
    let d = Daemon::start(&[], &[]);
    XsConn::connect(&d.socket)
        .unwrap()
        .set("/n", &0u32)
        .unwrap();
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let socket = d.socket.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut config = xsio_xs_client::Config::default();
                config.transact_attempts = 1000;
                let mut xs = XsConn::connect_with(&socket, config).unwrap();
                barrier.wait();
                for _ in 0..30 {
                    xs.transaction(|tx| {
                        let n: u32 = tx.get("/n")?;
                        tx.set("/n", &(n + 1))
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut xs = XsConn::connect(&d.socket).unwrap();
    assert_eq!(xs.get::<u32>("/n").unwrap(), 90);
}

#[test]
fn large_directories_come_in_chunks() {
    let d = Daemon::start(&[], &[]);
    let mut xs = XsConn::connect(&d.socket).unwrap();
    // 300 names of 24 bytes: over 7 KiB, more than one reply can carry.
    let names: Vec<String> = (0..300)
        .map(|i| format!("child-with-a-long-name{i:03}"))
        .collect();
    for chunk in names.chunks(50) {
        let kvs: Vec<(&str, bytes::Bytes)> = chunk
            .iter()
            .map(|n| (n.as_str(), bytes::Bytes::from_static(b"x")))
            .collect();
        xs.write_all("/big", &kvs).unwrap();
    }
    assert_eq!(xs.directory("/big").unwrap(), names);
}

#[test]
fn device_area_permissions_and_helpers() {
    let d = Daemon::start(&[], &[]);
    let mut xs = XsConn::connect(&d.socket).unwrap();
    let area = DeviceArea {
        frontend_path: "/local/domain/5/device/vbd/51712".into(),
        frontend_domid: 5,
        backend_path: "/local/domain/0/backend/vbd/5/51712".into(),
        backend_domid: 0,
        frontend_keys: vec![
            ("backend-id".into(), "0".into()),
            ("state".into(), "1".into()),
        ],
        backend_keys: vec![
            ("frontend-id".into(), "5".into()),
            ("state".into(), "1".into()),
        ],
    };
    xs.create_device_area(&area).unwrap();
    assert_eq!(
        xs.get_perms(&area.frontend_path).unwrap(),
        [Perm::new(Access::None, 5), Perm::new(Access::Read, 0)]
    );
    assert_eq!(
        xs.get_perms(&area.backend_path).unwrap(),
        [Perm::new(Access::None, 0), Perm::new(Access::Read, 5)]
    );
    assert_eq!(
        xs.get::<u32>(&format!("{}/state", area.backend_path))
            .unwrap(),
        1
    );
    assert_eq!(xs.get_domain_path(5).unwrap(), "/local/domain/5");
    xs.rm_tree("/local/domain/5/device").unwrap();
    xs.rm_tree("/local/domain/5/device").unwrap(); // already gone: fine
    let err = xs.read(&area.frontend_path).unwrap_err();
    assert_eq!(err.xs_kind(), Some(ErrorKind::Enoent));
}
