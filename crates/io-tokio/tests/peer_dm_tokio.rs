//! The device-model operations (`xsio-dm`) through the tokio driver against real QEMU 7.2:
//! start-up on a pre-opened socket, a save into a passed fd, QEMU killed mid-save, QEMU
//! exiting at start-up, `quit`.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::json;
use tokio::time::timeout;
use xsio_core::Machine;
use xsio_dm::{
    Action, Control, ControlConfig, Save, SaveConfig, SaveError, Shutdown, ShutdownConfig,
    StartConfig, StartError, StartUp, Stopped,
};
use xsio_io_tokio::dm::{Qemu, RunError};
use xsio_io_tokio::qmp;
use xsio_ops::{Input, InputError, Op, Output, ProcessExit, QmpOp};
use xsio_qmp::{Config, typed};
use xsio_testkit::peer::Tests;
use xsio_testkit::qemu::{self as testkit_qemu, QEMU};
use xsio_testkit::qmp_peer::{self, fds_on};

// The tests `main` runs, each against QEMU.
const TESTS: &[(&str, fn())] = xsio_testkit::tests![
    start_up_on_a_pre_opened_socket_gives_prelaunch,
    a_save_writes_qevm_and_a_resume_leaves_no_fd_set,
    qemu_killed_during_the_save_fails_once_and_closes_the_fd,
    qemu_exiting_at_start_up_is_a_typed_error_with_its_status,
    quit_ends_with_exit_status_0
];

const LIMIT: Duration = Duration::from_secs(60);

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn paused_pc(dir: &Path) -> Qemu {
    let command = tokio::process::Command::from(qmp_peer::bare_paused_pc());
    Qemu::spawn(command, &dir.join("qmp.sock")).unwrap()
}

/// The completion of a machine's `run`, which must end within [`LIMIT`] without a driver
/// error.
async fn completed<E>(run: impl Future<Output = Result<E, RunError>>) -> E {
    timeout(LIMIT, run)
        .await
        .expect("within the limit")
        .expect("the driver ran the machine")
}

/// A paused PC guest's QEMU on a socket in `dir`, started up (prelaunch).
async fn started(dir: &Path) -> Qemu {
    let mut qemu = paused_pc(dir);
    let ready = completed(qemu.run(&mut StartUp::new(StartConfig::fresh(), now())))
        .await
        .unwrap();
    assert_eq!(ready.status, "prelaunch");
    qemu
}

fn start_up_on_a_pre_opened_socket_gives_prelaunch() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut qemu = paused_pc(dir.path());
        let ready = qemu
            .run(&mut StartUp::new(StartConfig::fresh(), now()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ready.status, "prelaunch");
        assert_eq!(ready.session.version.major, 7);
        assert!(qemu.pid().is_some());
    });
}

fn a_save_writes_qevm_and_a_resume_leaves_no_fd_set() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut qemu = started(dir.path()).await;
        let path = dir.path().join("saved-state");
        let save = Save::new(SaveConfig::to(path.to_str().unwrap()), now());
        let saved = completed(qemu.run(&mut { save })).await.unwrap();
        assert_eq!(saved.live, Some(false));
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"QEVM");
        assert_eq!(fds_on(&path), 0);
        assert_eq!(qemu.open_handles(), 0);
        let resume = Control::new(ControlConfig::new(Action::Resume), now());
        completed(qemu.run(&mut { resume })).await.unwrap();
        // A second client sees what is left: no fd set.
        qemu.disconnect().await;
        let (other, _events) = qmp::connect(dir.path().join("qmp.sock"), Config::default())
            .await
            .unwrap();
        let sets = other.execute(typed::query_fdsets()).await.unwrap();
        assert_eq!(sets.to_value().unwrap(), json!([]));
    });
}

/// A save that kills QEMU (SIGKILL) the moment it asks for `add-fd`, with the file open.
struct KillAtAddFd {
    save: Save,
    pid: u32,
}

impl Machine for KillAtAddFd {
    type Input<'a> = Input<'a>;
    type Output = Output<Result<xsio_dm::Saved, SaveError>>;
    type Error = InputError;

    fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), InputError> {
        self.save.handle_input(now, input)
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.save.handle_timeout(now);
    }
    fn poll_output(&mut self) -> Option<Self::Output> {
        let output = self.save.poll_output();
        if let Some(Output::Request(request)) = &output {
            if matches!(&request.op, Op::Qmp(QmpOp::Command(c)) if c.command == "add-fd") {
                kill_process(Pid::from_raw(self.pid as i32).unwrap(), Signal::KILL).unwrap();
            }
        }
        output
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.save.poll_timeout()
    }
}

fn qemu_killed_during_the_save_fails_once_and_closes_the_fd() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut qemu = started(dir.path()).await;
        let path = dir.path().join("saved-state");
        let mut save = KillAtAddFd {
            save: Save::new(SaveConfig::to(path.to_str().unwrap()), now()),
            pid: qemu.pid().unwrap(),
        };
        let result = completed(qemu.run(&mut save)).await;
        match result {
            Err(SaveError::Exited(Some(ProcessExit::Signalled(9))))
            | Err(SaveError::Failed { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(save.save.is_settled());
        assert_eq!(
            fds_on(&path),
            0,
            "no descriptor of ours is left on the file"
        );
        assert_eq!(qemu.open_handles(), 0);
    });
}

fn qemu_exiting_at_start_up_is_a_typed_error_with_its_status() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut command = tokio::process::Command::new(QEMU);
        command.args(["-machine", "pc", "-no-such-option"]);
        command.stderr(std::process::Stdio::null());
        let mut qemu = Qemu::spawn(command, &dir.path().join("qmp.sock")).unwrap();
        let result = completed(qemu.run(&mut StartUp::new(StartConfig::fresh(), now()))).await;
        assert_eq!(
            result,
            Err(StartError::Exited(Some(ProcessExit::Exited(1))))
        );
    });
}

fn quit_ends_with_exit_status_0() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut qemu = started(dir.path()).await;
        let shutdown = Shutdown::new(ShutdownConfig::default(), now());
        let stopped = completed(qemu.run(&mut { shutdown })).await.unwrap();
        assert_eq!(
            stopped,
            Stopped {
                exit: Some(ProcessExit::Exited(0)),
                killed: false
            }
        );
    });
}

fn main() -> std::process::ExitCode {
    let qemu = testkit_qemu::peer();
    Tests::new().each(&[&qemu], TESTS).run()
}
