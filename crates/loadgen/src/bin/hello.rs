//! A hyper hello-world server on loopback: the target of `cargo xtask bench loadgen`.
//!
//! `fledge-loadgen-hello [--port N] [--threads N]` prints its address on the first line of stdout, then
//! answers every request with `200 Hello, World!` over HTTP/1.1 with keep-alive until killed.
#![forbid(unsafe_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() -> std::io::Result<()> {
    let mut port = 0u16;
    let mut threads = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next();
        let parsed = value.as_deref().and_then(|v| v.parse::<usize>().ok());
        match (a.as_str(), parsed) {
            ("--port", Some(p)) if p <= usize::from(u16::MAX) => port = p as u16,
            ("--threads", Some(t)) if t > 0 => threads = t,
            _ => {
                eprintln!("usage: fledge-loadgen-hello [--port N] [--threads N]");
                std::process::exit(2);
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"Hello, World!"),
                        )))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
