//! Container image references, read by the OCI distribution reference grammar (the grammar of
//! `distribution/reference`, which Docker, containerd and the kubelet use):
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path
//! domain     := host [ ":" port ]          host: DNS labels, or an IPv6 address in brackets
//! path       := component [ "/" component ]*
//! component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex          sha256 (64), sha384 (96) or sha512 (128) lowercase hex
//! ```
//!
//! The first part of a name is its registry when it has a `.`, a `:` or an upper-case letter,
//! or is `localhost`; otherwise the registry is Docker Hub (`docker.io`), where a one-part name
//! is an official image (`nginx` is `docker.io/library/nginx`). So `a:1@sha256:…` is the name `a` with the
//! tag `1` and a digest, and `localhost:5000/app` is the name of `app` in the registry
//! `localhost:5000`, without a tag.
//!
//! Every part of the workspace that takes an image reference apart uses [`ImageRef`].
//!
//! Hand-written rather than a crate: `oci-spec`'s `distribution::Reference` parses the same
//! grammar through one large regular expression that costs tens of milliseconds and over ten
//! megabytes of memory on first use, and brings fifteen crates with it.

use std::fmt;

/// Docker Hub, the registry of a name without one.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The longest name (registry and path) the grammar allows.
pub const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{image:?} is not an image reference: {reason}")]
pub struct ImageRefError {
    /// The string as given.
    pub image: String,
    /// What is wrong with it.
    pub reason: Reason,
}

/// What is wrong with an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// Nothing at all.
    #[error("it is empty")]
    Empty,
    /// A name longer than [`NAME_MAX`].
    #[error("the name is longer than {NAME_MAX} characters")]
    NameTooLong,
    /// A registry host or port that is not one.
    #[error("the registry {0:?} is not a host name with an optional port")]
    Registry(String),
    /// A path component outside the grammar (upper case, a leading or doubled separator, …).
    #[error(
        "the path component {0:?} must be lower-case letters and digits, separated by `.`, `_`, `__` or dashes"
    )]
    Component(String),
    /// A tag outside the grammar.
    #[error(
        "the tag {0:?} must be letters, digits, `_`, `.` and `-` (not first), at most 128 characters"
    )]
    Tag(String),
    /// A digest outside the grammar.
    #[error("the digest {0:?} must be sha256, sha384 or sha512, a colon and its lower-case hex")]
    Digest(String),
}

/// An image reference, as written and normalized.
///
/// The accessors [`name`](Self::name), [`tag`](Self::tag) and [`digest`](Self::digest) return
/// the text as written; [`registry`](Self::registry) and [`repository`](Self::repository) are
/// normalized the way a container runtime resolves them, so that two spellings of one
/// repository compare equal with [`same_repository`](Self::same_repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef<'a> {
    text: &'a str,
    name: &'a str,
    /// The registry as written, if any.
    domain: Option<&'a str>,
    /// The path as written.
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Reads `text` as an image reference.
    pub fn parse(text: &'a str) -> Result<Self, ImageRefError> {
        parse(text).map_err(|reason| ImageRefError {
            image: text.to_string(),
            reason,
        })
    }

    /// The reference as given.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// Registry and path as written, without tag and digest (`ghcr.io/acme/app:1.2.3` →
    /// `ghcr.io/acme/app`; `registry:5000/app` keeps its port).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The tag as written, if any (no `latest` is assumed).
    pub fn tag(&self) -> Option<&'a str> {
        self.tag
    }

    /// The digest (`sha256:…`), if any.
    pub fn digest(&self) -> Option<&'a str> {
        self.digest
    }

    /// What follows the name, without the tag's colon: `1.2.3`, `1.2.3@sha256:…`,
    /// `@sha256:…`, or empty. What a Helm chart's `image.tag` or a kustomization's `newTag`
    /// holds for this reference.
    pub fn version(&self) -> &'a str {
        let rest = &self.text[self.name.len()..];
        rest.strip_prefix(':').unwrap_or(rest)
    }

    /// The registry the image is pulled from (`docker.io` when none is written;
    /// `index.docker.io` is `docker.io`).
    pub fn registry(&self) -> &'a str {
        match self.domain {
            None | Some("index.docker.io") => DEFAULT_REGISTRY,
            Some(d) => d,
        }
    }

    /// The repository path inside the registry, with Docker Hub's `library/` for official
    /// images (`nginx` → `library/nginx`).
    pub fn repository(&self) -> String {
        if self.registry() == DEFAULT_REGISTRY && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.to_string()
        }
    }

    /// Whether both name one repository of one registry, however written (`nginx:1` and
    /// `docker.io/library/nginx:2` do).
    pub fn same_repository(&self, other: &ImageRef<'_>) -> bool {
        self.registry() == other.registry() && self.repository() == other.repository()
    }
}

impl fmt::Display for ImageRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)
    }
}

fn parse(text: &str) -> Result<ImageRef<'_>, Reason> {
    if text.is_empty() {
        return Err(Reason::Empty);
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => {
            check_digest(digest)?;
            (rest, Some(digest))
        }
        None => (text, None),
    };
    // A colon after the last slash starts the tag; one before it is a registry's port.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.is_empty() {
        return Err(Reason::Component(String::new()));
    }
    if name.len() > NAME_MAX {
        return Err(Reason::NameTooLong);
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            check_domain(first)?;
            (Some(first), path)
        }
        _ => (None, name),
    };
    for component in path.split('/') {
        check_component(component)?;
    }
    Ok(ImageRef {
        text,
        name,
        domain,
        path,
        tag,
        digest,
    })
}

fn check_component(c: &str) -> Result<(), Reason> {
    let bad = || Reason::Component(c.to_string());
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if !bytes.first().is_some_and(|&b| alnum(b)) || !bytes.last().is_some_and(|&b| alnum(b)) {
        return Err(bad());
    }
    // Between runs of letters and digits: `.`, `_`, `__`, or any number of dashes.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), Reason> {
    let bad = || Reason::Registry(domain.to_string());
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    if let Some(host) = host {
        // DNS labels: letters, digits and inner dashes.
        let label = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !host.split('.').all(label) {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), Reason> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= TAG_MAX
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Reason::Tag(tag.to_string()))
    }
}

fn check_digest(digest: &str) -> Result<(), Reason> {
    let hex_len = match digest.split_once(':') {
        Some(("sha256", hex)) => Some((hex, 64)),
        Some(("sha384", hex)) => Some((hex, 96)),
        Some(("sha512", hex)) => Some((hex, 128)),
        _ => None,
    };
    match hex_len {
        Some((hex, len))
            if hex.len() == len
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(Reason::Digest(digest.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parts(s: &str) -> (&str, Option<&str>, Option<&str>) {
        let r = ImageRef::parse(s).unwrap_or_else(|e| panic!("{e}"));
        (r.name(), r.tag(), r.digest())
    }

    #[test]
    fn a_reference_splits_into_name_tag_and_digest() {
        assert_eq!(parts("a"), ("a", None, None));
        assert_eq!(parts("a/b:1"), ("a/b", Some("1"), None));
        assert_eq!(
            parts("ghcr.io/acme/app:1.2.3"),
            ("ghcr.io/acme/app", Some("1.2.3"), None)
        );
        assert_eq!(parts("localhost:5000/b"), ("localhost:5000/b", None, None));
        assert_eq!(
            parts("localhost:5000/b:1"),
            ("localhost:5000/b", Some("1"), None)
        );
        assert_eq!(
            parts("[::1]:5000/team/app:v2"),
            ("[::1]:5000/team/app", Some("v2"), None)
        );
        let digested = format!("b@{SHA}");
        assert_eq!(parts(&digested), ("b", None, Some(SHA)));
    }

    /// The two parsers this one replaced disagreed on a reference with both a tag and a
    /// digest: one read `a:1@sha256:…` as the repository `a`, the other as `a:1` (with the
    /// digest as its tag), so a revert wrote a kustomization's `newName: a:1`.
    #[test]
    fn a_tag_and_a_digest_both_belong_to_the_name_before_them() {
        let s = format!("a:1@{SHA}");
        let r = ImageRef::parse(&s).unwrap();
        assert_eq!((r.name(), r.tag(), r.digest()), ("a", Some("1"), Some(SHA)));
        assert_eq!(r.version(), format!("1@{SHA}"));
        let s = format!("registry:5000/app:v1@{SHA}");
        let r = ImageRef::parse(&s).unwrap();
        assert_eq!(r.name(), "registry:5000/app");
        assert_eq!(r.registry(), "registry:5000");
        assert_eq!(r.tag(), Some("v1"));
        let s = format!("b@{SHA}");
        assert_eq!(ImageRef::parse(&s).unwrap().version(), format!("@{SHA}"));
        assert_eq!(ImageRef::parse("a/b:1").unwrap().version(), "1");
        assert_eq!(ImageRef::parse("a/b").unwrap().version(), "");
    }

    #[test]
    fn the_first_part_is_a_registry_only_when_it_looks_like_a_host() {
        let r = ImageRef::parse("nginx:1.27").unwrap();
        assert_eq!(
            (r.registry(), r.repository()),
            ("docker.io", "library/nginx".into())
        );
        let r = ImageRef::parse("acme/app").unwrap();
        assert_eq!(
            (r.registry(), r.repository()),
            ("docker.io", "acme/app".into())
        );
        let r = ImageRef::parse("localhost/app").unwrap();
        assert_eq!((r.registry(), r.repository()), ("localhost", "app".into()));
        let r = ImageRef::parse("ghcr.io/acme/app").unwrap();
        assert_eq!(
            (r.registry(), r.repository()),
            ("ghcr.io", "acme/app".into())
        );
        // A name without a slash has no registry: the colon starts a tag.
        assert_eq!(parts("test.com:5000"), ("test.com", Some("5000"), None));
        // Upper case is not allowed in a path, so an upper-case first part is a host.
        assert_eq!(
            ImageRef::parse("Registry/app").unwrap().registry(),
            "Registry"
        );
    }

    #[test]
    fn spellings_of_one_repository_are_the_same_repository() {
        let same = |a: &str, b: &str| {
            ImageRef::parse(a)
                .unwrap()
                .same_repository(&ImageRef::parse(b).unwrap())
        };
        assert!(same("nginx:1", "docker.io/library/nginx:2"));
        assert!(same("nginx", "index.docker.io/library/nginx:2"));
        assert!(same("acme/app:1", "docker.io/acme/app"));
        assert!(same(&format!("ghcr.io/a/b@{SHA}"), "ghcr.io/a/b:1"));
        assert!(!same("ghcr.io/a/b", "docker.io/a/b"));
        assert!(!same("registry:5000/app", "registry:5001/app"));
        assert!(!same("a/b", "a/b/c"));
    }

    #[test]
    fn what_is_not_a_reference_is_refused_with_the_reason() {
        let reason = |s: &str| ImageRef::parse(s).unwrap_err().reason;
        assert_eq!(reason(""), Reason::Empty);
        assert_eq!(reason("App:1"), Reason::Component("App".into()));
        assert_eq!(reason("a//b"), Reason::Component(String::new()));
        assert_eq!(reason("a/-b"), Reason::Component("-b".into()));
        assert_eq!(reason("a..b"), Reason::Component("a..b".into()));
        assert_eq!(reason("a___b"), Reason::Component("a___b".into()));
        assert_eq!(reason(":1"), Reason::Component(String::new()));
        assert_eq!(reason("a:b:c"), Reason::Component("a:b".into()));
        assert_eq!(reason("a:-1"), Reason::Tag("-1".into()));
        assert_eq!(reason("a:"), Reason::Tag(String::new()));
        assert_eq!(
            reason(&format!("a:{}", "t".repeat(129))),
            Reason::Tag("t".repeat(129))
        );
        assert_eq!(reason("a@sha256:ab"), Reason::Digest("sha256:ab".into()));
        assert_eq!(reason("a@md5:ab"), Reason::Digest("md5:ab".into()));
        assert_eq!(
            reason(&format!("a@{}", SHA.to_uppercase())),
            Reason::Digest(SHA.to_uppercase())
        );
        assert_eq!(
            reason(&format!("a@{SHA}@{SHA}")),
            Reason::Digest(format!("{SHA}@{SHA}"))
        );
        assert_eq!(
            reason("my_host.io:80/a"),
            Reason::Registry("my_host.io:80".into())
        );
        assert_eq!(reason("host.io:/a"), Reason::Registry("host.io:".into()));
        assert_eq!(
            reason("host.io:8x/a"),
            Reason::Registry("host.io:8x".into())
        );
        assert_eq!(reason(&"a".repeat(256)), Reason::NameTooLong);
        let e = ImageRef::parse("App:1").unwrap_err().to_string();
        assert!(e.starts_with("\"App:1\" is not an image reference: the path component \"App\""));
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}(([._]|__|-{1,3})[a-z0-9]{1,4}){0,2}"
    }

    fn domain() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(prop_oneof![
            Just("localhost".to_string()),
            "[a-z0-9]{1,5}\\.[a-z]{2,3}",
            "[a-z]{1,5}(\\.[a-z]{2,3})?:[0-9]{2,5}",
            "\\[[0-9a-f]{1,4}:[0-9a-f:]{1,6}\\](:[0-9]{2,4})?",
            "[A-Z][a-z]{0,4}",
        ])
    }

    proptest! {
        /// Any reference built from the grammar's parts reads back as those parts.
        #[test]
        fn references_built_from_the_grammar_read_back_as_their_parts(
            domain in domain(),
            path in proptest::collection::vec(component(), 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}"),
            digest in proptest::option::of("[0-9a-f]{64}"),
        ) {
            // Without a registry, a first part with a dot would read as one.
            prop_assume!(domain.is_some() || path.len() == 1 || !path[0].contains('.'));
            let path = path.join("/");
            let name = match &domain {
                Some(d) => format!("{d}/{path}"),
                None => path.clone(),
            };
            let digest = digest.map(|h| format!("sha256:{h}"));
            let mut text = name.clone();
            if let Some(t) = &tag {
                text = format!("{text}:{t}");
            }
            if let Some(d) = &digest {
                text = format!("{text}@{d}");
            }
            let r = ImageRef::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(r.name(), name.as_str());
            prop_assert_eq!(r.tag(), tag.as_deref());
            prop_assert_eq!(r.digest(), digest.as_deref());
            prop_assert_eq!(r.to_string(), text.clone());
            let reg = domain.as_deref().unwrap_or(DEFAULT_REGISTRY);
            prop_assert_eq!(r.registry(), reg);
            let version = text[name.len()..].trim_start_matches(':');
            prop_assert_eq!(r.version(), version);
        }

        /// Nothing panics, and whatever is accepted keeps its text.
        #[test]
        fn any_string_is_read_or_refused(s in "\\PC{0,40}") {
            if let Ok(r) = ImageRef::parse(&s) {
                prop_assert!(s.starts_with(r.name()));
                prop_assert_eq!(r.as_str(), s.as_str());
            }
        }
    }
}
