//! `kubectl fledge import`: Flagger's `Canary`, `MetricTemplate` and `AlertProvider` objects
//! moved to `fledge.dev/v1beta1`, whose specs keep Flagger's field names and meanings.
//!
//! - From files ([`convert_text`]): only the `apiVersion: flagger.app/v1beta1` line of each
//!   such document changes, as text, so comments, order, quoting and every other document
//!   (Deployments, HPAs, other kinds) stay as they were, ready to commit to the Git repository.
//! - From the cluster ([`from_cluster`]): the objects read through `flagger.app/v1beta1`, with
//!   what the API server and Flagger added removed ([`clean_object`]), as YAML ready to apply.

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value};

use crate::Error;

/// Flagger's API version, the one converted.
pub const FLAGGER_API_VERSION: &str = fledge_api::FLAGGER_API_VERSION;
/// The API version written.
pub const FLEDGE_API_VERSION: &str = fledge_api::API_VERSION;
/// The kinds converted, with their plural resource names.
pub const KINDS: [(&str, &str); 3] = [
    ("Canary", "canaries"),
    ("MetricTemplate", "metrictemplates"),
    ("AlertProvider", "alertproviders"),
];

/// What happened to one YAML document of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its `apiVersion` line now says `fledge.dev/v1beta1`.
    Converted,
    /// Already `fledge.dev/v1beta1`.
    AlreadyFledge,
    /// A Flagger object of an API version other than v1beta1 (`flagger.app/v1alpha1`): left as
    /// it is; Flagger itself no longer serves it.
    OldFlaggerVersion(String),
    /// Anything else (a Deployment, a kind fledge has no counterpart of): left as it is.
    Untouched,
}

/// One document of a file, numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// Its number in the file (empty documents are counted too).
    pub number: usize,
    /// `kind`, when the document has one at the top level.
    pub kind: Option<String>,
    /// `metadata.name`, when found.
    pub name: Option<String>,
    /// `metadata.namespace`, when found.
    pub namespace: Option<String>,
    /// What was done.
    pub outcome: Outcome,
}

impl Document {
    /// `Kind namespace/name`, for messages.
    pub fn label(&self) -> String {
        let ns = self.namespace.as_deref().map(|n| format!("{n}/"));
        format!(
            "{} {}{}",
            self.kind.as_deref().unwrap_or("?"),
            ns.unwrap_or_default(),
            self.name.as_deref().unwrap_or("?")
        )
    }
}

/// A converted text and what happened to each of its documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// The text, changed only in the converted documents' `apiVersion` lines.
    pub text: String,
    /// Every document, in order.
    pub documents: Vec<Document>,
}

impl Converted {
    /// How many documents were converted.
    pub fn converted(&self) -> usize {
        self.documents
            .iter()
            .filter(|d| d.outcome == Outcome::Converted)
            .count()
    }
}

/// The value of a top-level `key: value` line (no indentation), without quotes and a trailing
/// comment; `None` for other lines.
fn top_level_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let value = match rest.find(" #") {
        Some(i) => &rest[..i],
        None => rest,
    };
    let value = value.trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
    Some(unquoted.unwrap_or(value))
}

/// The value of `key` directly under the top-level `metadata:` block of a document's lines.
fn metadata_value(lines: &[&str], key: &str) -> Option<String> {
    let start = lines
        .iter()
        .position(|l| top_level_value(l, "metadata").is_some_and(str::is_empty))?;
    let mut indent = None;
    for line in &lines[start + 1..] {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let this = line.len() - trimmed.len();
        if this == 0 {
            break;
        }
        let first = *indent.get_or_insert(this);
        if this == first
            && let Some(v) = top_level_value(trimmed, key)
        {
            return Some(v.to_string());
        }
    }
    None
}

/// Whether a line separates YAML documents (`---`, maybe followed by a comment or content).
fn is_separator(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// Converts the Flagger documents of a YAML text. Each document whose top-level `kind` is a
/// Canary, MetricTemplate or AlertProvider and whose top-level `apiVersion` is
/// `flagger.app/v1beta1` gets `fledge.dev/v1beta1` in that line, its quoting and comment kept;
/// nothing else of the text changes (line endings included).
pub fn convert_text(text: &str) -> Converted {
    // Lines with their endings, so the text is rebuilt byte for byte.
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let bare: Vec<&str> = lines
        .iter()
        .map(|l| l.trim_end_matches('\n').trim_end_matches('\r'))
        .collect();
    // Document ranges: [start, end) of line indices.
    let mut ranges = Vec::new();
    let mut start = 0;
    for (i, l) in bare.iter().enumerate() {
        if is_separator(l) {
            ranges.push((start, i));
            start = i + 1;
        }
    }
    ranges.push((start, bare.len()));
    // A leading `---` opens the first document rather than ending an empty one.
    if ranges.len() > 1 && ranges[0].0 == ranges[0].1 {
        ranges.remove(0);
    }
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut documents = Vec::new();
    for (n, (from, to)) in ranges.into_iter().enumerate() {
        let doc = &bare[from..to];
        let find = |key: &str| {
            doc.iter()
                .enumerate()
                .find_map(|(i, l)| top_level_value(l, key).map(|v| (from + i, v.to_string())))
        };
        let kind = find("kind").map(|(_, k)| k);
        let api_version = find("apiVersion");
        let ours = kind
            .as_deref()
            .is_some_and(|k| KINDS.iter().any(|(kind, _)| *kind == k));
        let outcome = match &api_version {
            Some((line, v)) if ours && v == FLAGGER_API_VERSION => {
                out[*line] = lines[*line].replacen(FLAGGER_API_VERSION, FLEDGE_API_VERSION, 1);
                Outcome::Converted
            }
            Some((_, v)) if ours && v == FLEDGE_API_VERSION => Outcome::AlreadyFledge,
            Some((_, v)) if ours && v.starts_with("flagger.app/") => {
                Outcome::OldFlaggerVersion(v.clone())
            }
            _ => Outcome::Untouched,
        };
        documents.push(Document {
            number: n + 1,
            kind,
            name: metadata_value(doc, "name"),
            namespace: metadata_value(doc, "namespace"),
            outcome,
        });
    }
    Converted {
        text: out.concat(),
        documents,
    }
}

/// Metadata keys kept from an object read from the cluster; the rest (uid, resourceVersion,
/// creationTimestamp, generation, managedFields, ownerReferences, finalizers, …) belongs to
/// the API server or to Flagger.
const KEPT_METADATA: [&str; 4] = ["name", "namespace", "labels", "annotations"];

/// Annotations dropped: kubectl's record of the last applied Flagger object.
const DROPPED_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// An object read from the cluster as `flagger.app/v1beta1`, made ready to apply as
/// `fledge.dev/v1beta1`: the new `apiVersion`, no `status`, and only the name, namespace,
/// labels and annotations of its metadata.
pub fn clean_object(mut obj: Value) -> Value {
    let Some(map) = obj.as_object_mut() else {
        return obj;
    };
    map.insert("apiVersion".into(), Value::from(FLEDGE_API_VERSION));
    map.remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        meta.retain(|k, _| KEPT_METADATA.contains(&k.as_str()));
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.retain(|k, _| !DROPPED_ANNOTATIONS.contains(&k.as_str()));
        }
        for key in ["labels", "annotations"] {
            if meta
                .get(key)
                .is_some_and(|v| v.as_object().is_none_or(Map::is_empty))
            {
                meta.remove(key);
            }
        }
    }
    obj
}

fn flagger_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "flagger.app".into(),
        version: "v1beta1".into(),
        api_version: FLAGGER_API_VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Reads every Flagger Canary, MetricTemplate and AlertProvider of `namespace` (every
/// namespace when `None`), and returns them cleaned ([`clean_object`]) as one YAML stream,
/// Canaries last (so that what they reference exists when they are applied in order), with
/// a label per object.
pub async fn from_cluster(
    client: &Client,
    namespace: Option<&str>,
) -> Result<(String, Vec<String>), Error> {
    let mut docs = Vec::new();
    let mut labels = Vec::new();
    // Templates and providers first: the Canaries name them.
    for (kind, plural) in [KINDS[1], KINDS[2], KINDS[0]] {
        let ar = flagger_resource(kind, plural);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let mut list = match api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(Error::Usage(format!(
                    "this cluster does not serve {FLAGGER_API_VERSION} {plural}: Flagger's CRDs \
                     are not installed, so there is nothing to import"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        list.sort_by_key(|o| (o.namespace(), o.name_any()));
        for obj in list {
            labels.push(format!(
                "{kind} {}/{}",
                obj.namespace().unwrap_or_default(),
                obj.name_any()
            ));
            let mut value = serde_json::to_value(&obj).map_err(|e| {
                Error::Kube(format!("cannot read a {kind} the API server sent: {e}"))
            })?;
            value["apiVersion"] = Value::from(FLAGGER_API_VERSION);
            value["kind"] = Value::from(kind);
            let yaml = serde_saphyr::to_string(&clean_object(value))
                .map_err(|e| Error::Kube(format!("cannot write {kind} as YAML: {e}")))?;
            docs.push(yaml);
        }
    }
    let text = docs
        .iter()
        .map(|d| format!("---\n{d}"))
        .collect::<Vec<_>>()
        .concat();
    Ok((text, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_api_version_line_of_flagger_kinds_changes() {
        let text = "# the app\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n---\n\
                    apiVersion: \"flagger.app/v1beta1\" # moved soon\nkind: Canary\nmetadata:\n  # who\n  \
                    name: podinfo\n  namespace: test\nspec:\n  targetRef:\n    apiVersion: apps/v1\n";
        let c = convert_text(text);
        assert_eq!(
            c.text,
            text.replace(
                "\"flagger.app/v1beta1\" # moved soon",
                "\"fledge.dev/v1beta1\" # moved soon"
            )
        );
        assert_eq!(c.converted(), 1);
        assert_eq!(c.documents.len(), 3);
        assert_eq!(c.documents[1].outcome, Outcome::Untouched);
        assert_eq!(c.documents[2].label(), "Canary test/podinfo");
    }

    #[test]
    fn crlf_endings_other_groups_and_old_versions_are_kept() {
        let text = "apiVersion: flagger.app/v1beta1\r\nkind: MetricTemplate\r\nmetadata:\r\n  name: m\r\n\
                    ...\r\n---\r\napiVersion: flagger.app/v1alpha1\r\nkind: Canary\r\n---\r\n\
                    apiVersion: flagger.app/v1beta1\r\nkind: Other\r\n";
        let c = convert_text(text);
        assert_eq!(
            c.text,
            text.replacen("flagger.app/v1beta1", "fledge.dev/v1beta1", 1)
        );
        let outcomes: Vec<Outcome> = c.documents.iter().map(|d| d.outcome.clone()).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Converted,
                Outcome::OldFlaggerVersion("flagger.app/v1alpha1".into()),
                Outcome::Untouched
            ]
        );
        assert_eq!(convert_text(&c.text).converted(), 0);
        assert_eq!(
            convert_text(&c.text).documents[0].outcome,
            Outcome::AlreadyFledge
        );
    }

    #[test]
    fn objects_from_the_cluster_lose_what_the_server_and_flagger_added() {
        let obj = json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {
                "name": "podinfo", "namespace": "test", "uid": "u", "resourceVersion": "9",
                "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": ["finalizer.flagger.app"], "managedFields": [{}],
                "ownerReferences": [{"kind": "Kustomization"}],
                "labels": {"team": "a"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
            },
            "spec": {"provider": "kubernetes"},
            "status": {"phase": "Initialized"}
        });
        assert_eq!(
            clean_object(obj),
            json!({
                "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                "metadata": {"name": "podinfo", "namespace": "test", "labels": {"team": "a"}},
                "spec": {"provider": "kubernetes"}
            })
        );
    }
}
