//! The Mann-Whitney U test (Wilcoxon rank-sum), two-sided, as `scipy.stats.mannwhitneyu`
//! computes it, so that its p-values can be checked against SciPy's:
//!
//! - ranks are averaged over ties; `U1 = R1 - n1 (n1 + 1) / 2` is the statistic of the first
//!   sample, and the p-value comes from `U = max(U1, n1 n2 - U1)`;
//! - **exact**: twice the probability of a statistic at least `U` (its integer part, as SciPy
//!   takes it) under the null distribution of U without ties, from the coefficients of the
//!   Gaussian binomial coefficient `[n1 + n2 choose n1]_q`, counted exactly in integers;
//! - **asymptotic**: the normal approximation with the tie correction and the continuity
//!   correction of one half;
//! - **auto**: exact when the smaller sample has at most 8 values and there are no ties,
//!   asymptotic otherwise. The p-value is clipped to `[0, 1]`.

/// How the p-value is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Exact for small samples without ties, asymptotic otherwise.
    Auto,
    /// The exact null distribution (no tie correction). Where the number of arrangements does
    /// not fit in 128 bits, the asymptotic method is used instead.
    Exact,
    /// The normal approximation, corrected for ties and for continuity.
    Asymptotic,
}

/// The outcome of one test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// `U1`, the statistic of the first sample: the number of pairs in which its value is the
    /// greater one, ties counting one half.
    pub u1: f64,
    /// The two-sided p-value.
    pub p_value: f64,
    /// The method that computed it.
    pub method: Method,
    /// Whether any two values (of either sample) were equal.
    pub ties: bool,
}

impl MannWhitney {
    /// The common-language effect size of the first sample: the probability that a value of
    /// it exceeds a value of the second, ties counting one half (`U1 / (n1 n2)`).
    pub fn cles(&self, n1: usize, n2: usize) -> f64 {
        self.u1 / (n1 as f64 * n2 as f64)
    }
}

/// The test of `x` against `y`; `None` when either is empty or holds a NaN.
pub fn mann_whitney_u(x: &[f64], y: &[f64], method: Method) -> Option<MannWhitney> {
    if x.is_empty() || y.is_empty() || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let (n1, n2) = (x.len(), y.len());
    let (ranks, tie_sizes) = average_ranks(x.iter().chain(y).copied());
    let r1: f64 = ranks[..n1].iter().sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let u2 = (n1 * n2) as f64 - u1;
    let u = u1.max(u2);
    let ties = tie_sizes.iter().any(|&t| t > 1);
    let chosen = match method {
        Method::Auto if n1.min(n2) <= 8 && !ties => Method::Exact,
        Method::Auto => Method::Asymptotic,
        m => m,
    };
    let exact = match chosen {
        // SciPy takes the integer part of U for the exact distribution.
        Method::Exact => exact_sf(n1, n2, u.floor() as u64),
        _ => None,
    };
    let (p, used) = match exact {
        Some(sf) => (2.0 * sf, Method::Exact),
        None => (
            2.0 * normal_sf(asymptotic_z(u, n1, n2, &tie_sizes)),
            Method::Asymptotic,
        ),
    };
    Some(MannWhitney {
        u1,
        p_value: p.clamp(0.0, 1.0),
        method: used,
        ties,
    })
}

/// The ranks (1-based, averaged over ties) of the values in their order, and the size of each
/// group of equal values.
fn average_ranks(values: impl Iterator<Item = f64>) -> (Vec<f64>, Vec<usize>) {
    let values: Vec<f64> = values.collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut tie_sizes = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end; each gets their mean.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        tie_sizes.push(end - start);
        start = end;
    }
    (ranks, tie_sizes)
}

/// The standardized statistic of the normal approximation: `(U - n1 n2 / 2 - 1/2) / s`, with
/// `s` corrected for ties.
fn asymptotic_z(u: f64, n1: usize, n2: usize, tie_sizes: &[usize]) -> f64 {
    let (n1, n2) = (n1 as f64, n2 as f64);
    let n = n1 + n2;
    let tie_term: f64 = tie_sizes
        .iter()
        .map(|&t| {
            let t = t as f64;
            t * t * t - t
        })
        .sum();
    let s = (n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    // When every value is equal, s is 0 and U is its mean: z is -inf and p is 1.
    (u - n1 * n2 / 2.0 - 0.5) / s
}

/// `P(Z > z)` for a standard normal `Z`.
fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The largest null distribution computed exactly (`n1 n2`, the highest value of U).
const EXACT_MAX_U: usize = 4_000_000;

/// `P(U >= k)` under the null hypothesis without ties, exactly; `None` when the number of
/// arrangements does not fit in 128 bits or the table would be too large.
fn exact_sf(n1: usize, n2: usize, k: u64) -> Option<f64> {
    let (m, n) = (n1.min(n2), n1.max(n2));
    let max_u = m.checked_mul(n)?;
    if max_u > EXACT_MAX_U {
        return None;
    }
    let total = binomial(m + n, m)?;
    let counts = u_counts(m, n);
    let k = usize::try_from(k).ok()?;
    if k > max_u {
        return Some(0.0);
    }
    // Sum the shorter tail exactly, in integers.
    let at_least: i128 = if k > max_u / 2 {
        counts[k..].iter().sum()
    } else {
        total - counts[..k].iter().sum::<i128>()
    };
    Some(at_least as f64 / total as f64)
}

/// `n choose k`, or `None` when it overflows.
fn binomial(n: usize, k: usize) -> Option<i128> {
    let k = k.min(n - k);
    let mut acc: i128 = 1;
    for i in 0..k {
        // acc * (n - i) / (i + 1) stays an integer at every step.
        acc = acc.checked_mul((n - i) as i128)? / (i as i128 + 1);
    }
    Some(acc)
}

/// How many arrangements of `m` and `n` values give each U from 0 to `m n`: the coefficients
/// of `prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i)`, built one factor at a time (each partial
/// product is a Gaussian binomial coefficient, so no coefficient exceeds the total).
fn u_counts(m: usize, n: usize) -> Vec<i128> {
    let len = m * n + 1;
    let mut c = vec![0i128; len];
    c[0] = 1;
    for i in 1..=m {
        let shift = n + i;
        for k in (shift..len).rev() {
            c[k] -= c[k - shift];
        }
        // Dividing by (1 - q^i) is a running sum with stride i; coefficients past m n are
        // never needed, so the truncated series stays exact below it.
        for k in i..len {
            c[k] += c[k - i];
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_distribution_counts_every_arrangement() {
        // 2 and 3 values: U from 0 to 6 in 10 arrangements, symmetric.
        assert_eq!(u_counts(2, 3), vec![1, 1, 2, 2, 2, 1, 1]);
        for (m, n) in [(1, 1), (3, 4), (5, 5), (8, 40)] {
            let c = u_counts(m, n);
            assert_eq!(c.iter().sum::<i128>(), binomial(m + n, m).unwrap());
            assert!(c.iter().eq(c.iter().rev()), "symmetric for {m}, {n}");
            assert!(c.iter().all(|&v| v > 0));
        }
    }

    #[test]
    fn binomials_overflow_to_none() {
        assert_eq!(binomial(10, 3), Some(120));
        assert_eq!(binomial(5, 0), Some(1));
        assert!(binomial(400, 200).is_none());
    }

    #[test]
    fn empty_or_nan_samples_have_no_test() {
        assert!(mann_whitney_u(&[], &[1.0], Method::Auto).is_none());
        assert!(mann_whitney_u(&[1.0, f64::NAN], &[1.0], Method::Auto).is_none());
    }

    #[test]
    fn large_samples_fall_back_to_the_normal_approximation() {
        let x: Vec<f64> = (0..3000).map(f64::from).collect();
        let y: Vec<f64> = (0..3000).map(|v| f64::from(v) + 0.5).collect();
        let r = mann_whitney_u(&x, &y, Method::Exact).unwrap();
        assert_eq!(r.method, Method::Asymptotic);
        assert!(r.p_value > 0.9, "{r:?}");
    }
}
