//! A TCP proxy on loopback that makes a path slow and lossy: every chunk it forwards waits the
//! latency first, and [`Toxic::cut`] drops every connection open through it. Bytes pass
//! unchanged, so TLS to the upstream (the API server's certificate names 127.0.0.1) still
//! verifies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One proxy; it stops when dropped.
pub struct Toxic {
    /// Where it listens.
    pub addr: SocketAddr,
    latency_ms: Arc<AtomicU64>,
    accepted: Arc<AtomicUsize>,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Toxic {
    /// A proxy to `upstream`, without latency until [`Toxic::set_latency`].
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Toxic> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let latency_ms = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (cuts, _) = watch::channel(0u64);
        let (lat, acc, cut_tx) = (latency_ms.clone(), accepted.clone(), cuts.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::Relaxed);
                let (lat, mut cut) = (lat.clone(), cut_tx.subscribe());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = pump(cr, sw, lat.clone()) => {}
                        _ = pump(sr, cw, lat) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Ok(Toxic {
            addr,
            latency_ms,
            accepted,
            cuts,
            task,
        })
    }

    /// Every chunk forwarded from now on waits `latency` first (in each direction).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    /// Drops every connection open through the proxy now.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Toxic {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency_ms: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let wait = latency_ms.load(Ordering::Relaxed);
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A receiver that accepts connections, reads what is sent and never answers: a hanging chat
/// server or webhook.
pub struct BlackHole {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub async fn start() -> anyhow::Result<BlackHole> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut sink = tokio::io::sink();
                    let _ = tokio::io::copy(&mut conn, &mut sink).await;
                });
            }
        });
        Ok(BlackHole {
            addr,
            accepted,
            task,
        })
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}
