//! The judge's mathematics against SciPy: every Mann-Whitney U test and quantile in
//! `data/mannwhitneyu_scipy.json`, which `data/mannwhitneyu_scipy.py` computed with
//! `scipy.stats.mannwhitneyu` (two-sided, continuity correction; exact, asymptotic and SciPy's
//! automatic choice, with and without ties) and `numpy.percentile`.

use fledge_core::judge::sample::quantile;
use fledge_core::judge::{Method, mann_whitney_u};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("data/mannwhitneyu_scipy.json")).unwrap()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Equal to 1e-12 relative (or absolute, near zero).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300) || (a - b).abs() < 1e-15
}

#[test]
fn mann_whitney_u_matches_scipy() {
    let r = reference();
    let cases = r["mannwhitneyu"].as_array().unwrap();
    assert!(cases.len() >= 30, "{}", r["produced_by"]);
    let mut exact = 0;
    for c in cases {
        let (x, y) = (numbers(&c["x"]), numbers(&c["y"]));
        let method = match c["method"].as_str().unwrap() {
            "auto" => Method::Auto,
            "exact" => Method::Exact,
            _ => Method::Asymptotic,
        };
        let got = mann_whitney_u(&x, &y, method).unwrap();
        let (u, p) = (
            c["statistic"].as_f64().unwrap(),
            c["pvalue"].as_f64().unwrap(),
        );
        let what = format!("{} ({})", c["name"], c["method"]);
        assert_eq!(got.u1, u, "statistic of {what}");
        assert!(
            close(got.p_value, p),
            "p-value of {what}: {} against SciPy's {p}",
            got.p_value
        );
        exact += usize::from(got.method == Method::Exact);
    }
    // Both methods were exercised.
    assert!(exact >= 10 && exact < cases.len(), "{exact} exact");
}

#[test]
fn quantiles_match_numpy() {
    let r = reference();
    for c in r["quantiles"].as_array().unwrap() {
        let mut v = numbers(&c["values"]);
        v.sort_by(f64::total_cmp);
        let q = c["q"].as_f64().unwrap();
        let want = c["expected"].as_f64().unwrap();
        let got = quantile(&v, q);
        assert!(
            close(got, want),
            "quantile {q} of {v:?}: {got}, NumPy {want}"
        );
    }
}
