//! Model-based test: random operation sequences against a plain `BTreeMap` reference.
//!
//! The reference keeps values and ordered child lists. Outside transactions every reply must
//! match it exactly. A transaction is checked against the rule that matters to clients: with
//! no outside change since it started it must commit, and its reads are exact; with outside
//! changes it either commits, and the result is its writes replayed on the current state, or
//! fails with EAGAIN and changes nothing. The harness runs the tree invariant checker after
//! every request.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;

#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    /// path -> (value, children in creation order)
    nodes: BTreeMap<String, (String, Vec<String>)>,
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(cut) => &path[..cut],
        None => "/",
    }
}

fn name_of(path: &str) -> &str {
    &path[path.rfind('/').unwrap() + 1..]
}

impl Model {
    fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".into(), (String::new(), vec!["tool".into()]));
        nodes.insert("/tool".into(), (String::new(), vec!["xenstored".into()]));
        nodes.insert("/tool/xenstored".into(), (String::new(), vec![]));
        Model { nodes }
    }

    fn ensure(&mut self, path: &str) {
        if self.nodes.contains_key(path) {
            return;
        }
        let parent = parent_of(path).to_owned();
        self.ensure(&parent);
        self.nodes
            .get_mut(&parent)
            .unwrap()
            .1
            .push(name_of(path).into());
        self.nodes.insert(path.into(), (String::new(), vec![]));
    }

    fn write(&mut self, path: &str, value: &str) {
        self.ensure(path);
        self.nodes.get_mut(path).unwrap().0 = value.into();
    }

    fn rm(&mut self, path: &str) -> Result<(), String> {
        if !self.nodes.contains_key(path) {
            return if self.nodes.contains_key(parent_of(path)) {
                Ok(())
            } else {
                Err("ENOENT".into())
            };
        }
        let prefix = format!("{path}/");
        self.nodes
            .retain(|p, _| p != path && !p.starts_with(&prefix));
        let name = name_of(path).to_owned();
        self.nodes
            .get_mut(parent_of(path))
            .unwrap()
            .1
            .retain(|c| *c != name);
        Ok(())
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(p, v, _) => self.write(p, v),
            Op::Mkdir(p, _) => self.ensure(p),
            Op::Rm(p, _) => {
                let _ = self.rm(p);
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(String, String, bool),
    Mkdir(String, bool),
    Rm(String, bool),
    Read(String, bool),
    Dir(String, bool),
    Start,
    Commit,
    Abort,
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
        .prop_map(|parts| format!("/{}", parts.join("/")))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let value = prop::sample::select(vec!["", "x", "yy", "zzz"]).prop_map(str::to_owned);
    prop_oneof![
        4 => (path_strategy(), value, any::<bool>()).prop_map(|(p, v, t)| Op::Write(p, v, t)),
        1 => (path_strategy(), any::<bool>()).prop_map(|(p, t)| Op::Mkdir(p, t)),
        2 => (path_strategy(), any::<bool>()).prop_map(|(p, t)| Op::Rm(p, t)),
        3 => (path_strategy(), any::<bool>()).prop_map(|(p, t)| Op::Read(p, t)),
        2 => (path_strategy(), any::<bool>()).prop_map(|(p, t)| Op::Dir(p, t)),
        1 => Just(Op::Start),
        1 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

struct OpenTx {
    id: u32,
    /// The state at start with the transaction's own writes applied.
    view: Model,
    log: Vec<Op>,
    outside_changed: bool,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    let c = h.dom0();
    let mut model = Model::new();
    let mut tx: Option<OpenTx> = None;
    for op in ops {
        let in_tx = match &op {
            Op::Write(_, _, t)
            | Op::Mkdir(_, t)
            | Op::Rm(_, t)
            | Op::Read(_, t)
            | Op::Dir(_, t) => *t && tx.is_some(),
            _ => false,
        };
        let tx_id = if in_tx { tx.as_ref().unwrap().id } else { 0 };
        // What the model predicts for a read: the transaction's view, or the tree. Inside a
        // transaction that an outside change has raced, the daemon may answer either way.
        let predictable = !in_tx || !tx.as_ref().unwrap().outside_changed;
        let seen = |model: &Model, tx: &Option<OpenTx>, p: &str| {
            let reference = if in_tx {
                &tx.as_ref().unwrap().view
            } else {
                model
            };
            reference
                .nodes
                .get(p)
                .cloned()
                .ok_or_else(|| "ENOENT".to_owned())
        };
        match &op {
            Op::Write(p, v, _) => prop_assert_eq!(h.write(c, tx_id, p, v), ok()),
            Op::Mkdir(p, _) => prop_assert_eq!(h.op(c, MKDIR, tx_id, &[p]), ok()),
            Op::Rm(p, _) => {
                let got = h.op(c, RM, tx_id, &[p]);
                let expected = if in_tx {
                    tx.as_mut().unwrap().view.clone().rm(p)
                } else {
                    model.clone().rm(p)
                };
                if predictable {
                    prop_assert_eq!(got.map(|_| ()), expected);
                }
            }
            Op::Read(p, _) => {
                let got = h.read(c, tx_id, p);
                if predictable {
                    prop_assert_eq!(got, seen(&model, &tx, p).map(|n| n.0));
                }
            }
            Op::Dir(p, _) => {
                let got = h.dir(c, tx_id, p);
                if predictable {
                    prop_assert_eq!(got, seen(&model, &tx, p).map(|n| n.1));
                }
            }
            Op::Start => {
                if tx.is_none() {
                    let id = h.start(c);
                    tx = Some(OpenTx {
                        id,
                        view: model.clone(),
                        log: Vec::new(),
                        outside_changed: false,
                    });
                }
            }
            Op::Commit => {
                if let Some(open) = tx.take() {
                    let got = h.end(c, open.id, true);
                    if !open.outside_changed {
                        prop_assert_eq!(got, ok());
                        model = open.view;
                    } else if got == ok() {
                        for logged in &open.log {
                            model.apply(logged);
                        }
                    } else {
                        prop_assert_eq!(got, err("EAGAIN"));
                    }
                }
            }
            Op::Abort => {
                if let Some(open) = tx.take() {
                    prop_assert_eq!(h.end(c, open.id, false), ok());
                }
            }
        }
        if matches!(op, Op::Write(..) | Op::Mkdir(..) | Op::Rm(..)) {
            if in_tx {
                let open = tx.as_mut().unwrap();
                open.view.apply(&op);
                open.log.push(op.clone());
            } else {
                model.apply(&op);
                if let Some(open) = tx.as_mut() {
                    open.outside_changed = true;
                }
            }
        }
        // Outside a transaction the whole tree must match the model.
        for (path, (value, children)) in &model.nodes {
            prop_assert_eq!(h.read(c, 0, path), Ok(value.clone()));
            prop_assert_eq!(h.dir(c, 0, path), Ok(children.clone()));
        }
        prop_assert_eq!(h.server.node_count(), model.nodes.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn server_matches_the_reference_model(ops in prop::collection::vec(op_strategy(), 1..40)) {
        run(ops)?;
    }
}
