//! Internal operations run as root of a fresh user namespace (`nook __userns - nook <op> …`),
//! started by [`crate::userns::spawn_helper`]. Each prints one line `Error: …` on failure.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use crate::storage::layerfs::{self, Shift, TreeKind};
use crate::storage::unpack::{UnpackOptions, remove_tree, unpack};
use crate::userns::KeepId;

/// Runs one operation; returns the process exit code.
pub fn run_op(args: &[OsString]) -> i32 {
    let op = args.first().and_then(|a| a.to_str()).unwrap_or("");
    let rest = &args[1.min(args.len())..];
    let r: Result<(), String> = match op {
        "unpack" => {
            let Some(dest) = rest.first().map(PathBuf::from) else {
                return usage();
            };
            // Die with the command that started us: a killed pull must not leave an unpack
            // running into a directory the next command will clean up.
            // SAFETY: prctl with integer arguments has no memory-safety requirements.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            if let Some(ppid) = std::env::var("_NOOK_PARENT_PID").ok().and_then(|p| p.parse::<u32>().ok())
                && std::os::unix::process::parent_id() != ppid
            {
                eprintln!("Error: the command that started this unpack is gone");
                return 1;
            }
            // Entries are created with the modes the tar gives (see unpack).
            rustix::process::umask(rustix::fs::Mode::empty());
            let opts = UnpackOptions { squash_owners: rest.iter().any(|a| a == "--squash-owners") };
            unpack(std::io::stdin(), &dest, &opts)
                .map_err(|e| e.to_string())
                .and_then(|st| serde_json::to_writer(std::io::stdout(), &st).map_err(|e| e.to_string()))
        }
        "rmtree" => rest.iter().try_for_each(|p| {
            remove_tree(&PathBuf::from(p)).map_err(|e| format!("removing {}: {e}", PathBuf::from(p).display()))
        }),
        "vfs-copy" => {
            let Some(dest) = rest.first().map(PathBuf::from) else {
                return usage();
            };
            let (shift, layers) = match keep_id_arg(&rest[1..]) {
                Some((k, layers)) => (Shift::ToKeepId(k), layers),
                None => (Shift::None, &rest[1..]),
            };
            let layers: Vec<PathBuf> = layers.iter().map(PathBuf::from).collect();
            crate::storage::driver::copy_layers(&dest, &layers, shift)
                .map_err(|e| format!("copying the image into the container: {e}"))
        }
        "probe-fuse" => {
            let (Some(dir), Some(program)) = (rest.first().map(PathBuf::from), rest.get(1).map(PathBuf::from)) else {
                return usage();
            };
            crate::runtime::fuse::probe_fuse(&dir, &program)
        }
        "idmap-copy" => {
            let (Some(src), Some(dst), Some(k), Some(fin)) = (
                rest.first().map(PathBuf::from),
                rest.get(1).map(PathBuf::from),
                rest.get(2).and_then(|a| a.to_str()).and_then(KeepId::parse_arg),
                rest.get(3).map(PathBuf::from),
            ) else {
                return usage();
            };
            // Moved into place here: a directory owned by a subordinate id can only be moved
            // to another parent by root of the namespace.
            layerfs::copy_tree(&src, &dst, Shift::ToKeepId(k))
                .map_err(|e| format!("copying {}: {e}", src.display()))
                .and_then(|_| match std::fs::rename(&dst, &fin) {
                    Ok(()) => Ok(()),
                    // Another command made the same copy meanwhile.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => Ok(()),
                    Err(e) => Err(format!("moving the copy to {}: {e}", fin.display())),
                })
        }
        "shift-root" => {
            let (Some(path), Some(reference), Some(k)) = (
                rest.first().map(PathBuf::from),
                rest.get(1).map(PathBuf::from),
                rest.get(2).and_then(|a| a.to_str()).and_then(KeepId::parse_arg),
            ) else {
                return usage();
            };
            // A keep-id container's upper directory: its root belongs to the container's root.
            let shift = Shift::ToKeepId(k);
            std::fs::symlink_metadata(&reference)
                .and_then(|md| {
                    use std::os::unix::fs::MetadataExt;
                    std::os::unix::fs::lchown(&path, Some(shift.uid(md.uid())), Some(shift.gid(md.gid())))
                })
                .map_err(|e| format!("setting the owner of {}: {e}", path.display()))
        }
        "layer-diff" | "changes" | "export" => match TreeArgs::parse(rest) {
            Some(t) => tree_op(op, &t),
            None => return usage(),
        },
        "probe-overlay" => {
            let Some(dir) = rest.first().map(PathBuf::from) else {
                return usage();
            };
            crate::runtime::probe_overlay(&dir)
        }
        _ => return usage(),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

/// `--keep-id U:G` at the start of `args`: the mapping and the rest.
fn keep_id_arg(args: &[OsString]) -> Option<(KeepId, &[OsString])> {
    if args.first().is_some_and(|a| a == "--keep-id") {
        let k = args.get(1).and_then(|a| a.to_str()).and_then(KeepId::parse_arg)?;
        return Some((k, &args[2..]));
    }
    None
}

/// `upper|full TREE [--keep-id U:G] [--exclude PATH]... [-- LOWER...]` (lower layers top
/// first; excluded paths are the container's mount points, not its changes).
struct TreeArgs {
    kind: TreeKind,
    tree: PathBuf,
    shift: Shift,
    exclude: Vec<PathBuf>,
    lower: Vec<PathBuf>,
}

impl TreeArgs {
    fn parse(rest: &[OsString]) -> Option<TreeArgs> {
        let kind = match rest.first()?.to_str()? {
            "upper" => TreeKind::Upper,
            "full" => TreeKind::Full,
            _ => return None,
        };
        let mut t = TreeArgs {
            kind,
            tree: PathBuf::from(rest.get(1)?),
            shift: Shift::None,
            exclude: Vec::new(),
            lower: Vec::new(),
        };
        let mut it = rest[2..].iter();
        while let Some(a) = it.next() {
            match a.to_str()? {
                "--keep-id" => t.shift = Shift::FromKeepId(KeepId::parse_arg(it.next()?.to_str()?)?),
                "--exclude" => t.exclude.push(PathBuf::from(it.next()?)),
                "--" => {
                    t.lower = it.map(PathBuf::from).collect();
                    break;
                }
                _ => return None,
            }
        }
        Some(t)
    }
}

/// Reads a container's tree: its changes (JSON), its layer (tar) or its merged files (tar), to
/// stdout.
fn tree_op(op: &str, t: &TreeArgs) -> Result<(), String> {
    let out = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let r: std::io::Result<()> = (|| match op {
        "changes" => {
            let c = layerfs::changes(&t.lower, &t.tree, t.kind, t.shift, &t.exclude)?;
            serde_json::to_writer(out, &c).map_err(std::io::Error::other)
        }
        "layer-diff" => {
            let mut tw = layerfs::TarWriter::new(out, t.shift);
            match t.kind {
                TreeKind::Upper => layerfs::write_upper_layer(&t.tree, &t.exclude, &mut tw)?,
                TreeKind::Full => {
                    let c = layerfs::changes(&t.lower, &t.tree, t.kind, t.shift, &t.exclude)?;
                    layerfs::write_full_layer(&t.tree, &c, &mut tw)?;
                }
            }
            tw.finish()?.flush()
        }
        _ => {
            let mut layers = vec![t.tree.clone()];
            if t.kind == TreeKind::Upper {
                layers.extend(t.lower.iter().cloned());
            }
            layerfs::write_merged(&layers, t.shift, out)?.flush()
        }
    })();
    r.map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => "the reader went away".to_string(),
        _ => e.to_string(),
    })
}

fn usage() -> i32 {
    eprintln!("Error: bad internal helper invocation");
    2
}
