//! Straight to the local control plane's API server, over TLS with the kubeconfig's client
//! certificate, without kubectl: the flood's writers, and the watches the scale bench times the
//! Canaries' changes with.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A kept-alive TLS connection to the API server.
pub type Conn = BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// The API server of a kubeconfig: its address and a TLS client with the user's certificate.
pub struct ApiServer {
    addr: SocketAddr,
    /// `host:port`, for the Host header.
    pub host: String,
    name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

impl ApiServer {
    /// From a kubeconfig with inline data (the local control plane's): the current context's
    /// server, certificate authority, client certificate and key.
    pub fn from_kubeconfig(path: &Path) -> Result<ApiServer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the kubeconfig {}", path.display()))?;
        let config: serde_json::Value = serde_saphyr::from_str(&text)
            .with_context(|| format!("parse the kubeconfig {}", path.display()))?;
        let context = config["current-context"].as_str().unwrap_or_default();
        let named = |list: &str, name: &str| {
            config[list]
                .as_array()
                .and_then(|l| l.iter().find(|e| e["name"].as_str() == Some(name)))
                .cloned()
                .unwrap_or_default()
        };
        let ctx = named("contexts", context);
        let cluster = named(
            "clusters",
            ctx["context"]["cluster"].as_str().unwrap_or_default(),
        );
        let user = named("users", ctx["context"]["user"].as_str().unwrap_or_default());
        let data = |v: &serde_json::Value, field: &str| -> Result<Vec<u8>> {
            let b64 = v[field].as_str().with_context(|| {
                format!(
                    "the kubeconfig {} has no inline {field} for its current context",
                    path.display()
                )
            })?;
            Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
        };
        let server = cluster["cluster"]["server"]
            .as_str()
            .context("the kubeconfig's server")?;
        let url = server
            .strip_prefix("https://")
            .context("the API server is not on https")?;
        let host = url.trim_end_matches('/').to_string();
        let addr = host
            .to_socket_addrs()?
            .next()
            .with_context(|| format!("{server} does not resolve"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&data(
            &cluster["cluster"],
            "certificate-authority-data",
        )?) {
            roots.add(cert?)?;
        }
        let chain =
            CertificateDer::pem_slice_iter(&data(&user["user"], "client-certificate-data")?)
                .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&data(&user["user"], "client-key-data")?)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        // The serving certificate names the address the local control plane listens on.
        let name = ServerName::from(addr.ip());
        Ok(ApiServer {
            addr,
            host,
            name,
            tls: Arc::new(tls),
        })
    }

    /// A new connection whose reads give up after `read_timeout` (`None`: never).
    pub fn connect_with(&self, read_timeout: Option<Duration>) -> Result<(Conn, TcpStream)> {
        let stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(read_timeout)?;
        stream.set_nodelay(true)?;
        let handle = stream.try_clone()?;
        let tls = rustls::ClientConnection::new(self.tls.clone(), self.name.clone())?;
        Ok((
            BufReader::new(rustls::StreamOwned::new(tls, stream)),
            handle,
        ))
    }

    /// A new connection whose reads give up after 10 s.
    pub fn connect(&self) -> Result<Conn> {
        Ok(self.connect_with(Some(Duration::from_secs(10)))?.0)
    }
}

/// Sends one request on a kept-alive connection, the whole of it in one write (one TLS record
/// and one segment, not one per piece).
pub fn send(
    conn: &mut Conn,
    host: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<()> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes())?;
    conn.get_mut().flush()?;
    Ok(())
}

/// How a response's body comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Length(usize),
    Chunked,
}

/// Reads a response's status line and headers.
pub fn read_head(conn: &mut Conn) -> Result<(u16, Body)> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        bail!("the API server closed the connection");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut body = Body::Length(0);
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        if name.eq_ignore_ascii_case("content-length") {
            body = Body::Length(value.trim().parse()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
        {
            body = Body::Chunked;
        }
    }
    Ok((status, body))
}

/// Appends the next chunk of a chunked body to `into`; `false` after the last (empty) chunk.
pub fn read_chunk(conn: &mut Conn, into: &mut Vec<u8>) -> Result<bool> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        bail!("the API server closed the connection within a chunked body");
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
        .with_context(|| format!("not a chunk size: {line:?}"))?;
    let start = into.len();
    // The chunk and its CRLF (the last, empty chunk: just the final CRLF).
    conn.by_ref()
        .take(size as u64 + 2)
        .read_to_end(into)
        .context("reading a chunk")?;
    if into.len() != start + size + 2 {
        bail!("the API server closed the connection within a chunk");
    }
    into.truncate(start + size);
    Ok(size > 0)
}

/// Reads a whole body.
pub fn read_body(conn: &mut Conn, body: Body) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match body {
        Body::Length(n) => {
            conn.by_ref().take(n as u64).read_to_end(&mut out)?;
        }
        Body::Chunked => while read_chunk(conn, &mut out)? {},
    }
    Ok(out)
}

/// One HTTP/1.1 request on a kept-alive connection; its status and body.
pub fn request(
    conn: &mut Conn,
    host: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<(u16, Vec<u8>)> {
    send(conn, host, method, path, content_type, body)?;
    let (status, body) = read_head(conn)?;
    Ok((status, read_body(conn, body)?))
}
