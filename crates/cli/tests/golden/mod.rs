//! Golden xenstore transcripts (`testdata/xenstore/*.txt`) and a daemon that replays them.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use xsio_xs_wire::FrameDecoder;

/// One recorded conversation: the command, then frames in order.
pub struct Transcript {
    pub name: String,
    pub argv: Vec<String>,
    /// (from_client, frame bytes)
    pub frames: Vec<(bool, Vec<u8>)>,
}

impl Transcript {
    pub fn client_frames(&self) -> Vec<Vec<u8>> {
        self.frames
            .iter()
            .filter(|(c, _)| *c)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

pub fn transcript(name: &str) -> Transcript {
    let path = format!(
        "{}/../../testdata/xenstore/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let command = lines.next().unwrap().strip_prefix("# ").unwrap();
    let argv = command
        .split(' ')
        .map(|a| {
            if a == "''" {
                String::new()
            } else {
                a.to_owned()
            }
        })
        .collect();
    let frames = lines
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.split_at(2) {
            ("> ", rest) => (true, hex(rest)),
            ("< ", rest) => (false, hex(rest)),
            _ => panic!("{path}: bad line {l:?}"),
        })
        .collect();
    Transcript {
        name: name.to_owned(),
        argv,
        frames,
    }
}

/// A daemon on a temporary socket that answers one connection with a transcript's daemon
/// frames: after each client frame it sends the daemon frames recorded after it. It records
/// every frame the client sent (whether or not it matches).
pub struct Replay {
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    thread: Option<JoinHandle<Vec<Vec<u8>>>>,
}

impl Replay {
    pub fn start(transcript: &Transcript) -> Replay {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let listener = UnixListener::bind(&socket).unwrap();
        let frames = transcript.frames.clone();
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut received = Vec::new();
            let mut decoder = FrameDecoder::default();
            let mut script = frames.into_iter().peekable();
            // Daemon frames before any client frame (none in practice) go first.
            let mut buf = [0u8; 8192];
            loop {
                while let Some(frame) = decoder.next_frame().unwrap() {
                    let req_id = frame.header.req_id.to_le_bytes();
                    received.push(frame.to_bytes().to_vec());
                    // Skip the expected client frame, then send the replies recorded after it.
                    if script.peek().is_some_and(|(c, _)| *c) {
                        script.next();
                    }
                    while let Some((false, reply)) = script.peek() {
                        // A daemon echoes the request's req_id (libxenstore's are all 0, so
                        // the recorded ones are too); watch events keep their 0.
                        let mut reply = reply.clone();
                        if reply[..4] != [15, 0, 0, 0] {
                            reply[4..8].copy_from_slice(&req_id);
                        }
                        if stream.write_all(&reply).is_err() {
                            return received;
                        }
                        script.next();
                    }
                }
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return received,
                    Ok(n) => decoder.feed(&buf[..n]),
                }
            }
        });
        Replay {
            _dir: dir,
            socket,
            thread: Some(thread),
        }
    }

    /// Every frame the client sent, once it has hung up.
    pub fn received(mut self) -> Vec<Vec<u8>> {
        self.thread.take().unwrap().join().unwrap()
    }
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Checks that the run exited 0 having printed exactly `stdout` (its stderr in the
    /// message otherwise).
    pub fn assert_printed(&self, stdout: &str) {
        assert_eq!(
            (self.status, self.stdout.as_str()),
            (0, stdout),
            "{}",
            self.stderr
        );
    }
}

/// Runs `program args` from the repository root with XENSTORED_PATH set to `socket`.
pub fn run(program: &str, args: &[String], socket: &std::path::Path) -> Run {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(root)
        .env("XENSTORED_PATH", socket)
        .env_remove("XENSTORED_RUNDIR")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
