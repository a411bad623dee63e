//! The async QMP driver against a real QEMU (Debian's qemu-system-x86_64).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::process::Signal;
use tokio::net::UnixStream;
use tokio::time::timeout;
use xsio_io_tokio::qmp::{self, Error, QmpHandle};
use xsio_qmp::typed;
use xsio_qmp::{Command, CommandError, Config, ErrorClass};
use xsio_testkit::peer::Tests;
use xsio_testkit::qemu::{self, Qemu};
use xsio_testkit::qmp_peer::{self, open_fds};

// The tests `main` runs, each against QEMU on its own runtime.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![block_on =>
    many_tasks_pipeline_commands_on_one_connection,
    events_and_a_cdrom_change_through_a_passed_fd,
    qemu_killed_with_commands_in_flight_fails_each_once_and_closes_every_fd,
];

/// Connects (retrying while QEMU starts) and negotiates (30 s at most).
async fn connect(qemu: &Qemu) -> (QmpHandle, tokio::sync::mpsc::Receiver<xsio_qmp::Event>) {
    let stream = qmp_peer::connect(qemu.socket());
    stream.set_nonblocking(true).unwrap();
    let stream = UnixStream::from_std(stream).unwrap();
    timeout(
        Duration::from_secs(30),
        qmp::with_stream(stream, Config::default()),
    )
    .await
    .expect("negotiated in time")
    .unwrap()
}

const LONG: Duration = Duration::from_secs(30);

async fn many_tasks_pipeline_commands_on_one_connection() {
    let Some(qemu) = Qemu::start(&["-machine", "none"]) else {
        return;
    };
    let (qmp, _events) = connect(&qemu).await;
    assert!(qmp.session().greeting.offers("oob"));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let qmp = qmp.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let status: typed::StatusInfo = qmp
                    .execute(typed::query_status())
                    .await
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(status.running);
            }
        }));
    }
    for task in tasks {
        timeout(LONG, task).await.unwrap().unwrap();
    }
    match qmp.execute(Command::new("no-such-command")).await {
        Err(Error::Command(CommandError::Qmp(e))) => {
            assert_eq!(e.class, ErrorClass::CommandNotFound)
        }
        other => panic!("{other:?}"),
    }
    // Dropping every handle closes the connection, so QEMU takes a new client.
    drop(qmp);
    let (again, _events) = connect(&qemu).await;
    again.execute(typed::query_status()).await.unwrap();
}

async fn events_and_a_cdrom_change_through_a_passed_fd() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let image = qmp_peer::cd_image(qemu.dir(), 32 << 10);
    let (qmp, mut events) = connect(&qemu).await;
    let fd: OwnedFd = File::open(&image).unwrap().into();
    let added: typed::AddFdInfo = qmp
        .execute(typed::add_fd(fd, None, Some("cdrom")))
        .await
        .unwrap()
        .parse()
        .unwrap();
    let path = typed::fdset_path(added.fdset_id);
    qmp.execute(qmp_peer::cd0_medium(added.fdset_id))
        .await
        .unwrap();
    for expected in [true, false] {
        let event = timeout(LONG, events.recv()).await.unwrap().unwrap();
        let moved: typed::DeviceTrayMoved = event.parse_data().unwrap();
        assert_eq!(
            (moved.id.as_deref(), moved.tray_open),
            (Some("cd0"), expected)
        );
    }
    let blocks: Vec<typed::BlockInfo> = qmp
        .execute(typed::query_block())
        .await
        .unwrap()
        .parse()
        .unwrap();
    let cd = blocks
        .iter()
        .find(|b| b.qdev.as_deref() == Some("cd0"))
        .unwrap();
    assert_eq!(cd.inserted.as_ref().unwrap().file, path);
    qmp.execute(typed::eject("cd0")).await.unwrap();

    qmp.execute(typed::cont()).await.unwrap();
    loop {
        let event = timeout(LONG, events.recv()).await.unwrap().unwrap();
        if event.name == "RESUME" {
            break;
        }
    }
}

async fn qemu_killed_with_commands_in_flight_fails_each_once_and_closes_every_fd() {
    let Some(qemu) = Qemu::paused_pc() else {
        return;
    };
    let image = qmp_peer::cd_image(qemu.dir(), 32 << 10);
    let (qmp, _events) = connect(&qemu).await;
    let before = open_fds();
    qemu.signal(Signal::STOP);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let qmp = qmp.clone();
        let command = if i % 2 == 0 {
            let fd: OwnedFd = File::open(&image).unwrap().into();
            typed::add_fd(fd, None, None)
        } else {
            typed::query_status()
        };
        tasks.push(tokio::spawn(async move { qmp.execute(command).await }));
    }
    // Let the commands reach the driver (and the socket, for those allowed out).
    tokio::time::sleep(Duration::from_millis(200)).await;
    qemu.signal(Signal::KILL);
    for task in tasks {
        match timeout(LONG, task).await.unwrap().unwrap() {
            Err(Error::Command(CommandError::Disconnected)) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
    // Every image fd we opened is closed, and the driver closed its socket as well.
    for _ in 0..100 {
        if open_fds() == before - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        open_fds(),
        before - 1,
        "image fds and the socket are closed"
    );
}

/// Runs one test on its own current-thread runtime, as `#[tokio::test]` would.
fn block_on(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(test);
}

fn main() -> std::process::ExitCode {
    let qemu = qemu::peer();
    Tests::new().each(&[&qemu], TESTS).run()
}
