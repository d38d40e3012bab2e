//! A Skipper process on loopback, started by a test and killed when dropped: an HTTP router
//! that reads the Ingresses of one namespace from the local control plane, for the skipper
//! provider's real-traffic test.
//!
//! Skipper reaches an API server from outside a cluster by a plain URL (or a bearer token), not
//! by the client certificate of the control plane's kubeconfig, so `kubectl proxy` (the
//! cluster's own kubectl, with the administrator's kubeconfig) stands between them. Skipper
//! resolves a Service's backends from its EndpointSlices (`-enable-kubernetes-endpointslices`),
//! which the harness points at podinfo processes on loopback; it never reads their address type,
//! so the FQDN slices the harness writes serve it as they serve Traefik.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::dataplane::dataplane;
use crate::{admin_kubeconfig, free_port, server_dir, wait_answering};

/// How often Skipper reads the Ingresses, Services and EndpointSlices again, in milliseconds.
pub const POLL_MS: u64 = 500;

/// One Skipper process and the `kubectl proxy` it reads the API server through.
pub struct Skipper {
    /// Where it routes HTTP requests.
    pub addr: SocketAddr,
    /// Its support listener (`/routes`: the routes it runs, in its route language).
    pub support: SocketAddr,
    skipper: Child,
    proxy: Child,
    dir: PathBuf,
}

impl Skipper {
    /// Starts `kubectl proxy` and Skipper for the Ingresses of `namespace` (the binary `cargo
    /// xtask dataplane up` built), and waits until Skipper has loaded its first routes.
    pub async fn start(namespace: &str) -> anyhow::Result<Skipper> {
        let binary = dataplane().skipper.clone();
        if !binary.is_file() {
            bail!(
                "no Skipper binary at {}; `cargo xtask dataplane up` builds it from its Go module",
                binary.display()
            );
        }
        let kubeconfig = admin_kubeconfig();
        let kubectl = kubeconfig
            .parent()
            .context("the kubeconfig's directory")?
            .join("bin/kubectl");
        // A free port can be taken (by an outgoing connection, another test) between the probe
        // and the bind: a process that cannot bind is started again on other ports.
        let mut attempt = 0;
        let (mut proxy, api_url, dir) = loop {
            attempt += 1;
            let api = free_port();
            let (dir, _) = server_dir("skipper", api)?;
            let log_path = dir.join("kubectl-proxy.log");
            let log = std::fs::File::create(&log_path)?;
            let mut proxy = Command::new(&kubectl)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["proxy", "--address=127.0.0.1"])
                .arg(format!("--port={api}"))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .with_context(|| format!("starting {} proxy", kubectl.display()))?;
            let api_url = format!("http://127.0.0.1:{api}");
            match wait_answering(
                &mut proxy,
                "kubectl proxy",
                &format!("{api_url}/version"),
                &log_path,
            )
            .await
            {
                Ok(()) => break (proxy, api_url, dir),
                Err(e) => {
                    stop(&mut proxy);
                    if attempt >= ATTEMPTS || !port_taken(&log_path) {
                        return Err(e);
                    }
                }
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (http, support) = (free_port(), free_port());
            let log_path = dir.join("skipper.log");
            let log = std::fs::File::create(&log_path)?;
            let mut skipper = Command::new(&binary)
                .arg("-kubernetes")
                .arg(format!("-kubernetes-url={api_url}"))
                .arg(format!("-kubernetes-namespace={namespace}"))
                .arg("-enable-kubernetes-endpointslices")
                // The Ingresses of the namespace whatever their class (the default takes only
                // class `skipper`, and those without one).
                .arg("-kubernetes-ingress-class=.*")
                .arg("-kubernetes-https-redirect=false")
                .arg("-kubernetes-healthcheck=false")
                .arg(format!("-address=127.0.0.1:{http}"))
                .arg(format!("-support-listener=127.0.0.1:{support}"))
                .arg(format!("-source-poll-timeout={POLL_MS}"))
                .arg("-wait-first-route-load")
                // Stop at once when killed (by default it waits 45 s for load balancers to
                // notice).
                .arg("-wait-for-healthcheck-interval=0s")
                .arg("-access-log-disabled")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let routes = format!("http://127.0.0.1:{support}/routes");
            let answering = wait_answering(&mut skipper, "Skipper", &routes, &log_path).await;
            // The routing listener binds after the support listener, once the routes load.
            let serving = match answering {
                Ok(()) => wait_listening(&mut skipper, http).await,
                Err(e) => Err(e),
            };
            match serving {
                Ok(()) => {
                    return Ok(Skipper {
                        addr: SocketAddr::from(([127, 0, 0, 1], http)),
                        support: SocketAddr::from(([127, 0, 0, 1], support)),
                        skipper,
                        proxy,
                        dir,
                    });
                }
                Err(e) => {
                    stop(&mut skipper);
                    if attempt >= ATTEMPTS || !port_taken(&log_path) {
                        stop(&mut proxy);
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The routes Skipper runs now, in its route language (eskip).
    pub async fn routes(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("http://{}/routes", self.support))
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Waits until the routes Skipper runs satisfy `ok` (it reads the API server every
    /// [`POLL_MS`]); fails with them after `timeout`.
    pub async fn wait_routes(
        &self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let routes = self.routes().await.unwrap_or_default();
            if ok(&routes) {
                return Ok(routes);
            }
            if Instant::now() > deadline {
                bail!(
                    "Skipper did not run {what} in {timeout:?}; its routes:\n{routes}\nits log: {}",
                    self.dir.join("skipper.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Skipper {
    fn drop(&mut self) {
        stop(&mut self.skipper);
        stop(&mut self.proxy);
    }
}

/// Times a process is started on fresh ports when the ones it was given were taken.
const ATTEMPTS: u32 = 3;

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether the process that wrote `log` could not bind its port.
fn port_taken(log: &std::path::Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains("address already in use"))
}

/// Waits until `child` accepts connections on loopback `port`: fails when it exits first, and
/// after 30 s.
async fn wait_listening(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("Skipper exited ({status}) before listening on port {port}");
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Skipper did not listen on port {port} in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
