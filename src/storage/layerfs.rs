//! Layered trees read in user space: the merged view of a stack of layer directories (overlay
//! semantics, as kernel overlay, fuse-overlayfs and nook's unpacker store them), a
//! container's changes against its image (`nook diff`), and OCI layer tarballs of those
//! changes (`nook commit`) or of the whole merged tree (`nook export`).
//!
//! Whiteouts appear as 0/0 character devices (kernel overlay, fuse-overlayfs, the unpacker)
//! or as `.wh.NAME` files (fuse-overlayfs where mknod is refused); opaque directories carry
//! `user.overlay.opaque`, `trusted.overlay.opaque` or `user.fuseoverlayfs.opaque` = `y`, or
//! contain a `.wh..wh..opq` file. All of this runs as root of the user namespace, so files
//! owned by subordinate ids are readable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::unpack::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::userns::KeepId;

/// The xattrs that mark an opaque directory, in any overlay implementation's dialect.
pub const OPAQUE_XATTRS: [&str; 3] = ["user.overlay.opaque", "trusted.overlay.opaque", "user.fuseoverlayfs.opaque"];

/// Owners as stored versus as the container sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shift {
    /// Stored with the store's maps: no change.
    #[default]
    None,
    /// The tree is stored for a keep-id container: translate its owners to image ids.
    FromKeepId(KeepId),
    /// Writing a tree for a keep-id container: translate image ids to stored ids.
    ToKeepId(KeepId),
}

impl Shift {
    pub fn uid(&self, id: u32) -> u32 {
        match self {
            Shift::None => id,
            Shift::FromKeepId(k) => k.to_container(id, false),
            Shift::ToKeepId(k) => k.from_container(id, false),
        }
    }

    pub fn gid(&self, id: u32) -> u32 {
        match self {
            Shift::None => id,
            Shift::FromKeepId(k) => k.to_container(id, true),
            Shift::ToKeepId(k) => k.from_container(id, true),
        }
    }
}

/// Is this a whiteout device (0/0 character device)?
pub fn is_whiteout_dev(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// The name a directory entry hides, if it is a whiteout.
pub fn whiteout_target(name: &OsStr, md: &Metadata) -> Option<OsString> {
    if is_whiteout_dev(md) {
        return Some(name.to_os_string());
    }
    let b = name.as_bytes();
    if b == OPAQUE_MARKER.as_bytes() {
        return None;
    }
    b.strip_prefix(WHITEOUT_PREFIX.as_bytes()).filter(|h| !h.is_empty()).map(|h| OsStr::from_bytes(h).to_os_string())
}

/// Is the directory at `path` opaque (hides what lower layers have at the same path)?
pub fn is_opaque_dir(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    OPAQUE_XATTRS.iter().any(|x| rustix::fs::lgetxattr(path, *x, &mut buf).is_ok_and(|n| n >= 1 && buf[0] == b'y'))
        || fs::symlink_metadata(path.join(OPAQUE_MARKER)).is_ok()
}

/// A file of the merged tree: its path inside the tree and where it really is.
pub struct Node<'a> {
    pub rel: &'a Path,
    pub path: &'a Path,
    pub md: &'a Metadata,
}

type Visible = BTreeMap<OsString, Option<(usize, PathBuf, Metadata)>>;

/// The entries of one merged directory whose layer directories are `srcs` (top first):
/// name -> (index of the layer it comes from, real path, metadata), or None when whited out.
fn merged_children(srcs: &[PathBuf]) -> io::Result<Visible> {
    let mut map: Visible = BTreeMap::new();
    for (idx, src) in srcs.iter().enumerate() {
        let rd = match fs::read_dir(src) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(with_path(e, src)),
        };
        for e in rd {
            let e = e.map_err(|e| with_path(e, src))?;
            let name = e.file_name();
            if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
                continue;
            }
            let path = e.path();
            let md = fs::symlink_metadata(&path).map_err(|e| with_path(e, &path))?;
            if let Some(hidden) = whiteout_target(&name, &md) {
                map.entry(hidden).or_insert(None);
                continue;
            }
            map.entry(name).or_insert(Some((idx, path, md)));
        }
    }
    Ok(map)
}

fn with_path(e: io::Error, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

/// Visits every file of the merged tree of `layers` (top first), parents before children, in
/// name order. The root itself is not visited.
pub fn walk_merged(layers: &[PathBuf], f: &mut dyn FnMut(&Node<'_>) -> io::Result<()>) -> io::Result<()> {
    let mut srcs: Vec<PathBuf> = Vec::new();
    for l in layers {
        srcs.push(l.clone());
        if is_opaque_dir(l) {
            break;
        }
    }
    visit_merged(Path::new(""), &srcs, f)
}

fn visit_merged(rel: &Path, srcs: &[PathBuf], f: &mut dyn FnMut(&Node<'_>) -> io::Result<()>) -> io::Result<()> {
    for (name, entry) in merged_children(srcs)? {
        let Some((idx, path, md)) = entry else { continue };
        let r = rel.join(&name);
        f(&Node { rel: &r, path: &path, md: &md })?;
        if !md.is_dir() {
            continue;
        }
        let mut sub = vec![path.clone()];
        if !is_opaque_dir(&path) {
            for lower in &srcs[idx + 1..] {
                let p = lower.join(&name);
                match fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => {
                        let opaque = is_opaque_dir(&p);
                        sub.push(p);
                        if opaque {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(_) => {
                        let mut wh = OsString::from(WHITEOUT_PREFIX);
                        wh.push(&name);
                        if fs::symlink_metadata(lower.join(wh)).is_ok() {
                            break;
                        }
                    }
                }
            }
        }
        visit_merged(&r, &sub, f)?;
    }
    Ok(())
}

/// The metadata that decides whether a file changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    rdev: u64,
    link: Option<PathBuf>,
}

impl Stat {
    fn of(path: &Path, md: &Metadata, shift: Shift) -> Stat {
        Stat {
            kind: md.mode() & libc::S_IFMT,
            mode: md.mode() & 0o7777,
            uid: shift.uid(md.uid()),
            gid: shift.gid(md.gid()),
            size: if md.is_dir() { 0 } else { md.size() },
            mtime: (md.mtime(), md.mtime_nsec()),
            rdev: md.rdev(),
            link: md.file_type().is_symlink().then(|| fs::read_link(path).unwrap_or_default()),
        }
    }

    fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }

    /// Directories: only owner and mode count (their times change with their content).
    fn differs(&self, other: &Stat) -> bool {
        if self.kind != other.kind || self.mode != other.mode || self.uid != other.uid || self.gid != other.gid {
            return true;
        }
        !self.is_dir()
            && (self.size != other.size
                || self.mtime != other.mtime
                || self.rdev != other.rdev
                || self.link != other.link)
    }
}

/// The image's merged tree, indexed.
struct LowerIndex {
    stats: HashMap<PathBuf, Stat>,
    children: HashMap<PathBuf, Vec<OsString>>,
}

impl LowerIndex {
    fn build(layers: &[PathBuf]) -> io::Result<LowerIndex> {
        let mut idx = LowerIndex { stats: HashMap::new(), children: HashMap::new() };
        idx.children.insert(PathBuf::new(), Vec::new());
        walk_merged(layers, &mut |n| {
            let parent = n.rel.parent().map(Path::to_path_buf).unwrap_or_default();
            if let Some(name) = n.rel.file_name() {
                idx.children.entry(parent).or_default().push(name.to_os_string());
            }
            let st = Stat::of(n.path, n.md, Shift::None);
            if st.is_dir() {
                idx.children.entry(n.rel.to_path_buf()).or_default();
            }
            idx.stats.insert(n.rel.to_path_buf(), st);
            Ok(())
        })?;
        Ok(idx)
    }
}

/// One line of `nook diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChangeKind {
    #[serde(rename = "A")]
    Added,
    #[serde(rename = "C")]
    Changed,
    #[serde(rename = "D")]
    Deleted,
}

impl ChangeKind {
    pub fn letter(&self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// Absolute path inside the container.
    pub path: PathBuf,
    pub kind: ChangeKind,
}

/// How the container's own tree is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    /// An overlay upper directory: only what changed, with whiteouts.
    Upper,
    /// A full copy of the root filesystem (vfs).
    Full,
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<(OsString, PathBuf, Metadata)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let e = e.map_err(|e| with_path(e, dir))?;
        let p = e.path();
        let md = fs::symlink_metadata(&p).map_err(|e| with_path(e, &p))?;
        v.push((e.file_name(), p, md));
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

struct Differ<'a> {
    lower: &'a LowerIndex,
    kind: TreeKind,
    shift: Shift,
    /// Mount points the runtime created (relative paths): not changes when added.
    exclude: &'a HashSet<PathBuf>,
    out: Vec<(PathBuf, ChangeKind)>,
}

impl Differ<'_> {
    /// Compares directory `dir` (at `rel`) of the container's tree; returns whether anything
    /// inside it changed.
    fn dir(&mut self, rel: &Path, dir: &Path, lower_is_dir: bool) -> io::Result<bool> {
        let mut changed = false;
        let mut present: HashSet<OsString> = HashSet::new();
        for (name, path, md) in sorted_entries(dir)? {
            if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
                continue;
            }
            if self.kind == TreeKind::Upper
                && let Some(hidden) = whiteout_target(&name, &md)
            {
                let r = rel.join(&hidden);
                if lower_is_dir && self.lower.stats.contains_key(&r) {
                    self.out.push((r, ChangeKind::Deleted));
                    changed = true;
                }
                present.insert(hidden);
                continue;
            }
            present.insert(name.clone());
            let r = rel.join(&name);
            let st = Stat::of(&path, &md, self.shift);
            let low = if lower_is_dir { self.lower.stats.get(&r) } else { None };
            if st.is_dir() {
                let idx = self.out.len();
                let low_dir = low.is_some_and(Stat::is_dir);
                let opaque = self.kind == TreeKind::Upper && is_opaque_dir(&path);
                // Below an opaque directory (or a new one) the lower tree does not show.
                let sub = self.dir(&r, &path, low_dir)?;
                let hidden = if low_dir && (opaque || self.kind == TreeKind::Full) {
                    self.deleted_below(&r, &path)?
                } else {
                    false
                };
                let kind = match low {
                    None if self.exclude.contains(&r) && !sub => None,
                    None => Some(ChangeKind::Added),
                    Some(l) if !l.is_dir() => Some(ChangeKind::Changed),
                    Some(l) if sub || hidden || l.differs(&st) => Some(ChangeKind::Changed),
                    Some(_) => None,
                };
                if let Some(k) = kind {
                    self.out.insert(idx, (r, k));
                    changed = true;
                }
                continue;
            }
            let kind = match low {
                None if self.exclude.contains(&r) && md.len() == 0 => None,
                None => Some(ChangeKind::Added),
                // Anything in an upper directory was written (or copied up to be changed).
                Some(_) if self.kind == TreeKind::Upper => Some(ChangeKind::Changed),
                Some(l) if l.differs(&st) => Some(ChangeKind::Changed),
                Some(_) => None,
            };
            if let Some(k) = kind {
                self.out.push((r, k));
                changed = true;
            }
        }
        if self.kind == TreeKind::Full && rel.as_os_str().is_empty() {
            changed |= self.deleted_among(rel, &present);
        }
        Ok(changed)
    }

    /// Lower children of `rel` missing from the tree's directory `dir`: deleted.
    fn deleted_below(&mut self, rel: &Path, dir: &Path) -> io::Result<bool> {
        let mut present = HashSet::new();
        for (name, _, md) in sorted_entries(dir)? {
            match whiteout_target(&name, &md) {
                Some(h) if self.kind == TreeKind::Upper => present.insert(h),
                _ => present.insert(name),
            };
        }
        Ok(self.deleted_among(rel, &present))
    }

    fn deleted_among(&mut self, rel: &Path, present: &HashSet<OsString>) -> bool {
        let Some(children) = self.lower.children.get(rel) else { return false };
        let mut any = false;
        let mut gone: Vec<&OsString> = children.iter().filter(|c| !present.contains(*c)).collect();
        gone.sort();
        for c in gone {
            self.out.push((rel.join(c), ChangeKind::Deleted));
            any = true;
        }
        any
    }
}

/// The changes of a container's tree (`tree`, an upper directory or a full copy) against its
/// image's layers (`lower`, top first), sorted by path. `exclude` are mount points (absolute
/// or relative paths) that do not count as added.
pub fn changes(
    lower: &[PathBuf],
    tree: &Path,
    kind: TreeKind,
    shift: Shift,
    exclude: &[PathBuf],
) -> io::Result<Vec<Change>> {
    let idx = LowerIndex::build(lower)?;
    let exclude = relative_set(exclude);
    let mut d = Differ { lower: &idx, kind, shift, exclude: &exclude, out: Vec::new() };
    d.dir(Path::new(""), tree, true)?;
    let mut out: Vec<Change> =
        d.out.into_iter().map(|(p, kind)| Change { path: Path::new("/").join(p), kind }).collect();
    out.sort_by(|a, b| a.path.as_os_str().as_bytes().cmp(b.path.as_os_str().as_bytes()));
    out.dedup();
    Ok(out)
}

fn relative_set(paths: &[PathBuf]) -> HashSet<PathBuf> {
    paths.iter().map(|p| p.strip_prefix("/").unwrap_or(p).to_path_buf()).collect()
}

/// Writes OCI layer tar entries.
pub struct TarWriter<W: Write> {
    b: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    shift: Shift,
}

impl<W: Write> TarWriter<W> {
    pub fn new(w: W, shift: Shift) -> TarWriter<W> {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        TarWriter { b, links: HashMap::new(), shift }
    }

    fn header(&self, md: &Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(u64::from(self.shift.uid(md.uid())));
        h.set_gid(u64::from(self.shift.gid(md.gid())));
        h.set_mtime(md.mtime().max(0) as u64);
        h.set_size(0);
        h
    }

    /// Adds the file at `path` as `rel` (relative to the tree's root).
    pub fn entry(&mut self, rel: &Path, path: &Path, md: &Metadata) -> io::Result<()> {
        let ft = md.file_type();
        if ft.is_dir() {
            let mut h = self.header(md, tar::EntryType::Directory);
            return self.b.append_data(&mut h, rel, io::empty());
        }
        if ft.is_symlink() {
            let target = fs::read_link(path)?;
            let mut h = self.header(md, tar::EntryType::Symlink);
            return self.b.append_link(&mut h, rel, target);
        }
        if md.nlink() > 1 && !is_whiteout_dev(md) {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                let mut h = self.header(md, tar::EntryType::Link);
                let first = first.clone();
                return self.b.append_link(&mut h, rel, first);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if ft.is_file() {
            let f = fs::File::open(path).map_err(|e| with_path(e, path))?;
            let mut h = self.header(md, tar::EntryType::Regular);
            h.set_size(md.size());
            return self.b.append_data(&mut h, rel, f);
        }
        if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = self.header(md, kind);
            let (major, minor) = (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()));
            h.set_device_major(major)?;
            h.set_device_minor(minor)?;
            return self.b.append_data(&mut h, rel, io::empty());
        }
        Ok(()) // sockets are not part of images
    }

    /// A whiteout for `rel` (the hidden path).
    pub fn whiteout(&mut self, rel: &Path) -> io::Result<()> {
        let name = rel.file_name().unwrap_or_default();
        let mut wh = OsString::from(WHITEOUT_PREFIX);
        wh.push(name);
        let p = rel.parent().map(|p| p.join(&wh)).unwrap_or_else(|| PathBuf::from(wh));
        self.marker(&p)
    }

    /// The marker that makes directory `rel` opaque.
    pub fn opaque(&mut self, rel: &Path) -> io::Result<()> {
        self.marker(&rel.join(OPAQUE_MARKER))
    }

    fn marker(&mut self, p: &Path) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        self.b.append_data(&mut h, p, io::empty())
    }

    pub fn finish(self) -> io::Result<W> {
        self.b.into_inner()
    }
}

/// Writes the layer of an overlay upper directory: its files, its whiteouts as `.wh.` entries
/// and its opaque directories as `.wh..wh..opq` markers. Empty files and directories at
/// `exclude` (mount points the runtime made) are left out.
pub fn write_upper_layer<W: Write>(upper: &Path, exclude: &[PathBuf], tw: &mut TarWriter<W>) -> io::Result<()> {
    let exclude = relative_set(exclude);
    fn walk<W: Write>(rel: &Path, dir: &Path, ex: &HashSet<PathBuf>, tw: &mut TarWriter<W>) -> io::Result<()> {
        for (name, path, md) in sorted_entries(dir)? {
            let r = rel.join(&name);
            if ex.contains(&r)
                && (md.is_file() && md.len() == 0 || md.is_dir() && fs::read_dir(&path)?.next().is_none())
            {
                continue;
            }
            if name.as_bytes() == OPAQUE_MARKER.as_bytes() {
                tw.opaque(rel)?;
                continue;
            }
            if let Some(hidden) = whiteout_target(&name, &md) {
                tw.whiteout(&rel.join(hidden))?;
                continue;
            }
            tw.entry(&r, &path, &md)?;
            if md.is_dir() {
                let marker_file = fs::symlink_metadata(path.join(OPAQUE_MARKER)).is_ok();
                if !marker_file && is_opaque_dir(&path) {
                    tw.opaque(&r)?;
                }
                walk(&r, &path, ex, tw)?;
            }
        }
        Ok(())
    }
    walk(Path::new(""), upper, &exclude, tw)
}

/// Writes the layer of a full copy: the changed and added files, and whiteouts for what was
/// deleted (from [`changes`] with [`TreeKind::Full`]). The other names of a changed file with
/// hardlinks go along as links, so the link survives in the layer.
pub fn write_full_layer<W: Write>(tree: &Path, changes: &[Change], tw: &mut TarWriter<W>) -> io::Result<()> {
    let mut written: HashSet<PathBuf> = HashSet::new();
    let mut linked: HashSet<(u64, u64)> = HashSet::new();
    for c in changes {
        let rel = c.path.strip_prefix("/").unwrap_or(&c.path);
        match c.kind {
            ChangeKind::Deleted => tw.whiteout(rel)?,
            ChangeKind::Added | ChangeKind::Changed => {
                let path = tree.join(rel);
                let md = fs::symlink_metadata(&path).map_err(|e| with_path(e, &path))?;
                if md.is_file() && md.nlink() > 1 {
                    linked.insert((md.dev(), md.ino()));
                }
                tw.entry(rel, &path, &md)?;
                written.insert(rel.to_path_buf());
            }
        }
    }
    if linked.is_empty() {
        return Ok(());
    }
    let mut others: Vec<(PathBuf, PathBuf, Metadata)> = Vec::new();
    fn find(
        rel: &Path,
        dir: &Path,
        linked: &HashSet<(u64, u64)>,
        out: &mut Vec<(PathBuf, PathBuf, Metadata)>,
    ) -> io::Result<()> {
        for (name, path, md) in sorted_entries(dir)? {
            let r = rel.join(&name);
            if md.is_dir() {
                find(&r, &path, linked, out)?;
            } else if md.is_file() && linked.contains(&(md.dev(), md.ino())) {
                out.push((r, path, md));
            }
        }
        Ok(())
    }
    find(Path::new(""), tree, &linked, &mut others)?;
    for (rel, path, md) in others {
        if !written.contains(&rel) {
            tw.entry(&rel, &path, &md)?;
        }
    }
    Ok(())
}

/// Writes every file of the merged tree of `layers` (top first). `shift` applies to the files
/// of the top layer only (a keep-id container's own tree); image layers are never shifted.
pub fn write_merged<W: Write>(layers: &[PathBuf], top_shift: Shift, w: W) -> io::Result<W> {
    let mut plain = TarWriter::new(w, Shift::None);
    let top = layers.first().cloned();
    walk_merged(layers, &mut |n| {
        let shifted = top.as_ref().is_some_and(|t| n.path.starts_with(t));
        plain.shift = if shifted { top_shift } else { Shift::None };
        plain.entry(n.rel, n.path, n.md)
    })?;
    plain.finish()
}

/// Copies the tree `src` to the new directory `dst` as it is (whiteouts, opaque markers and
/// hardlinks included), changing owners with `shift`. Runs as root of the user namespace.
pub fn copy_tree(src: &Path, dst: &Path, shift: Shift) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let md = fs::symlink_metadata(src)?;
    fs::create_dir(dst)?;
    copy_dir(src, dst, shift, &mut links)?;
    finish_meta(dst, &md, shift, false)
}

fn copy_dir(src: &Path, dst: &Path, shift: Shift, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    for (name, s, md) in sorted_entries(src)? {
        let d = dst.join(&name);
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(&d)?;
            copy_dir(&s, &d, shift, links)?;
            let mut buf = [0u8; 4];
            for x in OPAQUE_XATTRS {
                if rustix::fs::lgetxattr(s.as_path(), x, &mut buf).is_ok_and(|n| n >= 1 && buf[0] == b'y') {
                    rustix::fs::lsetxattr(d.as_path(), x, b"y", rustix::fs::XattrFlags::empty())?;
                }
            }
            finish_meta(&d, &md, shift, false)?;
            continue;
        }
        if md.nlink() > 1 && !is_whiteout_dev(&md) {
            let key = (md.dev(), md.ino());
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &d)?;
                continue;
            }
            links.insert(key, d.clone());
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
            finish_meta(&d, &md, shift, true)?;
        } else if ft.is_file() {
            fs::copy(&s, &d)?;
            finish_meta(&d, &md, shift, false)?;
        } else if ft.is_fifo() || is_whiteout_dev(&md) {
            let kind = if ft.is_fifo() { rustix::fs::FileType::Fifo } else { rustix::fs::FileType::CharacterDevice };
            rustix::fs::mknodat(
                rustix::fs::CWD,
                d.as_path(),
                kind,
                rustix::fs::Mode::from_raw_mode(md.mode() & 0o7777),
                0,
            )?;
            finish_meta(&d, &md, shift, false)?;
        }
    }
    Ok(())
}

/// Gives `dst` the owner (shifted), mode and times of `md`.
pub(crate) fn finish_meta(dst: &Path, md: &Metadata, shift: Shift, symlink: bool) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(shift.uid(md.uid())), Some(shift.gid(md.gid())))?;
    if !symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: md.atime(), tv_nsec: md.atime_nsec() },
        last_modification: rustix::fs::Timespec { tv_sec: md.mtime(), tv_nsec: md.mtime_nsec() },
    };
    rustix::fs::utimensat(rustix::fs::CWD, dst, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    fn merged(layers: &[PathBuf]) -> Vec<String> {
        let mut v = Vec::new();
        walk_merged(layers, &mut |n| {
            v.push(n.rel.display().to_string());
            Ok(())
        })
        .unwrap();
        v
    }

    fn mark_opaque(p: &Path) {
        // Unprivileged tests: the marker file form (xattrs need a user namespace for user.*
        // on some filesystems; both are read the same way).
        fs::write(p.join(OPAQUE_MARKER), b"").unwrap();
    }

    #[test]
    fn merged_view_honours_whiteout_files_and_opaque_markers() {
        let d = tempfile::tempdir().unwrap();
        let (top, low) = (d.path().join("top"), d.path().join("low"));
        write(&low.join("a"), "a");
        write(&low.join("b"), "b");
        write(&low.join("dir/old"), "o");
        write(&low.join("keep/x"), "x");
        write(&top.join(".wh.a"), "");
        fs::create_dir_all(top.join("dir")).unwrap();
        mark_opaque(&top.join("dir"));
        write(&top.join("dir/new"), "n");
        write(&top.join("keep/y"), "y");
        assert_eq!(merged(&[top, low]), vec!["b", "dir", "dir/new", "keep", "keep/x", "keep/y"]);
    }

    #[test]
    fn changes_of_an_upper_dir() {
        let d = tempfile::tempdir().unwrap();
        let (up, low) = (d.path().join("up"), d.path().join("low"));
        write(&low.join("etc/passwd"), "p");
        write(&low.join("etc/group"), "g");
        write(&low.join("opt/old"), "o");
        write(&low.join("bin/vi"), "v");
        write(&up.join("etc/passwd"), "p2");
        write(&up.join("etc/new"), "n");
        write(&up.join("bin/.wh.vi"), "");
        fs::create_dir_all(up.join("opt")).unwrap();
        mark_opaque(&up.join("opt"));
        write(&up.join("opt/fresh"), "f");
        write(&up.join("added/deep/file"), "x");
        let c = changes(std::slice::from_ref(&low), &up, TreeKind::Upper, Shift::None, &[]).unwrap();
        let s: Vec<String> = c.iter().map(|c| format!("{} {}", c.kind.letter(), c.path.display())).collect();
        assert_eq!(
            s,
            vec![
                "A /added",
                "A /added/deep",
                "A /added/deep/file",
                "C /bin",
                "D /bin/vi",
                "C /etc",
                "A /etc/new",
                "C /etc/passwd",
                "C /opt",
                "A /opt/fresh",
                "D /opt/old",
            ]
        );
    }

    #[test]
    fn changes_of_a_full_copy() {
        let d = tempfile::tempdir().unwrap();
        let (tree, low) = (d.path().join("tree"), d.path().join("low"));
        write(&low.join("etc/passwd"), "p");
        write(&low.join("etc/group"), "g");
        write(&low.join("gone/x"), "x");
        // Owners are kept: the test's own ids (or root's).
        copy_tree(&low, &tree, Shift::None).unwrap();
        assert!(changes(std::slice::from_ref(&low), &tree, TreeKind::Full, Shift::None, &[]).unwrap().is_empty());
        fs::write(tree.join("etc/passwd"), "changed!").unwrap();
        fs::remove_dir_all(tree.join("gone")).unwrap();
        write(&tree.join("new"), "n");
        let c = changes(&[low], &tree, TreeKind::Full, Shift::None, &["/new2".into()]).unwrap();
        let s: Vec<String> = c.iter().map(|c| format!("{} {}", c.kind.letter(), c.path.display())).collect();
        assert_eq!(s, vec!["C /etc", "C /etc/passwd", "D /gone", "A /new"]);
    }

    #[test]
    fn layer_tar_has_oci_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path().join("up");
        write(&up.join(".wh.gone"), "");
        fs::create_dir_all(up.join("opq")).unwrap();
        mark_opaque(&up.join("opq"));
        write(&up.join("f"), "data");
        fs::hard_link(up.join("f"), up.join("g")).unwrap();
        let mut tw = TarWriter::new(Vec::new(), Shift::None);
        write_upper_layer(&up, &[], &mut tw).unwrap();
        let data = tw.finish().unwrap();
        let mut a = tar::Archive::new(&data[..]);
        let names: Vec<(String, tar::EntryType)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().entry_type())
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (".wh.gone".to_string(), tar::EntryType::Regular),
                ("f".to_string(), tar::EntryType::Regular),
                ("g".to_string(), tar::EntryType::Link),
                ("opq".to_string(), tar::EntryType::Directory),
                ("opq/.wh..wh..opq".to_string(), tar::EntryType::Regular),
            ]
        );
    }

    #[test]
    fn keep_id_shift_round_trips() {
        let k = KeepId { uid: 1000, gid: 1000 };
        for id in [0, 1, 999, 1000, 1001, 65536] {
            assert_eq!(Shift::FromKeepId(k).uid(Shift::ToKeepId(k).uid(id)), id);
        }
        assert_eq!(Shift::ToKeepId(k).uid(1000), 0);
        assert_eq!(Shift::FromKeepId(k).uid(0), 1000);
    }
}
