//! The HTTP/1.1 layer under the fake Hubs (tests/fake_hub, tests/fake_hub_download): a std
//! `TcpListener` on 127.0.0.1, one request per connection (`Connection: close`), a body only
//! with `Content-Length`. Each fake Hub supplies the routing as a handler; the server answers
//! every connection on its own thread until it is dropped, or by itself after its lifetime.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A [`Response`] status that closes the connection without a reply (a reset, to the client).
pub const NO_REPLY: u16 = 0;
/// Request bodies bigger than this are refused as unreadable.
const MAX_BODY: usize = 64 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Request {
    pub method: String,
    /// The request target as sent (query and percent-encoding kept).
    pub target: String,
    /// The target without its query.
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value, by its lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub struct Response {
    /// [`NO_REPLY`]: close the connection without answering.
    pub status: u16,
    /// Sent after `Content-Type`, `Content-Length` and `Connection`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A bound listener, so that its handler can be built knowing the server's URL.
pub struct Listener {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    listener: TcpListener,
}

impl Listener {
    pub fn bind() -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Listener { url, listener }
    }

    /// Answer every connection with `handler` (given the request, or why it could not be
    /// read), under `content_type`, until the server is dropped or `lifetime` has passed.
    pub fn serve<H>(self, lifetime: Duration, content_type: &'static str, handler: H) -> Server
    where
        H: Fn(Result<Request, String>) -> Response + Send + Sync + 'static,
    {
        let Listener { url, listener } = self;
        let handler = Arc::new(handler);
        let stop = Arc::new(AtomicBool::new(false));
        let sp = stop.clone();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + lifetime;
            while !sp.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        std::thread::spawn(move || serve(stream, content_type, &*handler));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break,
                }
            }
        });
        Server {
            url,
            stop,
            handle: Some(handle),
        }
    }
}

/// A running server; dropping it stops the accept loop.
pub struct Server {
    pub url: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn read_request(stream: &TcpStream) -> Result<Request, String> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let mut it = line.split_whitespace();
    let (method, target) = match (it.next(), it.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => return Err(format!("bad request line {line:?}")),
    };
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(|e| e.to_string())?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').ok_or(format!("bad header {h:?}"))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    if headers.contains_key("transfer-encoding") {
        return Err("chunked request body (storage PUTs need Content-Length)".into());
    }
    let len: usize = headers
        .get("content-length")
        .map_or(Ok(0), |v| v.parse())
        .map_err(|_| "bad content-length")?;
    if len > MAX_BODY {
        return Err(format!("body of {len} bytes"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    let path = target.split('?').next().unwrap_or("").to_string();
    Ok(Request {
        method,
        target,
        path,
        headers,
        body,
    })
}

fn serve(
    stream: TcpStream,
    content_type: &str,
    handler: &dyn Fn(Result<Request, String>) -> Response,
) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
    let resp = handler(read_request(&stream));
    if resp.status == NO_REPLY {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut s = &stream;
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(&resp.body);
    let _ = s.flush();
}

/// Lower-case hex SHA-256 of `b`.
pub fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}
