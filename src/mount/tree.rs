//! The inode table of a mounted repository: archives' item streams turned into directory trees.
//!
//! Inode 1 is the mount's root. With a whole repository mounted, each archive is a directory of
//! the root whose contents are built from its item stream the first time it is entered; with one
//! archive mounted, the root is that archive. Paths are validated like extract does (no `..`,
//! `.`, empty components): items that fail are counted and left out, so a hostile archive cannot
//! make the view point outside itself. Directories missing from the stream (a parent never stored
//! as an item) are filled in; a hardlink shares its first name's inode and raises its link count.

use crate::archive::item::{ChunkRef, Item, Kind, Xattr};
use crate::extract::components;
use std::collections::HashMap;
use std::sync::Arc;

pub const ROOT: u64 = 1;

/// File content as the chunk list plus the offset at which each chunk starts. A mount holds one
/// per file, so a file of one chunk (most small files) keeps no offsets.
#[derive(Debug, Default)]
pub struct Content {
    pub chunks: Box<[ChunkRef]>,
    /// `starts[i]` is the file offset of `chunks[i]`; empty for fewer than two chunks.
    starts: Box<[u64]>,
}

impl Content {
    fn new(chunks: Vec<ChunkRef>) -> Content {
        let mut starts = Vec::new();
        if chunks.len() > 1 {
            starts.reserve_exact(chunks.len());
            let mut off = 0u64;
            for c in &chunks {
                starts.push(off);
                off += c.1 as u64;
            }
        }
        Content { chunks: chunks.into_boxed_slice(), starts: starts.into_boxed_slice() }
    }

    /// File offset at which chunk `i` starts.
    pub fn start(&self, i: usize) -> u64 {
        self.starts.get(i).copied().unwrap_or(0)
    }

    pub fn len(&self) -> u64 {
        match self.chunks.last() {
            Some(c) => self.start(self.chunks.len() - 1) + c.1 as u64,
            None => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the chunk holding byte `offset` (None past the end).
    pub fn chunk_at(&self, offset: u64) -> Option<usize> {
        if offset >= self.len() {
            return None;
        }
        if self.starts.is_empty() {
            return Some(0);
        }
        Some(self.starts.partition_point(|&s| s <= offset) - 1)
    }
}

#[derive(Debug)]
pub struct Node {
    pub parent: u64,
    pub kind: Kind,
    pub mode: u32,
    /// Owner ids as shown (names were mapped to local ids when the items were read).
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// The stored access time (`create --atime`), else `mtime`.
    pub atime: i64,
    pub size: u64,
    pub rdev: u64,
    pub nlink: u32,
    pub target: Option<Vec<u8>>,
    pub xattrs: Vec<Xattr>,
    pub content: Arc<Content>,
    /// Directories: children sorted by name (after the build).
    pub children: Vec<(Vec<u8>, u64)>,
    /// An archive directory whose items are not loaded yet: its index in [`Tree::archives`].
    pub pending: Option<usize>,
}

impl Node {
    fn dir(parent: u64, mtime: i64) -> Node {
        Node {
            parent,
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime,
            atime: mtime,
            size: 0,
            rdev: 0,
            nlink: 2,
            target: None,
            xattrs: vec![],
            content: Arc::default(),
            children: vec![],
            pending: None,
        }
    }

    fn set_from(&mut self, it: Item) {
        self.kind = it.kind;
        self.mode = it.mode;
        self.uid = it.uid;
        self.gid = it.gid;
        self.mtime = it.mtime;
        self.atime = it.atime.unwrap_or(it.mtime);
        self.rdev = it.rdev;
        self.target = it.target;
        self.xattrs = it.xattrs;
        if it.kind == Kind::File {
            self.content = Arc::new(Content::new(it.chunks));
            self.size = self.content.len();
        } else if it.kind == Kind::Symlink {
            self.size = self.target.as_ref().map_or(0, |t| t.len() as u64);
        }
    }
}

/// An archive shown as a directory of the root (whole-repository mounts).
#[derive(Debug, Clone)]
pub struct ArchiveDir {
    pub name: String,
    pub mtime: i64,
}

#[derive(Debug, Default)]
pub struct Tree {
    /// `nodes[ino - 1]`.
    nodes: Vec<Node>,
    pub archives: Vec<ArchiveDir>,
    /// Items left out because their path was not valid.
    pub skipped: u64,
}

impl Tree {
    /// A root holding one directory per archive, none loaded yet.
    pub fn with_archives(archives: Vec<ArchiveDir>, now: i64) -> Tree {
        let mut t = Tree { nodes: vec![Node::dir(ROOT, now)], archives: vec![], skipped: 0 };
        let mut children = Vec::new();
        for (i, a) in archives.iter().enumerate() {
            let mut n = Node::dir(ROOT, a.mtime);
            n.pending = Some(i);
            // Unknown number of subdirectories until loaded: 1 tells find(1) not to count.
            n.nlink = 1;
            t.nodes.push(n);
            children.push((a.name.as_bytes().to_vec(), t.nodes.len() as u64));
        }
        children.sort();
        t.nodes[0].children = children;
        t.nodes[0].nlink = 2 + archives.len() as u32;
        t.archives = archives;
        t
    }

    /// A root that is one archive, to be filled with [`Tree::load`].
    pub fn single(mtime: i64) -> Tree {
        Tree { nodes: vec![Node::dir(ROOT, mtime)], archives: vec![], skipped: 0 }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(ino.checked_sub(1)? as usize)
    }

    fn get_mut(&mut self, ino: u64) -> &mut Node {
        &mut self.nodes[ino as usize - 1]
    }

    /// The archive directory `ino` still waiting for its items, if any.
    pub fn pending(&self, ino: u64) -> Option<usize> {
        self.get(ino).and_then(|n| n.pending)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let p = self.get(parent)?;
        p.children.binary_search_by(|(n, _)| n.as_slice().cmp(name)).ok().map(|i| p.children[i].1)
    }

    fn child_or_dir(&mut self, parent: u64, name: &[u8], mtime: i64, index: &mut HashMap<(u64, Vec<u8>), u64>) -> u64 {
        if let Some(&ino) = index.get(&(parent, name.to_vec())) {
            return ino;
        }
        self.nodes.push(Node::dir(parent, mtime));
        let ino = self.nodes.len() as u64;
        self.get_mut(parent).children.push((name.to_vec(), ino));
        index.insert((parent, name.to_vec()), ino);
        ino
    }

    /// Fill directory `root` with an archive's items, taken one at a time from `items` (a
    /// stream need not be held whole); stops at the first error.
    pub fn load(
        &mut self,
        root: u64,
        items: impl Iterator<Item = crate::error::Result<Item>>,
    ) -> crate::error::Result<()> {
        let mtime = self.get_mut(root).mtime;
        self.get_mut(root).pending = None;
        // (parent, name) -> inode for everything created in this load.
        let mut index: HashMap<(u64, Vec<u8>), u64> = HashMap::new();
        let mut masters: HashMap<Vec<u8>, u64> = HashMap::new();
        for it in items {
            let it = it?;
            let Some(comps) = components(&it.path) else {
                self.skipped += 1;
                continue;
            };
            let comps: Vec<Vec<u8>> = comps.into_iter().map(|c| c.to_vec()).collect();
            let mut parent = root;
            let mut ok = true;
            for c in &comps[..comps.len() - 1] {
                parent = self.child_or_dir(parent, c, mtime, &mut index);
                if self.get_mut(parent).kind != Kind::Dir {
                    ok = false;
                    break;
                }
            }
            if !ok {
                self.skipped += 1;
                continue;
            }
            let name = comps.last().expect("components() is never empty").clone();
            let key = (parent, name.clone());
            if it.kind == Kind::Hardlink {
                let Some(&src) = it.source.as_ref().and_then(|s| masters.get(s)) else {
                    self.skipped += 1;
                    continue;
                };
                if index.contains_key(&key) {
                    self.skipped += 1;
                    continue;
                }
                self.get_mut(parent).children.push((name, src));
                index.insert(key, src);
                self.get_mut(src).nlink += 1;
                continue;
            }
            let master = it.hardlink_master.then(|| it.path.clone());
            let ino = match index.get(&key) {
                // A directory filled in earlier (or a repeated path): the item's own data wins.
                Some(&ino) if self.get_mut(ino).kind == Kind::Dir && it.kind == Kind::Dir => ino,
                Some(_) => {
                    self.skipped += 1;
                    continue;
                }
                None => {
                    self.nodes.push(Node::dir(parent, mtime));
                    let ino = self.nodes.len() as u64;
                    self.get_mut(parent).children.push((name, ino));
                    index.insert(key, ino);
                    ino
                }
            };
            let n = self.get_mut(ino);
            n.set_from(it);
            if n.kind != Kind::Dir {
                n.nlink = 1;
            }
            if let Some(p) = master {
                masters.insert(p, ino);
            }
        }
        // Sort the directories this load touched and count their subdirectories.
        let mut dirs: Vec<u64> = index.values().copied().filter(|&i| self.get_mut(i).kind == Kind::Dir).collect();
        dirs.push(root);
        dirs.sort_unstable();
        dirs.dedup();
        for d in dirs {
            let mut children = std::mem::take(&mut self.get_mut(d).children);
            children.sort_by(|a, b| a.0.cmp(&b.0));
            let subdirs = children
                .iter()
                .filter(|(_, c)| self.get(*c).is_some_and(|n| n.kind == Kind::Dir && n.parent == d))
                .count();
            let n = self.get_mut(d);
            n.children = children;
            n.nlink = 2 + subdirs as u32;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn item(path: &str, kind: Kind) -> Item {
        let mut i = Item::new(path.as_bytes().to_vec(), kind);
        i.mode = 0o640;
        i
    }

    #[test]
    fn builds_tree_with_implicit_dirs_hardlinks_and_skips_hostile_paths() {
        let mut f = item("a/b/file", Kind::File);
        f.chunks = vec![ChunkRef(Id([1; 32]), 10), ChunkRef(Id([2; 32]), 5)];
        f.hardlink_master = true;
        let mut h = item("a/link", Kind::Hardlink);
        h.source = Some(b"a/b/file".to_vec());
        let items = vec![
            item("a", Kind::Dir),
            f,
            h,
            item("../evil", Kind::File),
            item("a//x", Kind::File),
            item("/abs", Kind::File),
        ];
        let mut t = Tree::single(0);
        t.load(ROOT, items.into_iter().map(Ok)).unwrap();
        assert_eq!(t.skipped, 3);
        let a = t.lookup(ROOT, b"a").unwrap();
        assert_eq!(t.get(a).unwrap().mode, 0o640);
        let b = t.lookup(a, b"b").unwrap();
        assert_eq!(t.get(b).unwrap().mode, 0o755, "filled-in directory");
        assert_eq!(t.get(a).unwrap().nlink, 3);
        let file = t.lookup(b, b"file").unwrap();
        assert_eq!(t.lookup(a, b"link"), Some(file));
        let n = t.get(file).unwrap();
        assert_eq!((n.size, n.nlink), (15, 2));
        assert_eq!(n.content.chunk_at(0), Some(0));
        assert_eq!(n.content.chunk_at(9), Some(0));
        assert_eq!(n.content.chunk_at(10), Some(1));
        assert_eq!(n.content.chunk_at(15), None);
        let names: Vec<_> = t.get(a).unwrap().children.iter().map(|c| c.0.clone()).collect();
        assert_eq!(names, vec![b"b".to_vec(), b"link".to_vec()]);
    }

    /// Contents of no, one and several chunks find the chunk holding each offset.
    #[test]
    fn content_maps_offsets_to_chunks_with_and_without_an_offset_table() {
        let c = |sizes: &[u32]| Content::new(sizes.iter().map(|&n| ChunkRef(Id([n as u8; 32]), n)).collect());
        let empty = c(&[]);
        assert_eq!((empty.len(), empty.chunk_at(0)), (0, None));
        let one = c(&[7]);
        assert_eq!((one.len(), one.start(0)), (7, 0));
        assert_eq!([one.chunk_at(0), one.chunk_at(6), one.chunk_at(7)], [Some(0), Some(0), None]);
        let three = c(&[4, 1, 5]);
        assert_eq!(three.len(), 10);
        assert_eq!([three.start(0), three.start(1), three.start(2)], [0, 4, 5]);
        let at: Vec<_> = (0..11).map(|o| three.chunk_at(o)).collect();
        let want = [0, 0, 0, 0, 1, 2, 2, 2, 2, 2].map(Some).into_iter().chain([None]).collect::<Vec<_>>();
        assert_eq!(at, want);
    }

    #[test]
    fn archives_load_lazily() {
        let archives = vec![ArchiveDir { name: "b".into(), mtime: 1 }, ArchiveDir { name: "a".into(), mtime: 2 }];
        let mut t = Tree::with_archives(archives, 0);
        let a = t.lookup(ROOT, b"a").unwrap();
        assert_eq!(t.pending(a), Some(1));
        t.load(a, std::iter::once(Ok(item("x", Kind::File)))).unwrap();
        assert_eq!(t.pending(a), None);
        assert!(t.lookup(a, b"x").is_some());
        assert!(t.pending(t.lookup(ROOT, b"b").unwrap()).is_some());
    }
}
