//! A metrics server on loopback for the provider tests.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server on loopback that answers every request with `status` and `body` (sent as JSON when
/// it starts with `{`), and keeps each request's head. Returns its base URL and the heads.
#[allow(dead_code)] // the conformance suite uses contract_server
pub async fn server(status: u16, body: impl Into<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let body: String = body.into();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).to_string());
                let content_type = if body.starts_with('{') {
                    "application/json"
                } else {
                    "text/plain"
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://127.0.0.1:{}", addr.port()), seen)
}

/// One request as a contract server sees it.
#[derive(Clone, Debug, Default)]
#[allow(dead_code)] // each test binary reads the parts its providers document
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
    /// The body's bytes (for binary protocols such as CBOR, and for request signatures).
    pub raw: Vec<u8>,
}

#[allow(dead_code)]
impl Request {
    /// The first query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Err` naming what differs when the request is not `method path`.
    pub fn expect(&self, method: &str, path: &str) -> Result<(), String> {
        if self.method != method || self.path != path {
            return Err(format!(
                "expected {method} {path}, got {} {}",
                self.method, self.path
            ));
        }
        Ok(())
    }

    /// `Err` unless header `name` is exactly `value`.
    pub fn expect_header(&self, name: &str, value: &str) -> Result<(), String> {
        match self.header(name) {
            Some(v) if v == value => Ok(()),
            Some(_) => Err(format!("header {name} has the wrong value")),
            None => Err(format!("header {name} is missing")),
        }
    }

    /// `Err` unless query parameter `name` is exactly `value`.
    pub fn expect_param(&self, name: &str, value: &str) -> Result<(), String> {
        match self.param(name) {
            Some(v) if v == value => Ok(()),
            Some(v) => Err(format!("parameter {name} is {v:?}, expected {value:?}")),
            None => Err(format!("parameter {name} is missing")),
        }
    }
}

/// A contract server's answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Extra headers (e.g. `Retry-After`).
    pub headers: Vec<(String, String)>,
    /// `content-type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

#[allow(dead_code)]
impl Response {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body: body.into(),
        }
    }

    /// `status` with a plain text body.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            content_type: "text/plain",
            ..Response::json(status, body)
        }
    }

    /// `status` with a body of `content_type`, e.g. CBOR.
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            content_type,
            ..Response::json(status, body)
        }
    }

    /// The same answer with header `name: value` added.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a contract server does with each request: its answer, or `Err` when the request breaks
/// the documented contract (the server then answers 400 with the violation, and keeps it).
pub type Handler = Arc<dyn Fn(&Request) -> Result<Response, String> + Send + Sync>;

/// A server on loopback that answers each request as `handler` says. Returns its base URL and
/// every contract violation it saw.
#[allow(dead_code)]
pub async fn contract_server(handler: Handler) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let violations = Arc::new(Mutex::new(Vec::new()));
    let log = violations.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (log, handler) = (log.clone(), handler.clone());
            tokio::spawn(async move {
                let Some(request) = read_request(&mut sock).await else {
                    return;
                };
                let response = handler(&request).unwrap_or_else(|violation| {
                    let v = format!("{} {}: {violation}", request.method, request.path);
                    log.lock().unwrap().push(v.clone());
                    Response::text(400, format!("contract violation: {v}"))
                });
                let mut head = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
                    response.status,
                    response.content_type,
                    response.body.len()
                );
                for (k, v) in &response.headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&response.body).await;
            });
        }
    });
    (format!("http://127.0.0.1:{}", addr.port()), violations)
}

/// Reads one HTTP/1.1 request (head and a `content-length` body).
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut data = Vec::new();
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[end + 4..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        method,
        path: path.to_string(),
        query: url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
        raw: body,
    })
}
