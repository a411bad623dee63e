//! What happened in a run, line by line: readable text, JSON lines, and the lanes of a
//! sequence diagram.

use serde::Serialize;

/// Who a trace line is about, as a lane of the sequence diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// The toolstack (libxl's role): creates, removes, waits.
    Toolstack,
    /// The xenstore daemon.
    Xenstore,
    /// A device backend in dom0 (as QEMU runs it).
    Backend,
    /// A device frontend in a guest.
    Frontend,
    /// A guest's QEMU: its QMP monitor (events, its end) and its xen-bus.
    Qemu,
}

impl Lane {
    /// Every lane, left to right.
    pub const ALL: [Lane; 5] = [
        Lane::Toolstack,
        Lane::Xenstore,
        Lane::Backend,
        Lane::Frontend,
        Lane::Qemu,
    ];

    /// The lane's name.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Toolstack => "toolstack",
            Lane::Xenstore => "xenstore",
            Lane::Backend => "backend",
            Lane::Frontend => "frontend",
            Lane::Qemu => "qemu",
        }
    }
}

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Virtual milliseconds since the start.
    pub t_ms: u64,
    /// Whose lane.
    pub lane: Lane,
    /// Who exactly (`backend d1 xvda`).
    pub who: String,
    /// What (`write (if state exists): state=4 (Connected)`).
    pub what: String,
}

/// A run's lines, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    lines: Vec<Line>,
    /// Lines pushed, kept or not.
    count: usize,
    /// Whether lines are kept (a run of thousands of domains counts them only: its
    /// trace would take gigabytes).
    keep: bool,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            lines: Vec::new(),
            count: 0,
            keep: true,
        }
    }
}

impl Trace {
    /// A trace that counts its lines and keeps none.
    pub(crate) fn counting_only() -> Trace {
        Trace {
            keep: false,
            ..Trace::default()
        }
    }

    /// Whether lines are kept (see [`run_without_trace`](crate::run_without_trace)).
    pub(crate) fn keeps_lines(&self) -> bool {
        self.keep
    }

    pub(crate) fn push(&mut self, t_ms: u64, lane: Lane, who: String, what: String) {
        self.count += 1;
        if !self.keep {
            return;
        }
        self.lines.push(Line {
            t_ms,
            lane,
            who,
            what,
        });
    }

    /// The lines (none for a run without trace).
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// How many lines the run produced, kept or not.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the run produced no line.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The trace as text, one line each: `   17 ms  backend d1 xvda     state ...`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(&format!("{:>6} ms  {:<22} {}\n", l.t_ms, l.who, l.what));
        }
        out
    }

    /// The trace as JSON lines, one object per line.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            // A `Line` holds strings and numbers only: serialising it cannot fail.
            out.push_str(&serde_json::to_string(l).unwrap_or_default());
            out.push('\n');
        }
        out
    }
}
