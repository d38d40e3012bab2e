#!/usr/bin/env python3
"""Reference values for fledge-core's statistical judge, computed by SciPy.

Writes `mannwhitneyu_scipy.json` beside this file: Mann-Whitney U tests
(`scipy.stats.mannwhitneyu`, two-sided, with the continuity correction) on
fixed and seeded samples, with ties and without, with the exact and the
asymptotic method and with SciPy's automatic choice; and quantiles as
`numpy.percentile` computes them (linear interpolation). The tests in
`crates/core/tests/judge_scipy.rs` read the JSON and compare.

Run it again only to add cases: `python3 -m venv v && v/bin/pip install scipy
&& v/bin/python crates/core/tests/data/mannwhitneyu_scipy.py`.
"""
import json
import os

import numpy as np
import scipy
from scipy.stats import mannwhitneyu

rng = np.random.default_rng(20261203)


def rounded(a, digits=6):
    return [round(float(v), digits) for v in a]


samples = [
    ("textbook, no ties", [19, 22, 16, 29, 24], [20, 11, 17, 12]),
    ("ties", [1, 2, 2, 3], [2, 3, 4, 5]),
    ("fully separated", [1, 2, 3], [4, 5, 6]),
    ("one each", [1.5], [2.5]),
    ("all tied", [7, 7, 7], [7, 7, 7, 7]),
    ("one tied pair", [1, 2, 3, 4, 5, 6, 7, 8], [8, 9, 10, 11, 12, 13, 14, 15]),
    ("unequal sizes", rounded(rng.normal(10, 2, 3)), rounded(rng.normal(11, 2, 20))),
    ("eight against two hundred", rounded(rng.normal(0, 1, 8)), rounded(rng.normal(0.4, 1, 200))),
    ("nine against nine", rounded(rng.normal(0, 1, 9)), rounded(rng.normal(1, 1, 9))),
    ("latency, no shift", rounded(rng.lognormal(3, 0.5, 120)), rounded(rng.lognormal(3, 0.5, 100))),
    ("latency, +20%", rounded(rng.lognormal(3, 0.5, 300)), rounded(rng.lognormal(3 + np.log(1.2), 0.5, 300))),
    ("error counts, many ties", [int(v) for v in rng.poisson(0.3, 60)], [int(v) for v in rng.poisson(0.6, 60)]),
    ("success ratios", rounded(rng.beta(99, 1, 40), 4), rounded(rng.beta(97, 3, 40), 4)),
    ("large", rounded(rng.normal(100, 15, 1000), 3), rounded(rng.normal(101, 15, 1000), 3)),
]

cases = []
for name, x, y in samples:
    for method in ["auto", "exact", "asymptotic"]:
        if method == "exact" and min(len(x), len(y)) > 20:
            continue
        r = mannwhitneyu(x, y, alternative="two-sided", method=method)
        cases.append({
            "name": name,
            "x": [float(v) for v in x],
            "y": [float(v) for v in y],
            "method": method,
            "statistic": float(r.statistic),
            "pvalue": float(r.pvalue),
        })

quantiles = []
for values in [[3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 2.0, 3.0], rounded(rng.lognormal(0, 1, 37))]:
    for q in [0.0, 0.25, 0.5, 0.75, 1.0, 0.9, 0.99]:
        quantiles.append({"values": values, "q": q, "expected": float(np.percentile(values, q * 100))})

out = {
    "produced_by": f"crates/core/tests/data/mannwhitneyu_scipy.py with SciPy {scipy.__version__}, NumPy {np.__version__}",
    "mannwhitneyu": cases,
    "quantiles": quantiles,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mannwhitneyu_scipy.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"wrote {len(cases)} Mann-Whitney cases and {len(quantiles)} quantiles to {path}")
