//! Transfer progress for pull and push: a bar per blob on a terminal (bytes, rate), plain
//! podman-style lines otherwise, nothing when quiet. Everything goes to stderr.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

enum Mode {
    Quiet,
    Lines,
    Bars(MultiProgress),
}

pub struct Progress {
    mode: Mode,
    lock: Mutex<()>,
}

/// One blob's progress.
pub struct BlobBar {
    bar: Option<ProgressBar>,
    line: Option<String>,
}

fn short(d: &str) -> &str {
    let h = d.strip_prefix("sha256:").unwrap_or(d);
    &h[..h.len().min(12)]
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)))
        } else {
            Mode::Lines
        };
        Progress { mode, lock: Mutex::new(()) }
    }

    /// A line of text (above the bars on a terminal).
    pub fn message(&self, msg: &str) {
        let _g = self.lock.lock();
        match &self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("{msg}"),
            Mode::Bars(m) => {
                let _ = m.println(msg);
            }
        }
    }

    /// Starts a transfer of `size` bytes (0 when unknown).
    pub fn blob(&self, verb: &str, digest: &str, size: u64) -> BlobBar {
        match &self.mode {
            Mode::Quiet => BlobBar { bar: None, line: None },
            Mode::Lines => BlobBar { bar: None, line: Some(format!("{verb} blob {digest}")) },
            Mode::Bars(m) => {
                let bar = m.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix} {bar:30} {bytes:>10} / {total_bytes:<10} {binary_bytes_per_sec:>12} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(format!("{verb} blob {}", short(digest)));
                bar.enable_steady_tick(Duration::from_millis(200));
                BlobBar { bar: Some(bar), line: None }
            }
        }
    }

    /// A blob that needs no transfer.
    pub fn skipped(&self, verb: &str, digest: &str) {
        self.message(&format!("{verb} blob {} skipped: already exists", short(digest)));
    }
}

impl BlobBar {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_with_message("done");
        }
        if let Some(l) = &self.line {
            eprintln!("{l} done");
        }
    }

    pub fn failed(&self) {
        if let Some(b) = &self.bar {
            b.abandon_with_message("failed");
        }
    }
}
