//! An InfluxDB 1.8 server on loopback, started by a test and killed when dropped: a real server
//! of the v2 query API with Flux for the influxdb provider. Authentication is on: one admin user,
//! whose `user:password` is the token the v2 API takes; one database, whose bucket is
//! `<database>/autogen`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

use crate::dataplane::dataplane;
use crate::{free_port, server_dir, wait_answering};

/// The admin user the server is started with.
pub const USER: &str = "fledge";
/// [`USER`]'s password.
pub const PASSWORD: &str = "e2e-influx-password";
/// The database every test writes to.
pub const DATABASE: &str = "e2e";

/// One InfluxDB process.
pub struct InfluxDb {
    /// `http://127.0.0.1:<port>`: `/api/v2/query`, `/write`, `/query`, `/health`.
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl InfluxDb {
    /// The token of the v2 API (InfluxDB 1.8 takes `user:password`).
    pub fn token() -> String {
        format!("{USER}:{PASSWORD}")
    }

    /// The bucket of [`DATABASE`] in Flux.
    pub fn bucket() -> String {
        format!("{DATABASE}/autogen")
    }

    /// Starts it (the binary `cargo xtask dataplane up` built), waits until it answers, creates
    /// the admin user and [`DATABASE`].
    pub async fn start() -> anyhow::Result<InfluxDb> {
        let binary = &dataplane().influxd;
        if !binary.is_file() {
            bail!(
                "no InfluxDB binary at {}; `cargo xtask dataplane up` builds it from its Go module",
                binary.display()
            );
        }
        let (http, rpc) = (free_port(), free_port());
        let (dir, log) = server_dir("influxd", http)?;
        let data = dir.join("data");
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{data}/meta"
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  auth-enabled = true
  flux-enabled = true
  log-enabled = false
"#,
            data = data.display()
        );
        std::fs::write(dir.join("influxdb.conf"), config)?;
        let child = Command::new(binary)
            .arg("-config")
            .arg(dir.join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut db = InfluxDb {
            url: format!("http://127.0.0.1:{http}"),
            child,
            dir,
        };
        let health = format!("{}/health", db.url);
        wait_answering(
            &mut db.child,
            "InfluxDB",
            &health,
            &db.dir.join("influxd.log"),
        )
        .await?;
        // With authentication on, the first admin user may be created without credentials.
        db.influxql(
            &format!("CREATE USER {USER} WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES"),
            false,
        )
        .await?;
        db.influxql(&format!("CREATE DATABASE {DATABASE}"), true)
            .await?;
        Ok(db)
    }

    /// Runs one InfluxQL statement through the 1.x `/query` API, as the admin user when `auth`.
    async fn influxql(&self, statement: &str, auth: bool) -> anyhow::Result<()> {
        let mut request = reqwest::Client::new()
            .post(format!("{}/query", self.url))
            .form(&[("q", statement)]);
        if auth {
            request = request.basic_auth(USER, Some(PASSWORD));
        }
        let r = request.send().await?;
        let (status, body) = (r.status(), r.text().await?);
        if !status.is_success() || body.contains("\"error\"") {
            bail!("{statement}: HTTP {status}: {body}");
        }
        Ok(())
    }

    /// Writes line-protocol `lines` (timestamps in seconds) to [`DATABASE`].
    pub async fn write(&self, lines: &str) -> anyhow::Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/write", self.url))
            .query(&[("db", DATABASE), ("precision", "s")])
            .basic_auth(USER, Some(PASSWORD))
            .body(lines.to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("write answered {}: {}", r.status(), r.text().await?);
        }
        Ok(())
    }
}

impl Drop for InfluxDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
