//! Connections to targets: TCP, TLS (rustls with the aws-lc-rs provider, the one the rest of
//! the workspace uses), then an HTTP/1.1 or HTTP/2 handshake with hyper's connection API, one
//! connection per worker and origin (no pool: each worker owns its connections).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::plan::{HttpVersion, Plan, Target, TlsOptions};
use crate::report::ErrorKind;

/// The request body type of the engine.
pub(crate) type Body = Full<Bytes>;

/// One open connection.
pub(crate) enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

/// Opens connections for one plan.
pub(crate) struct Connector {
    http: HttpVersion,
    tls: Option<tokio_rustls::TlsConnector>,
    server_name: Option<String>,
}

impl Connector {
    /// A connector; TLS is set up only when a target is `https`.
    pub(crate) fn new(plan: &Plan) -> Result<Connector, Error> {
        let tls = if plan.targets.iter().any(|t| t.https) {
            Some(tokio_rustls::TlsConnector::from(Arc::new(client_config(
                &plan.tls, plan.http,
            )?)))
        } else {
            None
        };
        Ok(Connector {
            http: plan.http,
            tls,
            // The Host override names the server, as a gateway routing on it expects.
            server_name: plan.host.as_ref().map(|h| {
                h.rsplit_once(':')
                    .map_or(h.as_str(), |(h, _)| h)
                    .to_string()
            }),
        })
    }

    /// Connects to `target`'s origin and performs the HTTP handshake.
    pub(crate) async fn connect(&self, target: &Target) -> Result<Sender, ErrorKind> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|_| ErrorKind::Connect)?;
        let _ = tcp.set_nodelay(true);
        if !target.https {
            return self.handshake(TokioIo::new(tcp), self.http).await;
        }
        let tls = self.tls.as_ref().ok_or(ErrorKind::Tls)?;
        let name = self.server_name.as_deref().unwrap_or(&target.host);
        let name = ServerName::try_from(name.to_string()).map_err(|_| ErrorKind::Tls)?;
        let stream = tls.connect(name, tcp).await.map_err(|_| ErrorKind::Tls)?;
        // The server's ALPN choice decides; without one, HTTP/1.1.
        let version = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => HttpVersion::Http2,
            _ => HttpVersion::Http1,
        };
        self.handshake(TokioIo::new(stream), version).await
    }

    async fn handshake<T>(&self, io: TokioIo<T>, version: HttpVersion) -> Result<Sender, ErrorKind>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        match version {
            HttpVersion::Http1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|_| ErrorKind::Connect)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Sender::H1(send))
            }
            HttpVersion::Http2 => {
                let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .map_err(|_| ErrorKind::Connect)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Sender::H2(send))
            }
        }
    }
}

/// The rustls client configuration: aws-lc-rs as the crypto provider (given explicitly, so no
/// process-wide default is needed), the system's roots plus `ca_file`, or no verification
/// when `insecure`; ALPN offers h2 only for HTTP/2.
fn client_config(opts: &TlsOptions, http: HttpVersion) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = &opts.ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::Tls(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls(
                "no trusted root certificates (install ca-certificates, or pass a CA file or \
                 --insecure)"
                    .into(),
            ));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = match http {
        HttpVersion::Http2 => vec![b"h2".to_vec()],
        HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// Accepts any server certificate (`--insecure`); signatures are still checked, so the
/// handshake itself stays sound.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
