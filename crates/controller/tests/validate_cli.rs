//! `fledge validate`: exact output and exit codes for valid, broken and hostile input, and the
//! Flagger documentation corpus.

use std::path::{Path, PathBuf};

use fledge_controller::validate_cmd::{self, run, run_with_stdin};
use proptest::prelude::*;

const CANARY: &str = "\
apiVersion: fledge.dev/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  provider: istio
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
    webhooks:
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
";

const METRIC_TEMPLATE: &str = "\
apiVersion: fledge.dev/v1beta1
kind: MetricTemplate
metadata:
  name: latency
  namespace: test
spec:
  provider:
    type: prometheus
    address: http://prometheus.monitoring:9090
  query: |
    histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{
      namespace=\"{{ namespace }}\", pod=~\"{{ target }}-.*\"}[{{ interval }}])) by (le))
";

const ALERT_PROVIDER: &str = "\
apiVersion: fledge.dev/v1beta1
kind: AlertProvider
metadata:
  name: on-call
spec:
  type: slack
  channel: on-call-alerts
  secretRef:
    name: on-call-url
";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
spec:
  replicas: 2
";

/// Output of one run.
struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run_stdin(input: &[u8]) -> Run {
    run_args(&["-"], input)
}

fn run_args(args: &[&str], stdin: &[u8]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input = stdin;
    let code = run_with_stdin(&args, &mut input, &mut out, &mut err);
    Run {
        code,
        out: String::from_utf8(out).expect("stdout is UTF-8"),
        err: String::from_utf8(err).expect("stderr is UTF-8"),
    }
}

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("validate_cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

/// Replaces the first occurrence of `from`, which must be present.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in the text");
    text.replacen(from, to, 1)
}

#[test]
fn valid_documents_exit_0() {
    let input = format!("{CANARY}---\n{METRIC_TEMPLATE}---\n{ALERT_PROVIDER}");
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "3 documents checked: 3 valid, 0 invalid, 0 skipped\n"
    );
    assert_eq!(r.err, "");
    assert_eq!(r.code, 0);
}

#[test]
fn flagger_api_version_is_accepted() {
    let input = CANARY.replace("fledge.dev/v1beta1", "flagger.app/v1beta1");
    let r = run_stdin(input.as_bytes());
    assert_eq!(r.out, "1 document checked: 1 valid, 0 invalid, 0 skipped\n");
    assert_eq!(r.code, 0);
}

#[test]
fn problems_are_reported_with_file_document_object_and_field() {
    let dir = temp_dir("broken");
    let broken = edit(
        CANARY,
        "    stepWeight: 10\n",
        "    stepWeights: [5, 10, 10]\n",
    );
    let broken = edit(
        &broken,
        "url: http://flagger-loadtester.test/",
        "url: flagger-loadtester.test",
    );
    let broken = edit(&broken, "min: 99", "min: 99\n          max: 1");
    let file = write(
        &dir,
        "all.yaml",
        format!("{CANARY}---\n{DEPLOYMENT}---\n{broken}---\n{METRIC_TEMPLATE}"),
    );
    let r = run_args(&[&file], b"");
    assert_eq!(
        r.out,
        format!(
            "{file}:3: Canary test/podinfo: spec.analysis.stepWeights[2]: 10 is not greater than the step before it (10); steps must increase, e.g. [5, 10, 25, 50]\n\
             {file}:3: Canary test/podinfo: spec.analysis.metrics[0].thresholdRange: min 99 is greater than max 1: no value could pass; swap them or widen the range\n\
             {file}:3: Canary test/podinfo: spec.analysis.webhooks[0].url: is not an absolute URL; write it with its scheme, as http://host[:port]/path\n\
             4 documents checked: 2 valid, 1 invalid, 1 skipped\n"
        )
    );
    assert_eq!(r.err, "");
    assert_eq!(r.code, 1);
}

#[test]
fn several_files_and_stdin() {
    let dir = temp_dir("several");
    let good = write(&dir, "good.yaml", CANARY);
    let bad = write(
        &dir,
        "bad.yaml",
        edit(ALERT_PROVIDER, "type: slack", "type: teams"),
    );
    let stdin = edit(METRIC_TEMPLATE, "type: prometheus", "type: signoz");
    let r = run_args(&[&good, &bad, "-"], stdin.as_bytes());
    assert_eq!(
        r.out,
        format!(
            "{bad}:1: AlertProvider default/on-call: spec.type: \"teams\" is not an alert provider type; use one of: slack, msteams, discord, rocket, gchat, webhook\n\
             <stdin>:1: MetricTemplate test/latency: spec.provider.type: metrics provider \"signoz\" is not supported by fledge yet; supported: prometheus, datadog, newrelic, dynatrace, graphite, influxdb, splunk, cloudwatch, stackdriver, keptn, externalmetrics\n\
             3 documents checked: 1 valid, 2 invalid, 0 skipped\n"
        )
    );
    assert_eq!(r.code, 1);
}

#[test]
fn type_errors_missing_and_unknown_fields_have_paths() {
    let input = edit(CANARY, "port: 9898", "port: \"9898\"");
    let input = edit(&input, "threshold: 5", "threshold: 1.5");
    let input = edit(&input, "    maxWeight: 50\n", "    maxweight: 50\n");
    let input = edit(&input, "timeout: 5s", "timeout: 5s\n        retries: many");
    let input = edit(&input, "    name: podinfo\n  service:", "  service:");
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "<stdin>:1: Canary test/podinfo: spec.analysis.maxweight: is not a field of Canary; check its spelling and indentation (field names are camelCase, e.g. stepWeight)\n\
         <stdin>:1: Canary test/podinfo: spec.analysis.threshold: must be an integer, not the number 1.5\n\
         <stdin>:1: Canary test/podinfo: spec.analysis.webhooks[0].retries: must be an integer, not a string\n\
         <stdin>:1: Canary test/podinfo: spec.service.port: must be an integer, not a string\n\
         <stdin>:1: Canary test/podinfo: spec.targetRef.name: is required\n\
         1 document checked: 0 valid, 1 invalid, 0 skipped\n"
    );
    assert_eq!(r.code, 1);
}

#[test]
fn out_of_range_integers_and_old_field_names() {
    let input = edit(CANARY, "port: 9898", "port: 99999999999");
    let input = edit(
        &input,
        "  analysis:\n",
        "  canaryAnalysis:\n    interval: 1m\n  analysis:\n",
    );
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "<stdin>:1: Canary test/podinfo: spec.canaryAnalysis: is the pre-v1beta1 name of spec.analysis; rename it to analysis\n\
         <stdin>:1: Canary test/podinfo: spec.service.port: the integer 99999999999 is out of range: must be an integer between -2147483648 and 2147483647\n\
         1 document checked: 0 valid, 1 invalid, 0 skipped\n"
    );
    let input = edit(CANARY, "  analysis:\n", "  canaryAnalysis:\n");
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "<stdin>:1: Canary test/podinfo: spec.canaryAnalysis: is the pre-v1beta1 name of spec.analysis; rename it to analysis\n\
         <stdin>:1: Canary test/podinfo: spec.analysis: has no traffic steps: set stepWeight (with maxWeight) or stepWeights for a progressive canary, iterations for blue/green, or match with iterations for A/B testing\n\
         1 document checked: 0 valid, 1 invalid, 0 skipped\n"
    );
}

#[test]
fn object_level_problems() {
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: fledge.dev/v1\nkind: Canary\nmetadata: {name: a}\nspec: {}\n",
            "<stdin>:1: Canary default/a: apiVersion: \"fledge.dev/v1\" is not served by fledge; use fledge.dev/v1beta1\n",
        ),
        (
            "apiVersion: fledge.dev/v1beta1\nkind: Canaries\nmetadata: {name: a}\n",
            "<stdin>:1: Canaries default/a: kind: \"Canaries\" is not a fledge kind; use one of: Canary, MetricTemplate, AlertProvider\n",
        ),
        (
            "apiVersion: fledge.dev/v1beta1\nkind: AlertProvider\nspec: {type: slack, secretRef: {name: s}}\n",
            "<stdin>:1: AlertProvider default/?: metadata.name: is missing; every object needs metadata.name\n",
        ),
        (
            "apiVersion: fledge.dev/v1beta1\nkind: AlertProvider\nmetadata: {name: On_Call, namespace: Test}\nspec: {type: slack, secretRef: {name: s}}\n",
            "<stdin>:1: AlertProvider Test/On_Call: metadata.name: \"On_Call\" is not a valid Kubernetes name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit\n\
             <stdin>:1: AlertProvider Test/On_Call: metadata.namespace: \"Test\" is not a valid namespace name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit\n",
        ),
        (
            "apiVersion: fledge.dev/v1beta1\nkind: MetricTemplate\nmetadata: {name: a}\n",
            "<stdin>:1: MetricTemplate default/a: spec: is missing; a MetricTemplate needs a spec\n",
        ),
        (
            "apiVersion: fledge.dev/v1beta1\nkind: MetricTemplate\nmetadata: {name: a}\nspec: [1, 2]\n",
            "<stdin>:1: MetricTemplate default/a: spec: must be a mapping of fields, not a list\n",
        ),
        (
            "apiVersion: fledge.dev/v1beta1\nkind: Canary\nmetadata: {name: a}\nspec: {targetRef: [podinfo], service: {port: 80}, analysis: {stepWeight: 10}}\n",
            "<stdin>:1: Canary default/a: spec.targetRef: must be a mapping of fields, not a list\n",
        ),
        (
            "kind: Canary\nmetadata: {name: a}\n",
            "<stdin>:1: Canary default/a: apiVersion: is missing; write apiVersion: fledge.dev/v1beta1\n",
        ),
        (
            "just some text\n",
            "<stdin>:1: ? default/?: .: is a string, not a Kubernetes object; write a mapping with apiVersion, kind, metadata and spec\n",
        ),
    ];
    for (input, expected) in cases {
        let r = run_stdin(input.as_bytes());
        assert_eq!(
            r.out,
            format!("{expected}1 document checked: 0 valid, 1 invalid, 0 skipped\n"),
            "{input}"
        );
        assert_eq!(r.code, 1, "{input}");
    }
}

#[test]
fn null_values_mean_unset() {
    // As the API server prunes them: `key:` with no value is not set.
    let input = edit(
        CANARY,
        "    threshold: 5\n",
        "    threshold:\n    mirror: ~\n",
    );
    let r = run_stdin(input.as_bytes());
    assert_eq!(r.out, "1 document checked: 1 valid, 0 invalid, 0 skipped\n");
}

#[test]
fn other_kinds_are_skipped_and_counted() {
    let input = format!(
        "{DEPLOYMENT}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\n---\napiVersion: flagger.app/v1alpha3\nkind: Canary\nmetadata: {{name: old}}\n"
    );
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "3 documents checked: 0 valid, 0 invalid, 3 skipped\n"
    );
    assert_eq!(r.code, 0);
}

#[test]
fn empty_input() {
    for input in ["", "\n", "# only a comment\n", "---\n", "---\n---\n...\n"] {
        let r = run_stdin(input.as_bytes());
        assert_eq!(
            r.out, "0 documents checked: 0 valid, 0 invalid, 0 skipped\n",
            "{input:?}"
        );
        assert_eq!(r.err, "");
        assert_eq!(r.code, 0);
    }
    // Empty documents are not counted in the numbering either.
    let input = format!("---\n---\n{}", edit(CANARY, "port: 9898", "port: 0"));
    let r = run_stdin(input.as_bytes());
    assert!(
        r.out.starts_with(
            "<stdin>:1: Canary test/podinfo: spec.service.port: 0 is not a port number"
        ),
        "{}",
        r.out
    );
}

#[test]
fn no_files_given() {
    let r = run_args(&[], b"");
    assert_eq!(r.code, 2);
    assert_eq!(
        r.err,
        "fledge validate: no FILE given; name one or more YAML files, or - for standard input\n"
    );
}

#[test]
fn missing_file_is_unreadable_and_others_are_still_checked() {
    let dir = temp_dir("missing");
    let good = write(&dir, "good.yaml", CANARY);
    let missing = dir.join("nope.yaml").display().to_string();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    write(&empty, "notes.txt", "not YAML");
    let r = run_args(&[&missing, &good, empty.to_str().unwrap()], b"");
    assert_eq!(
        r.err,
        format!(
            "{missing}: cannot read: no such file\n{}: is a directory with no .yaml or .yml file in it; name the files to check\n",
            empty.display()
        )
    );
    assert_eq!(
        r.out,
        "1 document checked: 1 valid, 0 invalid, 0 skipped; 2 inputs could not be read\n"
    );
    assert_eq!(r.code, 2);
}

#[test]
fn a_directory_is_every_yaml_file_under_it_in_name_order() {
    let dir = temp_dir("tree");
    let nested = dir.join("b-apps").join("podinfo");
    std::fs::create_dir_all(&nested).unwrap();
    let hidden = dir.join(".git");
    std::fs::create_dir_all(&hidden).unwrap();
    write(&dir, "a.yml", CANARY);
    write(
        &nested,
        "canary.yaml",
        edit(CANARY, "port: 9898", "port: 0"),
    );
    write(&dir, "c.yaml", CANARY);
    write(&dir, "README.md", "kind: Canary\n");
    write(&dir, ".hidden.yaml", edit(CANARY, "port: 9898", "port: 0"));
    write(
        &hidden,
        "config.yaml",
        edit(CANARY, "port: 9898", "port: 0"),
    );
    let r = run_args(&[dir.to_str().unwrap()], b"");
    assert_eq!(r.err, "");
    let bad = nested.join("canary.yaml");
    assert_eq!(
        r.out,
        format!(
            "{}:1: Canary test/podinfo: spec.service.port: 0 is not a port number; use 1 to 65535 (spec.service, the Services fledge generates, is required by every provider but knative)\n\
             3 documents checked: 2 valid, 1 invalid, 0 skipped\n",
            bad.display()
        )
    );
    assert_eq!(r.code, 1);
}

#[test]
fn unparsable_yaml_exits_2_after_reporting_earlier_documents() {
    let input = format!(
        "{}---\nkind: [unclosed\n",
        edit(CANARY, "port: 9898", "port: 0")
    );
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "<stdin>:1: Canary test/podinfo: spec.service.port: 0 is not a port number; use 1 to 65535 (spec.service, the Services fledge generates, is required by every provider but knative)\n\
         1 document checked: 0 valid, 1 invalid, 0 skipped; 1 input could not be read\n"
    );
    assert!(
        r.err.starts_with("<stdin>:2: cannot parse YAML: "),
        "{}",
        r.err
    );
    assert_eq!(r.code, 2);
}

#[test]
fn duplicate_keys_and_recursive_aliases_are_refused() {
    let r = run_stdin(b"a: 1\na: 2\n");
    assert_eq!(
        r.err,
        "<stdin>:1: cannot parse YAML: duplicate mapping key: a; keep only one at line 2, column 1\n"
    );
    assert_eq!(r.code, 2);
    let r = run_stdin(b"a: &a [*a]\n");
    assert_eq!(r.code, 2);
    assert!(r.err.contains("recursive reference"), "{}", r.err);
    // An alias bomb stays within the budget.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let r = run_stdin(bomb.as_bytes());
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
}

#[test]
fn garbage_and_non_utf8_bytes_exit_2() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = run_stdin(&garbage);
    assert_eq!(r.code, 2);
    assert!(
        r.err
            .starts_with("<stdin>: is not UTF-8 text (invalid byte at offset "),
        "{}",
        r.err
    );

    let mut latin1 = b"apiVersion: fledge.dev/v1beta1\nkind: Canary\n# caf".to_vec();
    latin1.push(0xe9);
    latin1.extend_from_slice(b"\n");
    let r = run_stdin(&latin1);
    assert_eq!(
        r.err,
        "<stdin>: is not UTF-8 text (invalid byte at offset 49, line 3); save it as UTF-8\n"
    );
    assert_eq!(
        r.out,
        "0 documents checked: 0 valid, 0 invalid, 0 skipped; 1 input could not be read\n"
    );
    assert_eq!(r.code, 2);

    // Control characters are valid UTF-8 but not YAML.
    let r = run_stdin(b"a: \x00\x01\x02\n");
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
}

#[test]
fn huge_input_is_refused_without_reading_it_all() {
    // 50 MB on standard input, never held in memory whole.
    let mut huge = std::io::Read::take(std::io::repeat(b'a'), 50 * 1024 * 1024);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run_with_stdin(&["-".to_string()], &mut huge, &mut out, &mut err);
    assert_eq!(code, 2);
    assert_eq!(
        String::from_utf8(err).unwrap(),
        "<stdin>: is larger than 16 MiB; split it into smaller files\n"
    );

    // And as a 50 MB file of valid-looking YAML.
    let dir = temp_dir("huge");
    let path = dir.join("huge.yaml");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let doc = format!("{CANARY}---\n");
        let mut written = 0;
        while written < 50 * 1024 * 1024 {
            f.write_all(doc.as_bytes()).unwrap();
            written += doc.len();
        }
    }
    let r = run_args(&[path.to_str().unwrap()], b"");
    assert_eq!(r.code, 2);
    assert_eq!(
        r.err,
        format!(
            "{}: is larger than 16 MiB; split it into smaller files\n",
            path.display()
        )
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn many_documents_within_the_limit() {
    let input = format!("{CANARY}---\n").repeat(2000);
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "2000 documents checked: 2000 valid, 0 invalid, 0 skipped\n"
    );
    assert_eq!(r.code, 0);
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 100_000;
    let flow = format!("a: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
    let r = run_stdin(flow.as_bytes());
    assert_eq!(r.code, 2);
    assert!(
        r.err
            .contains("cannot parse YAML: nesting is deeper than 64 levels"),
        "{}",
        r.err
    );

    let mut block = String::new();
    for i in 0..200 {
        block.push_str(&" ".repeat(i));
        block.push_str("k:\n");
    }
    let r = run_stdin(block.as_bytes());
    assert_eq!(r.code, 2);
    assert_eq!(
        r.err,
        "<stdin>:1: cannot parse YAML: nesting is deeper than 64 levels at line 65, column 65; fledge refuses such documents\n"
    );

    let flow_map = format!("{}{}", "{a: ".repeat(depth), "}".repeat(depth));
    let r = run_stdin(flow_map.as_bytes());
    assert_eq!(r.code, 2);

    // Within the limit, deep nesting inside a spec is a plain problem.
    let nested = edit(
        CANARY,
        "port: 9898",
        &format!("port: {}1{}", "[".repeat(40), "]".repeat(40)),
    );
    let r = run_stdin(nested.as_bytes());
    assert_eq!(r.code, 1);
    assert!(
        r.out
            .contains("spec.service.port: must be an integer, not a list"),
        "{}",
        r.out
    );
}

#[test]
fn output_cannot_be_forged_or_leak_secrets() {
    let input = edit(
        CANARY,
        "name: podinfo\n  namespace: test",
        "name: \"evil\\nfake.yaml:1: Canary x/y: ok\"\n  namespace: test",
    );
    let r = run_stdin(input.as_bytes());
    assert_eq!(r.out.lines().count(), 2, "{}", r.out);
    assert!(r.out.contains("Canary test/evil\\nfake.yaml"), "{}", r.out);

    let secret = "T0000/B0000/XXXXXXXXXXXXXXXX";
    let input = format!(
        "{}  address: hooks.slack.com/services/{secret}\n  proxy: [\"http://user:{secret}@proxy\"]\n",
        ALERT_PROVIDER.replace("  secretRef:\n    name: on-call-url\n", ""),
    );
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "<stdin>:1: AlertProvider default/on-call: spec.proxy: must be a string, not a list\n\
         <stdin>:1: AlertProvider default/on-call: spec.address: is not an absolute URL; write it with its scheme, as http://host[:port]/path\n\
         1 document checked: 0 valid, 1 invalid, 0 skipped\n"
    );
    let input = format!(
        "{}  address: hooks.slack.com/services/{secret}\n",
        ALERT_PROVIDER.replace("  secretRef:\n    name: on-call-url\n", "")
    );
    let r = run_stdin(input.as_bytes());
    assert_eq!(
        r.out,
        "<stdin>:1: AlertProvider default/on-call: spec.address: is not an absolute URL; write it with its scheme, as http://host[:port]/path\n\
         1 document checked: 0 valid, 1 invalid, 0 skipped\n"
    );
    // A secret written where a number belongs is not repeated either.
    let input = edit(
        CANARY,
        "port: 9898",
        &format!("port: \"https://hooks.slack.com/services/{secret}\""),
    );
    let r = run_stdin(input.as_bytes());
    assert!(
        !r.out.contains("XXXX") && !r.out.contains("hooks"),
        "{}",
        r.out
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let r = run_stdin(&bytes);
        prop_assert!((0..=2).contains(&r.code));
        prop_assert!(r.out.ends_with(" skipped\n") || r.out.ends_with(" read\n"), "{}", r.out);
    }

    #[test]
    fn mutated_manifests_never_panic(
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), "[ -~\n]{0,4}", 0usize..4), 1..8)
    ) {
        let mut text = format!("{CANARY}---\n{METRIC_TEMPLATE}---\n{ALERT_PROVIDER}");
        for (at, insert, delete) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) { i -= 1; }
            let mut end = (i + delete).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(i..end.max(i), &insert);
        }
        let r = run_stdin(text.as_bytes());
        prop_assert!((0..=2).contains(&r.code));
        for line in r.out.lines() {
            prop_assert!(!line.contains('\r'));
        }
    }
}

/// The manifests of the demo (`cargo xtask demo`), as they stand in `examples/demo/`: the
/// Canary is valid and the Deployment is skipped.
#[test]
fn the_demo_manifests_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples/demo")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let r = run_args(&args, b"");
    assert_eq!(
        r.out, "4 documents checked: 2 valid, 0 invalid, 2 skipped\n",
        "{}",
        r.err
    );
    assert_eq!(r.code, 0);
}

// ---------------------------------------------------------------------------------------------
// Flagger's documented manifests
// ---------------------------------------------------------------------------------------------

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/flagger-examples")
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("the Flagger examples in shared/reference")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 50,
        "expected the whole corpus, found {}",
        files.len()
    );
    files
}

/// The examples fledge rejects, each with the one `field: message` it reports. Every other
/// example is accepted. All rejections but the last three name a Flagger feature that fledge
/// does not support yet; the last three are real errors: a Splunk template whose address is a
/// placeholder, an InfluxDB template without an address, and the documentation's skeleton whose
/// values are all left blank.
const REJECTED: &[(&str, &[&str])] = &[
    // The Splunk example's address is the documentation's placeholder `https://api.<REALM>.…`.
    (
        "MetricTemplate-usage_metrics-c9dd9abc.yaml",
        &[
            "spec.provider.address: is not a valid URL (invalid international domain name); write it as http://host[:port]/path",
        ],
    ),
    // The InfluxDB example names no address, and InfluxDB has no default one (Flagger refuses
    // it too when it builds the provider).
    (
        "MetricTemplate-usage_metrics-4d9152e2.yaml",
        &[
            "spec.provider.address: is required for the influxdb provider; write the base URL of its API",
        ],
    ),
    // The "metric template skeleton" of the metrics page: every value is blank (null), so
    // secretRef has no name and there is no query.
    (
        "MetricTemplate-usage_metrics-a6cebc27.yaml",
        &[
            "spec.provider.secretRef.name: is required",
            "spec.query: is empty; write the query, e.g. sum(rate(http_requests_total{namespace=\"{{ namespace }}\"}[{{ interval }}]))",
        ],
    ),
];

/// `(exit code, problem lines without the file prefix, summary)` for one example, after
/// `rewrite` of its text.
fn check_example(path: &Path, rewrite: impl Fn(&str) -> String) -> (i32, Vec<String>, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let r = run_stdin(rewrite(&text).as_bytes());
    assert_eq!(r.err, "", "{}", path.display());
    let mut lines: Vec<String> = r.out.lines().map(str::to_owned).collect();
    let summary = lines.pop().unwrap();
    let problems = lines
        .into_iter()
        .map(|l| {
            // `<stdin>:1: Kind ns/name: field: message` → `field: message`
            let rest = l
                .strip_prefix("<stdin>:1: ")
                .expect("one document per example");
            let (_kind, rest) = rest.split_once(' ').unwrap();
            rest.split_once(": ").unwrap().1.to_owned()
        })
        .collect();
    (r.code, problems, summary)
}

fn to_fledge(text: &str) -> String {
    // One example is a flagger.app/v1alpha1 MetricTemplate; it moves over the same way.
    text.replace(
        "apiVersion: flagger.app/v1beta1",
        "apiVersion: fledge.dev/v1beta1",
    )
    .replace(
        "apiVersion: flagger.app/v1alpha1",
        "apiVersion: fledge.dev/v1beta1",
    )
}

#[test]
fn flagger_examples_moved_to_fledge_are_accepted_or_rejected_as_not_supported_yet() {
    let mut seen_rejections = 0;
    for path in example_files() {
        let file = path.file_name().unwrap().to_str().unwrap();
        let (code, problems, summary) = check_example(&path, to_fledge);
        match REJECTED.iter().find(|(f, _)| *f == file) {
            Some((_, expected)) => {
                seen_rejections += 1;
                assert_eq!(problems, *expected, "{file}");
                assert_eq!(code, 1, "{file}");
                assert_eq!(summary, "1 document checked: 0 valid, 1 invalid, 0 skipped");
            }
            None => {
                assert_eq!(problems, Vec::<String>::new(), "{file}");
                assert_eq!(code, 0, "{file}");
                assert_eq!(
                    summary, "1 document checked: 1 valid, 0 invalid, 0 skipped",
                    "{file}"
                );
            }
        }
    }
    assert_eq!(
        seen_rejections,
        REJECTED.len(),
        "a rejected example is missing from the corpus"
    );
    // Every rejection but the last three (real errors) is a "not supported by fledge yet".
    for (file, messages) in &REJECTED[..REJECTED.len() - 3] {
        assert_eq!(messages.len(), 1, "{file}");
        assert!(
            messages[0].contains("not supported by fledge yet"),
            "{file}"
        );
    }
}

#[test]
fn flagger_examples_validate_unchanged() {
    for path in example_files() {
        let file = path.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (code, problems, summary) = check_example(&path, str::to_owned);
        if text.contains("apiVersion: flagger.app/v1alpha1") {
            // Not a v1beta1 object: skipped, and counted.
            assert_eq!(
                summary, "1 document checked: 0 valid, 0 invalid, 1 skipped",
                "{file}"
            );
            assert_eq!(code, 0);
            continue;
        }
        // The same verdict as under fledge.dev/v1beta1.
        let (fledge_code, fledge_problems, _) = check_example(&path, to_fledge);
        assert_eq!((code, problems), (fledge_code, fledge_problems), "{file}");
    }
}

#[test]
fn flagger_examples_read_as_files_in_one_run() {
    let files: Vec<String> = example_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let r = run_args(&args, b"");
    let n = files.len();
    // The v1alpha1 example (CloudWatch's, accepted as fledge.dev/v1beta1) is skipped; the
    // v1beta1 ones are checked, and every rejected example is one of them.
    let rejected_v1beta1 = REJECTED.len();
    assert!(
        r.out.ends_with(&format!(
            "{n} documents checked: {} valid, {rejected_v1beta1} invalid, 1 skipped\n",
            n - rejected_v1beta1 - 1
        )),
        "{}",
        r.out
    );
    assert_eq!(r.code, 1);
}

/// Broken variants of the examples: `(file, (from, to) edits, expected problem lines)`.
#[test]
fn broken_flagger_examples_are_rejected_at_the_exact_field() {
    type Variant = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );
    let variants: &[Variant] = &[
        (
            "Canary-artifacts_examples_linkerd_canary_steps-2e85484b.yaml",
            &[(
                "[5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]",
                "[5, 10, 15, 15, 25, 130]",
            )],
            &[
                "spec.analysis.stepWeights[3]: 15 is not greater than the step before it (15); steps must increase, e.g. [5, 10, 25, 50]",
                "spec.analysis.stepWeights[5]: 130 is not a percentage between 1 and 100",
            ],
        ),
        (
            "Canary-artifacts_examples_istio_canary-1194376b.yaml",
            &[
                ("min: 99", "min: 99\n        max: 95"),
                ("interval: 15s", "interval: 15"),
            ],
            &[
                "spec.analysis.interval: must be a string, not the integer 15",
                "spec.analysis.metrics[0].thresholdRange: min 99 is greater than max 95: no value could pass; swap them or widen the range",
            ],
        ),
        (
            "Canary-artifacts_examples_istio_abtest-3b1cb455.yaml",
            &[("    iterations: 10\n", "")],
            &[
                "spec.analysis.iterations: A/B testing (analysis.match) needs iterations: set the number of analysis runs before promotion, e.g. 10",
            ],
        ),
        (
            "Canary-tutorials_kubernetes_blue_green-e438c384.yaml",
            &[("    iterations: 10\n", "    stepWeight: 10\n")],
            &[
                "spec.analysis.stepWeight: provider kubernetes does not support traffic weights: it switches all traffic at once (blue/green); remove stepWeight and set iterations",
                "spec.analysis.iterations: provider kubernetes does blue/green only, which needs iterations: set the number of analysis runs before promotion, e.g. 10",
            ],
        ),
        (
            "Canary-tutorials_gatewayapi_progressive_delivery-a20f03d8.yaml",
            &[("  targetRef:\n", "  provider: linkerd\n  targetRef:\n")],
            &[
                "spec.analysis.mirror: provider linkerd cannot mirror traffic; mirroring needs gatewayapi:v1 or gatewayapi:v1beta1 or istio or traefik",
            ],
        ),
        (
            "Canary-tutorials_istio_progressive_delivery-a93b61b6.yaml",
            &[
                ("cookieName: flagger-cookie", "path: /"),
                (
                    "url: http://flagger-loadtester.test/",
                    "url: flagger-loadtester.test",
                ),
                ("port: 9898", "port: \"9898\""),
            ],
            &[
                "spec.service.port: must be an integer, not a string",
                "spec.analysis.webhooks[0].url: is not an absolute URL; write it with its scheme, as http://host[:port]/path",
                "spec.analysis.sessionAffinity.cookieName: is required: name the cookie that keeps users on the canary, e.g. fledge-cookie",
            ],
        ),
        (
            "Canary-tutorials_istio_progressive_delivery-a93b61b6.yaml",
            &[
                ("cookieName: flagger-cookie", "path: /"),
                (
                    "url: http://flagger-loadtester.test/",
                    "url: flagger-loadtester.test",
                ),
            ],
            &[
                "spec.analysis.webhooks[0].url: is not an absolute URL; write it with its scheme, as http://host[:port]/path",
                "spec.analysis.sessionAffinity.cookieName: is required: name the cookie that keeps users on the canary, e.g. fledge-cookie",
            ],
        ),
        (
            "Canary-tutorials_linkerd_progressive_delivery-84b30606.yaml",
            &[
                ("    - name: latency\n", "    - name: success-rate\n"),
                ("kind: Deployment", "kind: Service"),
                ("type: pre-rollout", "type: pre-rolout"),
            ],
            &[
                "spec.targetRef.apiVersion: kind Service is a Knative Service, apiVersion serving.knative.dev/v1 (with provider knative), not \"apps/v1\"; for a Kubernetes workload use Deployment, DaemonSet or StatefulSet",
                "spec.analysis.metrics[1].name: \"success-rate\" is already the name of metrics[0]; metric names must be unique",
                "spec.analysis.webhooks[0].type: \"pre-rolout\" is not a webhook type; use one of: confirm-rollout, pre-rollout, rollout, confirm-traffic-increase, confirm-promotion, post-rollout, rollback, event",
            ],
        ),
        (
            "Canary-tutorials_prometheus_operator-07763bd3.yaml",
            &[
                ("provider: kubernetes", "provider: Kubernetes"),
                ("threshold: 2", "threshold: 0"),
                (
                    "    - name: latency\n      templateRef:\n        name: latency\n",
                    "    - name: latency\n",
                ),
            ],
            &[
                "spec.provider: provider \"Kubernetes\" is unknown; provider names are lower case: write \"kubernetes\"",
                "spec.analysis.threshold: 0 is less than 1: it is the number of failed checks that rolls back; use 1 or more",
                "spec.analysis.metrics[1].templateRef: is missing: \"latency\" is not a builtin metric (request-success-rate, request-duration); reference a MetricTemplate with templateRef",
            ],
        ),
        (
            "MetricTemplate-tutorials_linkerd_progressive_delivery-1d240227.yaml",
            &[
                ("{{ variables.direction }}", "{{ direction }}"),
                (
                    "address: http://prometheus.linkerd-viz:9090",
                    "address: prometheus.linkerd-viz:9090",
                ),
            ],
            &[
                "spec.provider.address: is not an absolute URL; write it with its scheme, as http://host[:port]/path",
                "spec.query: uses the unknown variable {{ direction }}; use one of namespace, name, target, service, ingress, route, interval, canary_pods, stable_pods, or pass it from the Canary's templateVariables as {{ variables.direction }}",
            ],
        ),
        (
            "AlertProvider-usage_alerting-ac35078d.yaml",
            &[
                ("type: slack", "type: teams"),
                ("  secretRef:\n    name: on-call-url\n", ""),
                (
                    "address: https://hooks.slack.com/services/YOUR/SLACK/WEBHOOK",
                    "address: hooks.slack.com/services/YOUR/SLACK/WEBHOOK",
                ),
            ],
            &[
                "spec.type: \"teams\" is not an alert provider type; use one of: slack, msteams, discord, rocket, gchat, webhook",
                "spec.address: is not an absolute URL; write it with its scheme, as http://host[:port]/path",
            ],
        ),
    ];
    for (file, edits, expected) in variants {
        let path = examples_dir().join(file);
        let (code, problems, _) = check_example(&path, |text| {
            let mut text = to_fledge(text);
            for (from, to) in *edits {
                text = edit(&text, from, to);
            }
            text
        });
        assert_eq!(problems, *expected, "{file} with {edits:?}");
        assert_eq!(code, 1, "{file}");
    }
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

fn fledge(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fledge"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child_stdin = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = child_stdin.write_all(&input);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn binary_validates_files_and_stdin() {
    let dir = temp_dir("binary");
    let good = write(&dir, "good.yaml", CANARY);
    let bad = write(&dir, "bad.yaml", edit(CANARY, "port: 9898", "port: 0"));
    assert_eq!(
        fledge(&["validate", &good], b""),
        (
            0,
            "1 document checked: 1 valid, 0 invalid, 0 skipped\n".into(),
            String::new()
        )
    );
    assert_eq!(
        fledge(&["validate", &good, &bad], b""),
        (
            1,
            format!(
                "{bad}:1: Canary test/podinfo: spec.service.port: 0 is not a port number; use 1 to 65535 (spec.service, the Services fledge generates, is required by every provider but knative)\n\
                 2 documents checked: 1 valid, 1 invalid, 0 skipped\n"
            ),
            String::new()
        )
    );
    assert_eq!(
        fledge(&["validate", "-"], METRIC_TEMPLATE.as_bytes()),
        (
            0,
            "1 document checked: 1 valid, 0 invalid, 0 skipped\n".into(),
            String::new()
        )
    );
    let (code, _, err) = fledge(&["validate", "-"], &[0xff, 0xfe, 0x00]);
    assert_eq!(code, 2);
    assert!(err.contains("is not UTF-8 text"), "{err}");
    let (code, _, err) = fledge(
        &["validate", &dir.join("missing.yaml").display().to_string()],
        b"",
    );
    assert_eq!(code, 2);
    assert!(err.contains("cannot read: no such file"), "{err}");
}

#[test]
fn binary_refuses_huge_stdin() {
    let huge = vec![b'#'; 20 * 1024 * 1024];
    let (code, _, err) = fledge(&["validate", "-"], &huge);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "<stdin>: is larger than 16 MiB; split it into smaller files\n"
    );
}

#[test]
fn run_reads_real_files() {
    // `run` is the entry point the binary calls; with files only it never touches stdin.
    let dir = temp_dir("run");
    let good = write(&dir, "good.yaml", ALERT_PROVIDER);
    let mut out = Vec::new();
    let mut err = Vec::new();
    assert_eq!(run(&[good], &mut out, &mut err), validate_cmd::EXIT_VALID);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1 document checked: 1 valid, 0 invalid, 0 skipped\n"
    );
}

/// Every field of Flagger's v1beta1 schema (shared/reference/flagger-v1beta1-fields.tsv) is
/// read by fledge: none is reported as unknown or of the wrong type.
#[test]
fn every_flagger_schema_field_is_known() {
    use serde_json::{Map, Value, json};
    let tsv = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference/flagger-v1beta1-fields.tsv"),
    )
    .unwrap();
    let mut specs: Vec<(&str, Value)> = vec![
        ("Canary", json!({})),
        ("MetricTemplate", json!({})),
        ("AlertProvider", json!({})),
    ];
    let mut fields = 0;
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (kind, path, ty) = (cols[0], cols[1], cols.get(2).copied().unwrap_or(""));
        let Some(path) = path.strip_prefix("spec.") else {
            continue;
        };
        fields += 1;
        let leaf = if let Some(values) = ty.split("enum=").nth(1) {
            json!(values.split('|').find(|v| !v.is_empty()).unwrap())
        } else if ty.starts_with("string") {
            json!("x")
        } else if ty.starts_with("number") || ty.starts_with("integer") || ty.is_empty() {
            json!(1)
        } else if ty.starts_with("boolean") {
            json!(true)
        } else {
            json!({})
        };
        let root = &mut specs.iter_mut().find(|(k, _)| *k == kind).unwrap().1;
        let parts: Vec<&str> = path.split('.').collect();
        let mut node = root;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let (key, is_list) = match part.strip_suffix("[]") {
                Some(k) => (k, true),
                None => (*part, false),
            };
            let map: &mut Map<String, Value> = node.as_object_mut().unwrap();
            if last {
                let value = if is_list {
                    json!([leaf.clone()])
                } else {
                    leaf.clone()
                };
                map.insert(key.to_string(), value);
                break;
            }
            let child = map
                .entry(key.to_string())
                .or_insert_with(|| if is_list { json!([{}]) } else { json!({}) });
            node = if is_list {
                &mut child.as_array_mut().unwrap()[0]
            } else {
                child
            };
        }
    }
    assert!(fields > 150, "read {fields} spec fields");
    for (kind, spec) in specs {
        let doc = json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": kind,
            "metadata": {"name": "all-fields"},
            "spec": spec,
        });
        let r = run_stdin(serde_json::to_string(&doc).unwrap().as_bytes());
        assert!(r.out.contains("1 document checked"), "{}{}", r.out, r.err);
        for line in r.out.lines() {
            assert!(
                !line.contains("is not a field of") && !line.contains(": must be "),
                "{kind}: {line}"
            );
        }
    }
}

#[test]
fn a_statefulset_a_canary_targets_must_be_rolled_out_by_partition() {
    let canary = "\
apiVersion: fledge.dev/v1beta1
kind: Canary
metadata: {name: db, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: StatefulSet, name: db}
  service: {port: 9898}
  analysis: {interval: 1m, stepReplicas: 1}
";
    let sts = |name: &str, strategy: &str| {
        format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  replicas: 3\n  updateStrategy: {strategy}\n"
        )
    };
    // The target in another file, OnDelete and with a partition; another StatefulSet alone.
    let dir = temp_dir("statefulset");
    let a = write(&dir, "canary.yaml", canary);
    let b = write(
        &dir,
        "sts.yaml",
        format!(
            "{}---\n{}",
            sts("db", "{type: OnDelete, rollingUpdate: {partition: 2}}"),
            sts("cache", "{type: OnDelete}")
        ),
    );
    let r = run_args(&[&a, &b], b"");
    assert_eq!(
        r.out,
        format!(
            "{b}:1: StatefulSet test/db: spec.updateStrategy.type: is OnDelete: its pods change only when deleted, and fledge rolls a StatefulSet out through the RollingUpdate partition; write type: RollingUpdate\n\
             {b}:1: StatefulSet test/db: spec.updateStrategy.rollingUpdate.partition: is 2, but fledge owns the partition of a StatefulSet it rolls out (it holds it at the replica count between rollouts); remove it so that applying this manifest does not move it\n\
             3 documents checked: 1 valid, 1 invalid, 1 skipped\n"
        )
    );
    assert_eq!(r.code, 1);
    let good = run_stdin(format!("{canary}---\n{}", sts("db", "{type: RollingUpdate}")).as_bytes());
    assert_eq!(
        good.out,
        "2 documents checked: 2 valid, 0 invalid, 0 skipped\n"
    );
    assert_eq!(good.code, 0);
}
