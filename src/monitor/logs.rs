//! Container logs in podman's k8s-file format: one record per line,
//! `<RFC3339Nano time> stdout|stderr F|P <text>` (F: the line ends here, P: a partial line
//! continued by the next record). With a size limit the file rotates: `ctr.log` moves to
//! `ctr.log.1` (replacing the older one), so the newest data is always kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

/// The log file of a container directory.
pub fn log_path(container_dir: &Path) -> PathBuf {
    container_dir.join("ctr.log")
}

/// The rotated (older) log file.
pub fn rotated_path(container_dir: &Path) -> PathBuf {
    container_dir.join("ctr.log.1")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends records to a container's log.
pub struct LogWriter {
    path: PathBuf,
    rotated: PathBuf,
    file: File,
    size: u64,
    max: u64,
    line: Vec<u8>,
}

impl LogWriter {
    /// Opens (creates) the log for appending. `max` 0: no rotation.
    pub fn open(container_dir: &Path, max: u64) -> io::Result<LogWriter> {
        let path = log_path(container_dir);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path, rotated: rotated_path(container_dir), file, size, max, line: Vec::with_capacity(256) })
    }

    /// Writes what the container wrote on `stream`: one record per line, a trailing partial
    /// line as a `P` record.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let mut rest = data;
        while !rest.is_empty() {
            let (text, tag, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], b'F', &rest[i + 1..]),
                None => (rest, b'P', &rest[rest.len()..]),
            };
            self.line.clear();
            self.line.extend_from_slice(ts.as_bytes());
            self.line.push(b' ');
            self.line.extend_from_slice(stream.as_str().as_bytes());
            self.line.push(b' ');
            self.line.push(tag);
            self.line.push(b' ');
            self.line.extend_from_slice(text);
            self.line.push(b'\n');
            if self.max > 0 && self.size > 0 && self.size + self.line.len() as u64 > self.max {
                self.rotate()?;
            }
            self.file.write_all(&self.line)?;
            self.size += self.line.len() as u64;
            rest = next;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        fs::rename(&self.path, &self.rotated)?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: DateTime<Utc>,
    pub stream: Stream,
    /// The line ends with this record (F), or continues in the next (P).
    pub full: bool,
    pub text: Vec<u8>,
}

/// Parses one k8s-file line (without its newline).
pub fn parse_line(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or_default().to_vec();
    let time = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    Some(Record { time, stream, full, text })
}

/// Reads the records of a container's log, oldest first (the rotated file, then the current).
pub fn read_all(container_dir: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for p in [rotated_path(container_dir), log_path(container_dir)] {
        match File::open(&p) {
            Ok(f) => read_records(&mut BufReader::new(f), &mut out)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn read_records(r: &mut impl BufRead, out: &mut Vec<Record>) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            // A record being written: the follower reads it again later.
            return Ok(());
        }
        line.pop();
        if let Some(rec) = parse_line(&line) {
            out.push(rec);
        }
    }
}

/// Follows a log file as it grows and rotates: the position in the current file.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    pos: u64,
}

impl Follower {
    /// Starts following at the current end of the log (after what [`read_all`] returned).
    pub fn at_end(container_dir: &Path) -> Follower {
        let path = log_path(container_dir);
        let mut f = Follower { path, file: None, ino: 0, pos: 0 };
        if let Ok(file) = File::open(&f.path) {
            use std::os::unix::fs::MetadataExt;
            let md = file.metadata().ok();
            f.ino = md.as_ref().map(|m| m.ino()).unwrap_or(0);
            // Only whole records: a partial last line is read when it is complete.
            f.pos = complete_len(&file).unwrap_or(0);
            f.file = Some(file);
        }
        f
    }

    /// New complete records since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<Record>> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        // Rotated (or created): finish the old file, then start on the new one.
        let now_ino = fs::metadata(&self.path).map(|m| m.ino()).unwrap_or(0);
        if let Some(f) = self.file.as_mut() {
            self.pos += read_from(f, self.pos, &mut out)?;
        }
        if now_ino != 0
            && now_ino != self.ino
            && let Ok(f) = File::open(&self.path)
        {
            self.file = Some(f);
            self.ino = now_ino;
            self.pos = 0;
            if let Some(f) = self.file.as_mut() {
                self.pos += read_from(f, 0, &mut out)?;
            }
        }
        Ok(out)
    }
}

fn complete_len(f: &File) -> io::Result<u64> {
    let mut data = Vec::new();
    (&*f).read_to_end(&mut data)?;
    Ok(data.iter().rposition(|b| *b == b'\n').map(|i| i as u64 + 1).unwrap_or(0))
}

/// Reads the complete records from `pos`; returns how many bytes they took.
fn read_from(f: &mut File, pos: u64, out: &mut Vec<Record>) -> io::Result<u64> {
    f.seek(SeekFrom::Start(pos))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    let end = data.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    read_records(&mut &data[..end], out)?;
    Ok(end as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partials_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(d.path(), 0).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\npart").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        let r = read_all(d.path()).unwrap();
        let texts: Vec<(&[u8], bool, Stream)> = r.iter().map(|x| (&x.text[..], x.full, x.stream)).collect();
        assert_eq!(
            texts,
            vec![
                (&b"one"[..], true, Stream::Stdout),
                (&b"two"[..], true, Stream::Stdout),
                (&b"part"[..], false, Stream::Stdout),
                (&b"err"[..], true, Stream::Stderr)
            ]
        );
        let raw = fs::read_to_string(log_path(d.path())).unwrap();
        let first = raw.lines().next().unwrap();
        assert!(first.ends_with(" stdout F one") && first.contains('T'), "{first}");

        let d = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(d.path(), 200).unwrap();
        for i in 0..100 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(fs::metadata(log_path(d.path())).unwrap().len() <= 200);
        let r = read_all(d.path()).unwrap();
        assert_eq!(r.last().unwrap().text, b"line 99");
        assert!(r.len() < 100 && r.len() >= 2);
    }
}
