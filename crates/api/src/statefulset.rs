//! StatefulSet targets: the steps of a rollout as pods, and the partition that gives them.
//!
//! A StatefulSet is rolled out in place through `spec.updateStrategy.rollingUpdate.partition`:
//! the StatefulSet controller moves every pod whose ordinal is at or above the partition to the
//! new revision, from the highest ordinal down. fledge keeps its usual weights (percent) in the
//! status and turns each into a number of pods here, so that every spelling of the steps
//! (`stepReplicas`, `stepWeight`, `stepWeights`) means the same pods.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The percentage of `"20%"`, when it is one from 1 to 100.
pub fn step_replicas_percent(s: &str) -> Option<i32> {
    let n: i32 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
    (1..=100).contains(&n).then_some(n)
}

/// Pods per step for `stepReplicas` with `replicas` pods: the number itself, or the percentage
/// of the replicas rounded to the nearest pod, at least 1.
pub fn pods_per_step(step: &IntOrString, replicas: i32) -> i32 {
    match step {
        IntOrString::Int(n) => (*n).max(1),
        IntOrString::String(s) => {
            let percent = step_replicas_percent(s).unwrap_or(100);
            ((i64::from(percent) * i64::from(replicas.max(0)) + 50) / 100).max(1) as i32
        }
    }
}

/// The weights (percent of the replicas) of the steps of `stepReplicas`: one step per
/// `pods_per_step` pods, up to all pods but one (promotion moves the rest). Empty when one
/// step would already move every pod (a single replica): the analysis runs at no step and
/// promotion moves the pod.
pub fn step_weights(step: &IntOrString, replicas: i32) -> Vec<i32> {
    let per = pods_per_step(step, replicas);
    (1..)
        .map(|k| k * per)
        .take_while(|pods| *pods < replicas)
        .map(|pods| weight_of(pods, replicas))
        .collect()
}

/// The weight of `pods` updated pods out of `replicas`, rounded to the nearest percent.
pub fn weight_of(pods: i32, replicas: i32) -> i32 {
    if replicas <= 0 {
        return 0;
    }
    ((i64::from(pods.clamp(0, replicas)) * 100 + i64::from(replicas) / 2) / i64::from(replicas))
        as i32
}

/// The pods a weight gives: `weight` percent of `replicas` rounded to the nearest pod, at least
/// one pod for any weight above 0 and at most every pod. [`weight_of`]'s inverse for up to 100
/// replicas.
pub fn pods_for_weight(weight: i32, replicas: i32) -> i32 {
    if weight <= 0 || replicas <= 0 {
        return 0;
    }
    let pods = (i64::from(weight.min(100)) * i64::from(replicas) + 50) / 100;
    (pods as i32).clamp(1, replicas)
}

/// The partition that gives `weight`: the pods at or above it run the new revision.
pub fn partition_for_weight(weight: i32, replicas: i32) -> i32 {
    replicas.max(0) - pods_for_weight(weight, replicas)
}

/// The names of the pods of StatefulSet `name` with ordinals in `ordinals`, as a regular
/// expression matching exactly those names (`db-3|db-4`), for a query's `=~` matcher; a
/// pattern that matches no pod name when the range is empty.
pub fn pods_regex(name: &str, ordinals: std::ops::Range<i32>) -> String {
    if ordinals.is_empty() {
        // No pod name ends with a dash followed by nothing.
        return format!("{name}-");
    }
    ordinals
        .map(|i| format!("{name}-{i}"))
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pod_per_step_of_five_is_four_steps_of_twenty_percent() {
        assert_eq!(step_weights(&IntOrString::Int(1), 5), vec![20, 40, 60, 80]);
        let partitions: Vec<i32> = step_weights(&IntOrString::Int(1), 5)
            .into_iter()
            .map(|w| partition_for_weight(w, 5))
            .collect();
        assert_eq!(partitions, vec![4, 3, 2, 1]);
    }

    #[test]
    fn every_step_gives_back_its_pods_for_up_to_a_hundred_replicas() {
        for replicas in 1..=100 {
            for per in 1..=replicas {
                let weights = step_weights(&IntOrString::Int(per), replicas);
                for (k, w) in weights.iter().enumerate() {
                    let pods = (k as i32 + 1) * per;
                    assert_eq!(pods_for_weight(*w, replicas), pods, "{replicas}/{per}/{w}");
                }
                assert!(weights.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    #[test]
    fn percentages_round_to_the_nearest_pod_and_move_at_least_one() {
        assert_eq!(pods_per_step(&IntOrString::String("20%".into()), 5), 1);
        assert_eq!(pods_per_step(&IntOrString::String("50%".into()), 3), 2);
        assert_eq!(pods_per_step(&IntOrString::String("1%".into()), 3), 1);
        assert_eq!(
            step_weights(&IntOrString::String("50%".into()), 4),
            vec![50]
        );
        assert_eq!(step_weights(&IntOrString::Int(1), 1), Vec::<i32>::new());
        assert_eq!(step_replicas_percent("0%"), None);
        assert_eq!(step_replicas_percent("x"), None);
        assert_eq!(step_replicas_percent(" 25% "), Some(25));
    }

    #[test]
    fn stepweights_read_as_a_share_of_the_pods() {
        assert_eq!(partition_for_weight(10, 5), 4);
        assert_eq!(partition_for_weight(50, 5), 2);
        assert_eq!(partition_for_weight(100, 5), 0);
        assert_eq!(partition_for_weight(0, 5), 5);
        assert_eq!(pods_regex("db", 3..5), "db-3|db-4");
        assert_eq!(pods_regex("db", 5..5), "db-");
    }
}
