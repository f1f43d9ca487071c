//! Binary encodings of akd's tree records, for [`super::DirectoryStorage`].
//!
//! Fixed layouts, big-endian integers; a node is about 200 bytes. akd only
//! derives serde behind a feature meant for tests, and a tree of 100,000
//! users has over 200,000 nodes, so a compact hand-laid format pays.
//!
//! ```text
//! label    = len (u32) || val (32)
//! node     = last_epoch (u64) || min_descendant_epoch (u64) || parent (label)
//!            || type (u8: 1 leaf, 2 root, 3 interior)
//!            || left (0 | 1 label) || right (0 | 1 label) || hash (32)
//! record   = label || node || (0 | 1 node)        -- latest, then previous
//! azks     = latest_epoch (u64) || num_nodes (u64)
//! ```

use akd::storage::types::DbRecord;
use akd::tree_node::{TreeNode, TreeNodeWithPreviousValue};
use akd::{Azks, NodeLabel};

/// Why stored bytes are not a record.
#[derive(Debug)]
pub(crate) struct CodecError(pub String);

pub(crate) fn encode_azks(a: &Azks) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&a.latest_epoch.to_be_bytes());
    out.extend_from_slice(&a.num_nodes.to_be_bytes());
    out
}

pub(crate) fn decode_azks(b: &[u8]) -> Result<Azks, CodecError> {
    let mut r = Reader(b);
    let latest = r.u64()?;
    let nodes = r.u64()?;
    r.end()?;
    Ok(DbRecord::build_azks(latest, nodes))
}

fn put_label(out: &mut Vec<u8>, l: &NodeLabel) {
    out.extend_from_slice(&l.label_len.to_be_bytes());
    out.extend_from_slice(&l.label_val);
}

fn put_opt_label(out: &mut Vec<u8>, l: &Option<NodeLabel>) {
    match l {
        Some(l) => {
            out.push(1);
            put_label(out, l);
        }
        None => out.push(0),
    }
}

fn put_node(out: &mut Vec<u8>, n: &TreeNode) {
    out.extend_from_slice(&n.last_epoch.to_be_bytes());
    out.extend_from_slice(&n.min_descendant_epoch.to_be_bytes());
    put_label(out, &n.parent);
    out.push(n.node_type as u8);
    put_opt_label(out, &n.left_child);
    put_opt_label(out, &n.right_child);
    out.extend_from_slice(&n.hash.0);
}

pub(crate) fn encode_node(n: &TreeNodeWithPreviousValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    put_label(&mut out, &n.label);
    put_node(&mut out, &n.latest_node);
    match &n.previous_node {
        Some(p) => {
            out.push(1);
            put_node(&mut out, p);
        }
        None => out.push(0),
    }
    out
}

struct Node {
    last_epoch: u64,
    min_descendant_epoch: u64,
    parent: ([u8; 32], u32),
    node_type: u8,
    left: Option<NodeLabel>,
    right: Option<NodeLabel>,
    hash: [u8; 32],
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError("stored tree record is truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes32(&mut self) -> Result<[u8; 32], CodecError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32)?);
        Ok(a)
    }
    fn label(&mut self) -> Result<([u8; 32], u32), CodecError> {
        let len = self.u32()?;
        Ok((self.bytes32()?, len))
    }
    fn flag(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(CodecError(format!("bad flag {other} in tree record"))),
        }
    }
    fn opt_label(&mut self) -> Result<Option<NodeLabel>, CodecError> {
        if self.flag()? {
            let (val, len) = self.label()?;
            Ok(Some(NodeLabel::new(val, len)))
        } else {
            Ok(None)
        }
    }
    fn node(&mut self) -> Result<Node, CodecError> {
        let last_epoch = self.u64()?;
        let min_descendant_epoch = self.u64()?;
        let parent = self.label()?;
        let node_type = self.u8()?;
        if !(1..=3).contains(&node_type) {
            return Err(CodecError(format!("bad node type {node_type}")));
        }
        Ok(Node {
            last_epoch,
            min_descendant_epoch,
            parent,
            node_type,
            left: self.opt_label()?,
            right: self.opt_label()?,
            hash: self.bytes32()?,
        })
    }
    fn end(&self) -> Result<(), CodecError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CodecError("trailing bytes after tree record".into()))
        }
    }
}

pub(crate) fn decode_node(b: &[u8]) -> Result<TreeNodeWithPreviousValue, CodecError> {
    let mut r = Reader(b);
    let (label_val, label_len) = r.label()?;
    let latest = r.node()?;
    let previous = if r.flag()? { Some(r.node()?) } else { None };
    r.end()?;
    let p = previous.as_ref();
    Ok(DbRecord::build_tree_node_with_previous_value(
        label_val,
        label_len,
        latest.last_epoch,
        latest.min_descendant_epoch,
        latest.parent.0,
        latest.parent.1,
        latest.node_type,
        latest.left,
        latest.right,
        latest.hash,
        p.map(|p| p.last_epoch),
        p.map(|p| p.min_descendant_epoch),
        p.map(|p| p.parent.0),
        p.map(|p| p.parent.1),
        p.map(|p| p.node_type),
        p.and_then(|p| p.left),
        p.and_then(|p| p.right),
        p.map(|p| p.hash),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use akd::AzksValue;
    use akd::tree_node::TreeNodeType;

    fn node(epoch: u64, kids: bool) -> TreeNode {
        let l = |n: u8, len| NodeLabel::new([n; 32], len);
        TreeNode {
            label: l(7, 12),
            last_epoch: epoch,
            min_descendant_epoch: 1,
            parent: l(3, 2),
            node_type: if kids {
                TreeNodeType::Interior
            } else {
                TreeNodeType::Leaf
            },
            left_child: kids.then(|| l(8, 13)),
            right_child: kids.then(|| l(9, 13)),
            hash: AzksValue([epoch as u8; 32]),
        }
    }

    #[test]
    fn nodes_round_trip() {
        for (latest, previous) in [
            (node(5, true), Some(node(4, false))),
            (node(1, false), None),
        ] {
            let rec = TreeNodeWithPreviousValue {
                label: latest.label,
                latest_node: latest,
                previous_node: previous,
            };
            let bytes = encode_node(&rec);
            assert_eq!(decode_node(&bytes).unwrap(), rec);
            assert!(decode_node(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_node(&longer).is_err());
        }
        let a = DbRecord::build_azks(9, 1234);
        let back = decode_azks(&encode_azks(&a)).unwrap();
        assert_eq!((back.latest_epoch, back.num_nodes), (9, 1234));
    }
}
