//! PNG plots of a report: latency percentiles (p50, p99 per operation) over time and
//! throughput over time, drawn with plotters' bitmap backend.
//!
//! Text needs a font: the first time, a TTF is read from `/usr/share/fonts` (DejaVuSans if there,
//! as Debian's `fonts-dejavu-core` installs it) and registered with plotters' `ab_glyph` backend.
//! Without a font the plots are drawn without captions, labels or legend rather than failing.

use crate::LoadError;
use crate::report::Report;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const FONT_DIR: &str = "/usr/share/fonts";
const PREFERRED: &str = "DejaVuSans.ttf";

fn find_ttf(dir: &Path, depth: usize) -> Option<PathBuf> {
    let preferred = dir.join("truetype/dejavu").join(PREFERRED);
    if preferred.is_file() {
        return Some(preferred);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    if let Some(p) = entries
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == PREFERRED))
    {
        return Some(p.clone());
    }
    if let Some(p) = entries
        .iter()
        .find(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")))
    {
        return Some(p.clone());
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|p| p.is_dir())
        .find_map(|p| find_ttf(p, depth - 1))
}

/// Registers a system font with plotters once; returns whether text can be drawn.
pub fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let Some(path) = find_ttf(Path::new(FONT_DIR), 4) else {
            return false;
        };
        let Ok(bytes) = std::fs::read(&path) else {
            return false;
        };
        // plotters keeps registered fonts for the life of the process: leak the bytes once.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

/// One line of a plot.
struct Line {
    name: String,
    points: Vec<(u64, f64)>,
}

fn draw(path: &Path, title: &str, y_desc: &str, lines: &[Line]) -> Result<(), LoadError> {
    let err = |e: &dyn std::fmt::Display| LoadError::Plot {
        path: path.into(),
        detail: e.to_string(),
    };
    let text = font_available();
    let x_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(0)
        .max(1);
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if text {
        builder
            .caption(title, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(0u64..x_max, 0f64..y_max)
        .map_err(|e| err(&e))?;
    if text {
        chart
            .configure_mesh()
            .x_desc("seconds since measurement started")
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    for (i, line) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let series = chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        if text {
            series
                .label(line.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if text && !lines.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

/// Writes `{prefix}latency.png` and `{prefix}throughput.png` into `dir`; returns their paths.
pub fn plot(report: &Report, dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, LoadError> {
    std::fs::create_dir_all(dir).map_err(|e| LoadError::io(dir, e))?;
    let ms = |us: u64| us as f64 / 1000.0;
    let mut latency = Vec::new();
    let mut throughput = Vec::new();
    for (name, op) in &report.ops {
        let busy = || op.timeline.iter().filter(|p| p.ok > 0);
        latency.push(Line {
            name: format!("{name} p50"),
            points: busy().map(|p| (p.t, ms(p.p50_us))).collect(),
        });
        latency.push(Line {
            name: format!("{name} p99"),
            points: busy().map(|p| (p.t, ms(p.p99_us))).collect(),
        });
        throughput.push(Line {
            name: format!("{name} ok/s"),
            points: op.timeline.iter().map(|p| (p.t, p.ok as f64)).collect(),
        });
        if op.errors > 0 {
            throughput.push(Line {
                name: format!("{name} errors/s"),
                points: op.timeline.iter().map(|p| (p.t, p.errors as f64)).collect(),
            });
        }
    }
    let run = &report.run;
    let what = format!("{} ({} loop)", run.scenario, run.mode);
    let lat_path = dir.join(format!("{prefix}latency.png"));
    draw(
        &lat_path,
        &if run.mode == "closed" {
            format!("latency (closed loop, from the send): {what}")
        } else {
            format!("latency from the intended start: {what}")
        },
        "ms",
        &latency,
    )?;
    let tp_path = dir.join(format!("{prefix}throughput.png"));
    draw(
        &tp_path,
        &format!("throughput: {what}"),
        "operations per second",
        &throughput,
    )?;
    Ok(vec![lat_path, tp_path])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunInfo;
    use crate::stats::Stats;
    use std::time::Duration;

    #[test]
    fn plots_are_written_as_png() {
        let mut stats = Stats::new();
        for k in 0..3000u64 {
            let at = Duration::from_millis(k);
            stats.record_ok("read", at, at, at + Duration::from_micros(300 + k % 700));
        }
        stats.record_error("post", "timeout", Duration::from_millis(1200));
        let run = RunInfo {
            scenario: "read=99,post=1".into(),
            mode: "open".into(),
            duration_s: 3.0,
            ..RunInfo::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let files = plot(&Report::new(run, &stats), dir.path(), "t-").unwrap();
        assert_eq!(files.len(), 2);
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{}", f.display());
        }
    }
}
