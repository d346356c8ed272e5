//! Unpacking a layer tarball into a directory, safely.
//!
//! Runs inside the user namespace as its root, so owners in the tar map into the subordinate
//! range. Every path is resolved with `openat2(RESOLVE_BENEATH)` from the layer directory, and
//! the final component is always created with `*at` calls that never follow symlinks, so no
//! entry can write outside the layer: `..` components and absolute paths are refused, and so
//! are entries whose parent path or hardlink target leads out through a symlink.
//!
//! Whiteouts become what both kernel overlay (`userxattr`) and fuse-overlayfs read: `.wh.NAME`
//! a 0/0 character device `NAME`, and `.wh..wh..opq` the `user.overlay.opaque=y` xattr on the
//! directory.

use std::ffi::{CStr, CString, OsStr};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use sha2::{Digest, Sha256};

/// The xattr marking an opaque directory (kernel overlay with `userxattr`; fuse-overlayfs reads it too).
pub const OPAQUE_XATTR: &str = "user.overlay.opaque";
/// Prefix of whiteout entries in OCI layer tarballs.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker in OCI layer tarballs.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("refusing tar entry {path:?}: {why}")]
    Refused { path: String, why: &'static str },
    #[error("tar entry {path:?}: {source}")]
    Entry { path: String, source: io::Error },
    #[error("reading the layer: {0}")]
    Read(io::Error),
    #[error("{0}")]
    Other(String),
}

/// What an unpack produced.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream (the OCI diff_id), `sha256:<hex>`.
    pub diff_id: String,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    /// Sum of regular file sizes written.
    pub content_size: u64,
    /// Entries whose owner is outside the mapped range and were given to root instead.
    pub squashed_owners: u64,
    /// Device nodes that cannot be created without privilege and were skipped.
    pub skipped_devices: u64,
}

/// Compression of a layer stream, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Detects the compression of `r` without consuming input.
pub fn detect(r: &mut impl BufRead) -> io::Result<Compression> {
    let buf = r.fill_buf()?;
    Ok(if buf.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if buf.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Wraps `r` in the decompressor its magic bytes call for.
pub fn decompressed<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    Ok(match detect(&mut br)? {
        Compression::None => Box::new(br),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(br)?),
    })
}

/// A relative path inside the layer, split into validated components.
fn clean_components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("'..' path component"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

fn join(c: &[&[u8]]) -> Vec<u8> {
    c.join(&b'/')
}

/// Options for [`unpack`].
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Give every entry to root (single-id map: other owners do not exist).
    pub squash_owners: bool,
}

/// Unpacks the (possibly compressed) tar stream `r` into the existing directory `dest`.
///
/// Two threads: one reads, decompresses and hashes the stream (the diff_id), the other parses
/// the tar and makes the files, so decompression overlaps with the file system work.
pub fn unpack(r: impl Read + Send, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    let root = rustix::fs::open(dest, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| UnpackError::Other(format!("cannot open {}: {e}", dest.display())))?;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
        let producer = scope.spawn(move || {
            let mut hasher = Sha256::new();
            let mut n = 0u64;
            let mut d = match decompressed(r) {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return (hasher, n);
                }
            };
            loop {
                let mut buf = vec![0u8; 256 << 10];
                match d.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        buf.truncate(k);
                        hasher.update(&buf);
                        n += k as u64;
                        if tx.send(Ok(buf)).is_err() {
                            break; // the unpacker stopped (an error): nothing more to do
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
            (hasher, n)
        });
        let reader = ChannelReader { rx, cur: Vec::new(), pos: 0 };
        let mut ar = tar::Archive::new(reader);
        let mut u = Unpacker {
            root,
            opts: opts.clone(),
            stats: UnpackStats::default(),
            dirs: Vec::new(),
            cache: None,
            me: (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw()),
            umask_zero: umask_is_zero(),
            setgid_dirs: std::collections::HashSet::new(),
            buf: vec![0u8; 256 << 10],
        };
        for entry in ar.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            u.entry(&mut entry, &raw).map_err(|e| match e {
                EntryError::Refused(why) => UnpackError::Refused { path: shown.clone(), why },
                EntryError::Io(source) => UnpackError::Entry { path: shown.clone(), source },
            })?;
        }
        // Drain: the digest covers the whole stream, including tar padding after the last entry.
        let mut inner = ar.into_inner();
        io::copy(&mut inner, &mut io::sink()).map_err(UnpackError::Read)?;
        drop(inner);
        let (hasher, n) =
            producer.join().map_err(|_| UnpackError::Other("the decompressing thread panicked".into()))?;
        u.finish_dirs();
        u.stats.diff_id = format!("sha256:{}", hex::encode(hasher.finalize()));
        u.stats.tar_size = n;
        Ok(u.stats)
    })
}

/// Reads the chunks the decompressing thread sends.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    self.cur = b;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let k = buf.len().min(self.cur.len() - self.pos);
        buf[..k].copy_from_slice(&self.cur[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

enum EntryError {
    Refused(&'static str),
    Io(io::Error),
}

impl From<io::Error> for EntryError {
    fn from(e: io::Error) -> Self {
        EntryError::Io(e)
    }
}

impl From<rustix::io::Errno> for EntryError {
    fn from(e: rustix::io::Errno) -> Self {
        EntryError::Io(e.into())
    }
}

struct Unpacker {
    root: OwnedFd,
    opts: UnpackOptions,
    stats: UnpackStats,
    /// Directory times to set once their content is written: (path, mtime).
    dirs: Vec<(Vec<u8>, i64)>,
    /// The last parent directory opened, reused while entries stay in it.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Who new files belong to without a chown (this process's effective ids).
    me: (u32, u32),
    /// The umask is 0: files and directories can be created with their final mode.
    umask_zero: bool,
    /// Directories of this layer with the set-group-ID bit (new entries inherit their group).
    setgid_dirs: std::collections::HashSet<Vec<u8>>,
    /// Copy buffer for file contents (large: one write per 256 KiB, not per 8 KiB).
    buf: Vec<u8>,
}

/// Copies `r` to `w` through `buf`; returns the byte count.
fn copy_with(r: &mut impl Read, w: &mut impl io::Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        let k = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

/// The process's umask, read without changing it (`Umask:` in /proc/self/status).
fn umask_is_zero() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim() == "0000")))
        .unwrap_or(false)
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

impl Unpacker {
    /// Opens (creating missing directories) the parent of an entry, never leaving the layer.
    fn parent(&mut self, comps: &[&[u8]]) -> Result<OwnedFd, EntryError> {
        let key = join(comps);
        if let Some((k, fd)) = &self.cache
            && *k == key
        {
            return Ok(fd.try_clone()?);
        }
        let fd = if comps.is_empty() {
            self.root.try_clone()?
        } else {
            match open_dir_beneath(&self.root, &key) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    let mut cur = self.root.try_clone()?;
                    for c in comps {
                        let name = cstr(c)?;
                        match open_dir_beneath(&cur, c) {
                            Ok(fd) => cur = fd,
                            Err(rustix::io::Errno::NOENT) => {
                                rustix::fs::mkdirat(&cur, name.as_c_str(), Mode::from_raw_mode(0o755))?;
                                cur = open_dir_beneath(&cur, c)?;
                            }
                            Err(rustix::io::Errno::XDEV) | Err(rustix::io::Errno::LOOP) => {
                                return Err(EntryError::Refused("parent path leaves the layer through a symlink"));
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    cur
                }
                Err(rustix::io::Errno::XDEV) | Err(rustix::io::Errno::LOOP) => {
                    return Err(EntryError::Refused("parent path leaves the layer through a symlink"));
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.cache = Some((key, fd.try_clone()?));
        Ok(fd)
    }

    fn owner(&mut self, uid: u64, gid: u64) -> (u32, u32) {
        if self.opts.squash_owners {
            return (0, 0);
        }
        (u32::try_from(uid).unwrap_or(0), u32::try_from(gid).unwrap_or(0))
    }

    /// Does an entry created in `parent` need a chown to get `uid:gid`? Not when those are
    /// this process's ids (root, in the user namespace) and the parent is not set-group-ID.
    fn needs_chown(&mut self, parent: &[&[u8]], uid: u64, gid: u64) -> bool {
        let (u, g) = self.owner(uid, gid);
        (u, g) != self.me || (!parent.is_empty() && self.setgid_dirs.contains(&join(parent)))
    }

    /// Runs `make`; if the name is taken, clears it (as the tar format says a later entry
    /// replaces an earlier one) and runs `make` again. Saves a stat per entry.
    fn create(
        &mut self,
        dir: &OwnedFd,
        name: &CStr,
        mut make: impl FnMut() -> rustix::io::Result<()>,
    ) -> Result<(), EntryError> {
        match make() {
            Err(rustix::io::Errno::EXIST) => {
                self.clear(dir, name, false)?;
                make().map_err(Into::into)
            }
            r => r.map_err(Into::into),
        }
    }

    /// chown (without following symlinks); owners outside the mapped range go to root.
    fn chown(&mut self, dir: &OwnedFd, name: &CStr, uid: u64, gid: u64) -> io::Result<()> {
        let (u, g) = self.owner(uid, gid);
        let flags = AtFlags::SYMLINK_NOFOLLOW;
        let (ru, rg) = (rustix::process::Uid::from_raw(u), rustix::process::Gid::from_raw(g));
        match rustix::fs::chownat(dir, name, Some(ru), Some(rg), flags) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::PERM) if (u, g) != (0, 0) => {
                self.stats.squashed_owners += 1;
                let z = (rustix::process::Uid::ROOT, rustix::process::Gid::ROOT);
                rustix::fs::chownat(dir, name, Some(z.0), Some(z.1), flags).map_err(Into::into)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes whatever is at `name` in `dir` (a directory recursively), if anything.
    fn clear(&mut self, dir: &OwnedFd, name: &CStr, keep_dir: bool) -> io::Result<()> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
            Ok(st) => {
                let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
                if is_dir {
                    if keep_dir {
                        return Ok(());
                    }
                    self.cache = None;
                    remove_dir_contents_at(dir, name)?;
                    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(Into::into)
                } else {
                    rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(Into::into)
                }
            }
        }
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<(), EntryError> {
        let comps = clean_components(raw).map_err(EntryError::Refused)?;
        let Some((last, parents)) = comps.split_last() else {
            return Ok(()); // "./": the layer root itself
        };
        let h = e.header();
        let kind = h.entry_type();
        let uid = h.uid().unwrap_or(0);
        let gid = h.gid().unwrap_or(0);
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let mtime = h.mtime().unwrap_or(0) as i64;
        let dir = self.parent(parents)?;

        // Whiteouts.
        if *last == OPAQUE_MARKER.as_bytes() {
            rustix::fs::setxattr(proc_fd_path(&dir).as_c_str(), OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())?;
            return Ok(());
        }
        if let Some(hidden) = last.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(EntryError::Refused("malformed whiteout name"));
            }
            let name = cstr(hidden)?;
            self.clear(&dir, &name, false)?;
            rustix::fs::mknodat(&dir, name.as_c_str(), rustix::fs::FileType::CharacterDevice, Mode::empty(), 0)?;
            return Ok(());
        }

        let name = cstr(last)?;
        // With umask 0 and no chown, an entry is created with its final mode and needs no
        // chmod — unless it has set-user/group-ID bits, which mkdir ignores and a write or a
        // chown clears: those get their mode at the end.
        let chown = self.needs_chown(parents, uid, gid);
        let direct = self.umask_zero && !chown && mode & 0o6000 == 0;
        match kind {
            tar::EntryType::Directory => {
                let create_mode = Mode::from_raw_mode(if direct { mode } else { 0o700 });
                match rustix::fs::mkdirat(&dir, name.as_c_str(), create_mode) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {
                        // An existing directory stays (its content merges); anything else goes.
                        self.clear(&dir, &name, true)?;
                        match rustix::fs::mkdirat(&dir, name.as_c_str(), create_mode) {
                            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                            Err(e) => return Err(e.into()),
                        }
                        self.chown(&dir, &name, uid, gid)?;
                        rustix::fs::chmodat(&dir, name.as_c_str(), Mode::from_raw_mode(mode), AtFlags::empty())?;
                    }
                    Err(e) => return Err(e.into()),
                }
                if chown {
                    self.chown(&dir, &name, uid, gid)?;
                }
                if !direct {
                    rustix::fs::chmodat(&dir, name.as_c_str(), Mode::from_raw_mode(mode), AtFlags::empty())?;
                }
                if mode & 0o2000 != 0 {
                    self.setgid_dirs.insert(join(&comps));
                }
                self.dirs.push((join(&comps), mtime));
                self.cache = None;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let create_mode = Mode::from_raw_mode(if direct { mode } else { 0o600 });
                let mut fd = None;
                self.create(&dir, &name, || {
                    fd = Some(rustix::fs::openat(
                        &dir,
                        name.as_c_str(),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        create_mode,
                    )?);
                    Ok(())
                })?;
                let mut f = std::fs::File::from(fd.ok_or_else(|| io::Error::other("file not created"))?);
                let n = copy_with(e, &mut f, &mut self.buf)?;
                self.stats.content_size += n;
                if chown {
                    self.chown(&dir, &name, uid, gid)?;
                }
                if !direct {
                    // After chown: chown clears set-user-ID and set-group-ID bits.
                    rustix::fs::fchmod(&f, Mode::from_raw_mode(mode))?;
                }
                set_times(f.as_fd(), None, mtime)?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or(EntryError::Refused("symlink without a target"))?;
                let target = cstr(&target)?;
                self.create(&dir, &name, || rustix::fs::symlinkat(target.as_c_str(), &dir, name.as_c_str()))?;
                if chown {
                    self.chown(&dir, &name, uid, gid)?;
                }
                set_times(dir.as_fd(), Some(&name), mtime)?;
            }
            tar::EntryType::Link => {
                let target = e.link_name_bytes().ok_or(EntryError::Refused("hardlink without a target"))?;
                let tcomps =
                    clean_components(&target).map_err(|_| EntryError::Refused("hardlink target leaves the layer"))?;
                let Some((tlast, tparents)) = tcomps.split_last() else {
                    return Err(EntryError::Refused("hardlink to the layer root"));
                };
                let tdir = if tparents.is_empty() {
                    self.root.try_clone()?
                } else {
                    match open_dir_beneath(&self.root, &join(tparents)) {
                        Ok(fd) => fd,
                        Err(rustix::io::Errno::XDEV) | Err(rustix::io::Errno::LOOP) => {
                            return Err(EntryError::Refused("hardlink target leaves the layer through a symlink"));
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                let tname = cstr(tlast)?;
                if join(&tcomps) == join(&comps) {
                    return Ok(()); // a link to itself: nothing to do
                }
                self.clear(&dir, &name, false)?;
                // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself.
                rustix::fs::linkat(&tdir, tname.as_c_str(), &dir, name.as_c_str(), AtFlags::empty())?;
            }
            tar::EntryType::Fifo => {
                self.clear(&dir, &name, false)?;
                rustix::fs::mknodat(&dir, name.as_c_str(), rustix::fs::FileType::Fifo, Mode::from_raw_mode(mode), 0)?;
                self.chown(&dir, &name, uid, gid)?;
                rustix::fs::chmodat(&dir, name.as_c_str(), Mode::from_raw_mode(mode), AtFlags::empty())?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                self.clear(&dir, &name, false)?;
                let ft = if kind == tar::EntryType::Char {
                    rustix::fs::FileType::CharacterDevice
                } else {
                    rustix::fs::FileType::BlockDevice
                };
                let dev = rustix::fs::makedev(major, minor);
                match rustix::fs::mknodat(&dir, name.as_c_str(), ft, Mode::from_raw_mode(mode), dev) {
                    Ok(()) => self.chown(&dir, &name, uid, gid)?,
                    // Unprivileged: only 0/0 whiteouts can be made. Podman skips these too.
                    Err(rustix::io::Errno::PERM) => self.stats.skipped_devices += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            // Metadata entries the tar crate already folded into the following entry, and
            // kinds that carry no file.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            _ => return Err(EntryError::Refused("unsupported entry type")),
        }
        Ok(())
    }

    /// Sets directory times, deepest first (writing into a directory changes its mtime).
    fn finish_dirs(&mut self) {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.iter().filter(|b| **b == b'/').count()));
        for (p, mtime) in dirs {
            if let Ok(fd) = open_dir_beneath(&self.root, &p) {
                let _ = set_times(fd.as_fd(), None, mtime);
            }
        }
    }
}

fn open_dir_beneath(dir: &OwnedFd, path: &[u8]) -> rustix::io::Result<OwnedFd> {
    let p = CString::new(path).map_err(|_| rustix::io::Errno::INVAL)?;
    rustix::fs::openat2(dir, p.as_c_str(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), BENEATH)
}

/// `/proc/self/fd/N` for an `O_PATH` descriptor (xattr calls do not take one directly).
fn proc_fd_path(fd: &OwnedFd) -> CString {
    use std::os::fd::AsRawFd;
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

fn set_times(fd: std::os::fd::BorrowedFd<'_>, name: Option<&CStr>, mtime: i64) -> io::Result<()> {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: mtime, tv_nsec: 0 },
        last_modification: rustix::fs::Timespec { tv_sec: mtime, tv_nsec: 0 },
    };
    let r = match name {
        Some(n) => rustix::fs::utimensat(fd, n, &t, AtFlags::SYMLINK_NOFOLLOW),
        None => match rustix::fs::futimens(fd, &t) {
            // O_PATH descriptors: go through /proc.
            Err(rustix::io::Errno::BADF) => {
                use std::os::fd::AsRawFd;
                let p = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
                rustix::fs::utimensat(rustix::fs::CWD, p.as_c_str(), &t, AtFlags::empty())
            }
            r => r,
        },
    };
    r.map_err(Into::into)
}

/// Removes everything inside the directory `name` of `parent` without following symlinks.
pub fn remove_dir_contents_at(parent: &OwnedFd, name: &CStr) -> io::Result<()> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    remove_dir_contents_fd(&fd)
}

fn remove_dir_contents_fd(fd: &OwnedFd) -> io::Result<()> {
    let mut names: Vec<(CString, bool)> = Vec::new();
    let mut dir = rustix::fs::Dir::read_from(fd)?;
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name();
        if n == c"." || n == c".." {
            continue;
        }
        names.push((n.to_owned(), ent.file_type() == rustix::fs::FileType::Directory));
    }
    for (n, is_dir) in names {
        let is_dir = is_dir
            || rustix::fs::statat(fd, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory)
                .unwrap_or(false);
        if is_dir {
            let sub = rustix::fs::openat(
                fd,
                n.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            match sub {
                Ok(sub) => remove_dir_contents_fd(&sub)?,
                Err(rustix::io::Errno::ACCESS) => {
                    // A mode-000 directory (overlay's work/work): we own it, so open it up.
                    rustix::fs::chmodat(fd, n.as_c_str(), Mode::from_raw_mode(0o700), AtFlags::empty())?;
                    let sub = rustix::fs::openat(
                        fd,
                        n.as_c_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    remove_dir_contents_fd(&sub)?;
                }
                Err(e) => return Err(e.into()),
            }
            rustix::fs::unlinkat(fd, n.as_c_str(), AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(fd, n.as_c_str(), AtFlags::empty())?;
        }
    }
    Ok(())
}

/// Removes `path` and everything below it, never following symlinks. Missing is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or_else(|| Path::new("/"));
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "refusing to remove a root path"));
    };
    let pfd = match rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let name = cstr(OsStr::as_bytes(name))?;
    match rustix::fs::statat(&pfd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory => {
            let pdir = rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
            match remove_dir_contents_at(&pdir, name.as_c_str()) {
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                    rustix::fs::chmodat(&pdir, name.as_c_str(), Mode::from_raw_mode(0o700), AtFlags::empty())?;
                    remove_dir_contents_at(&pdir, name.as_c_str())?;
                }
                r => r?,
            }
            rustix::fs::unlinkat(&pdir, name.as_c_str(), AtFlags::REMOVEDIR).map_err(Into::into)
        }
        Ok(_) => rustix::fs::unlinkat(&pfd, name.as_c_str(), AtFlags::empty()).map_err(Into::into),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            let uid = rustix::process::getuid().as_raw() as u64;
            h.set_uid(uid);
            h.set_gid(rustix::process::getgid().as_raw() as u64);
            // Write names raw so that hostile paths reach the unpacker unchanged.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn opts() -> UnpackOptions {
        // Tests run unprivileged outside a namespace: owners stay the caller's.
        UnpackOptions { squash_owners: false }
    }

    #[test]
    fn unpacks_files_dirs_links_and_hashes_the_stream() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("a/", tar::EntryType::Directory, b"", None),
            ("a/f", tar::EntryType::Regular, b"hello", None),
            ("a/l", tar::EntryType::Symlink, b"", Some("f")),
            ("a/h", tar::EntryType::Link, b"", Some("a/f")),
            ("b/c/deep", tar::EntryType::Regular, b"x", None),
        ]);
        let st = unpack(&t[..], d.path(), &opts()).unwrap();
        assert_eq!(std::fs::read(d.path().join("a/f")).unwrap(), b"hello");
        assert_eq!(std::fs::read_link(d.path().join("a/l")).unwrap(), Path::new("f"));
        assert_eq!(
            std::fs::metadata(d.path().join("a/h")).unwrap().ino(),
            std::fs::metadata(d.path().join("a/f")).unwrap().ino()
        );
        assert_eq!(std::fs::read(d.path().join("b/c/deep")).unwrap(), b"x");
        assert_eq!(st.diff_id, format!("sha256:{}", hex::encode(Sha256::digest(&t))));
        assert_eq!(st.tar_size, t.len() as u64);
        assert_eq!(std::fs::metadata(d.path().join("a/f")).unwrap().mtime(), 1_700_000_000);
        assert_eq!(std::fs::metadata(d.path().join("a")).unwrap().mtime(), 1_700_000_000);
    }

    #[test]
    fn gzip_and_zstd_streams_are_detected() {
        let t = tar_of(&[("f", tar::EntryType::Regular, b"data", None)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &t).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&t[..], 1).unwrap();
        for data in [gz, zs] {
            let d = tempfile::tempdir().unwrap();
            let st = unpack(&data[..], d.path(), &opts()).unwrap();
            assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"data");
            // The diff_id is the digest of the *uncompressed* tar.
            assert_eq!(st.diff_id, format!("sha256:{}", hex::encode(Sha256::digest(&t))));
        }
    }

    fn refused(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> (String, tempfile::TempDir) {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("layer");
        std::fs::create_dir(&dest).unwrap();
        let err = unpack(&tar_of(entries)[..], &dest, &opts()).unwrap_err().to_string();
        (err, outer)
    }

    fn only_layer_dir(outer: &Path) {
        let names: Vec<_> = std::fs::read_dir(outer).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("layer")], "something was written outside the layer");
    }

    #[test]
    fn refuses_dotdot() {
        let (err, outer) = refused(&[("../evil", tar::EntryType::Regular, b"x", None)]);
        assert!(err.contains("'..'"), "{err}");
        only_layer_dir(outer.path());
        let (err, outer) = refused(&[("a/../../evil", tar::EntryType::Regular, b"x", None)]);
        assert!(err.contains("'..'"), "{err}");
        only_layer_dir(outer.path());
    }

    #[test]
    fn refuses_absolute_paths() {
        let (err, outer) = refused(&[("/evil", tar::EntryType::Regular, b"x", None)]);
        assert!(err.contains("absolute"), "{err}");
        only_layer_dir(outer.path());
    }

    #[test]
    fn refuses_writing_through_an_escaping_symlink() {
        let outer = tempfile::tempdir().unwrap();
        let target = outer.path().to_str().unwrap().to_string();
        let dest = outer.path().join("layer");
        std::fs::create_dir(&dest).unwrap();
        for link in [target.as_str(), "..", "../.."] {
            let t = tar_of(&[
                ("esc", tar::EntryType::Symlink, b"", Some(link)),
                ("esc/evil", tar::EntryType::Regular, b"x", None),
            ]);
            let err = unpack(&t[..], &dest, &opts()).unwrap_err().to_string();
            assert!(err.contains("symlink"), "{err}");
            assert!(!outer.path().join("evil").exists());
            std::fs::remove_file(dest.join("esc")).unwrap();
        }
        only_layer_dir(outer.path());
    }

    #[test]
    fn refuses_hardlinks_out_of_the_layer() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), b"s").unwrap();
        let dest = outer.path().join("layer");
        std::fs::create_dir(&dest).unwrap();
        let t = tar_of(&[("h", tar::EntryType::Link, b"", Some("../secret"))]);
        assert!(unpack(&t[..], &dest, &opts()).unwrap_err().to_string().contains("leaves the layer"));
        let t = tar_of(&[("h", tar::EntryType::Link, b"", Some("/etc/passwd"))]);
        assert!(unpack(&t[..], &dest, &opts()).unwrap_err().to_string().contains("leaves the layer"));
        let t = tar_of(&[
            ("up", tar::EntryType::Symlink, b"", Some("..")),
            ("h", tar::EntryType::Link, b"", Some("up/secret")),
        ]);
        assert!(unpack(&t[..], &dest, &opts()).unwrap_err().to_string().contains("symlink"));
        assert!(!dest.join("h").exists());
    }

    #[test]
    fn a_symlink_entry_replaced_by_a_file_is_not_followed() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("layer");
        std::fs::create_dir(&dest).unwrap();
        let victim = outer.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let t = tar_of(&[
            ("f", tar::EntryType::Symlink, b"", Some(victim.to_str().unwrap())),
            ("f", tar::EntryType::Regular, b"new", None),
        ]);
        unpack(&t[..], &dest, &opts()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"new");
    }

    #[test]
    fn whiteouts_become_char_devices_and_opaque_xattrs() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("dir/", tar::EntryType::Directory, b"", None),
            ("dir/.wh..wh..opq", tar::EntryType::Regular, b"", None),
            ("gone/.wh.file", tar::EntryType::Regular, b"", None),
        ]);
        match unpack(&t[..], d.path(), &opts()) {
            Ok(_) => {
                let md = std::fs::symlink_metadata(d.path().join("gone/file")).unwrap();
                use std::os::unix::fs::FileTypeExt;
                assert!(md.file_type().is_char_device());
                assert_eq!(md.rdev(), 0);
                let mut buf = [0u8; 4];
                let n = rustix::fs::getxattr(d.path().join("dir").as_path(), OPAQUE_XATTR, &mut buf).unwrap();
                assert_eq!(&buf[..n], b"y");
                assert!(!d.path().join("dir/.wh..wh..opq").exists());
            }
            // Outside a user namespace an unprivileged user cannot mknod even 0/0 whiteouts;
            // the integration tests cover this path inside one.
            Err(UnpackError::Entry { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn setuid_bits_survive() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path("su").unwrap();
        h.set_mode(0o4755);
        h.set_size(1);
        h.set_uid(rustix::process::getuid().as_raw() as u64);
        h.set_gid(rustix::process::getgid().as_raw() as u64);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        unpack(&t[..], d.path(), &opts()).unwrap();
        assert_eq!(std::fs::metadata(d.path().join("su")).unwrap().permissions().mode() & 0o7777, 0o4755);
    }

    #[test]
    fn entries_in_a_setgid_directory_get_the_group_the_tar_gives() {
        // Needs chown to another group: only as root (CI runs the tests as root).
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, mode, gid) in
            [("sg/", tar::EntryType::Directory, 0o2775, 50), ("sg/f", tar::EntryType::Regular, 0o644, 0)]
        {
            let mut h = tar::Header::new_gnu();
            h.set_path(path).unwrap();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(gid);
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &b""[..]).unwrap();
        }
        let t = b.into_inner().unwrap();
        unpack(&t[..], d.path(), &opts()).unwrap();
        let sg = std::fs::metadata(d.path().join("sg")).unwrap();
        assert_eq!((sg.gid(), sg.permissions().mode() & 0o7777), (50, 0o2775));
        assert_eq!(std::fs::metadata(d.path().join("sg/f")).unwrap().gid(), 0);
    }

    #[test]
    fn remove_tree_handles_unreadable_dirs_and_symlinks() {
        let outer = tempfile::tempdir().unwrap();
        let keep = outer.path().join("keep");
        std::fs::write(&keep, b"k").unwrap();
        let t = outer.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::os::unix::fs::symlink(&keep, t.join("a/link")).unwrap();
        std::fs::set_permissions(t.join("a/b"), std::fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        assert!(keep.exists());
        remove_tree(&t).unwrap();
    }
}
