//! A deliberately broken "registry": a tiny HTTP server on 127.0.0.1 that answers every
//! request with what the test says (garbage manifests, huge manifests, 500s, schema 1). The
//! real registry refuses to store such content, so these cases need their own server. Stopped
//! when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What to answer: status, content type, body.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

pub struct Hostile {
    pub addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A request as the server saw it.
pub struct Request {
    pub method: String,
    pub path: String,
    /// The header lines, lower-cased names (`authorization: Basic …`).
    pub headers: Vec<String>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers.iter().find(|h| h.to_ascii_lowercase().starts_with(&prefix)).map(|h| h[prefix.len()..].trim())
    }
}

impl Hostile {
    /// Serves `answer(method, path)` for every request.
    pub fn start(answer: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Hostile {
        Self::start_full(move |r: &Request| answer(&r.method, &r.path))
    }

    /// Serves `answer(request)` for every request.
    pub fn start_full(answer: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Hostile {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = conn else { continue };
                let _ = serve(c, &answer);
            }
        });
        Hostile { addr, stop, thread: Some(thread) }
    }
}

fn serve(c: TcpStream, answer: &impl Fn(&Request) -> Reply) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    // A TLS handshake (the client tries https first): hang up, it falls back to http.
    let mut first = [0u8; 1];
    if c.peek(&mut first)? == 0 || first[0] == 0x16 {
        return Ok(());
    }
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        headers.push(h.trim_end().to_string());
    }
    let rep = answer(&Request { method: method.clone(), path, headers });
    let mut w = c;
    let reason = match rep.status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        rep.status,
        rep.content_type,
        rep.body.len()
    );
    w.write_all(head.as_bytes())?;
    if method != "HEAD" {
        w.write_all(&rep.body)?;
    }
    w.flush()
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A reply of `status` with `content_type` and `body`.
pub fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
    Reply { status, content_type: content_type.to_string(), body }
}
