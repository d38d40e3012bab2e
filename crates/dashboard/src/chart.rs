//! The rollout's charts as SVG, drawn server-side by `plotters`: the canary weight over time as
//! steps with the phase transitions, gates and failed steps marked; each metric's value per
//! analysis step against its passing band; the statistical judgement's score per step.

use jiff::Timestamp;
use plotters::prelude::*;

use crate::view::{Rollout, human, number, step_failed};

/// A chart: its SVG and a sentence saying what it shows (the accessible name).
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// An id for the page (`weight`, `metric-<name>`, `score`).
    pub id: String,
    /// The heading.
    pub title: String,
    /// What it shows, in words.
    pub summary: String,
    /// The `<svg>` element.
    pub svg: String,
}

const WIDTH: u32 = 860;
const BLUE_: RGBColor = RGBColor(0x1f, 0x5f, 0xbf);
const RED_: RGBColor = RGBColor(0xc0, 0x1c, 0x28);
const GREEN_: RGBColor = RGBColor(0x1a, 0x7f, 0x37);
const GREY_: RGBColor = RGBColor(0x6e, 0x6e, 0x6e);
const PURPLE_: RGBColor = RGBColor(0x6f, 0x3f, 0xaf);

fn secs(t: Timestamp, start: Timestamp) -> f64 {
    (t.as_second() - start.as_second()) as f64
}

/// The weights over time: every recorded (time, weight), oldest first, then the weight now.
fn weight_points(r: &Rollout, start: Timestamp, end: Timestamp) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = Vec::new();
    for t in &r.transitions {
        if let Some(at) = &t.time {
            pts.push((secs(at.0, start), t.canary_weight as f64));
        }
    }
    for h in &r.history {
        if let Some(at) = &h.time {
            pts.push((secs(at.0, start), h.canary_weight as f64));
        }
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if pts.first().is_none_or(|p| p.0 > 0.0) {
        pts.insert(0, (0.0, 0.0));
    }
    if let (Some(w), None) = (r.current_weight, r.end) {
        pts.push((secs(end, start), w as f64));
    }
    pts
}

/// A step line through the points: the weight holds until the next point.
fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for p in points {
        if let Some(&(_, prev)) = out.last()
            && prev != p.1
        {
            out.push((p.0, prev));
        }
        out.push(*p);
    }
    out
}

/// The weight at time `x` on the step line.
fn weight_at(points: &[(f64, f64)], x: f64) -> f64 {
    points
        .iter()
        .take_while(|p| p.0 <= x)
        .last()
        .map(|p| p.1)
        .unwrap_or(0.0)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("drawing the chart: {e}")
}

/// The canary weight over time. `now` ends the line of a rollout in progress.
pub fn weight(r: &Rollout, now: Timestamp) -> Result<Chart, String> {
    let start = r
        .start
        .or_else(|| {
            r.transitions
                .iter()
                .find_map(|t| t.time.as_ref().map(|t| t.0))
        })
        .unwrap_or(now);
    let end = r.end.unwrap_or(now);
    let points = weight_points(r, start, end);
    let line = steps(&points);
    let x_max = line.iter().map(|p| p.0).fold(10.0_f64, f64::max) * 1.05;
    // Headroom above the line for the phases' names.
    let y_max = line.iter().map(|p| p.1).fold(20.0_f64, f64::max).min(100.0) * 1.25 + 5.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("time since the rollout started")
            .y_desc("canary weight (%)")
            .x_label_formatter(&|x| human(*x as i64))
            .y_label_formatter(&|y| format!("{}", *y as i64))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        // Phase transitions: a thin vertical line and the phase's name.
        for (i, t) in r.transitions.iter().enumerate() {
            let Some(at) = &t.time else { continue };
            let x = secs(at.0, start);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, y_max)],
                    GREY_.mix(0.5),
                )))
                .map_err(err)?;
            let y = y_max - (1 + i % 3) as f64 * (y_max / 14.0);
            chart
                .draw_series(std::iter::once(Text::new(
                    t.phase.as_str().to_string(),
                    (x, y),
                    ("sans-serif", 12).into_font().color(&GREY_),
                )))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(line.clone(), BLUE_.stroke_width(3)))
            .map_err(err)?;
        // Analysis steps: a dot, red cross where a counted check failed.
        let mut passed = Vec::new();
        let mut failed = Vec::new();
        for h in &r.history {
            let Some(at) = &h.time else { continue };
            let p = (secs(at.0, start), h.canary_weight as f64);
            if step_failed(h) {
                failed.push(p);
            } else {
                passed.push(p);
            }
        }
        chart
            .draw_series(passed.iter().map(|p| Circle::new(*p, 4, GREEN_.filled())))
            .map_err(err)?;
        chart
            .draw_series(
                failed
                    .iter()
                    .map(|p| Cross::new(*p, 6, RED_.stroke_width(3))),
            )
            .map_err(err)?;
        // Gates: a triangle where one opened (a webhook or an approval).
        let gates: Vec<(f64, f64)> = r
            .checks
            .iter()
            .filter(|c| c.kind.starts_with("confirm-") && c.passed)
            .filter_map(|c| c.at.as_ref())
            .map(|t| t.0)
            .chain(
                r.approvals
                    .iter()
                    .filter_map(|a| a.requested_at.as_ref().map(|t| t.0)),
            )
            .chain(r.approved.as_ref().and_then(|(_, at)| *at))
            .map(|t| {
                let x = secs(t, start);
                (x, weight_at(&points, x))
            })
            .collect();
        chart
            .draw_series(
                gates
                    .iter()
                    .map(|p| TriangleMarker::new(*p, 7, PURPLE_.filled())),
            )
            .map_err(err)?;
        // The legend is the page's (HTML below the chart), where it never covers the line.
        root.present().map_err(err)?;
    }
    let shown: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{}% at {}", *y as i64, human(*x as i64)))
        .collect();
    let fails = r.history.iter().filter(|h| step_failed(h)).count();
    Ok(Chart {
        id: "weight".into(),
        title: "Canary weight".into(),
        summary: format!(
            "Canary weight over time: {}; {} analysis step{}, {} with a failed check.",
            if shown.is_empty() {
                "no step yet".to_string()
            } else {
                shown.join(", ")
            },
            r.history.len(),
            if r.history.len() == 1 { "" } else { "s" },
            fails
        ),
        svg,
    })
}

/// One metric's value per analysis step against its passing band.
pub fn metric(r: &Rollout, name: &str) -> Result<Chart, String> {
    let mut points: Vec<(i32, f64, bool)> = Vec::new();
    let (mut min, mut max) = (None, None);
    for h in &r.history {
        if let Some(m) = h.metrics.iter().find(|m| m.name == name) {
            min = m.min.or(min);
            max = m.max.or(max);
            if let Some(v) = m.value.filter(|v| v.is_finite()) {
                points.push((h.step, v, m.passed));
            }
        }
    }
    let values = points
        .iter()
        .map(|p| p.1)
        .chain(min)
        .chain(max)
        .collect::<Vec<f64>>();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        let pad = ((hi - lo) * 0.15).max(lo.abs().max(1.0) * 0.01);
        (lo - pad, hi + pad)
    } else {
        (0.0, 1.0)
    };
    let first = r.history.first().map(|h| h.step).unwrap_or(1);
    let last = r.history.last().map(|h| h.step).unwrap_or(1).max(first);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 220)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d((first - 1)..(last + 1), lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("analysis step")
            .y_desc(name)
            .x_labels(((last - first + 3) as usize).min(24))
            .y_label_formatter(&|y| number(*y))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        if min.is_some() || max.is_some() {
            let band = [
                (first - 1, min.unwrap_or(lo).max(lo)),
                (last + 1, max.unwrap_or(hi).min(hi)),
            ];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    band,
                    GREEN_.mix(0.15).filled(),
                )))
                .map_err(err)?
                .label("passing band")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], GREEN_.mix(0.3).filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.1)),
                BLUE_.stroke_width(2),
            ))
            .map_err(err)?
            .label("value")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE_.stroke_width(2)));
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.2)
                    .map(|p| Circle::new((p.0, p.1), 4, GREEN_.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| !p.2)
                    .map(|p| Cross::new((p.0, p.1), 6, RED_.stroke_width(3))),
            )
            .map_err(err)?
            .label("failed")
            .legend(|(x, y)| Cross::new((x + 9, y), 5, RED_.stroke_width(3)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(GREY_)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let band = crate::view::range(min, max);
    let shown: Vec<String> = points
        .iter()
        .map(|(s, v, ok)| {
            format!(
                "step {s}: {}{}",
                number(*v),
                if *ok { "" } else { " (failed)" }
            )
        })
        .collect();
    Ok(Chart {
        id: format!("metric-{name}"),
        title: if band.is_empty() {
            name.to_string()
        } else {
            format!("{name} (passes at {band})")
        },
        summary: format!(
            "{name} per analysis step{}: {}.",
            if band.is_empty() {
                String::new()
            } else {
                format!(", passing at {band}")
            },
            if shown.is_empty() {
                "no value yet".into()
            } else {
                shown.join(", ")
            }
        ),
        svg,
    })
}

/// The statistical judgement's score per step (0 to 100).
pub fn score(r: &Rollout) -> Result<Chart, String> {
    let points: Vec<(i32, f64)> = r
        .history
        .iter()
        .filter_map(|h| Some((h.step, h.judgement.as_ref()?.score?)))
        .collect();
    let first = r.history.first().map(|h| h.step).unwrap_or(1);
    let last = r.history.last().map(|h| h.step).unwrap_or(1).max(first);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 200)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d((first - 1)..(last + 1), 0.0..105.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_desc("analysis step")
            .y_desc("judgement score")
            .x_labels(((last - first + 3) as usize).min(24))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(points.clone(), PURPLE_.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, PURPLE_.filled())))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Chart {
        id: "score".into(),
        title: "Judgement score".into(),
        summary: format!(
            "The statistical judgement's score per step: {}.",
            points
                .iter()
                .map(|(s, v)| format!("step {s}: {}", number(*v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        svg,
    })
}

/// Every chart of a rollout: the weight, then one per metric, then the score when judged.
pub fn all(r: &Rollout, now: Timestamp) -> Result<Vec<Chart>, String> {
    let mut out = vec![weight(r, now)?];
    for name in crate::view::metric_names(r) {
        out.push(metric(r, &name)?);
    }
    if r.judged {
        out.push(score(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_line_holds_each_weight_until_the_next_point() {
        let pts = [(0.0, 0.0), (10.0, 10.0), (20.0, 10.0), (30.0, 20.0)];
        assert_eq!(
            steps(&pts),
            vec![
                (0.0, 0.0),
                (10.0, 0.0),
                (10.0, 10.0),
                (20.0, 10.0),
                (30.0, 10.0),
                (30.0, 20.0)
            ]
        );
        assert_eq!(weight_at(&pts, 15.0), 10.0);
        assert_eq!(weight_at(&pts, -1.0), 0.0);
    }
}
