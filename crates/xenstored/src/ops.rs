//! The node operations (read, write, mkdir, rm, directory, permissions) with the access rule
//! and the node quotas, over a [`View`] so they work the same inside a transaction.

use bytes::Bytes;
use xsio_xs_wire::{ErrorKind, Reply, XENSTORE_PAYLOAD_MAX, path};

use crate::Quotas;
use crate::perms::{Caller, Granted, Perms};
use crate::tree::{NODE_RECORD, NodeId, NodeRef};
use crate::view::{Change, View};

/// The caller and the limits that apply to it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Who<'q> {
    pub(crate) caller: Caller,
    pub(crate) quotas: &'q Quotas,
}

impl Who<'_> {
    fn unprivileged(&self) -> bool {
        !self.caller.privileged
    }
}

#[derive(Clone, Copy)]
enum Need {
    Read,
    Write,
}

fn allows(granted: Granted, need: Need) -> bool {
    match need {
        Need::Read => granted.read,
        Need::Write => granted.write,
    }
}

/// Looks `path` up with the permission `need`: EACCES when it exists but is not allowed;
/// when it is missing, ENOENT only if the caller may `need` the nearest existing ancestor,
/// else EACCES, so that a domain learns nothing about nodes it may not see.
fn checked<'v>(
    view: &'v mut View<'_>,
    who: Who<'_>,
    path: &str,
    need: Need,
) -> Result<NodeRef<'v>, ErrorKind> {
    let Some(found) = view.find(path) else {
        return Err(missing_errno(view, who, path, need));
    };
    if !allows(view.node(path, found).perms().granted(who.caller), need) {
        return Err(refused(view, path));
    }
    let view: &'v View<'_> = view;
    Ok(view.node(path, found))
}

/// EACCES for the existing node at `path`. Xen's daemon looks at the parent of any node it
/// refuses (to decide what the caller may learn), so a transaction records the parent as
/// read: a later change there makes the commit fail with EAGAIN, as in Xen.
fn refused(view: &mut View<'_>, path: &str) -> ErrorKind {
    if let Some(parent) = path::parent(path) {
        view.get(parent);
    }
    ErrorKind::Eacces
}

fn missing_errno(view: &mut View<'_>, who: Who<'_>, path: &str, need: Need) -> ErrorKind {
    let mut current = path;
    while let Some(parent) = path::parent(current) {
        if let Some(node) = view.get(parent) {
            return if allows(node.perms().granted(who.caller), need) {
                ErrorKind::Enoent
            } else {
                ErrorKind::Eacces
            };
        }
        current = parent;
    }
    ErrorKind::Enoent
}

fn check_size(view: &mut View<'_>, who: Who<'_>, charged_size: usize) -> Result<(), ErrorKind> {
    // A record must stay below the quota (Xen: 2015 value bytes with one permission fit in
    // 2048, 2016 do not). Xen finds this out while storing the node, and a transaction
    // that saw it fail can no longer commit (ENOMEM at its end).
    if who.unprivileged() && charged_size >= who.quotas.node_size {
        view.fail_transaction();
        return Err(ErrorKind::Enospc);
    }
    Ok(())
}

/// What a node operation answers: a reply, or the value of a committed node, which the
/// caller encodes straight from the tree (READ outside a transaction, the common request).
pub(crate) enum Answer {
    Reply(Reply),
    Value(NodeId),
}

pub(crate) fn read(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<Answer, ErrorKind> {
    Ok(match checked(view, who, path, Need::Read)? {
        NodeRef::Tree(_, id) => Answer::Value(id),
        node @ NodeRef::Detached(..) => {
            Answer::Reply(Reply::Read(Bytes::copy_from_slice(node.value())))
        }
    })
}

/// DIRECTORY: the child names in creation order (E2BIG from the encoder when they do not fit
/// one message).
pub(crate) fn directory(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<Reply, ErrorKind> {
    let node = checked(view, who, path, Need::Read)?;
    // The names with their NULs are the payload: one that cannot be sent is E2BIG before
    // ten thousand names are copied for nothing.
    if node.children_bytes() > XENSTORE_PAYLOAD_MAX {
        return Err(ErrorKind::E2big);
    }
    Ok(Reply::Directory(
        node.children().map(str::to_owned).collect(),
    ))
}

/// DIRECTORY_PART: the node's generation, then as many whole names as fit starting at byte
/// `offset` of the child list (names with their NULs, as C counts it); the last chunk is
/// marked complete.
pub(crate) fn directory_part(
    view: &mut View<'_>,
    who: Who<'_>,
    path: &str,
    offset: usize,
) -> Result<Reply, ErrorKind> {
    let node = checked(view, who, path, Need::Read)?;
    let generation = node.generation();
    let rest_len = node.children_bytes().saturating_sub(offset);
    // The reply is `gen\0`, the names with their NULs, and one more NUL on the last chunk.
    let budget = XENSTORE_PAYLOAD_MAX - (generation.to_string().len() + 1) - 1;
    let mut taken = 0;
    let mut children = Vec::new();
    // Walks the names up to `offset` without copying them (a chunk of a long listing costs
    // its own names); an offset inside a name starts with the rest of that name.
    let mut at = 0;
    for name in node.children() {
        let (begin, end) = (at, at + name.len() + 1);
        at = end;
        if end <= offset {
            continue;
        }
        let piece = &name.as_bytes()[offset.saturating_sub(begin)..];
        if taken + piece.len() + 1 > budget {
            break;
        }
        taken += piece.len() + 1;
        children.push(String::from_utf8_lossy(piece).into_owned());
    }
    Ok(Reply::DirectoryPart {
        generation,
        children,
        complete: taken == rest_len,
    })
}

pub(crate) fn get_perms(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<Reply, ErrorKind> {
    let node = checked(view, who, path, Need::Read)?;
    Ok(Reply::GetPerms(node.perms().entries().to_vec()))
}

pub(crate) fn write(
    view: &mut View<'_>,
    who: Who<'_>,
    path: &str,
    value: &[u8],
) -> Result<(), ErrorKind> {
    let Some(node) = view.get(path) else {
        return create(view, who, path, value);
    };
    if !node.perms().granted(who.caller).write {
        return Err(refused(view, path));
    }
    let new_size = node.charged_size() - node.value().len() + value.len();
    let perms = node.perms().clone();
    check_size(view, who, new_size)?;
    view.set_value(path, value);
    view.record(Change::node(path, perms));
    Ok(())
}

pub(crate) fn mkdir(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<(), ErrorKind> {
    match view.get(path) {
        Some(node) if node.perms().granted(who.caller).write => Ok(()),
        Some(_) => Err(refused(view, path)),
        None => create(view, who, path, b""),
    }
}

/// Creates `path` and any missing ancestors. Every check runs before the first change, so a
/// refused creation leaves nothing behind. Only `path` itself fires watches.
fn create(view: &mut View<'_>, who: Who<'_>, path: &str, value: &[u8]) -> Result<(), ErrorKind> {
    // The nearest existing ancestor must be writable; the nodes between it and `path` are new.
    let mut missing = vec![path.to_owned()];
    let mut anchor = path::parent(path).ok_or(ErrorKind::Einval)?.to_owned();
    let (anchor_perms, anchor_size) = loop {
        if let Some(node) = view.get(&anchor) {
            break (node.perms().clone(), node.charged_size());
        }
        missing.push(anchor.clone());
        anchor = path::parent(&anchor).ok_or(ErrorKind::Enoent)?.to_owned();
    };
    if !anchor_perms.granted(who.caller).write {
        return Err(ErrorKind::Eacces);
    }
    let perms = if who.unprivileged() {
        anchor_perms.with_owner(who.caller.domid)
    } else {
        anchor_perms
    };
    let n_new = missing.len() as i64;
    if who.unprivileged() {
        let owned = i64::from(view.tree().entries_of(who.caller.domid)) + view.own_entry_delta();
        if owned + n_new > i64::from(who.quotas.nodes_per_domain) {
            return Err(ErrorKind::Enospc);
        }
    }
    // Each new node's record: the leaf holds the value; each one between the anchor and
    // the leaf lists the next one's name, which may be long enough to break the quota on
    // its own.
    let record = NODE_RECORD + 8 * perms.entries().len();
    check_size(view, who, record + value.len())?;
    for pair in missing.windows(2) {
        check_size(view, who, record + path::base_name(&pair[0]).len() + 1)?;
    }
    let first_new = missing.last().expect("missing holds path itself");
    check_size(
        view,
        who,
        anchor_size + path::base_name(first_new).len() + 1,
    )?;

    if who.unprivileged() {
        view.add_own_entries(n_new);
    }
    // From the top down, each under the one before.
    while let Some(new_path) = missing.pop() {
        let node_value = if missing.is_empty() { value } else { b"" };
        view.create(&new_path, node_value, &perms);
    }
    view.record(Change::node(path, perms));
    Ok(())
}

pub(crate) fn rm(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<(), ErrorKind> {
    let root = match checked(view, who, path, Need::Write) {
        Ok(node) => Pending::of(path.to_owned(), node),
        Err(ErrorKind::Enoent) => {
            // Removing a missing node is fine as long as its parent exists.
            let parent = path::parent(path).ok_or(ErrorKind::Enoent)?;
            return match view.get(parent) {
                Some(_) => Ok(()),
                None => Err(ErrorKind::Enoent),
            };
        }
        Err(err) => return Err(err),
    };
    if path::parent(path).is_none() {
        return Err(ErrorKind::Einval);
    }
    let root_perms = root.perms.clone();
    // Depth-first, children before their parent (siblings in child-list order), the removed
    // root last: the order in which Xen's daemon fires the watches. A node's children are
    // looked at when it is expanded (a transaction records them in that order) and each
    // node is removed once its subtree is gone: every removal is of a leaf.
    let mut stack = vec![root];
    while let Some(mut current) = stack.pop() {
        if !current.expanded {
            let children: Vec<String> = current
                .children
                .iter()
                .rev()
                .map(|name| path::join(&current.path, name))
                .collect();
            current.expanded = true;
            stack.push(current);
            for child_path in children {
                if let Some(child) = view.get(&child_path) {
                    let child = Pending::of(child_path, child);
                    stack.push(child);
                }
            }
            continue;
        }
        if current.path != path {
            view.record(Change {
                path: current.path.clone(),
                exact: true,
                perms: current.perms.clone(),
                old_perms: None,
            });
        }
        if who.unprivileged() && current.perms.owner() == who.caller.domid {
            view.add_own_entries(-1);
        }
        view.delete(&current.path);
    }
    view.record(Change::node(path, root_perms));
    Ok(())
}

/// A node of a subtree being removed: what its removal needs once its children are gone.
struct Pending {
    path: String,
    perms: Perms,
    children: Vec<String>,
    expanded: bool,
}

impl Pending {
    fn of(path: String, node: NodeRef<'_>) -> Pending {
        Pending {
            path,
            perms: node.perms().clone(),
            children: node.children().map(str::to_owned).collect(),
            expanded: false,
        }
    }
}

pub(crate) fn set_perms(
    view: &mut View<'_>,
    who: Who<'_>,
    path: &str,
    perms: Perms,
) -> Result<(), ErrorKind> {
    let Some(node) = view.get(path) else {
        return Err(missing_errno(view, who, path, Need::Write));
    };
    let granted = node.perms().granted(who.caller);
    if !(granted.write && granted.owner) {
        return Err(refused(view, path));
    }
    if who.unprivileged() && perms.owner() != node.perms().owner() {
        return Err(ErrorKind::Eperm);
    }
    let old_perms = node.perms().clone();
    let new_size = node.charged_size() - 8 * old_perms.entries().len() + 8 * perms.entries().len();
    check_size(view, who, new_size)?;
    view.set_perms(path, &perms);
    view.record(Change {
        old_perms: Some(old_perms),
        ..Change::node(path, perms)
    });
    Ok(())
}
