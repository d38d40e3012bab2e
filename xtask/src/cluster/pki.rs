//! Certificates and kubeconfig files of the local control plane, generated locally.
//!
//! One CA signs the API server's serving certificate and a client certificate per component.
//! The service-account key pair signs and verifies service-account tokens. All keys are
//! ECDSA P-256. Everything is made once and kept until `down --wipe`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The first address of the service CIDR: the `kubernetes` Service's cluster IP.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// A client identity: file stem, common name (user) and organizations (groups).
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub stem: &'static str,
    pub user: &'static str,
    pub groups: &'static [&'static str],
}

/// The people and components that talk to the API server.
pub const ADMIN: Client = Client {
    stem: "admin",
    user: "fledge-admin",
    groups: &["system:masters"],
};
pub const CONTROLLER_MANAGER: Client = Client {
    stem: "controller-manager",
    user: "system:kube-controller-manager",
    groups: &[],
};
pub const SCHEDULER: Client = Client {
    stem: "scheduler",
    user: "system:kube-scheduler",
    groups: &[],
};
/// kwok plays every kubelet, so it gets broad rights.
pub const KWOK: Client = Client {
    stem: "kwok",
    user: "system:kwok",
    groups: &["system:masters"],
};
const CLIENTS: [Client; 4] = [ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK];

/// File locations inside the PKI directory.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: PathBuf) -> Self {
        Pki { dir }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn apiserver_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn apiserver_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
    pub fn client_cert(&self, c: Client) -> PathBuf {
        self.dir.join(format!("{}.crt", c.stem))
    }
    pub fn client_key(&self, c: Client) -> PathBuf {
        self.dir.join(format!("{}.key", c.stem))
    }

    fn all_files(&self) -> Vec<PathBuf> {
        let mut files = vec![
            self.ca_cert(),
            self.ca_key(),
            self.apiserver_cert(),
            self.apiserver_key(),
            self.sa_key(),
            self.sa_pub(),
        ];
        for c in CLIENTS {
            files.push(self.client_cert(c));
            files.push(self.client_key(c));
        }
        files
    }

    /// Generates every certificate and key unless all already exist.
    pub fn ensure(&self) -> Result<()> {
        if self.all_files().iter().all(|f| f.is_file()) {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        self.generate().context("generating certificates")
    }

    fn generate(&self) -> Result<()> {
        let ca_key = KeyPair::generate()?;
        let ca_params = ca_params()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        write_secret(&self.ca_key(), &ca_key.serialize_pem())?;
        fs::write(self.ca_cert(), ca_cert.pem())?;
        let issuer = Issuer::new(ca_params, ca_key);

        let sans: Vec<String> = [
            "localhost",
            "127.0.0.1",
            "::1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            KUBERNETES_SERVICE_IP,
        ]
        .map(String::from)
        .to_vec();
        let key = KeyPair::generate()?;
        let mut params = base_params(sans)?;
        params.distinguished_name = dn("kube-apiserver", &[]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        write_secret(&self.apiserver_key(), &key.serialize_pem())?;
        fs::write(self.apiserver_cert(), cert.pem())?;

        for c in CLIENTS {
            let (cert, key) = client_cert(c.user, c.groups, &issuer)?;
            write_secret(&self.client_key(c), &key)?;
            fs::write(self.client_cert(c), cert)?;
        }

        let sa = KeyPair::generate()?;
        write_secret(&self.sa_key(), &sa.serialize_pem())?;
        fs::write(self.sa_pub(), sa.public_key_pem())?;
        Ok(())
    }

    /// A kubeconfig for a new client certificate of `user` in `groups`, signed by the cluster's
    /// CA: the benchmarks give each controller a user of its own, so that the API server's
    /// audit log tells its requests apart.
    pub fn issue_kubeconfig(&self, server: &str, user: &str, groups: &[&str]) -> Result<String> {
        let read =
            |p: PathBuf| fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()));
        let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&read(self.ca_key())?)?);
        let (cert, key) = client_cert(user, groups, &issuer)?;
        Ok(render_kubeconfig(
            server,
            user,
            read(self.ca_cert())?.as_bytes(),
            cert.as_bytes(),
            key.as_bytes(),
        ))
    }

    /// A kubeconfig for `client` against `server`, with the certificates inlined.
    pub fn kubeconfig(&self, server: &str, client: Client) -> Result<String> {
        let read = |p: PathBuf| fs::read(&p).with_context(|| format!("reading {}", p.display()));
        Ok(render_kubeconfig(
            server,
            client.user,
            &read(self.ca_cert())?,
            &read(self.client_cert(client))?,
            &read(self.client_key(client))?,
        ))
    }
}

/// The CA's parameters (its key signs with them; the same parameters and key sign later).
fn ca_params() -> Result<CertificateParams> {
    let mut params = base_params(Vec::new())?;
    params.distinguished_name = dn("fledge-local-ca", &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A client certificate and its key (PEM) for `user` in `groups`.
fn client_cert(
    user: &str,
    groups: &[&str],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = base_params(Vec::new())?;
    params.distinguished_name = dn(user, groups);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Parameters every certificate starts from: valid from 2000 to 2100, so a long-lived
/// development cluster never meets an expiry, with dates every TLS stack parses.
fn base_params(subject_alt_names: Vec<String>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(subject_alt_names)?;
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    Ok(params)
}

fn dn(common_name: &str, organizations: &[&str]) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn
}

/// Writes a file readable by its owner only (private keys, kubeconfigs holding them).
pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Write beside and rename, so a reader never sees a half-written file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The name of the cluster and context in every kubeconfig written here.
pub const CONTEXT: &str = "fledge-local";

/// Renders a kubeconfig with inline certificate data.
pub fn render_kubeconfig(server: &str, user: &str, ca: &[u8], cert: &[u8], key: &[u8]) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {user}
current-context: {CONTEXT}
preferences: {{}}
",
        ca = STANDARD.encode(ca),
        cert = STANDARD.encode(cert),
        key = STANDARD.encode(key),
        user = yaml_quote(user),
    )
}

/// Quotes a YAML scalar that contains a colon (user names such as `system:kwok`).
fn yaml_quote(s: &str) -> String {
    if s.contains(':') || s.contains('#') {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_inlines_base64_data_and_quotes_users() {
        let k = render_kubeconfig("https://127.0.0.1:6443", "system:kwok", b"CA", b"C", b"K");
        assert!(k.contains("    server: https://127.0.0.1:6443\n"));
        assert!(k.contains("certificate-authority-data: Q0E=\n"));
        assert!(k.contains("client-certificate-data: Qw==\n"));
        assert!(k.contains("client-key-data: Sw==\n"));
        assert!(k.contains("- name: \"system:kwok\"\n"));
        assert!(k.contains("    user: \"system:kwok\"\n"));
        assert!(k.contains("current-context: fledge-local\n"));
    }

    #[test]
    fn generates_a_complete_pki_once() {
        let dir = std::env::temp_dir().join(format!("fledge-pki-test-{}", std::process::id()));
        let pki = Pki::new(dir.clone());
        pki.ensure().unwrap();
        for f in pki.all_files() {
            let text = fs::read_to_string(&f).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{}", f.display());
        }
        let before = fs::read(pki.ca_cert()).unwrap();
        pki.ensure().unwrap();
        assert_eq!(
            before,
            fs::read(pki.ca_cert()).unwrap(),
            "kept, not regenerated"
        );
        let cfg = pki.kubeconfig("https://127.0.0.1:1", ADMIN).unwrap();
        assert!(cfg.contains("user: fledge-admin"));
        fs::remove_dir_all(dir).unwrap();
    }
}
