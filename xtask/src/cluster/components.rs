//! The command lines of the control-plane components. Pure: paths and ports in, arguments out.

use std::path::{Path, PathBuf};

use super::pki::Pki;
use super::ports::Ports;

/// Service cluster IPs; [`super::pki::KUBERNETES_SERVICE_IP`] is its first address.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Pod IPs handed out by kwok.
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The issuer (and default audience) of service-account tokens.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The fake node kwok plays.
pub const NODE_NAME: &str = "fledge-kwok-0";
/// Annotation kwok selects its nodes by.
pub const KWOK_NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// The processes of the control plane, in start order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kwok,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Kwok,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kwok => "kwok",
        }
    }
}

/// Where the files the components read live.
pub struct Files<'a> {
    pub pki: &'a Pki,
    pub etcd_data: &'a Path,
    /// Kubeconfig of the controller manager.
    pub controller_manager_kubeconfig: &'a Path,
    /// KubeSchedulerConfiguration file.
    pub scheduler_config: &'a Path,
    pub kwok_kubeconfig: &'a Path,
    /// kwok's Stage files (node and pod lifecycles).
    pub kwok_stages: &'a [PathBuf],
    /// The API server's audit policy ([`AUDIT_POLICY`]) and the log it writes.
    pub audit_policy: &'a Path,
    pub audit_log: &'a Path,
}

/// The users whose every request the audit log records (see [`AUDIT_POLICY`]).
pub const BENCH_USERS: [&str; 2] = ["fledge-bench-fledge", "fledge-bench-flagger"];

/// What the API server's audit log records (nothing of the control plane's own components and
/// their service accounts: the namespace controller listing every kind again and again in a
/// namespace stuck terminating filled 100 MB in four minutes): each list when it completes and each watch when it
/// starts, and each read or write of a Canary, Deployment or Service, with who asked (user and
/// user agent) and for what (no bodies). Tests count a client's lists and watches with it (a
/// controller whose watches resume after a restart lists once, not in a storm) and check which
/// objects a shard of controllers touched.
///
/// The controllers of `cargo xtask bench scale` (users [`BENCH_USERS`]) have every request
/// recorded, once each: a watch when it starts, anything else when it completes.
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  users: [\"fledge-bench-fledge\", \"fledge-bench-flagger\"]
  verbs: [\"watch\"]
  omitStages: [\"RequestReceived\", \"ResponseComplete\"]
- level: Metadata
  users: [\"fledge-bench-fledge\", \"fledge-bench-flagger\"]
  omitStages: [\"RequestReceived\", \"ResponseStarted\"]
- level: None
  users: [\"system:kube-controller-manager\", \"system:kube-scheduler\", \"system:kwok\", \"system:apiserver\"]
- level: None
  userGroups: [\"system:serviceaccounts:kube-system\", \"system:nodes\"]
- level: Metadata
  verbs: [\"list\"]
  omitStages: [\"RequestReceived\", \"ResponseStarted\"]
- level: Metadata
  verbs: [\"watch\"]
  omitStages: [\"RequestReceived\", \"ResponseComplete\"]
- level: Metadata
  verbs: [\"get\", \"create\", \"update\", \"patch\", \"delete\"]
  resources:
  - group: \"fledge.dev\"
    resources: [\"canaries\", \"canaries/status\"]
  - group: \"apps\"
    resources: [\"deployments\"]
  - group: \"\"
    resources: [\"services\"]
  omitStages: [\"RequestReceived\", \"ResponseStarted\"]
- level: None
";

fn arg(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

pub fn etcd_args(ports: &Ports, files: &Files) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        arg("name", "fledge"),
        arg("data-dir", path(files.etcd_data)),
        arg("listen-client-urls", &client),
        arg("advertise-client-urls", &client),
        arg("listen-peer-urls", &peer),
        arg("initial-advertise-peer-urls", &peer),
        arg("initial-cluster", format!("fledge={peer}")),
        arg("initial-cluster-state", "new"),
        arg("log-level", "warn"),
        // A throw-away development store: skipping fsync makes it fast on slow shared disks.
        arg("unsafe-no-fsync", "true"),
        // Room for the scale bench's largest sizes (10,000 Canaries with their primaries, pods
        // and Events); etcd's default is 2 GiB.
        arg("quota-backend-bytes", 8u64 << 30),
    ]
}

pub fn apiserver_args(ports: &Ports, files: &Files) -> Vec<String> {
    let pki = files.pki;
    vec![
        arg("advertise-address", "127.0.0.1"),
        arg("bind-address", "127.0.0.1"),
        arg("secure-port", ports.apiserver),
        arg(
            "etcd-servers",
            format!("http://127.0.0.1:{}", ports.etcd_client),
        ),
        arg("tls-cert-file", path(&pki.apiserver_cert())),
        arg("tls-private-key-file", path(&pki.apiserver_key())),
        arg("client-ca-file", path(&pki.ca_cert())),
        arg("service-account-issuer", SERVICE_ACCOUNT_ISSUER),
        arg("service-account-key-file", path(&pki.sa_pub())),
        arg("service-account-signing-key-file", path(&pki.sa_key())),
        arg("service-cluster-ip-range", SERVICE_CIDR),
        arg("authorization-mode", "RBAC"),
        arg("allow-privileged", "true"),
        // The `kubernetes` Service cannot point at a loopback address; nothing in-cluster
        // needs it (in-cluster clients here run on the host and use the kubeconfig).
        arg("endpoint-reconciler-type", "none"),
        arg("profiling", "false"),
        arg("audit-policy-file", path(files.audit_policy)),
        arg("audit-log-path", path(files.audit_log)),
        arg("audit-log-maxsize", 100),
        arg("audit-log-maxbackup", 10),
    ]
}

pub fn controller_manager_args(files: &Files) -> Vec<String> {
    let pki = files.pki;
    let kubeconfig = path(files.controller_manager_kubeconfig);
    vec![
        arg("kubeconfig", &kubeconfig),
        arg("authentication-kubeconfig", &kubeconfig),
        arg("authorization-kubeconfig", &kubeconfig),
        arg("bind-address", "127.0.0.1"),
        // No serving port: nothing probes it, and it would be one more port to find.
        arg("secure-port", 0),
        arg("leader-elect", "false"),
        arg("use-service-account-credentials", "true"),
        arg("service-account-private-key-file", path(&pki.sa_key())),
        arg("root-ca-file", path(&pki.ca_cert())),
        arg("cluster-signing-cert-file", path(&pki.ca_cert())),
        arg("cluster-signing-key-file", path(&pki.ca_key())),
        arg("service-cluster-ip-range", SERVICE_CIDR),
        arg("kube-api-qps", 100),
        arg("kube-api-burst", 200),
        // kwok Pods have made-up IPs that serve nothing. The endpointslice controller would
        // publish them for every Service with a selector, next to the loopback EndpointSlices
        // the data plane writes (`cargo xtask dataplane endpoints`), and Traefik would send
        // part of the traffic to them. Local-mode endpoints come from the harness only.
        arg("controllers", "*,-endpointslice-controller"),
    ]
}

pub fn scheduler_args(files: &Files) -> Vec<String> {
    vec![
        arg("config", path(files.scheduler_config)),
        arg("bind-address", "127.0.0.1"),
        arg("secure-port", 0),
    ]
}

/// The scheduler's configuration file.
pub fn scheduler_config(kubeconfig: &Path) -> String {
    format!(
        "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: {kubeconfig:?}
  qps: 100
  burst: 200
leaderElection:
  leaderElect: false
",
        kubeconfig = kubeconfig.display().to_string()
    )
}

pub fn kwok_args(files: &Files) -> Vec<String> {
    let stages: Vec<String> = files.kwok_stages.iter().map(|p| path(p)).collect();
    vec![
        arg("kubeconfig", path(files.kwok_kubeconfig)),
        arg("config", stages.join(",")),
        arg("manage-all-nodes", "false"),
        arg(
            "manage-nodes-with-annotation-selector",
            format!("{}={}", KWOK_NODE_ANNOTATION.0, KWOK_NODE_ANNOTATION.1),
        ),
        arg("node-ip", "127.0.0.1"),
        arg("cidr", POD_CIDR),
        arg("node-lease-duration-seconds", 40),
    ]
}

/// The Node kwok plays. No taint: ordinary Deployments are meant to land on it.
pub fn node_manifest() -> String {
    let (key, value) = KWOK_NODE_ANNOTATION;
    format!(
        "apiVersion: v1
kind: Node
metadata:
  name: {NODE_NAME}
  annotations:
    node.alpha.kubernetes.io/ttl: \"0\"
    {key}: {value}
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: {NODE_NAME}
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: \"\"
    type: kwok
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_policy_records_every_request_of_the_bench_users() {
        let policy: serde_json::Value = serde_saphyr::from_str(AUDIT_POLICY).unwrap();
        let rules = policy["rules"].as_array().unwrap();
        for user in BENCH_USERS {
            // The first rules: theirs, before any that would record less.
            let theirs: Vec<_> = rules
                .iter()
                .take_while(|r| r["users"].is_array())
                .filter(|r| r["users"].as_array().unwrap().iter().any(|u| u == user))
                .collect();
            assert_eq!(theirs.len(), 2, "{user}");
            assert!(theirs.iter().all(|r| r["level"] == "Metadata"));
        }
        assert_eq!(rules.last().unwrap()["level"], "None");
    }

    fn files<'a>(pki: &'a Pki, stages: &'a [PathBuf]) -> Files<'a> {
        Files {
            pki,
            etcd_data: Path::new("/c/etcd"),
            controller_manager_kubeconfig: Path::new("/c/cm.kubeconfig"),
            scheduler_config: Path::new("/c/scheduler.yaml"),
            kwok_kubeconfig: Path::new("/c/kwok.kubeconfig"),
            kwok_stages: stages,
            audit_policy: Path::new("/c/audit-policy.yaml"),
            audit_log: Path::new("/c/audit.log"),
        }
    }

    const PORTS: Ports = Ports {
        etcd_client: 2379,
        etcd_peer: 2380,
        apiserver: 6443,
    };

    #[test]
    fn everything_listens_on_loopback() {
        let pki = Pki::new(PathBuf::from("/c/pki"));
        let f = files(&pki, &[]);
        let etcd = etcd_args(&PORTS, &f);
        assert!(etcd.contains(&"--listen-client-urls=http://127.0.0.1:2379".to_string()));
        assert!(etcd.contains(&"--listen-peer-urls=http://127.0.0.1:2380".to_string()));
        let api = apiserver_args(&PORTS, &f);
        assert!(api.contains(&"--bind-address=127.0.0.1".to_string()));
        assert!(api.contains(&"--secure-port=6443".to_string()));
        assert!(api.contains(&"--etcd-servers=http://127.0.0.1:2379".to_string()));
        assert!(api.contains(&"--audit-log-path=/c/audit.log".to_string()));
        assert!(api.contains(&"--service-account-signing-key-file=/c/pki/sa.key".to_string()));
        for args in [controller_manager_args(&f), scheduler_args(&f)] {
            assert!(args.contains(&"--secure-port=0".to_string()));
        }
        let cm = controller_manager_args(&f);
        assert!(cm.contains(&"--service-account-private-key-file=/c/pki/sa.key".to_string()));
        assert!(cm.contains(&"--root-ca-file=/c/pki/ca.crt".to_string()));
        assert!(cm.contains(&"--controllers=*,-endpointslice-controller".to_string()));
    }

    #[test]
    fn kwok_gets_every_stage_file() {
        let pki = Pki::new(PathBuf::from("/c/pki"));
        let stages = [PathBuf::from("/s/a.yaml"), PathBuf::from("/s/b.yaml")];
        let args = kwok_args(&files(&pki, &stages));
        assert!(args.contains(&"--config=/s/a.yaml,/s/b.yaml".to_string()));
        assert!(args.contains(
            &"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".to_string()
        ));
        assert!(node_manifest().contains("    kwok.x-k8s.io/node: fake\n"));
    }

    #[test]
    fn scheduler_config_quotes_the_path() {
        let c = scheduler_config(Path::new("/a b/kubeconfig"));
        assert!(c.contains("  kubeconfig: \"/a b/kubeconfig\"\n"));
    }
}
