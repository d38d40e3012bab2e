//! `fledge validate FILE…`: check Canary, MetricTemplate and AlertProvider manifests offline.
//!
//! Each FILE (or `-` for standard input) is read as a stream of YAML documents. A directory
//! stands for every `.yaml` and `.yml` file under it, in name order, hidden entries left out. Documents with
//! `apiVersion: fledge.dev/v1beta1`, or Flagger's `flagger.app/v1beta1` for migration, are
//! checked: their spec is read into the fledge API types (a wrong type, a missing required field
//! or an unknown field is a problem at its path) and then validated with
//! [`fledge_api::validate`]. Documents of other API groups are skipped and counted.
//!
//! Every problem is printed on its own line to `out`:
//!
//! ```text
//! canary.yaml:1: Canary test/podinfo: spec.analysis.stepWeights[2]: 10 is not greater than …
//! ```
//!
//! Documents are numbered from 1 in the order they appear; empty documents (nothing between
//! two `---`) are not counted. A summary line ends the output. Input that cannot be read (a
//! missing file, bytes that are not UTF-8, YAML that does not parse, input over
//! [`MAX_INPUT_BYTES`] or nested deeper than [`MAX_DEPTH`]) is reported on `err`.
//!
//! The exit code is 0 when every document is valid, 1 when any is invalid, and 2 when any input
//! could not be read. Nothing in the input can make it panic.

use std::io::{Read, Write};

use fledge_api::validate::{
    Problem, validate_alert_provider_spec, validate_canary_spec, validate_metric_template_spec,
};
use fledge_api::{AlertProviderSpec, CanarySpec, MetricTemplateSpec};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Largest input read from one file or from standard input.
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// Deepest nesting of YAML mappings and lists accepted.
pub const MAX_DEPTH: usize = 64;

/// Most documents accepted in one input.
pub const MAX_DOCUMENTS: usize = 10_000;

/// Exit code when every document is valid.
pub const EXIT_VALID: i32 = 0;
/// Exit code when a document is invalid.
pub const EXIT_INVALID: i32 = 1;
/// Exit code when an input could not be read or parsed.
pub const EXIT_UNREADABLE: i32 = 2;

/// The kinds `fledge validate` checks.
const KINDS: &[&str] = &["Canary", "MetricTemplate", "AlertProvider"];

/// Runs `fledge validate` over `paths` (`-` reads standard input) and returns the exit code.
pub fn run(paths: &[String], out: &mut impl Write, err: &mut impl Write) -> i32 {
    run_with_stdin(paths, &mut std::io::stdin().lock(), out, err)
}

/// [`run`], reading `-` from `stdin`.
pub fn run_with_stdin(
    paths: &[String],
    stdin: &mut impl Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    if paths.is_empty() {
        line(
            err,
            "fledge validate: no FILE given; name one or more YAML files, or - for standard input",
        );
        return EXIT_UNREADABLE;
    }
    let mut tally = Tally::default();
    let mut files = Vec::new();
    for path in paths {
        match expand(path) {
            Ok(found) if found.is_empty() => {
                line(
                    err,
                    &format!(
                        "{path}: is a directory with no .yaml or .yml file in it; name the files to check"
                    ),
                );
                tally.unreadable += 1;
            }
            Ok(found) => files.extend(found),
            Err(e) => {
                line(err, &format!("{path}: cannot read: {}", io_reason(&e)));
                tally.unreadable += 1;
            }
        }
    }
    let mut inputs: Vec<(&str, Vec<u8>)> = Vec::new();
    for path in &files {
        let name = if path == "-" {
            "<stdin>"
        } else {
            path.as_str()
        };
        let bytes = if path == "-" {
            read_capped(stdin)
        } else {
            std::fs::File::open(path).and_then(|mut f| read_capped(&mut f))
        };
        let bytes = match bytes {
            Ok(Some(b)) => b,
            Ok(None) => {
                line(
                    err,
                    &format!(
                        "{name}: is larger than {} MiB; split it into smaller files",
                        MAX_INPUT_BYTES / (1024 * 1024)
                    ),
                );
                tally.unreadable += 1;
                continue;
            }
            Err(e) => {
                line(err, &format!("{name}: cannot read: {}", io_reason(&e)));
                tally.unreadable += 1;
                continue;
            }
        };
        inputs.push((name, bytes));
    }
    // StatefulSets are checked when a Canary among the inputs targets them.
    let targets = statefulset_targets(&inputs);
    for (name, bytes) in &inputs {
        check_input(name, bytes, &targets, &mut tally, out, err);
    }

    let docs = tally.valid + tally.invalid + tally.skipped;
    let mut summary = format!(
        "{docs} document{} checked: {} valid, {} invalid, {} skipped",
        if docs == 1 { "" } else { "s" },
        tally.valid,
        tally.invalid,
        tally.skipped
    );
    if tally.unreadable > 0 {
        summary.push_str(&format!(
            "; {} input{} could not be read",
            tally.unreadable,
            if tally.unreadable == 1 { "" } else { "s" }
        ));
    }
    line(out, &summary);
    let _ = out.flush();
    let _ = err.flush();

    if tally.unreadable > 0 {
        EXIT_UNREADABLE
    } else if tally.invalid > 0 {
        EXIT_INVALID
    } else {
        EXIT_VALID
    }
}

#[derive(Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    skipped: usize,
    unreadable: usize,
}

/// `path` itself, or for a directory every `.yaml` and `.yml` file under it in name order
/// (hidden files and directories left out; symbolic links to directories not followed).
fn expand(path: &str) -> std::io::Result<Vec<String>> {
    if path == "-" || !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_string()]);
    }
    let hidden =
        |e: &walkdir::DirEntry| e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.');
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(path)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !hidden(e))
    {
        let entry = entry.map_err(std::io::Error::from)?;
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_dir() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            found.push(entry.path().display().to_string());
        }
    }
    Ok(found)
}

/// Reads at most [`MAX_INPUT_BYTES`]; `None` when there is more.
fn read_capped(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(MAX_INPUT_BYTES as u64 + 1).read_to_end(&mut buf)?;
    Ok((buf.len() <= MAX_INPUT_BYTES).then_some(buf))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `(namespace, name)` of the StatefulSets the Canaries among `inputs` target.
type Targets = std::collections::BTreeSet<(String, String)>;

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_documents: MAX_DOCUMENTS,
            max_reader_input_bytes: Some(MAX_INPUT_BYTES + 1),
        },
        with_snippet: false,
    }
}

fn statefulset_targets(inputs: &[(&str, Vec<u8>)]) -> Targets {
    let mut targets = Targets::new();
    for (_, bytes) in inputs {
        if std::str::from_utf8(bytes).is_err() {
            continue;
        }
        let mut reader = std::io::Cursor::new(bytes);
        for value in serde_saphyr::read_with_options::<_, Value>(&mut reader, yaml_options())
            .map_while(Result::ok)
        {
            let is_canary = value.get("kind").and_then(Value::as_str) == Some("Canary");
            let target = value.pointer("/spec/targetRef");
            let kind = target.and_then(|t| t.get("kind")).and_then(Value::as_str);
            let name = target.and_then(|t| t.get("name")).and_then(Value::as_str);
            if let (true, Some("StatefulSet"), Some(name)) = (is_canary, kind, name) {
                let (ns, _) = metadata_label(value.get("metadata"));
                targets.insert((ns, name.to_string()));
            }
        }
    }
    targets
}

/// A StatefulSet a Canary targets: fledge rolls it out through its RollingUpdate partition.
fn check_statefulset(map: &serde_json::Map<String, Value>, problems: &mut Vec<Problem>) {
    let strategy = map.get("spec").and_then(|s| s.get("updateStrategy"));
    let kind = strategy
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    if kind != "RollingUpdate" {
        problems.push(Problem::new(
            "spec.updateStrategy.type",
            format!(
                "is {kind}: its pods change only when deleted, and fledge rolls a StatefulSet out \
                 through the RollingUpdate partition; write type: RollingUpdate"
            ),
        ));
    }
    if let Some(p) = strategy
        .and_then(|s| s.pointer("/rollingUpdate/partition"))
        .filter(|p| !p.is_null())
    {
        problems.push(Problem::new(
            "spec.updateStrategy.rollingUpdate.partition",
            format!(
                "is {p}, but fledge owns the partition of a StatefulSet it rolls out (it holds it \
                 at the replica count between rollouts); remove it so that applying this manifest \
                 does not move it"
            ),
        ));
    }
}

fn check_input(
    name: &str,
    bytes: &[u8],
    targets: &Targets,
    tally: &mut Tally,
    out: &mut impl Write,
    err: &mut impl Write,
) {
    if let Err(e) = std::str::from_utf8(bytes) {
        let at = e.valid_up_to();
        let line_no = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        line(
            err,
            &format!(
                "{name}: is not UTF-8 text (invalid byte at offset {at}, line {line_no}); save it as UTF-8"
            ),
        );
        tally.unreadable += 1;
        return;
    }
    let options = yaml_options();
    let mut reader = std::io::Cursor::new(bytes);
    let mut doc = 0usize;
    for result in serde_saphyr::read_with_options::<_, Value>(&mut reader, options) {
        doc += 1;
        match result {
            Ok(value) => {
                let problems = check_document(value, targets);
                match problems {
                    Outcome::Skipped => tally.skipped += 1,
                    Outcome::Checked { problems, .. } if problems.is_empty() => tally.valid += 1,
                    Outcome::Checked { label, problems } => {
                        tally.invalid += 1;
                        for p in problems {
                            line(out, &format!("{name}:{doc}: {label}: {p}"));
                        }
                    }
                }
            }
            Err(e) => {
                line(
                    err,
                    &format!("{name}:{doc}: cannot parse YAML: {}", yaml_reason(&e)),
                );
                tally.unreadable += 1;
                // A syntax error ends the stream; a bad document is skipped.
            }
        }
    }
}

fn yaml_reason(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let text = text.trim();
    if text.contains("Depth {") || text.contains("recursion limit") {
        let at = e
            .location()
            .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        format!("nesting is deeper than {MAX_DEPTH} levels{at}; fledge refuses such documents")
    } else if text.contains("recursive references") {
        "an alias refers to the node that holds its own anchor (a recursive reference); a manifest cannot hold one".into()
    } else if text.contains("budget breached") {
        format!("{text}; the document is too large or too complex to check")
    } else {
        text.replace(
            ", set DuplicateKeyPolicy in Options if acceptable",
            "; keep only one",
        )
    }
}

enum Outcome {
    /// Not a fledge or Flagger v1beta1 object.
    Skipped,
    /// Checked; `label` is `Kind namespace/name`.
    Checked {
        label: String,
        problems: Vec<Problem>,
    },
}

fn check_document(mut value: Value, targets: &Targets) -> Outcome {
    strip_nulls(&mut value);
    let Value::Object(map) = &mut value else {
        return Outcome::Checked {
            label: "? default/?".into(),
            problems: vec![Problem::new(
                ".",
                format!(
                    "is {}, not a Kubernetes object; write a mapping with apiVersion, kind, metadata and spec",
                    describe(&value)
                ),
            )],
        };
    };

    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = map.get("kind").and_then(Value::as_str).map(str::to_owned);
    let (namespace, name) = metadata_label(map.get("metadata"));
    let label = format!(
        "{} {}/{}",
        kind.as_deref().unwrap_or("?"),
        namespace,
        name.as_deref().unwrap_or("?")
    );

    let ours = |v: &str| v == fledge_api::API_VERSION || v == fledge_api::FLAGGER_API_VERSION;
    match api_version.as_deref() {
        Some(v) if ours(v) => {}
        Some(v) if v.starts_with("fledge.dev/") => {
            return Outcome::Checked {
                label,
                problems: vec![Problem::new(
                    "apiVersion",
                    format!(
                        "{v:?} is not served by fledge; use {}",
                        fledge_api::API_VERSION
                    ),
                )],
            };
        }
        Some("apps/v1")
            if kind.as_deref() == Some("StatefulSet")
                && name
                    .as_ref()
                    .is_some_and(|n| targets.contains(&(namespace.clone(), n.clone()))) =>
        {
            let mut problems = Vec::new();
            check_statefulset(map, &mut problems);
            return Outcome::Checked { label, problems };
        }
        Some(_) => return Outcome::Skipped,
        None => {
            let problem = match map.get("apiVersion") {
                Some(other) => format!(
                    "is {}, not a string; write {}",
                    describe(other),
                    fledge_api::API_VERSION
                ),
                None => format!("is missing; write apiVersion: {}", fledge_api::API_VERSION),
            };
            return Outcome::Checked {
                label,
                problems: vec![Problem::new("apiVersion", problem)],
            };
        }
    }

    let mut problems = Vec::new();
    let Some(kind) = kind.filter(|k| KINDS.contains(&k.as_str())) else {
        let message = match map.get("kind") {
            Some(Value::String(k)) => format!(
                "{k:?} is not a fledge kind; use one of: {}",
                KINDS.join(", ")
            ),
            Some(other) => format!(
                "is {}, not a string; use one of: {}",
                describe(other),
                KINDS.join(", ")
            ),
            None => format!("is missing; use one of: {}", KINDS.join(", ")),
        };
        problems.push(Problem::new("kind", message));
        return Outcome::Checked { label, problems };
    };

    check_metadata(map.get("metadata"), &mut problems);

    let Some(spec) = map.remove("spec") else {
        problems.push(Problem::new(
            "spec",
            format!("is missing; a {kind} needs a spec"),
        ));
        return Outcome::Checked { label, problems };
    };
    match kind.as_str() {
        "Canary" => typed::<CanarySpec>(spec, &kind, validate_canary_spec, &mut problems),
        "MetricTemplate" => {
            typed::<MetricTemplateSpec>(spec, &kind, validate_metric_template_spec, &mut problems)
        }
        _ => typed::<AlertProviderSpec>(spec, &kind, validate_alert_provider_spec, &mut problems),
    }
    Outcome::Checked { label, problems }
}

/// `namespace` (default `default`) and `name` for the label of a document.
fn metadata_label(metadata: Option<&Value>) -> (String, Option<String>) {
    let get = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    (
        get("namespace").unwrap_or_else(|| "default".into()),
        get("name"),
    )
}

fn check_metadata(metadata: Option<&Value>, problems: &mut Vec<Problem>) {
    let Some(metadata) = metadata else {
        problems.push(Problem::new(
            "metadata.name",
            "is missing; every object needs metadata.name",
        ));
        return;
    };
    let Value::Object(m) = metadata else {
        problems.push(Problem::new(
            "metadata",
            format!(
                "is {}, not a mapping; write name: and namespace: under it",
                describe(metadata)
            ),
        ));
        return;
    };
    match m.get("name") {
        None if m.contains_key("generateName") => {}
        None => problems.push(Problem::new(
            "metadata.name",
            "is missing; every object needs metadata.name",
        )),
        Some(Value::String(name)) if !is_subdomain(name) => problems.push(Problem::new(
            "metadata.name",
            format!(
                "{name:?} is not a valid Kubernetes name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ),
        )),
        Some(Value::String(_)) => {}
        Some(other) => problems.push(Problem::new(
            "metadata.name",
            format!("is {}, not a string", describe(other)),
        )),
    }
    match m.get("namespace") {
        None => {}
        Some(Value::String(ns)) if !(ns.len() <= 63 && is_label(ns)) => {
            problems.push(Problem::new(
                "metadata.namespace",
                format!(
                    "{ns:?} is not a valid namespace name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
                ),
            ))
        }
        Some(Value::String(_)) => {}
        Some(other) => problems.push(Problem::new(
            "metadata.namespace",
            format!("is {}, not a string", describe(other)),
        )),
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|l| l.len() <= 63 && is_label(l))
}

/// Most reads of one spec while looking for type errors.
const MAX_READS: usize = 64;

/// Values tried, in turn, in place of a required field that is missing or of the wrong type,
/// so that the rest of the spec can still be read and checked.
fn placeholder(attempt: usize) -> Option<Value> {
    [
        Value::String(String::new()),
        Value::from(0),
        Value::Object(Default::default()),
        Value::Array(Vec::new()),
        Value::Bool(false),
    ]
    .into_iter()
    .nth(attempt)
}

/// Reads `spec` as `T`, reporting type errors, missing fields and unknown fields with their
/// paths, then adds the problems `validate` finds.
///
/// serde stops at the first error, so after each one the offending value is removed (or, for
/// a required field, replaced by a placeholder) and the spec read again, to report every
/// problem at once. Problems that only follow from such a repair are not reported: those
/// inside a field already reported, and those of the objects that contain it.
fn typed<T: DeserializeOwned>(
    mut spec: Value,
    kind: &str,
    validate: fn(&T) -> Vec<Problem>,
    problems: &mut Vec<Problem>,
) {
    if !spec.is_object() {
        problems.push(Problem::new(
            "spec",
            format!("must be a mapping of fields, not {}", describe(&spec)),
        ));
        return;
    }
    let mut reported: Vec<Problem> = Vec::new();
    // Placeholders put in so far, by field path: the path segments and the attempt number.
    let mut placeholders: Vec<(String, Vec<Segment>, usize)> = Vec::new();
    for _ in 0..MAX_READS {
        let mut unknown: Vec<String> = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let result: Result<T, serde_json::Error> = serde_ignored::deserialize(
            serde_path_to_error::Deserializer::new(&spec, &mut track),
            |path| unknown.push(ignored_path(&path)),
        );
        let path = track.path();
        let mut segments: Vec<Segment> = path.iter().map(Segment::from).collect();
        let error = match result {
            Ok(t) => {
                let unknown = unknown.iter().map(|field| unknown_field(field, kind));
                let derived = |p: &Problem| {
                    reported
                        .iter()
                        .any(|r| within(&p.field, &r.field) || within(&r.field, &p.field))
                };
                let checked: Vec<Problem> =
                    validate(&t).into_iter().filter(|p| !derived(p)).collect();
                problems.extend(unknown);
                problems.append(&mut reported);
                problems.extend(checked);
                return;
            }
            Err(e) => e.to_string(),
        };
        let missing = error
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        if let Some(name) = &missing {
            segments.push(Segment::Key(name.clone()));
        }
        let field = render_path(&segments);
        if let Some(entry) = placeholders.iter_mut().find(|(f, _, _)| *f == field) {
            // The placeholder has the wrong type: try the next one.
            entry.2 += 1;
            let Some(value) = placeholder(entry.2) else {
                break;
            };
            if !put_at(&mut spec, &segments, value) {
                break;
            }
            continue;
        }
        let problem = match &missing {
            Some(_) => Problem::new(field.clone(), "is required"),
            None => type_problem(field.clone(), &error),
        };
        if !reported.iter().any(|r| within(&problem.field, &r.field)) {
            reported.push(problem);
        }
        let repaired = match &missing {
            Some(_) => {
                let ok = put_at(&mut spec, &segments, placeholder(0).unwrap_or_default());
                placeholders.push((field, segments, 0));
                ok
            }
            None => remove_at(&mut spec, &segments),
        };
        if !repaired {
            break;
        }
    }
    // Could not read the spec even after repairs: report what was found.
    problems.append(&mut reported);
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
    Unknown,
}

impl From<&serde_path_to_error::Segment> for Segment {
    fn from(s: &serde_path_to_error::Segment) -> Segment {
        match s {
            serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => Segment::Key(key.clone()),
            serde_path_to_error::Segment::Unknown => Segment::Unknown,
        }
    }
}

/// Whether `field` is `outer` or lies inside it.
fn within(field: &str, outer: &str) -> bool {
    field
        .strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

fn unknown_field(field: &str, kind: &str) -> Problem {
    if field == "spec.canaryAnalysis" {
        return Problem::new(
            field,
            "is the pre-v1beta1 name of spec.analysis; rename it to analysis",
        );
    }
    Problem::new(
        field,
        format!(
            "is not a field of {kind}; check its spelling and indentation (field names are camelCase, e.g. stepWeight)"
        ),
    )
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut String) {
        match path {
            serde_ignored::Path::Root => out.push_str("spec"),
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                out.push('.');
                out.push_str(key);
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut out = String::new();
    walk(path, &mut out);
    out
}

fn render_path(segments: &[Segment]) -> String {
    let mut out = String::from("spec");
    for s in segments {
        match s {
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// A problem at `field` from a serde error, in words a user reads.
fn type_problem(field: String, error: &str) -> Problem {
    if let Some(rest) = error.strip_prefix("invalid type: ")
        && let Some((found, expected)) = split_expected(rest)
    {
        return Problem::new(
            field,
            format!(
                "must be {}, not {}",
                expected_words(expected, false),
                found_words(found)
            ),
        );
    }
    if let Some(rest) = error.strip_prefix("invalid value: ")
        && let Some((found, expected)) = split_expected(rest)
    {
        return Problem::new(
            field,
            format!(
                "{} is out of range: must be {}",
                found_words(found),
                expected_words(expected, true)
            ),
        );
    }
    if error.starts_with("invalid length ") && error.contains("expected struct ") {
        return Problem::new(field, "must be a mapping of fields, not a list");
    }
    Problem::new(field, hide_strings(error))
}

/// Splits `X, expected Y` at the last `, expected `.
fn split_expected(s: &str) -> Option<(&str, &str)> {
    let at = s.rfind(", expected ")?;
    Some((&s[..at], &s[at + ", expected ".len()..]))
}

fn expected_words(expected: &str, with_range: bool) -> String {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            let range = match expected {
                "i32" if with_range => " between -2147483648 and 2147483647",
                "u32" if with_range => " between 0 and 4294967295",
                "i64" if with_range => " between -9223372036854775808 and 9223372036854775807",
                _ => "",
            };
            format!("an integer{range}")
        }
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        e if e.starts_with("struct ") => "a mapping of fields".into(),
        e => hide_strings(e),
    }
}

fn found_words(found: &str) -> String {
    if found.starts_with("string ") {
        return "a string".into();
    }
    if let Some(rest) = found.strip_prefix("integer `") {
        return format!("the integer {}", rest.trim_end_matches('`'));
    }
    if let Some(rest) = found.strip_prefix("floating point `") {
        return format!("the number {}", rest.trim_end_matches('`'));
    }
    if found.starts_with("boolean ") {
        return format!(
            "the boolean {}",
            found.trim_start_matches("boolean ").trim_matches('`')
        );
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        "null" | "unit value" => "empty".into(),
        f => hide_strings(f),
    }
}

/// Replaces `string "..."` in a serde message by `a string`: values may be secrets.
fn hide_strings(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let tail = &rest[at + "string \"".len()..];
        let mut end = tail.len();
        let mut escaped = false;
        for (i, c) in tail.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = i + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &tail[end.min(tail.len())..];
    }
    out.push_str(rest);
    out
}

/// The value at `segments`, if there is one.
fn node_at<'v>(value: &'v mut Value, segments: &[Segment]) -> Option<&'v mut Value> {
    let mut node = value;
    for s in segments {
        node = match (s, node) {
            (Segment::Key(key), Value::Object(m)) => m.get_mut(key)?,
            (Segment::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Removes the value at `segments`; false when there is nothing to remove.
fn remove_at(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    match (last, node_at(value, parents)) {
        (Segment::Key(key), Some(Value::Object(m))) => m.remove(key).is_some(),
        (Segment::Index(i), Some(Value::Array(a))) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Sets the value at `segments`, whose parent must exist; false when it cannot.
fn put_at(value: &mut Value, segments: &[Segment], new: Value) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    match (last, node_at(value, parents)) {
        (Segment::Key(key), Some(Value::Object(m))) => {
            m.insert(key.clone(), new);
            true
        }
        (Segment::Index(i), Some(Value::Array(a))) if *i < a.len() => {
            a[*i] = new;
            true
        }
        _ => false,
    }
}

/// Drops mapping entries whose value is null, as the Kubernetes API server does for fields
/// that are not nullable: `key:` with nothing after it means "not set".
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Writes one line, with control characters escaped so that input cannot forge lines.
fn line(w: &mut impl Write, text: &str) {
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            clean.extend(c.escape_default());
        } else {
            clean.push(c);
        }
    }
    let _ = writeln!(w, "{clean}");
}
