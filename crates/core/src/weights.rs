//! Traffic steps of the weighted canary strategy.

use fledge_api::CanaryAnalysis;

/// The highest canary weight of the analysis (percent, 0..=100): the last of `stepWeights`
/// when set (as in Flagger), otherwise `maxWeight` (default 100).
pub fn max_weight(analysis: &CanaryAnalysis) -> i32 {
    let max = match analysis.step_weights.as_deref() {
        Some([.., last]) => *last,
        _ => analysis.max_weight(),
    };
    max.clamp(0, 100)
}

/// The canary weight after `current`: the first of `stepWeights` above it, or `current +
/// stepWeight`, capped at [`max_weight`]. `None` when the canary is at (or above) the maximum or
/// no step can increase the weight: the analysis is complete.
pub fn next_weight(analysis: &CanaryAnalysis, current: i32) -> Option<i32> {
    let max = max_weight(analysis);
    if current >= max {
        return None;
    }
    let next = match analysis.step_weights.as_deref() {
        Some(list) if !list.is_empty() => *list.iter().find(|w| **w > current)?,
        _ => {
            let step = analysis.step_weight.unwrap_or(0);
            if step <= 0 {
                return None;
            }
            current.saturating_add(step)
        }
    };
    Some(next.min(max))
}

/// Every weight the canary goes through from 0, in order (at most 101: the weights rise and
/// stay within 0..=100).
pub fn steps(analysis: &CanaryAnalysis) -> Vec<i32> {
    let mut out = Vec::new();
    let mut w = 0;
    while let Some(n) = next_weight(analysis, w) {
        if n <= w || out.len() > 100 {
            break;
        }
        out.push(n);
        w = n;
    }
    out
}

/// The canary weight after one promotion step of `stepWeightPromotion` (towards zero).
pub fn next_promotion_weight(current: i32, step: i32) -> i32 {
    current.saturating_sub(step.max(1)).clamp(0, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(step: Option<i32>, steps: Option<Vec<i32>>, max: Option<i32>) -> CanaryAnalysis {
        CanaryAnalysis {
            step_weight: step,
            step_weights: steps,
            max_weight: max,
            ..Default::default()
        }
    }

    fn sequence(a: &CanaryAnalysis) -> Vec<i32> {
        let mut out = Vec::new();
        let mut w = 0;
        while let Some(n) = next_weight(a, w) {
            assert!(n > w, "weights must increase: {w} -> {n}");
            out.push(n);
            w = n;
        }
        assert_eq!(steps(a), out);
        out
    }

    #[test]
    fn step_weight_up_to_max_weight() {
        let a = analysis(Some(5), None, Some(50));
        assert_eq!(sequence(&a), (1..=10).map(|i| i * 5).collect::<Vec<_>>());
    }

    #[test]
    fn the_last_step_is_capped_at_max_weight() {
        let a = analysis(Some(20), None, Some(50));
        assert_eq!(sequence(&a), vec![20, 40, 50]);
    }

    #[test]
    fn default_max_weight_is_100() {
        let a = analysis(Some(30), None, None);
        assert_eq!(sequence(&a), vec![30, 60, 90, 100]);
    }

    #[test]
    fn step_weights_list_and_its_last_element_is_the_max() {
        let a = analysis(None, Some(vec![1, 2, 10, 80]), Some(50));
        assert_eq!(max_weight(&a), 80);
        assert_eq!(sequence(&a), vec![1, 2, 10, 80]);
        assert_eq!(next_weight(&a, 5), Some(10));
    }

    #[test]
    fn nonsense_never_loops_nor_leaves_0_to_100() {
        for a in [
            analysis(Some(0), None, Some(50)),
            analysis(Some(-5), None, Some(50)),
            analysis(None, None, None),
            analysis(Some(i32::MAX), None, Some(i32::MAX)),
            analysis(None, Some(vec![500, -3]), None),
            analysis(None, Some(vec![]), Some(-10)),
        ] {
            let s = sequence(&a);
            assert!(s.iter().all(|w| (0..=100).contains(w)), "{a:?}: {s:?}");
        }
        assert_eq!(sequence(&analysis(Some(i32::MAX), None, None)), vec![100]);
    }

    #[test]
    fn promotion_steps_go_down_to_zero() {
        assert_eq!(next_promotion_weight(50, 20), 30);
        assert_eq!(next_promotion_weight(10, 20), 0);
        assert_eq!(next_promotion_weight(10, 0), 9);
        assert_eq!(next_promotion_weight(i32::MIN, i32::MAX), 0);
    }
}
