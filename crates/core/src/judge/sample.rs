//! Preparing a metric's samples for the judge: NaNs, outliers, and the summaries reported
//! beside the verdict.

/// What to do with NaN values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NanStrategy {
    /// Drop them (the default).
    #[default]
    Remove,
    /// Count them as zero (for series where no value means nothing happened, e.g. errors).
    Replace,
}

/// What to do with outliers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outliers {
    /// Keep every value.
    Keep,
    /// Drop values more than `factor` interquartile ranges below the first quartile or above
    /// the third (Tukey's fences; 1.5 is the classic factor, 3 keeps all but far outliers).
    RemoveIqr {
        /// How many interquartile ranges out a value is an outlier.
        factor: f64,
    },
}

impl Default for Outliers {
    fn default() -> Outliers {
        Outliers::RemoveIqr { factor: 3.0 }
    }
}

/// The values to judge: NaNs handled, infinities dropped, outliers removed; sorted.
pub fn clean(values: &[f64], nans: NanStrategy, outliers: Outliers) -> Vec<f64> {
    let mut v: Vec<f64> = values
        .iter()
        .filter_map(|&x| match (x.is_nan(), nans) {
            (true, NanStrategy::Remove) => None,
            (true, NanStrategy::Replace) => Some(0.0),
            (false, _) => Some(x),
        })
        .filter(|x| x.is_finite())
        .collect();
    v.sort_by(f64::total_cmp);
    if let Outliers::RemoveIqr { factor } = outliers
        && v.len() >= 4
    {
        let (q1, q3) = (quantile(&v, 0.25), quantile(&v, 0.75));
        let iqr = q3 - q1;
        let (low, high) = (q1 - factor * iqr, q3 + factor * iqr);
        v.retain(|&x| x >= low && x <= high);
    }
    v
}

/// The `q` quantile (0 to 1) of sorted values, interpolated linearly between the two nearest
/// ranks (as `numpy.percentile` does by default); NaN for no values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let below = pos.floor() as usize;
            let above = (below + 1).min(n - 1);
            let frac = pos - below as f64;
            sorted[below] + (sorted[above] - sorted[below]) * frac
        }
    }
}

/// The mean; NaN for no values.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nans_are_removed_or_zero() {
        let v = [1.0, f64::NAN, 3.0];
        assert_eq!(clean(&v, NanStrategy::Remove, Outliers::Keep), [1.0, 3.0]);
        assert_eq!(
            clean(&v, NanStrategy::Replace, Outliers::Keep),
            [0.0, 1.0, 3.0]
        );
        assert_eq!(
            clean(&[f64::INFINITY, 2.0], NanStrategy::Remove, Outliers::Keep),
            [2.0]
        );
    }

    #[test]
    fn far_outliers_go_and_near_ones_stay() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        v.push(1000.0);
        v.push(35.0);
        let kept = clean(&v, NanStrategy::Remove, Outliers::RemoveIqr { factor: 1.5 });
        assert!(!kept.contains(&1000.0) && kept.contains(&20.0), "{kept:?}");
        let wide = clean(&v, NanStrategy::Remove, Outliers::RemoveIqr { factor: 3.0 });
        assert!(wide.contains(&35.0) && !wide.contains(&1000.0), "{wide:?}");
        // Too few values to tell an outlier.
        assert_eq!(
            clean(&[1.0, 1000.0], NanStrategy::Remove, Outliers::default()),
            [1.0, 1000.0]
        );
    }

    #[test]
    fn summaries_of_nothing_are_nan() {
        assert!(quantile(&[], 0.5).is_nan());
        assert!(mean(&[]).is_nan());
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
    }
}
