//! The node operations (read, write, mkdir, rm, directory, permissions) with the access rule
//! and the node quotas, over a [`View`] so they work the same inside a transaction.

use bytes::Bytes;
use xsio_xs_wire::{ErrorKind, Reply, XENSTORE_PAYLOAD_MAX, path};

use crate::Quotas;
use crate::perms::{Caller, Granted, Perms};
use crate::tree::Node;
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
) -> Result<&'v Node, ErrorKind> {
    if view.get(path).is_none() {
        return Err(missing_errno(view, who, path, need));
    }
    let allowed = allows(
        view.get(path)
            .expect("looked up just above")
            .perms
            .granted(who.caller),
        need,
    );
    if !allowed {
        return Err(refused(view, path));
    }
    Ok(view.get(path).expect("looked up just above"))
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
            return if allows(node.perms.granted(who.caller), need) {
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

pub(crate) fn read(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<Reply, ErrorKind> {
    let node = checked(view, who, path, Need::Read)?;
    Ok(Reply::Read(Bytes::copy_from_slice(&node.value)))
}

/// DIRECTORY: the child names in creation order (E2BIG from the encoder when they do not fit
/// one message).
pub(crate) fn directory(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<Reply, ErrorKind> {
    let node = checked(view, who, path, Need::Read)?;
    Ok(Reply::Directory(
        node.children.iter().map(|c| c.to_string()).collect(),
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
    let generation = node.generation;
    let list = node.children_wire();
    let rest = list.get(offset..).unwrap_or_default();
    // The reply is `gen\0`, the names with their NULs, and one more NUL on the last chunk.
    let budget = XENSTORE_PAYLOAD_MAX - (generation.to_string().len() + 1) - 1;
    let mut taken = 0;
    let mut children = Vec::new();
    for name in rest.split_inclusive(|&b| b == 0) {
        if taken + name.len() > budget {
            break;
        }
        taken += name.len();
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        children.push(String::from_utf8_lossy(name).into_owned());
    }
    Ok(Reply::DirectoryPart {
        generation,
        children,
        complete: taken == rest.len(),
    })
}

pub(crate) fn get_perms(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<Reply, ErrorKind> {
    let node = checked(view, who, path, Need::Read)?;
    Ok(Reply::GetPerms(node.perms.entries().to_vec()))
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
    if !node.perms.granted(who.caller).write {
        return Err(refused(view, path));
    }
    let new_size = node.charged_size() - node.value.len() + value.len();
    let perms = node.perms.clone();
    check_size(view, who, new_size)?;
    view.modify(path, |node| node.value = value.into());
    view.record(Change::node(path, perms));
    Ok(())
}

pub(crate) fn mkdir(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<(), ErrorKind> {
    match view.get(path) {
        Some(node) if node.perms.granted(who.caller).write => Ok(()),
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
            break (node.perms.clone(), node.charged_size());
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
    let leaf = Node::new(value, perms.clone());
    check_size(view, who, leaf.charged_size())?;
    // Each new node between the anchor and the leaf lists the next one's name, which may
    // be long enough to break the quota on its own.
    for pair in missing.windows(2) {
        let mut between = Node::new(b"", perms.clone());
        between.children.push(path::base_name(&pair[0]));
        check_size(view, who, between.charged_size())?;
    }
    let first_new = missing.last().expect("missing holds path itself");
    let first_name = path::base_name(first_new);
    check_size(view, who, anchor_size + first_name.len() + 1)?;

    if who.unprivileged() {
        view.add_own_entries(n_new);
    }
    view.modify(&anchor, |node| node.children.push(first_name));
    // Create from the top down so each new node lists the next one.
    let mut leaf = Some(leaf);
    while let Some(new_path) = missing.pop() {
        let node = match missing.last() {
            Some(next) => {
                let mut node = Node::new(b"", perms.clone());
                node.children.push(path::base_name(next));
                node
            }
            None => leaf.take().expect("the leaf is created last"),
        };
        view.set(&new_path, node);
    }
    view.record(Change::node(path, perms));
    Ok(())
}

pub(crate) fn rm(view: &mut View<'_>, who: Who<'_>, path: &str) -> Result<(), ErrorKind> {
    let node = match checked(view, who, path, Need::Write) {
        Ok(node) => node.clone(),
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
    let parent = path::parent(path).ok_or(ErrorKind::Einval)?;
    let root_perms = node.perms.clone();
    // Depth-first, children before their parent (siblings in child-list order), the removed
    // root last: the order in which Xen's daemon fires the watches.
    let mut stack = vec![(path.to_owned(), node, false)];
    while let Some((current, current_node, expanded)) = stack.pop() {
        if !expanded {
            let children: Vec<_> = current_node
                .children
                .iter()
                .rev()
                .map(|name| path::join(&current, name))
                .collect();
            stack.push((current, current_node, true));
            for child_path in children {
                if let Some(child) = view.get(&child_path) {
                    let child = child.clone();
                    stack.push((child_path, child, false));
                }
            }
            continue;
        }
        if current != path {
            view.record(Change {
                path: current.clone(),
                exact: true,
                perms: current_node.perms.clone(),
                old_perms: None,
            });
        }
        if who.unprivileged() && current_node.perms.owner() == who.caller.domid {
            view.add_own_entries(-1);
        }
        view.delete(&current);
    }
    view.record(Change::node(path, root_perms));
    let name = path::base_name(path);
    view.modify(parent, |node| node.children.remove(name));
    Ok(())
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
    let granted = node.perms.granted(who.caller);
    if !(granted.write && granted.owner) {
        return Err(refused(view, path));
    }
    if who.unprivileged() && perms.owner() != node.perms.owner() {
        return Err(ErrorKind::Eperm);
    }
    let old_perms = node.perms.clone();
    let new_size = node.charged_size() - 8 * old_perms.entries().len() + 8 * perms.entries().len();
    check_size(view, who, new_size)?;
    let stored = perms.clone();
    view.modify(path, |node| node.perms = stored);
    view.record(Change {
        old_perms: Some(old_perms),
        ..Change::node(path, perms)
    });
    Ok(())
}
