//! Putting the last promoted image back into the GitOps source, as a text edit that keeps the
//! file as people wrote it: comments, order, quoting, and Flux image-automation markers
//! (`# {"$imagepolicy": …}`) on the edited line stay.
//!
//! Three shapes of source are understood:
//! - a manifest with `image: <reference>` lines (a Deployment, or any YAML): each line whose value
//!   is the failed image gets the promoted one;
//! - a `kustomization.yaml` with `images:` entries (`name`, `newName`, `newTag`): the entry of the
//!   failed image's repository gets the promoted tag (and name);
//! - a values path (`imagePath`, e.g. `spec.values.image.tag` in a Flux HelmRelease): the value
//!   there becomes the promoted tag, or the whole reference when the path holds a reference, or
//!   the `repository`/`tag` pair when it holds a map.
//!
//! Image lines may be in block or flow style (`- {name: app, image: …}`), quoted either way
//! and anchored (`image: &app …`, its aliases follow); the content of block scalars (`|`,
//! `>`) and comments are text, never edited; each line keeps its ending (`\n` or `\r\n`).

use fledge_api::ImageRef;

/// A line as `indent`, `key`, `value` and the rest (a comment), when it is `key: value`.
struct Line<'a> {
    indent: usize,
    /// The key without a list dash.
    key: &'a str,
    value_start: usize,
    value_end: usize,
}

fn parse(line: &str) -> Option<Line<'_>> {
    let trimmed = line.trim_start();
    let mut indent = line.len() - trimmed.len();
    let body = match trimmed.strip_prefix("- ") {
        Some(rest) => {
            indent += 2;
            rest
        }
        None => trimmed,
    };
    if body.starts_with('#') {
        return None;
    }
    let colon = body.find(':')?;
    let key = body[..colon].trim();
    if key.is_empty() || key.contains(' ') && !key.starts_with('"') {
        return None;
    }
    let after = &body[colon + 1..];
    let lead = after.len() - after.trim_start().len();
    let mut start = line.len() - body.len() + colon + 1 + lead;
    // Node properties (an anchor `&name`, a tag `!tag`) stand before the value and stay.
    while line[start..].starts_with(['&', '!']) {
        let rest = &line[start..];
        let prop = rest.find(' ').unwrap_or(rest.len());
        start += prop + (rest[prop..].len() - rest[prop..].trim_start().len());
    }
    // The value ends at a comment (" #") or the end of the line.
    let rest = &line[start..];
    let end = match rest.find(" #") {
        _ if rest.starts_with('#') => start,
        Some(i) => start + i,
        None => line.len(),
    };
    let end = start + line[start..end].trim_end().len();
    Some(Line {
        indent,
        key: key.trim_matches('"'),
        value_start: start,
        value_end: end,
    })
}

/// The value of a scalar without its quotes.
fn unquote(v: &str) -> &str {
    v.trim_matches('"').trim_matches('\'')
}

/// `value` written in the quoting style of `old`.
fn requote(old: &str, value: &str) -> String {
    if old.starts_with('"') {
        format!("\"{value}\"")
    } else if old.starts_with('\'') {
        format!("'{value}'")
    } else {
        value.to_string()
    }
}

fn replace_value(line: &str, l: &Line<'_>, value: &str) -> String {
    let old = &line[l.value_start..l.value_end];
    format!(
        "{}{}{}",
        &line[..l.value_start],
        requote(old, value),
        &line[l.value_end..]
    )
}

/// What [`revert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reverted {
    /// The text changed.
    Changed(String),
    /// The source already names the promoted image.
    AlreadyThere,
}

/// Reverts `from` to `to` in `text`; `image_path` selects a values path. The error says why
/// nothing could be changed.
pub fn revert(
    text: &str,
    from: &str,
    to: &str,
    image_path: Option<&str>,
) -> Result<Reverted, String> {
    let out = match image_path {
        Some(path) => by_path(text, path, from, to)?,
        None if text.lines().any(|l| l.trim() == "images:") => kustomization(text, from, to)?,
        None => image_lines(text, from, to),
    };
    match out {
        Some(changed) if changed != text => Ok(Reverted::Changed(changed)),
        Some(_) => Ok(Reverted::AlreadyThere),
        None if text.contains(to) => Ok(Reverted::AlreadyThere),
        None => Err(format!(
            "found no `image: {from}` to revert; set spec.gitops.imagePath when the image is a values field"
        )),
    }
}

/// The edited lines with the line endings of the original (`\n` or `\r\n`, line by line).
fn join(lines: &[String], original: &str) -> String {
    let mut s = String::with_capacity(original.len());
    for (line, piece) in lines.iter().zip(original.split_inclusive('\n')) {
        s.push_str(line);
        if piece.ends_with("\r\n") {
            s.push_str("\r\n");
        } else if piece.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// Which lines are the content of a block scalar (the more indented lines below `key: |` or
/// `key: >`, or a `- |` item): text, where `image: …` is not a key.
fn block_scalar_lines(text: &str) -> Vec<bool> {
    let mut out = Vec::new();
    // The indentation a line must exceed to belong to the open block scalar.
    let mut open: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(parent) = open {
            if line.trim().is_empty() || indent > parent {
                out.push(true);
                continue;
            }
            open = None;
        }
        out.push(false);
        let (parent, value) = match parse(line) {
            Some(l) => (l.indent, &line[l.value_start..l.value_end]),
            None => match line.trim_start().strip_prefix("- ") {
                Some(item) => (indent, item.trim()),
                None => continue,
            },
        };
        if value.starts_with(['|', '>']) {
            open = Some(parent);
        }
    }
    out
}

/// `image: <from>` entries of flow mappings on `line` (`- {name: app, image: <from>}`), with
/// `to` in their place; `None` when there is none.
fn flow_images(line: &str, from: &str, to: &str) -> Option<String> {
    let code = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    let mut out = String::new();
    let mut done = 0;
    for (at, _) in code.match_indices("image:") {
        let before = code[..at].trim_end();
        if !code[..at].contains('{') || !before.ends_with(['{', ',']) {
            continue;
        }
        let value_from = at + "image:".len();
        let lead = code[value_from..].len() - code[value_from..].trim_start().len();
        let start = value_from + lead;
        let end = code[start..]
            .find([',', '}'])
            .map_or(code.len(), |i| start + i);
        let end = start + code[start..end].trim_end().len();
        let old = &code[start..end];
        if unquote(old) == from {
            out.push_str(&line[done..start]);
            out.push_str(&requote(old, to));
            done = end;
        }
    }
    (done > 0).then(|| out + &line[done..])
}

/// `image: <from>` lines.
fn image_lines(text: &str, from: &str, to: &str) -> Option<String> {
    let mut hit = false;
    let lines: Vec<String> = text
        .lines()
        .zip(block_scalar_lines(text))
        .map(|(line, is_text)| match parse(line) {
            _ if is_text => line.to_string(),
            Some(l) if l.key == "image" && unquote(&line[l.value_start..l.value_end]) == from => {
                hit = true;
                replace_value(line, &l, to)
            }
            _ => match flow_images(line, from, to) {
                Some(edited) => {
                    hit = true;
                    edited
                }
                None => line.to_string(),
            },
        })
        .collect();
    hit.then(|| join(&lines, text))
}

/// A kustomization's `images:` entries.
fn kustomization(text: &str, from: &str, to: &str) -> Result<Option<String>, String> {
    let from_repo = ImageRef::parse(from).map_err(|e| e.to_string())?.name();
    let to = ImageRef::parse(to).map_err(|e| e.to_string())?;
    let (to_repo, to_tag) = (to.name(), to.version());
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Group the lines of each list item under `images:`.
    let mut items: Vec<Vec<usize>> = Vec::new();
    let mut in_images = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim() == "images:" && !line.starts_with(' ') {
            in_images = true;
            continue;
        }
        if in_images {
            if !line.starts_with(' ') && !line.starts_with('-') && !line.trim().is_empty() {
                in_images = false;
                continue;
            }
            if line.trim_start().starts_with("- ") {
                items.push(vec![i]);
            } else if let Some(item) = items.last_mut() {
                item.push(i);
            }
        }
    }
    for item in items {
        let fields: Vec<(usize, Line<'_>)> = item
            .iter()
            .filter_map(|&i| parse(text.lines().nth(i)?).map(|l| (i, l)))
            .collect();
        let value = |key: &str| {
            fields.iter().find(|(_, l)| l.key == key).map(|(i, l)| {
                (
                    *i,
                    unquote(&text.lines().nth(*i).unwrap_or("")[l.value_start..l.value_end])
                        .to_string(),
                )
            })
        };
        let name = value("name").map(|(_, v)| v).unwrap_or_default();
        let new_name = value("newName").map(|(_, v)| v);
        let effective = new_name.clone().unwrap_or_else(|| name.clone());
        if effective != from_repo && name != from_repo {
            continue;
        }
        match value("newTag") {
            Some((i, _)) => {
                let original = text.lines().nth(i).unwrap_or_default();
                let l = parse(original).ok_or("unreadable newTag line")?;
                lines[i] = replace_value(original, &l, to_tag);
            }
            None => {
                return Err(format!(
                    "the kustomization's images entry {name:?} has no newTag to revert"
                ));
            }
        }
        if to_repo != effective
            && let Some((i, _)) = value("newName")
        {
            let original = text.lines().nth(i).unwrap_or_default();
            let l = parse(original).ok_or("unreadable newName line")?;
            lines[i] = replace_value(original, &l, to_repo);
        }
        return Ok(Some(join(&lines, text)));
    }
    Ok(None)
}

/// The value at a dotted path (`spec.values.image.tag`).
fn by_path(text: &str, path: &str, from: &str, to: &str) -> Result<Option<String>, String> {
    let keys: Vec<&str> = path.split('.').filter(|k| !k.is_empty()).collect();
    let all: Vec<&str> = text.lines().collect();
    let is_text = block_scalar_lines(text);
    let mut lines: Vec<String> = all.iter().map(|l| l.to_string()).collect();
    // Walk down: each key must appear deeper than its parent, inside the parent's block.
    let mut start = 0usize;
    let mut end = all.len();
    let mut parent_indent: Option<usize> = None;
    let mut found: Option<usize> = None;
    for (depth, key) in keys.iter().enumerate() {
        let mut hit = None;
        for (i, line) in all.iter().enumerate().take(end).skip(start) {
            if let Some(l) = parse(line)
                && !is_text[i]
                && l.key == *key
                && parent_indent.is_none_or(|p| l.indent > p)
            {
                hit = Some((i, l.indent));
                break;
            }
        }
        let Some((i, indent)) = hit else {
            return Err(format!(
                "spec.gitops.imagePath {path:?}: no key {key:?} at depth {} of the file",
                depth + 1
            ));
        };
        // The block of this key: until a line as shallow or shallower.
        let block_end = all
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, l)| {
                !l.trim().is_empty()
                    && !l.trim_start().starts_with('#')
                    && l.len() - l.trim_start().len() <= indent
            })
            .map_or(all.len(), |(j, _)| j);
        start = i + 1;
        end = block_end;
        parent_indent = Some(indent);
        found = Some(i);
    }
    let i = found.ok_or("spec.gitops.imagePath is empty")?;
    let l = parse(all[i]).ok_or("unreadable line at imagePath")?;
    let current = unquote(&all[i][l.value_start..l.value_end]).to_string();
    if current.starts_with(['{', '[', '|', '>']) {
        return Err(format!(
            "spec.gitops.imagePath {path:?} holds a flow collection or a block scalar; point it at a plain value (the tag, or the whole reference) or write the map in block style"
        ));
    }
    let to_ref = ImageRef::parse(to).map_err(|e| e.to_string())?;
    let (to_repo, to_tag) = (to_ref.name(), to_ref.version());
    if current.is_empty() {
        // A map: repository and tag below.
        let mut changed = false;
        for (j, line) in all.iter().enumerate().take(end).skip(start) {
            if let Some(c) = parse(line).filter(|_| !is_text[j]) {
                if c.key == "tag" {
                    lines[j] = replace_value(line, &c, to_tag);
                    changed = true;
                } else if c.key == "repository" {
                    lines[j] = replace_value(line, &c, to_repo);
                }
            }
        }
        return if changed {
            Ok(Some(join(&lines, text)))
        } else {
            Err(format!(
                "spec.gitops.imagePath {path:?} holds a map without a tag"
            ))
        };
    }
    // A whole reference gets the whole promoted reference; a bare tag gets the tag.
    let value =
        if current == from || current.contains(':') || current.contains('/') || to_tag.is_empty() {
            to.to_string()
        } else {
            to_tag.to_string()
        };
    lines[i] = replace_value(all[i], &l, &value);
    Ok(Some(join(&lines, text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
    const TO: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";

    #[test]
    fn a_deployment_manifest_keeps_its_marker_and_quotes() {
        let text = format!(
            "spec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {FROM} # {{\"$imagepolicy\": \"flux-system:podinfo\"}}\n        - name: sidecar\n          image: \"{FROM}\"\n        - name: other\n          image: busybox:1\n"
        );
        let Reverted::Changed(out) = revert(&text, FROM, TO, None).unwrap() else {
            panic!()
        };
        assert_eq!(
            out,
            format!(
                "spec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {TO} # {{\"$imagepolicy\": \"flux-system:podinfo\"}}\n        - name: sidecar\n          image: \"{TO}\"\n        - name: other\n          image: busybox:1\n"
            )
        );
        assert_eq!(
            revert(&out, FROM, TO, None).unwrap(),
            Reverted::AlreadyThere
        );
        assert!(
            revert("kind: x\n", FROM, TO, None)
                .unwrap_err()
                .contains("imagePath")
        );
    }

    #[test]
    fn a_kustomization_gets_the_promoted_tag() {
        let text = "resources:\n  - deployment.yaml\nimages:\n  - name: ghcr.io/stefanprodan/podinfo\n    newTag: 6.0.1 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}\n  - name: busybox\n    newTag: \"1\"\n";
        let Reverted::Changed(out) = revert(text, FROM, TO, None).unwrap() else {
            panic!()
        };
        assert_eq!(
            out,
            "resources:\n  - deployment.yaml\nimages:\n  - name: ghcr.io/stefanprodan/podinfo\n    newTag: 6.0.0 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}\n  - name: busybox\n    newTag: \"1\"\n"
        );
        // An entry renaming the image matches by its newName.
        let renamed = "images:\n  - name: podinfo\n    newName: ghcr.io/stefanprodan/podinfo\n    newTag: 6.0.1\n";
        let Reverted::Changed(out) = revert(renamed, FROM, TO, None).unwrap() else {
            panic!()
        };
        assert!(out.contains("newTag: 6.0.0"), "{out}");
    }

    #[test]
    fn a_helm_release_values_path_gets_the_tag_the_reference_or_the_map() {
        let tag = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nspec:\n  chart:\n    spec:\n      version: 6.0.1\n  values:\n    image:\n      repository: ghcr.io/stefanprodan/podinfo\n      tag: 6.0.1 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}\n";
        let Reverted::Changed(out) = revert(tag, FROM, TO, Some("spec.values.image.tag")).unwrap()
        else {
            panic!()
        };
        assert!(
            out.contains("      tag: 6.0.0 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}"),
            "{out}"
        );
        // The chart's version, also 6.0.1, is not touched.
        assert!(out.contains("      version: 6.0.1"), "{out}");
        let Reverted::Changed(map) = revert(tag, FROM, TO, Some("spec.values.image")).unwrap()
        else {
            panic!()
        };
        assert!(map.contains("      tag: 6.0.0"), "{map}");
        let whole = format!("spec:\n  values:\n    image: \"{FROM}\"\n");
        let Reverted::Changed(out) = revert(&whole, FROM, TO, Some("spec.values.image")).unwrap()
        else {
            panic!()
        };
        assert_eq!(out, format!("spec:\n  values:\n    image: \"{TO}\"\n"));
        assert!(
            revert(tag, FROM, TO, Some("spec.values.img.tag"))
                .unwrap_err()
                .contains("no key \"img\"")
        );
    }

    /// A pinned reference (`repo:tag@digest`) is the repository `repo`: its kustomization entry
    /// is found and gets the promoted tag and digest.
    #[test]
    fn a_pinned_reference_reverts_the_entry_of_its_repository() {
        let sha = |d: char| format!("sha256:{}", d.to_string().repeat(64));
        let from = format!("ghcr.io/stefanprodan/podinfo:6.0.1@{}", sha('a'));
        let to = format!("ghcr.io/stefanprodan/podinfo:6.0.0@{}", sha('b'));
        let text = format!(
            "images:\n  - name: ghcr.io/stefanprodan/podinfo\n    newTag: 6.0.1@{}\n",
            sha('a')
        );
        let Reverted::Changed(out) = revert(&text, &from, &to, None).unwrap() else {
            panic!()
        };
        assert_eq!(
            out,
            format!(
                "images:\n  - name: ghcr.io/stefanprodan/podinfo\n    newTag: 6.0.0@{}\n",
                sha('b')
            )
        );
        // What is not an image reference is refused with the reason.
        let err = revert(&text, &from, "Podinfo:6.0.0", None).unwrap_err();
        assert!(
            err.contains("\"Podinfo:6.0.0\" is not an image reference"),
            "{err}"
        );
    }
}

/// Property tests: the edits over the shapes YAML allows, checked against the file written
/// with the promoted image from the start and against a YAML parser.
#[cfg(test)]
mod yaml_shapes {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const FROM: &str = "ghcr.io/acme/app:2.0.0";
    const TO: &str = "ghcr.io/acme/app:1.0.0";
    const OTHERS: [&str; 2] = ["busybox:1.36", "ghcr.io/acme/app:9.9.9"];

    #[derive(Clone, Copy, Debug)]
    enum Quote {
        Plain,
        Single,
        Double,
    }

    #[derive(Clone, Debug)]
    enum Entry {
        /// `- name: c` then `image: v`, or the image first.
        Block { image_first: bool },
        /// `- {name: c, image: v}`.
        Flow,
        /// `image: &a v` here, and a second container with `image: *a`.
        Anchored,
    }

    #[derive(Clone, Debug)]
    struct Container {
        entry: Entry,
        from: bool,
        other: usize,
        quote: Quote,
        marker: bool,
    }

    #[derive(Clone, Copy, Debug)]
    enum Distractor {
        /// `# image: <from>`.
        Comment,
        /// `image: <from>` inside a block scalar (`|`, `>`, `|-`, `>+`).
        BlockScalar(usize),
        /// `<from>` inside another string.
        InString,
    }

    #[derive(Clone, Debug)]
    struct Doc {
        containers: Vec<Container>,
        distractors: Vec<Distractor>,
    }

    fn quoted(v: &str, q: Quote) -> String {
        match q {
            Quote::Plain => v.to_string(),
            Quote::Single => format!("'{v}'"),
            Quote::Double => format!("\"{v}\""),
        }
    }

    /// The document with its image values; `reverted` writes the promoted image where the
    /// failed one was.
    fn render(doc: &Doc, n: usize, reverted: bool) -> String {
        let mut s = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{n}\n");
        for (k, d) in doc.distractors.iter().enumerate() {
            match d {
                Distractor::Comment => s += &format!("  # image: {FROM}\n"),
                Distractor::BlockScalar(style) => {
                    let ind = ["|", ">", "|-", ">+"][*style];
                    s += &format!(
                        "  annotations{k}:\n    note: {ind}\n      image: {FROM}\n\n      - image: {FROM}\n"
                    );
                }
                Distractor::InString => s += &format!("  description{k}: \"runs {FROM}\"\n"),
            }
        }
        s += "spec:\n  template:\n    spec:\n      containers:\n";
        for (i, c) in doc.containers.iter().enumerate() {
            let image = if c.from {
                if reverted { TO } else { FROM }
            } else {
                OTHERS[c.other]
            };
            let v = quoted(image, c.quote);
            let marker = if c.marker {
                " # {\"$imagepolicy\": \"flux-system:app\"}"
            } else {
                ""
            };
            match c.entry {
                Entry::Block { image_first: false } => {
                    s += &format!("        - name: c{i}\n          image: {v}{marker}\n")
                }
                Entry::Block { image_first: true } => {
                    s += &format!("        - image: {v}{marker}\n          name: c{i}\n")
                }
                Entry::Flow => s += &format!("        - {{name: c{i}, image: {v}}}{marker}\n"),
                Entry::Anchored => {
                    s += &format!(
                        "        - name: c{i}\n          image: &img{i} {v}{marker}\n        - name: c{i}-again\n          image: *img{i}\n"
                    )
                }
            }
        }
        s
    }

    fn container() -> impl Strategy<Value = Container> {
        (
            prop_oneof![
                any::<bool>().prop_map(|image_first| Entry::Block { image_first }),
                Just(Entry::Flow),
                Just(Entry::Anchored),
            ],
            any::<bool>(),
            0..OTHERS.len(),
            prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)],
            any::<bool>(),
        )
            .prop_map(|(entry, from, other, quote, marker)| Container {
                entry,
                from,
                other,
                quote,
                marker,
            })
    }

    fn doc() -> impl Strategy<Value = Doc> {
        (
            proptest::collection::vec(container(), 1..4),
            proptest::collection::vec(
                prop_oneof![
                    Just(Distractor::Comment),
                    (0..4usize).prop_map(Distractor::BlockScalar),
                    Just(Distractor::InString),
                ],
                0..3,
            ),
        )
            .prop_map(|(containers, distractors)| Doc {
                containers,
                distractors,
            })
    }

    /// A file of one or more documents (`---` between, maybe a leading one), LF or CRLF.
    fn file(docs: &[Doc], leading: bool, crlf: bool, reverted: bool) -> String {
        let mut s = if leading {
            "---\n".to_string()
        } else {
            String::new()
        };
        for (n, d) in docs.iter().enumerate() {
            if n > 0 {
                s += "---\n";
            }
            s += &render(d, n, reverted);
        }
        if crlf { s.replace('\n', "\r\n") } else { s }
    }

    /// Every `image` value equal to `from`, anywhere, replaced by `to`.
    fn replace_images(v: &mut Value, from: &str, to: &str) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if k == "image" && v.as_str() == Some(from) {
                        *v = Value::String(to.into());
                    } else {
                        replace_images(v, from, to);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| replace_images(v, from, to)),
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `image:` lines in block and flow style, quoted three ways, anchored and aliased,
        /// with Flux markers, beside comments, block scalars and strings that mention the
        /// image, over several documents, LF or CRLF: the revert writes exactly the file that
        /// names the promoted image, and a YAML parser reads the same data with the image
        /// replaced.
        #[test]
        fn image_lines_are_reverted_and_nothing_else(
            docs in proptest::collection::vec(doc(), 1..4),
            leading in any::<bool>(),
            crlf in any::<bool>(),
        ) {
            prop_assume!(docs.iter().any(|d| d.containers.iter().any(|c| c.from)));
            let text = file(&docs, leading, crlf, false);
            let want = file(&docs, leading, crlf, true);
            let out = match revert(&text, FROM, TO, None) {
                Ok(Reverted::Changed(out)) => out,
                other => return Err(TestCaseError::fail(format!("{other:?} for\n{text}"))),
            };
            prop_assert_eq!(&out, &want);
            let mut before: Vec<Value> = serde_saphyr::from_multiple(&text)
                .map_err(|e| TestCaseError::fail(format!("{e} in\n{text}")))?;
            let after: Vec<Value> = serde_saphyr::from_multiple(&out)
                .map_err(|e| TestCaseError::fail(format!("{e} in\n{out}")))?;
            before.iter_mut().for_each(|d| replace_images(d, FROM, TO));
            prop_assert_eq!(before, after);
            // Reverting again finds the promoted image in place.
            prop_assert_eq!(revert(&out, FROM, TO, None), Ok(Reverted::AlreadyThere));
        }

        /// A HelmRelease's values path: the tag, quoted three ways, with an anchor on the
        /// map, a comment and a block scalar in the map that mentions the tag, LF or CRLF.
        #[test]
        fn a_values_path_gets_the_tag_and_nothing_else(
            quote in prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)],
            anchor in any::<bool>(),
            crlf in any::<bool>(),
            marker in any::<bool>(),
        ) {
            let doc = |tag: &str| {
                let anchor = if anchor { " &image" } else { "" };
                let marker = if marker { " # {\"$imagepolicy\": \"flux-system:app:tag\"}" } else { "" };
                let s = format!(
                    "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nspec:\n  chart:\n    spec:\n      version: 2.0.0\n  values:\n    # tag: 2.0.0\n    image:{anchor}\n      notes: |\n        tag: 2.0.0\n      repository: ghcr.io/acme/app\n      tag: {}{marker}\n",
                    quoted(tag, quote)
                );
                if crlf { s.replace('\n', "\r\n") } else { s }
            };
            let text = doc("2.0.0");
            for path in ["spec.values.image.tag", "spec.values.image"] {
                let out = revert(&text, FROM, TO, Some(path));
                prop_assert_eq!(out, Ok(Reverted::Changed(doc("1.0.0"))), "{}", path);
            }
        }

        /// A kustomization's entry, LF or CRLF, after other entries and comments.
        #[test]
        fn a_kustomization_entry_gets_the_tag_and_nothing_else(
            quote in prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)],
            crlf in any::<bool>(),
            before in any::<bool>(),
        ) {
            let doc = |tag: &str| {
                let other = if before { "  - name: busybox # pinned\n    newTag: \"2.0.0\"\n" } else { "" };
                let s = format!(
                    "resources:\n  - deployment.yaml\n# images: pinned below\nimages:\n{other}  - name: ghcr.io/acme/app\n    newTag: {}\n",
                    quoted(tag, quote)
                );
                if crlf { s.replace('\n', "\r\n") } else { s }
            };
            prop_assert_eq!(revert(&doc("2.0.0"), FROM, TO, None), Ok(Reverted::Changed(doc("1.0.0"))));
        }
    }

    #[test]
    fn a_values_path_holding_a_flow_map_or_a_block_scalar_is_refused() {
        for value in [
            "{repository: ghcr.io/acme/app, tag: 2.0.0}",
            "|\n      2.0.0",
        ] {
            let text = format!("spec:\n  values:\n    image: {value}\n");
            let err = revert(&text, FROM, TO, Some("spec.values.image")).unwrap_err();
            assert!(err.contains("flow collection or a block scalar"), "{err}");
        }
    }
}
