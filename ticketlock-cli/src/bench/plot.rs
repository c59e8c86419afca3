//! `--plot FILE.svg`: hand-offs per second against the number of waiters,
//! one line per layout, and the baseline's rate on one key as a horizontal
//! line. Both axes are logarithmic: the rates span four orders of
//! magnitude between layouts and depths.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use super::depth_report::DepthReport;

/// Colours of the layouts' lines, in order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// One line of the plot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub label: String,
    /// (waiters, hand-offs per second).
    pub points: Vec<(f64, f64)>,
}

/// The lines of `medians`: one per layout, and the baseline.
pub(crate) fn series(medians: &DepthReport) -> (Vec<Series>, Option<(String, f64)>) {
    let mut lines: Vec<Series> = Vec::new();
    for r in medians.rows.iter().filter(|r| r.error.is_none()) {
        let label = match r.layout {
            Some(l) => format!("ticketlock, {} layout", l.name()),
            None => format!("ticketlock, {} store", r.store.name()),
        };
        let point = (r.waiters as f64, r.handoffs_per_s);
        match lines.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => lines.push(Series {
                label,
                points: vec![point],
            }),
        }
    }
    let baseline = medians.rows.first().map(|r| {
        (
            format!("{} (1 key, 16 contenders)", r.baseline),
            r.baseline_handoffs_per_s,
        )
    });
    (lines, baseline)
}

/// Draws `lines` and `baseline` into the SVG file `file`.
pub(crate) fn draw(
    file: &Path,
    title: &str,
    lines: &[Series],
    baseline: Option<&(String, f64)>,
) -> anyhow::Result<()> {
    let svg = render(title, lines, baseline)?;
    std::fs::write(file, svg).with_context(|| format!("--plot: writing {}", file.display()))
}

/// The SVG text of the plot.
pub(crate) fn render(
    title: &str,
    lines: &[Series],
    baseline: Option<&(String, f64)>,
) -> anyhow::Result<String> {
    let points = lines.iter().flat_map(|s| s.points.iter());
    let xs: Vec<f64> = points.clone().map(|p| p.0).collect();
    let mut ys: Vec<f64> = points.map(|p| p.1).filter(|y| *y > 0.0).collect();
    ys.extend(baseline.map(|b| b.1).filter(|y| *y > 0.0));
    let (x_lo, x_hi) = bounds(&xs, 1.0);
    let (y_lo, y_hi) = bounds(&ys, 1.0);
    let (x_lo, x_hi) = (x_lo.max(1.0) / 1.5, x_hi * 1.5);
    let (y_lo, y_hi) = (y_lo / 3.0, y_hi * 3.0);
    let floor = y_lo;
    let mut out = String::new();
    {
        let area = SVGBackend::with_string(&mut out, (900, 560)).into_drawing_area();
        area.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("waiters queued behind the holder")
            .y_desc("hand-offs per second")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| short(*y))
            .draw()
            .map_err(plot_error)?;
        for (i, s) in lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x, y.max(floor))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                .map_err(plot_error)?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(plot_error)?;
        }
        if let Some((label, rate)) = baseline {
            let grey = RGBColor(0x55, 0x55, 0x55);
            chart
                .draw_series(LineSeries::new(
                    vec![(x_lo, *rate), (x_hi, *rate)],
                    grey.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(plot_error)?;
        area.present().map_err(plot_error)?;
    }
    Ok(out)
}

/// The least and greatest of `v`, or `default` for both when empty.
fn bounds(v: &[f64], default: f64) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (default, default)
    }
}

/// A rate for an axis label: 0.3, 20, 1.5k.
fn short(y: f64) -> String {
    match y {
        y if y >= 1000.0 => format!("{:.0}k", y / 1000.0),
        y if y >= 1.0 => format!("{y:.0}"),
        y => format!("{y:.2}"),
    }
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("--plot: drawing the SVG: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_has_a_line_per_layout_and_the_baseline() {
        let lines = [
            Series {
                label: "ticketlock, rasa layout".into(),
                points: vec![(1.0, 2000.0), (10.0, 1400.0), (1000.0, 0.33)],
            },
            Series {
                label: "ticketlock, native layout".into(),
                points: vec![(1.0, 2500.0), (10.0, 2400.0), (1000.0, 2300.0)],
            },
        ];
        let base = ("SET NX".to_string(), 5185.0);
        let svg = render("hand-offs", &lines, Some(&base)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("ticketlock, rasa layout"));
        assert!(svg.contains("ticketlock, native layout"));
        assert!(svg.contains("SET NX"));
        // Each layout's line through its three points, and the baseline's
        // across the plot; each drawn again as a sample in the legend.
        let lines: Vec<usize> = svg
            .lines()
            .filter(|l| l.starts_with("<polyline") && l.contains("stroke-width=\"2\""))
            .map(|l| {
                l.split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .filter(|p| p.contains(','))
                    .count()
            })
            .collect();
        assert_eq!(lines, [3, 3, 2, 2, 2, 2], "{svg}");
        assert_eq!(
            svg.matches("#1F77B4").count(),
            2 + 3,
            "line, legend, 3 points"
        );
    }

    #[test]
    fn series_come_from_the_medians_per_layout() {
        use super::super::StoreKind;
        use super::super::depth::DepthSide;
        use super::super::depth_report::Baseline;
        use super::super::layout::Layout;
        let side = DepthSide {
            handoffs: 10,
            elapsed: std::time::Duration::from_secs(1),
            max_holders: 1,
            ..DepthSide::default()
        };
        let base = Baseline {
            name: "SET NX",
            handoffs_per_s: 99.0,
            ping_p50_us: None,
        };
        let mut all = DepthReport::default();
        for layout in [Layout::Rasa, Layout::Native] {
            all.extend(DepthReport::run(
                StoreKind::Redis,
                Some(layout),
                1,
                10,
                &[(1, Ok(side.clone())), (5, Ok(side.clone()))],
                base,
            ));
        }
        let (lines, baseline) = series(&all.median());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].label, "ticketlock, native layout");
        assert_eq!(lines[0].points, [(1.0, 10.0), (5.0, 10.0)]);
        assert_eq!(baseline.unwrap().1, 99.0);
    }
}
