//! Internal operations run as root of a fresh user namespace (`nook __userns - nook <op> …`),
//! started by [`crate::userns::spawn_helper`]. Each prints one line `Error: …` on failure.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::storage::unpack::{UnpackOptions, remove_tree, unpack};

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
            let layers: Vec<PathBuf> = rest[1..].iter().map(PathBuf::from).collect();
            crate::storage::driver::copy_layers(&dest, &layers)
                .map_err(|e| format!("copying the image into the container: {e}"))
        }
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

fn usage() -> i32 {
    eprintln!("Error: bad internal helper invocation");
    2
}
