//! kubeconform's JSON schemas, generated here: kubeconform downloads them from the network,
//! which this machine does not reach.
//!
//! - Kubernetes kinds from the OpenAPI v2 spec (`api/openapi-spec/swagger.json` of the
//!   `k8s.io/kubernetes` module): one file per group, version and kind, holding the kind's
//!   definition and every definition it reaches (`#/definitions/...` references keep working,
//!   recursive ones such as `JSONSchemaProps` too).
//! - Custom kinds from each served version's `openAPIV3Schema` of a CRD.
//!
//! Every schema is made strict as `kubeconform -strict` expects: an object schema that lists
//! its properties refuses others (`additionalProperties: false`) unless it preserves unknown
//! fields. Values the API server accepts in two shapes get both: int-or-string fields (a
//! number or a string) and quantities (`cpu: 1` or `cpu: 100m`).
//!
//! Files are laid out as kubeconform's `-schema-location` template
//! `{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json` names them, where `Group`
//! is the part of `apiVersion` before the slash (`v1` for the core group).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

/// The definition of `resource.Quantity` in the OpenAPI spec.
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// One kind's schema.
pub struct Schema {
    group: String,
    version: String,
    kind: String,
    pub schema: Value,
}

impl Schema {
    /// Its path under a schema directory.
    pub fn relative_path(&self) -> PathBuf {
        let dir = if self.group.is_empty() {
            &self.version
        } else {
            &self.group
        };
        Path::new(dir).join(format!(
            "{}_{}.json",
            self.kind.to_lowercase(),
            self.version
        ))
    }
}

/// Where a schema comes from: the rules for values of two shapes differ.
#[derive(Clone, Copy)]
enum Source {
    OpenApiV2,
    Crd,
}

/// Makes a schema (and the schemas inside it) strict, in place.
fn make_strict(node: &mut Value, source: Source) {
    let Some(map) = node.as_object_mut() else {
        return;
    };
    match source {
        Source::OpenApiV2 if map.get("format").and_then(Value::as_str) == Some("int-or-string") => {
            let description = map.remove("description");
            *map = int_or_string();
            if let Some(d) = description {
                map.insert("description".into(), d);
            }
            return;
        }
        Source::Crd if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) => {
            map.remove("type");
            if !map.contains_key("anyOf") && !map.contains_key("oneOf") {
                map.extend(int_or_string());
            }
        }
        _ => {}
    }
    if matches!(source, Source::Crd)
        && map.get("nullable") == Some(&Value::Bool(true))
        && let Some(Value::String(t)) = map.get("type").cloned()
    {
        map.insert("type".into(), json!([t, "null"]));
    }
    for keyword in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(children)) = map.get_mut(keyword) {
            for child in children.values_mut() {
                make_strict(child, source);
            }
        }
    }
    for keyword in ["additionalProperties", "items", "not"] {
        if let Some(child) = map.get_mut(keyword) {
            if let Value::Array(items) = child {
                items.iter_mut().for_each(|i| make_strict(i, source));
            } else {
                make_strict(child, source);
            }
        }
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(items)) = map.get_mut(keyword) {
            items.iter_mut().for_each(|i| make_strict(i, source));
        }
    }
    let preserves_unknown =
        map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if map.contains_key("properties")
        && !map.contains_key("additionalProperties")
        && !preserves_unknown
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
}

fn int_or_string() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "oneOf".into(),
        json!([{"type": "string"}, {"type": "integer"}]),
    );
    m
}

/// The definition names a schema refers to (`#/definitions/<name>`).
fn references(node: &Value, out: &mut BTreeSet<String>) {
    match node {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref"
                    && let Some(name) = v.as_str().and_then(|r| r.strip_prefix("#/definitions/"))
                {
                    out.insert(name.to_string());
                } else {
                    references(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}

/// A schema per group, version and kind of an OpenAPI v2 spec.
pub fn from_swagger(swagger: &Value) -> Result<Vec<Schema>> {
    let defs = swagger["definitions"]
        .as_object()
        .context("the OpenAPI spec has no definitions")?;
    let mut strict: BTreeMap<&str, Value> = BTreeMap::new();
    for (name, def) in defs {
        let mut def = def.clone();
        if name == QUANTITY {
            // A quantity is written as a string (`100m`) or a number (`1`).
            def = json!({
                "oneOf": [{"type": "string"}, {"type": "number"}],
                "description": def["description"],
            });
        }
        make_strict(&mut def, Source::OpenApiV2);
        strict.insert(name, def);
    }
    let mut out = Vec::new();
    for (name, def) in defs {
        let Some(gvks) = def["x-kubernetes-group-version-kind"].as_array() else {
            continue;
        };
        // Every definition the kind reaches.
        let mut reached = BTreeSet::new();
        let mut todo = vec![name.clone()];
        while let Some(n) = todo.pop() {
            let mut refs = BTreeSet::new();
            references(&strict[n.as_str()], &mut refs);
            for r in refs {
                if strict.contains_key(r.as_str()) && reached.insert(r.clone()) {
                    todo.push(r);
                }
            }
        }
        let mut schema = strict[name.as_str()].clone();
        if !reached.is_empty() {
            let definitions: Map<String, Value> = reached
                .iter()
                .map(|r| (r.clone(), strict[r.as_str()].clone()))
                .collect();
            schema["definitions"] = Value::Object(definitions);
        }
        for gvk in gvks {
            let (Some(group), Some(version), Some(kind)) = (
                gvk["group"].as_str(),
                gvk["version"].as_str(),
                gvk["kind"].as_str(),
            ) else {
                continue;
            };
            out.push(Schema {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                schema: schema.clone(),
            });
        }
    }
    Ok(out)
}

/// A schema per served version of each CRD in a YAML file.
pub fn from_crd_file(path: &Path) -> Result<Vec<Schema>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let docs = super::documents(&text, &path.display().to_string())?;
    let mut out = Vec::new();
    for crd in docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        out.extend(from_crd(crd).with_context(|| format!("in {}", path.display()))?);
    }
    anyhow::ensure!(!out.is_empty(), "{} holds no CRD schema", path.display());
    Ok(out)
}

fn from_crd(crd: &Value) -> Result<Vec<Schema>> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().context("a CRD without spec.group")?;
    let kind = spec["names"]["kind"]
        .as_str()
        .context("a CRD without spec.names.kind")?;
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"] == false {
            continue;
        }
        let version = v["name"].as_str().context("a CRD version without a name")?;
        let mut schema = v["schema"]["openAPIV3Schema"].clone();
        anyhow::ensure!(
            schema.is_object(),
            "{kind} {version} has no openAPIV3Schema"
        );
        make_strict(&mut schema, Source::Crd);
        out.push(Schema {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            schema,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_with_properties_refuse_others_unless_they_preserve_unknown_fields() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                         "properties": {"b": {"type": "string"}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                // A property named like a keyword is a property, not a keyword.
                "properties": {"type": "object", "properties": {"c": {"type": "string"}}},
            }
        });
        make_strict(&mut s, Source::Crd);
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["spec"]["additionalProperties"], false);
        assert!(
            s["properties"]["free"]
                .get("additionalProperties")
                .is_none()
        );
        assert_eq!(
            s["properties"]["labels"]["additionalProperties"],
            json!({"type": "string"})
        );
        assert_eq!(s["properties"]["properties"]["additionalProperties"], false);
        assert!(s["properties"].get("additionalProperties").is_none());
    }

    #[test]
    fn int_or_string_and_quantities_take_both_shapes() {
        let mut v2 = json!({"properties": {"port": {"type": "string", "format": "int-or-string"}}});
        make_strict(&mut v2, Source::OpenApiV2);
        assert_eq!(
            v2["properties"]["port"]["oneOf"],
            json!([{"type": "string"}, {"type": "integer"}])
        );
        let mut crd = json!({"x-kubernetes-int-or-string": true, "type": "string"});
        make_strict(&mut crd, Source::Crd);
        assert!(crd.get("type").is_none());
        assert!(crd.get("oneOf").is_some());

        let swagger = json!({"definitions": {
            QUANTITY: {"type": "string", "description": "q"},
            "io.k8s.api.core.v1.Limits": {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "cpu": {"$ref": format!("#/definitions/{QUANTITY}")},
                },
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Limits"}],
            },
        }});
        let schemas = from_swagger(&swagger).unwrap();
        assert_eq!(schemas.len(), 1);
        assert_eq!(
            schemas[0].relative_path(),
            Path::new("v1").join("limits_v1.json")
        );
        assert_eq!(
            schemas[0].schema["definitions"][QUANTITY]["oneOf"],
            json!([{"type": "string"}, {"type": "number"}])
        );
        assert_eq!(schemas[0].schema["additionalProperties"], false);
    }

    #[test]
    fn recursive_definitions_are_carried_once() {
        let swagger = json!({"definitions": {
            "a.Props": {"type": "object", "properties": {
                "items": {"$ref": "#/definitions/a.Props"},
            }},
            "a.Kind": {
                "type": "object",
                "properties": {"schema": {"$ref": "#/definitions/a.Props"}},
                "x-kubernetes-group-version-kind": [{"group": "x.io", "version": "v1", "kind": "Kind"}],
            },
        }});
        let schemas = from_swagger(&swagger).unwrap();
        assert_eq!(
            schemas[0].relative_path(),
            Path::new("x.io").join("kind_v1.json")
        );
        let defs = schemas[0].schema["definitions"].as_object().unwrap();
        assert_eq!(defs.keys().collect::<Vec<_>>(), ["a.Props"]);
    }
}
