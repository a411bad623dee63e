//! The arena against a plain map of paths, and its edge cases.

use super::*;

fn perms(owner: u32) -> Perms {
    Perms::owned_by(owner, Access::None)
}

fn names(tree: &Tree, path: &str) -> Vec<String> {
    tree.get(path)
        .unwrap()
        .children()
        .map(str::to_owned)
        .collect()
}

#[test]
fn initial_tree_is_consistent() {
    let tree = Tree::default();
    tree.check().unwrap();
    assert_eq!(tree.len(), 3);
    assert_eq!(tree.entries_of(0), 3);
    let paths: Vec<String> = tree.walk().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/", "/tool", "/tool/xenstored"]);
}

#[test]
fn large_directories_keep_creation_order_and_find_by_name() {
    let mut tree = Tree::default();
    let order: Vec<String> = (0..50).map(|i| format!("k{}", (i * 37) % 50)).collect();
    for name in &order {
        assert!(tree.create(&format!("/tool/{name}"), name.as_bytes(), &perms(0)));
    }
    tree.check().unwrap();
    let mut expected = vec!["xenstored".to_owned()];
    expected.extend(order.iter().cloned());
    assert_eq!(names(&tree, "/tool"), expected);
    for name in &order {
        let node = tree.get(&format!("/tool/{name}")).unwrap();
        assert_eq!(node.value(), name.as_bytes());
    }
    assert!(!tree.create("/tool/k3", b"", &perms(0)), "exists");
    assert!(tree.remove("/tool/k3"));
    assert!(tree.get("/tool/k3").is_none());
    tree.check().unwrap();
    // Removing all but a few drops the index.
    for name in order.iter().skip(2) {
        tree.remove(&format!("/tool/{name}"));
    }
    tree.check().unwrap();
    assert_eq!(names(&tree, "/tool"), ["xenstored", "k0", "k37"]);
}

#[test]
fn values_names_and_owners_are_charged() {
    let mut tree = Tree::default();
    let long_value = vec![b'v'; 100];
    assert!(tree.create("/a-rather-long-name", &long_value, &perms(3)));
    tree.check().unwrap();
    assert_eq!(
        tree.memory_of(3),
        NODE_RECORD + "/a-rather-long-name".len() + 100 + 8
    );
    assert!(tree.set_value("/a-rather-long-name", b"x"));
    assert_eq!(tree.memory_of(3), NODE_RECORD + 19 + 1 + 8);
    assert!(tree.set_perms("/a-rather-long-name", &perms(4)));
    assert_eq!((tree.entries_of(3), tree.entries_of(4)), (0, 1));
    tree.check().unwrap();
    assert!(tree.create("/a-rather-long-name/c", b"", &perms(4)));
    assert!(tree.remove("/a-rather-long-name"));
    assert_eq!(tree.entries_of(4), 0);
    tree.check().unwrap();
    assert!(!tree.create("/missing/child", b"", &perms(0)));
    assert!(!tree.remove("/"));
}

#[test]
fn applying_a_transaction_keeps_its_child_order() {
    let mut tree = Tree::default();
    tree.create("/d", b"", &perms(0));
    tree.create("/d/a", b"", &perms(0));
    tree.create("/d/gone", b"", &perms(0));
    let mut dir = tree.detach(tree.lookup("/d").unwrap());
    dir.children.remove(&tree, "gone");
    dir.children.push("z");
    dir.children.push("b");
    tree.unpin(dir.children.base().unwrap());
    let entries = vec![
        ("/d".to_owned(), Some(dir)),
        ("/d/b".to_owned(), Some(Node::new(b"2", perms(0)))),
        ("/d/gone".to_owned(), None),
        ("/d/z".to_owned(), Some(Node::new(b"1", perms(0)))),
    ];
    tree.apply(&entries);
    tree.check().unwrap();
    assert_eq!(names(&tree, "/d"), ["a", "z", "b"]);
    assert_eq!(tree.get("/d/z").unwrap().value(), b"1");
}

#[test]
fn a_copy_reads_its_names_from_the_tree_until_the_tree_changes_them() {
    let mut tree = Tree::default();
    for name in ["a", "b", "c"] {
        tree.create(&format!("/tool/{name}"), b"", &perms(0));
    }
    let dir = tree.lookup("/tool").unwrap();
    let mut copy = tree.detach(dir);
    let base = copy.children.base().unwrap();
    copy.children.remove(&tree, "b");
    copy.children.push("z");
    let listed = |tree: &Tree, copy: &Node| copy.children.iter(tree).collect::<Vec<_>>().join(",");
    assert_eq!(listed(&tree, &copy), "xenstored,a,c,z");
    assert_eq!(copy.children.bytes(&tree), "xenstored a c z ".len());
    tree.check().unwrap();
    // The tree moves on: the copy still sees the names the node had when it was taken.
    tree.remove("/tool/a");
    tree.create("/tool/d", b"", &perms(0));
    assert_eq!(names(&tree, "/tool"), ["xenstored", "b", "c", "d"]);
    assert_eq!(listed(&tree, &copy), "xenstored,a,c,z");
    assert!(copy.children.contains(&tree, "a") && !copy.children.contains(&tree, "d"));
    assert_eq!(copy.children.bytes(&tree), "xenstored a c z ".len());
    tree.check().unwrap();
    // Once the last copy goes, so does the kept list.
    tree.unpin(base);
    assert!(tree.pins().is_empty() && !tree.snapshots.is_kept(base.generation));
    tree.check().unwrap();
}

#[test]
fn a_pinned_generation_neither_held_nor_kept_is_caught() {
    let mut tree = Tree::default();
    let dir = tree.lookup("/tool").unwrap();
    let copy = tree.detach(dir);
    tree.snapshots.pin(copy.generation + 1000);
    assert!(tree.check().unwrap_err().contains("pinned"));
}

use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Create(String, Vec<u8>),
    SetValue(String, Vec<u8>),
    Remove(String),
    /// A transaction's copy of the node, if it exists.
    Copy(String),
    /// The end of the copy taken this many copies ago, if any.
    Release(usize),
}

fn some_path() -> impl Strategy<Value = String> {
    // Many siblings under /d (so directories get indexed, and lose their index), and a
    // level below some of them; long names go to the slab.
    let name = prop_oneof![
        (0..20u8).prop_map(|i| format!("c{i}")),
        (0..3u8).prop_map(|i| format!("a-name-longer-than-fifteen-bytes-{i}")),
    ];
    (name.clone(), prop::option::of(name)).prop_map(|(a, b)| match b {
        Some(b) => format!("/d/{a}/{b}"),
        None => format!("/d/{a}"),
    })
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        3 => (some_path(), value.clone()).prop_map(|(p, v)| Op::Create(p, v)),
        1 => (some_path(), value).prop_map(|(p, v)| Op::SetValue(p, v)),
        2 => some_path().prop_map(Op::Remove),
        1 => some_path().prop_map(Op::Copy),
        1 => (0..4usize).prop_map(Op::Release),
    ]
}

proptest! {
    /// Against a plain map of paths to (value, child names in creation order): the same
    /// answers after every step, and the invariants hold; a transaction's copy lists the
    /// names its node had when it was taken until it is released, whatever the tree did.
    #[test]
    fn the_arena_behaves_like_a_map_of_paths(ops in prop::collection::vec(op(), 1..120)) {
        let mut tree = Tree::default();
        tree.create("/d", b"", &perms(0));
        let mut model: BTreeMap<String, (Vec<u8>, Vec<String>)> = BTreeMap::new();
        model.insert("/d".into(), (Vec::new(), Vec::new()));
        let mut copies: Vec<(Node, Vec<String>)> = Vec::new();
        for op in ops {
            match op {
                Op::Copy(path) => {
                    if let Some(id) = tree.lookup(&path) {
                        copies.push((tree.detach(id), model[&path].1.clone()));
                    }
                }
                Op::Release(back) => {
                    if back < copies.len() {
                        let (copy, _) = copies.remove(copies.len() - 1 - back);
                        tree.unpin(copy.children.base().unwrap());
                    }
                }
                Op::Create(path, value) => {
                    let parent = path::parent(&path).unwrap().to_owned();
                    let expected = model.contains_key(&parent) && !model.contains_key(&path);
                    prop_assert_eq!(tree.create(&path, &value, &perms(3)), expected);
                    if expected {
                        model.get_mut(&parent).unwrap().1.push(path::base_name(&path).into());
                        model.insert(path, (value, Vec::new()));
                    }
                }
                Op::SetValue(path, value) => {
                    let expected = model.contains_key(&path);
                    prop_assert_eq!(tree.set_value(&path, &value), expected);
                    if let Some(entry) = model.get_mut(&path) {
                        entry.0 = value;
                    }
                }
                Op::Remove(path) => {
                    let expected = model.contains_key(&path);
                    prop_assert_eq!(tree.remove(&path), expected);
                    if expected {
                        let below = format!("{path}/");
                        model.retain(|p, _| *p != path && !p.starts_with(&below));
                        let parent = path::parent(&path).unwrap();
                        let name = path::base_name(&path);
                        model.get_mut(parent).unwrap().1.retain(|c| c != name);
                    }
                }
            }
            tree.check().map_err(TestCaseError::fail)?;
            for (copy, names) in &copies {
                prop_assert_eq!(&copy.children.iter(&tree).collect::<Vec<_>>(), names);
                let bytes: usize = names.iter().map(|n| n.len() + 1).sum();
                prop_assert_eq!(copy.children.bytes(&tree), bytes);
            }
            for (path, (value, children)) in &model {
                let node = tree.get(path).unwrap();
                prop_assert_eq!(node.value(), &value[..]);
                prop_assert_eq!(&node.children().collect::<Vec<_>>(), children);
            }
            prop_assert_eq!(tree.len(), model.len() + 3);
        }
        for (copy, _) in copies {
            tree.unpin(copy.children.base().unwrap());
        }
        prop_assert!(tree.pins().is_empty());
        tree.check().map_err(TestCaseError::fail)?;
    }
}

#[test]
fn check_notices_a_broken_list() {
    let mut tree = Tree::default();
    tree.slots[1].next = 1;
    assert!(tree.check().is_err());
}

#[test]
fn a_slot_is_72_bytes() {
    // The figure the module doc and the memory bench rest on.
    assert_eq!(size_of::<Slot>(), 72);
}
