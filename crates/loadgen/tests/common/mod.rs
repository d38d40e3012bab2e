//! A recording HTTP server on loopback for the engine's and the service's tests: HTTP/1.1 and
//! h2c on one port (hyper-util's auto builder), optionally TLS with ALPN; it keeps every
//! request (method, path, version, headers, body) and counts connections.
//!
//! Routes: `/status/<code>` answers that code, `/hang` never answers, anything else answers
//! 200 with `hello`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub version: Version,
    pub headers: hyper::HeaderMap,
    /// The URI's authority (HTTP/2 `:authority`), if any.
    pub authority: Option<String>,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicU64>,
}

impl Recorder {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub recorder: Recorder,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn answer(
    rec: Recorder,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path().to_string();
    rec.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or(path.clone(), |p| p.as_str().to_string()),
        version: parts.version,
        headers: parts.headers,
        authority: parts.uri.authority().map(|a| a.to_string()),
        body,
    });
    if path == "/hang" {
        std::future::pending::<()>().await;
    }
    let code = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut resp = Response::new(Full::new(Bytes::from_static(b"hello")));
    *resp.status_mut() = code;
    Ok(resp)
}

/// Starts a plain server (HTTP/1.1 and h2c).
pub async fn start() -> Server {
    start_with_tls(None).await
}

/// Starts a server, with TLS when `tls` is given.
pub async fn start_with_tls(tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Recorder::default();
    let rec = recorder.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            rec.connections.fetch_add(1, Ordering::SeqCst);
            let rec = rec.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(rec.clone(), req));
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
        }
    });
    Server { addr, recorder }
}

/// A self-signed certificate for `localhost`: the acceptor (ALPN h2 and http/1.1) and the
/// certificate as PEM for the client to trust.
pub fn self_signed() -> (tokio_rustls::TlsAcceptor, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = cert.cert.pem();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        cert.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem)
}
