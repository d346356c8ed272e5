//! Attaching to a detached container: a `SOCK_SEQPACKET` unix socket in the container's run
//! directory, served by its monitor. Every message starts with a tag byte.
//!
//! ```text
//! monitor -> client  1 data    container stdout (or the terminal)
//! monitor -> client  2 data    container stderr
//! monitor -> client  3 i32le   the container exited with this code (then EOF)
//! client -> monitor  0 data    input for the container
//! client -> monitor  1         end of input
//! client -> monitor  2 u16le u16le   terminal size (rows, cols)
//! ```
//! The socket is reached through `/proc/self/fd/N/attach` (N an `O_PATH` descriptor of the
//! run directory), so a long run root never hits the 108-byte limit of socket paths.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::{Mode, OFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

pub const OUT: u8 = 1;
pub const ERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const IN: u8 = 0;
pub const IN_EOF: u8 = 1;
pub const RESIZE: u8 = 2;

/// The default `--detach-keys`.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// The socket's name in the container's run directory.
pub fn socket_path(rundir: &Path) -> PathBuf {
    rundir.join("attach")
}

fn short_addr(rundir: &Path) -> io::Result<(OwnedFd, SocketAddrUnix)> {
    let dir = rustix::fs::open(rundir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let addr = SocketAddrUnix::new(format!("/proc/self/fd/{}/attach", dir.as_raw_fd()))?;
    Ok((dir, addr))
}

/// Binds and listens on the container's attach socket (non-blocking, close-on-exec).
pub fn listen(rundir: &Path) -> io::Result<OwnedFd> {
    let _ = std::fs::remove_file(socket_path(rundir));
    let (_dir, addr) = short_addr(rundir)?;
    let s = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::bind(&s, &addr)?;
    rustix::net::listen(&s, 8)?;
    Ok(s)
}

/// Connects to a container's attach socket.
pub fn connect(rundir: &Path) -> io::Result<OwnedFd> {
    let (_dir, addr) = short_addr(rundir)?;
    let s = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    rustix::net::connect(&s, &addr)?;
    Ok(s)
}

/// Sends one message (tag + data) without blocking; a full socket drops the message.
pub fn send_nb(fd: BorrowedFd<'_>, tag: u8, data: &[u8], buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    buf.push(tag);
    buf.extend_from_slice(data);
    match rustix::net::send(fd, buf, rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL) {
        Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn send_blocking(fd: BorrowedFd<'_>, tag: u8, data: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(data.len() + 1);
    buf.push(tag);
    buf.extend_from_slice(data);
    loop {
        match rustix::net::send(fd, &buf, rustix::net::SendFlags::NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Parses `--detach-keys` ("ctrl-p,ctrl-q", "ctrl-x", "a,b"); empty: no detach keys.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for k in s.split(',').filter(|k| !k.is_empty()) {
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b] if b.is_ascii_alphabetic() => b.to_ascii_lowercase() - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(format!("invalid detach key {k:?}")),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(format!("invalid detach key {k:?}: use ctrl-<key> or a single character"));
        }
    }
    Ok(out)
}

/// How an attach session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// The container exited with this code.
    Exited(i32),
    /// The user typed the detach keys.
    Detached,
    /// The monitor closed the connection without an exit code.
    Closed,
}

pub struct ClientOptions {
    /// Forward our stdin.
    pub stdin: bool,
    /// The container has a terminal (our terminal goes raw, window size is forwarded).
    pub tty: bool,
    pub detach_keys: Vec<u8>,
}

/// Runs an attach session on `sock` until the container exits or the user detaches.
pub fn client(sock: OwnedFd, o: &ClientOptions) -> io::Result<AttachEnd> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let stdin_tty = rustix::termios::isatty(rustix::stdio::stdin());
    let _raw = if o.tty && o.stdin && stdin_tty { super::RawMode::enter(0).ok() } else { None };
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGWINCH);
    mask.thread_block().map_err(io::Error::from)?;
    let winch = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(io::Error::from)?;
    if o.tty {
        send_size(sock.as_fd());
    }
    let mut stdin_open = o.stdin;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024 + 1];
    let stdin = rustix::stdio::stdin();
    loop {
        let mut fds = vec![PollFd::new(&sock, PollFlags::IN), PollFd::new(&winch, PollFlags::IN)];
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let sock_ready = !fds[0].revents().is_empty();
        let winch_ready = !fds[1].revents().is_empty();
        let stdin_ready = fds.get(2).is_some_and(|f| !f.revents().is_empty());
        drop(fds);
        if winch_ready {
            while let Ok(Some(_)) = winch.read_signal() {}
            if o.tty {
                send_size(sock.as_fd());
            }
        }
        if sock_ready {
            let n = match rustix::net::recv(&sock, &mut buf[..], rustix::net::RecvFlags::empty()) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                return Ok(AttachEnd::Closed);
            }
            match buf[0] {
                OUT => super::write_all(rustix::stdio::stdout(), &buf[1..n])?,
                ERR => super::write_all(rustix::stdio::stderr(), &buf[1..n])?,
                EXIT if n >= 5 => {
                    return Ok(AttachEnd::Exited(i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]])));
                }
                _ => {}
            }
        }
        if stdin_ready {
            let n = match super::read_some(rustix::stdio::stdin(), &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => 0,
            };
            if n == 0 {
                stdin_open = false;
                let _ = send_blocking(sock.as_fd(), IN_EOF, &[]);
                continue;
            }
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if o.detach_keys.is_empty() {
                    out.push(b);
                    continue;
                }
                pending.push(b);
                if o.detach_keys.starts_with(&pending) {
                    if pending.len() == o.detach_keys.len() {
                        if !out.is_empty() {
                            let _ = send_blocking(sock.as_fd(), IN, &out);
                        }
                        return Ok(AttachEnd::Detached);
                    }
                } else {
                    out.append(&mut pending);
                }
            }
            if !out.is_empty() && send_blocking(sock.as_fd(), IN, &out).is_err() {
                stdin_open = false;
            }
        }
    }
}

fn send_size(sock: BorrowedFd<'_>) {
    for fd in [rustix::stdio::stdin(), rustix::stdio::stdout()] {
        if let Ok(ws) = rustix::termios::tcgetwinsize(fd) {
            let mut d = [0u8; 4];
            d[..2].copy_from_slice(&ws.ws_row.to_le_bytes());
            d[2..].copy_from_slice(&ws.ws_col.to_le_bytes());
            let _ = send_blocking(sock, RESIZE, &d);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys(DEFAULT_DETACH_KEYS), Ok(vec![16, 17]));
        assert_eq!(parse_detach_keys("ctrl-x,a"), Ok(vec![24, b'a']));
        assert_eq!(parse_detach_keys(""), Ok(vec![]));
        assert!(parse_detach_keys("ctrl-12").is_err() && parse_detach_keys("abc").is_err());
    }
}
