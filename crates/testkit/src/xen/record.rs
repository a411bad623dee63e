//! A recording proxy between a xenstore client (QEMU) and a xenstored: every message on
//! every connection, in both directions, with the time it passed, as a transcript.
//!
//! The proxy listens on its own socket (point the client's `XENSTORED_PATH` at
//! [`Recorder::socket`]) and opens one upstream connection to the daemon per client
//! connection, so the daemon sees the client exactly as it would directly (dom0 on the
//! control socket). Each message is logged before it is passed on, so a reply is never
//! logged before its request. A test adds its own actions as notes, and can ask the log
//! what the client did ([`Recorder::records`]), which catches what polling the store
//! cannot (a state written and deleted within a millisecond).
//!
//! # Transcript format (`testdata/xen-qemu/*.txt`)
//!
//! Lines starting with `#` are comments (the header says what produced the file). Every
//! other line is one message or note:
//!
//! ```text
//! <ms> c<conn> > <TYPE> #<req_id> [t<tx_id>] "<field>" "<field>" ...   client to daemon
//! <ms> c<conn> < <TYPE> #<req_id> [t<tx_id>] "<field>" ...             daemon to client
//! <ms> ! <text>                                                       what the test did
//! ```
//!
//! `<ms>` is milliseconds since the recorder started (one decimal); `c<conn>` numbers the
//! client's connections in the order it opened them; `<TYPE>` is the `xs_wire.h` name
//! without `XS_` (a watch event is `WATCH_EVENT`, an error reply `ERROR`); the payload is
//! split at its NUL bytes (one trailing NUL dropped) and each field is quoted with Rust's
//! `escape_debug`. `t<tx_id>` appears only inside a transaction.

use std::fmt::{self, Write as _};
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xsio_xs_wire::{FrameDecoder, MsgType};

use super::World;

/// How often the listener looks whether the recorder was dropped.
const ACCEPT_LOOK: Duration = Duration::from_millis(20);

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the daemon (a request).
    ToDaemon,
    /// From the daemon to the client (a reply or a watch event).
    ToClient,
}

/// One line of a transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A message.
    Message {
        /// Since the recorder started.
        at: Duration,
        /// The client's connection, numbered from 1 in the order it opened them.
        conn: u32,
        /// Which way.
        direction: Direction,
        /// The message type's name (`WRITE`, `WATCH_EVENT`, `ERROR`, or the number).
        kind: String,
        /// The request id.
        req_id: u32,
        /// The transaction id (0: none).
        tx_id: u32,
        /// The payload split at NUL bytes (one trailing NUL dropped), lossily as text.
        fields: Vec<String>,
    },
    /// What the test did at that time.
    Note {
        /// Since the recorder started.
        at: Duration,
        /// The text.
        text: String,
    },
}

impl Record {
    /// When it happened.
    pub fn at(&self) -> Duration {
        match self {
            Record::Message { at, .. } | Record::Note { at, .. } => *at,
        }
    }

    /// Whether this is a request of type `kind` from the client whose first field is
    /// `path` (and, if given, whose second is `value`).
    pub fn is_request(&self, kind: &str, path: &str, value: Option<&str>) -> bool {
        match self {
            Record::Message {
                direction: Direction::ToDaemon,
                kind: k,
                fields,
                ..
            } => {
                k == kind
                    && fields.first().map(String::as_str) == Some(path)
                    && value.is_none_or(|v| fields.get(1).map(String::as_str) == Some(v))
            }
            _ => false,
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |at: &Duration| at.as_secs_f64() * 1000.0;
        match self {
            Record::Note { at, text } => write!(f, "{:.1} ! {text}", ms(at)),
            Record::Message {
                at,
                conn,
                direction,
                kind,
                req_id,
                tx_id,
                fields,
            } => {
                let arrow = match direction {
                    Direction::ToDaemon => '>',
                    Direction::ToClient => '<',
                };
                write!(f, "{:.1} c{conn} {arrow} {kind} #{req_id}", ms(at))?;
                if *tx_id != 0 {
                    write!(f, " t{tx_id}")?;
                }
                for field in fields {
                    write!(f, " \"{}\"", field.escape_debug())?;
                }
                Ok(())
            }
        }
    }
}

/// The shared log and clock of one recorder.
#[derive(Debug)]
struct Log {
    start: Instant,
    records: Mutex<Vec<Record>>,
}

impl Log {
    fn since_start(&self) -> Duration {
        #[allow(clippy::disallowed_methods)] // the recorder timestamps real traffic
        Instant::now().saturating_duration_since(self.start)
    }

    fn push(&self, record: Record) {
        self.records.lock().unwrap().push(record);
    }
}

/// A recording proxy in front of a xenstored (stops accepting when dropped; connections
/// already open last as long as their client keeps them).
#[derive(Debug)]
pub struct Recorder {
    socket: PathBuf,
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    /// Listens on `<world>/<name>.sock` and proxies every connection to `upstream`.
    pub fn start(world: &World, upstream: &Path, name: &str) -> io::Result<Recorder> {
        let socket = world.path(&format!("{name}.sock"));
        let listener = UnixListener::bind(&socket)?;
        listener.set_nonblocking(true)?;
        #[allow(clippy::disallowed_methods)]
        let log = Arc::new(Log {
            start: Instant::now(),
            records: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let (thread_log, thread_stop) = (log.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("xs-recorder-{name}"))
            .spawn(move || accept_loop(&listener, &upstream, &thread_log, &thread_stop))?;
        Ok(Recorder { socket, log, stop })
    }

    /// The socket to give the client as its `XENSTORED_PATH`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Adds a note (what the test does now) to the log.
    pub fn note(&self, text: impl Into<String>) {
        self.log.push(Record::Note {
            at: self.log.since_start(),
            text: text.into(),
        });
    }

    /// Everything logged so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.log.records.lock().unwrap().clone()
    }

    /// The transcript: `header` lines as comments, then one line per record.
    pub fn transcript(&self, header: &[&str]) -> String {
        let mut text = String::new();
        for line in header {
            let _ = writeln!(text, "# {line}");
        }
        for record in self.records() {
            let _ = writeln!(text, "{record}");
        }
        text
    }

    /// With env `XSIO_RECORD_TRANSCRIPTS` set, writes the transcript to `path`; otherwise
    /// does nothing. Returns whether it wrote.
    pub fn save_if_recording(&self, path: &Path, header: &[&str]) -> io::Result<bool> {
        if std::env::var_os("XSIO_RECORD_TRANSCRIPTS").is_none() {
            return Ok(false);
        }
        std::fs::write(path, self.transcript(header))?;
        Ok(true)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(listener: &UnixListener, upstream: &Path, log: &Arc<Log>, stop: &AtomicBool) {
    let conns = AtomicU32::new(0);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                let conn = conns.fetch_add(1, Ordering::Relaxed) + 1;
                // A daemon that refuses the connection: the client sees its own end close.
                let Ok(daemon) = UnixStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                for (from, to, direction) in [
                    (client.try_clone(), daemon.try_clone(), Direction::ToDaemon),
                    (daemon.try_clone(), client.try_clone(), Direction::ToClient),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let log = log.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("xs-recorder-c{conn}"))
                        .spawn(move || pump(from, to, conn, direction, &log));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_LOOK),
            Err(_) => std::thread::sleep(ACCEPT_LOOK),
        }
    }
}

/// Moves bytes from `from` to `to`, logging every whole message before passing it on.
/// Ends at either side's end, shutting the other side's writing half so the far end sees
/// it too.
fn pump(mut from: UnixStream, mut to: UnixStream, conn: u32, direction: Direction, log: &Log) {
    let mut decoder = FrameDecoder::default();
    let mut buf = [0u8; 8192];
    let mut undecodable = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = log.since_start();
        if !undecodable {
            decoder.feed(&buf[..n]);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => log.push(Record::Message {
                        at,
                        conn,
                        direction,
                        kind: MsgType::from_u32(frame.header.msg_type).map_or_else(
                            || frame.header.msg_type.to_string(),
                            |t| t.name().to_owned(),
                        ),
                        req_id: frame.header.req_id,
                        tx_id: frame.header.tx_id,
                        fields: fields(&frame.payload),
                    }),
                    Ok(None) => break,
                    Err(e) => {
                        log.push(Record::Note {
                            at,
                            text: format!("c{conn}: undecodable stream from here: {e}"),
                        });
                        undecodable = true;
                        break;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
    let _ = from.shutdown(std::net::Shutdown::Read);
}

/// The payload's NUL-separated fields, one trailing NUL dropped.
fn fields(payload: &[u8]) -> Vec<String> {
    if payload.is_empty() {
        return Vec::new();
    }
    let body = payload.strip_suffix(b"\0").unwrap_or(payload);
    body.split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_at_nul_with_one_trailing_nul_dropped() {
        assert_eq!(fields(b""), Vec::<String>::new());
        assert_eq!(fields(b"/a\0"), ["/a"]);
        assert_eq!(fields(b"/a\0v"), ["/a", "v"]);
        assert_eq!(fields(b"/a\0\0"), ["/a", ""]);
        assert_eq!(fields(b"OK\0"), ["OK"]);
    }

    #[test]
    fn a_record_prints_as_one_transcript_line() {
        let write = Record::Message {
            at: Duration::from_micros(12_345),
            conn: 2,
            direction: Direction::ToDaemon,
            kind: "WRITE".into(),
            req_id: 7,
            tx_id: 3,
            fields: vec!["/a/state".into(), "4\n".into()],
        };
        assert_eq!(
            write.to_string(),
            r#"12.3 c2 > WRITE #7 t3 "/a/state" "4\n""#
        );
        assert!(write.is_request("WRITE", "/a/state", Some("4\n")));
        assert!(!write.is_request("WRITE", "/a/state", Some("4")));
        let note = Record::Note {
            at: Duration::from_millis(3),
            text: "kill".into(),
        };
        assert_eq!(note.to_string(), "3.0 ! kill");
    }
}
