//! Loss-curve pictures (`--plot FILE`): one line per training run, loss per
//! epoch, written as SVG or PNG depending on the file extension.
//!
//! Drawing uses `plotters` with its pure-Rust `ab_glyph` text renderer and an
//! embedded DejaVu Sans font, so PNGs get readable text on machines without
//! any system fonts. Pictures are drawn in memory and written through
//! [`crate::output`] only when complete, so a failed plot never leaves a
//! half-written picture behind (or clobbers an older one).

use image::ImageEncoder;
use std::path::Path;
use std::sync::OnceLock;

use crate::output::OutputFile;

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, RGBColor, register_font};

/// One line of the plot: a label for the legend and its loss per epoch
/// (index 0 is epoch 1).
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Legend text; a single series with an empty label gets no legend.
    pub label: &'a str,
    /// Loss per epoch; non-finite values leave gaps in the line.
    pub losses: &'a [f32],
}

/// Picture size in pixels (SVG user units for `.svg`).
pub const WIDTH: u32 = 900;
/// Picture size in pixels (SVG user units for `.svg`).
pub const HEIGHT: u32 = 540;

/// The extensions [`write_loss_plot`] understands, for error messages.
const ACCEPTED: &str = ".svg or .png";

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/DejaVuSans-LICENSE.txt`):
/// `ab_glyph` has no access to system fonts, so the text font travels with us.
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Font family every text element in the chart uses; plotters' own defaults
/// (mesh labels) also ask for "sans-serif".
const FAMILY: &str = "sans-serif";

/// Line colours (Tableau 10), cycled when there are more series than colours.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Output formats, chosen from the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Png,
}

/// Draws the loss curves of `series` into `path` (`.svg` or `.png`, any case;
/// `-` for SVG on standard output).
///
/// The x axis is "Epoch" (numbered from 1), the y axis "Loss", linear unless
/// `log_scale`, where zeros and negative values are clamped to the smallest
/// positive loss. NaN and infinite values are skipped. With several series
/// every line gets its own colour and the legend names each label.
///
/// Errors (never panics) when the extension is unknown, when no series holds
/// a finite loss, or when the file cannot be written; the target file is only
/// replaced once the whole picture has been rendered.
pub fn write_loss_plot(
    path: &Path,
    title: &str,
    series: &[Series<'_>],
    log_scale: bool,
) -> Result<()> {
    let output = check_target(path)?;
    let bytes = render(path, title, series, log_scale)?;
    output
        .write(&bytes)
        .with_context(|| format!("cannot write the loss plot {}", path.display()))
}

/// The picture `path`'s format asks for, rendered in memory (nothing is
/// written).
pub fn render(path: &Path, title: &str, series: &[Series<'_>], log_scale: bool) -> Result<Vec<u8>> {
    let format = format_of(path)?;
    let layout = Layout::new(series, log_scale)
        .with_context(|| format!("cannot plot the loss history into {}", path.display()))?;
    ensure_font().with_context(|| format!("cannot draw the loss plot {}", path.display()))?;
    match format {
        Format::Svg => render_svg(title, series, &layout).map(String::into_bytes),
        Format::Png => render_png(title, series, &layout),
    }
}

/// Checks, before any work, that `path` names a picture format and that a
/// file can be written there, so a long run does not fail at its very end.
pub fn check_target(path: &Path) -> Result<OutputFile> {
    check_format(path)?;
    OutputFile::check(path, "--plot")
}

/// Refuses a `--plot` path whose name gives no picture format.
pub fn check_format(path: &Path) -> Result<()> {
    if format_of(path).is_err() {
        bail!(
            "--plot {}: unknown picture format, the file name must end in {ACCEPTED} (or be - \
             for SVG on standard output)",
            path.display()
        );
    }
    Ok(())
}

/// Picks the format from the extension, case-insensitively; `-` is SVG.
fn format_of(path: &Path) -> Result<Format> {
    if path.as_os_str() == "-" {
        return Ok(Format::Svg);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => Ok(Format::Svg),
        Some("png") => Ok(Format::Png),
        _ => bail!(
            "cannot write the loss plot {}: unknown picture format, the file name must end in {ACCEPTED}",
            path.display()
        ),
    }
}

/// Registers the embedded font with plotters once per process. Both formats
/// need it: plotters measures text (titles, tick labels, legend) for layout.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded plot font could not be loaded"))
    }
}

fn render_svg(title: &str, series: &[Series<'_>], layout: &Layout) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, title, series, layout).map_err(|e| anyhow!("drawing the SVG failed: {e}"))?;
        root.present()
            .map_err(|e| anyhow!("finishing the SVG failed: {e}"))?;
    }
    Ok(svg)
}

/// Draws into an RGB buffer and encodes it as PNG.
fn render_png(title: &str, series: &[Series<'_>], layout: &Layout) -> Result<Vec<u8>> {
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, title, series, layout).map_err(|e| anyhow!("drawing the PNG failed: {e}"))?;
        root.present()
            .map_err(|e| anyhow!("finishing the PNG failed: {e}"))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, WIDTH, HEIGHT, image::ColorType::Rgb8)
        .context("encoding the PNG failed")?;
    Ok(png)
}

/// Axis ranges and label formats, worked out before anything is drawn so
/// that bad input is an error, not a half-drawn picture.
#[derive(Debug, Clone)]
struct Layout {
    /// x axis range (epochs).
    x: std::ops::Range<u64>,
    /// y axis range, in log10 units when `log_scale`.
    y: std::ops::Range<f64>,
    log_scale: bool,
    /// Log scale: the value zeros and negatives are drawn at.
    floor: f64,
    /// Linear scale: decimals of the tick labels; log scale: unused.
    decimals: usize,
    /// Tick labels in `1e-3` notation rather than plain decimals.
    scientific: bool,
}

impl Layout {
    fn new(series: &[Series<'_>], log_scale: bool) -> Result<Self> {
        let epochs = series.iter().map(|s| s.losses.len()).max().unwrap_or(0) as u64;
        let finite = || {
            series
                .iter()
                .flat_map(|s| s.losses.iter())
                .filter(|v| v.is_finite())
                .map(|&v| f64::from(v))
        };
        let (min, max) = finite()
            .fold(None, |acc: Option<(f64, f64)>, v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })
            .ok_or_else(|| {
                if epochs == 0 {
                    anyhow!("the loss history is empty")
                } else {
                    anyhow!("the loss history holds no finite value (all NaN or infinite)")
                }
            })?;

        // One epoch: centre the single point rather than pin it to an edge.
        let x = if epochs <= 1 { 0..2 } else { 1..epochs };

        if log_scale {
            let floor = finite().filter(|&v| v > 0.0).fold(f64::INFINITY, f64::min);
            let floor = if floor.is_finite() { floor } else { 1.0 };
            let top = max.max(floor);
            let mut lo = floor.log10().floor();
            let mut hi = top.log10().ceil();
            // At least three decades, so ticks fall on powers of ten.
            while hi - lo < 3.0 {
                if (hi - lo) as i64 % 2 == 0 {
                    hi += 1.0;
                } else {
                    lo -= 1.0;
                }
            }
            let scientific = lo < -4.0 || hi > 5.0;
            Ok(Self {
                x,
                y: lo..hi,
                log_scale,
                floor,
                decimals: 0,
                scientific,
            })
        } else {
            let lo = min.min(0.0);
            let span = max - lo;
            let (lo, hi) = if span > 0.0 {
                (
                    if lo < 0.0 { lo - 0.05 * span } else { lo },
                    max + 0.05 * span,
                )
            } else {
                // Constant at zero (negative constants already give a span).
                (0.0, 1.0)
            };
            let step = (hi - lo) / 10.0;
            let decimals = (1.0 - step.log10().floor()).clamp(0.0, 12.0) as usize;
            let magnitude = lo.abs().max(hi.abs());
            let scientific = !(1e-3..1e6).contains(&magnitude);
            Ok(Self {
                x,
                y: lo..hi,
                log_scale,
                floor: 0.0,
                decimals,
                scientific,
            })
        }
    }

    /// Where a finite loss goes on the y axis.
    fn y_of(&self, loss: f64) -> f64 {
        if self.log_scale {
            loss.max(self.floor).log10()
        } else {
            loss
        }
    }

    /// Tick label for a y axis position.
    fn y_label(&self, y: f64) -> String {
        if self.log_scale {
            let rounded = y.round();
            if (y - rounded).abs() < 1e-9 {
                if self.scientific {
                    format!("1e{rounded:.0}")
                } else {
                    trim_decimals(format!(
                        "{:.*}",
                        (-rounded).max(0.0) as usize,
                        10f64.powf(rounded)
                    ))
                }
            } else {
                significant(10f64.powf(y))
            }
        } else if self.scientific {
            scientific(y)
        } else {
            trim_decimals(format!("{y:.*}", self.decimals))
        }
    }
}

/// `1234.5` with three significant digits, trailing zeros removed.
fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor();
    if !(-4.0..6.0).contains(&magnitude) {
        return scientific(v);
    }
    let decimals = (2.0 - magnitude).clamp(0.0, 12.0) as usize;
    trim_decimals(format!("{v:.decimals$}"))
}

/// `3.5e-7` style, mantissa with at most two decimals.
fn scientific(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => format!("{}e{exp}", trim_decimals(mantissa.to_string())),
        None => s,
    }
}

/// Drops trailing zeros after a decimal point ("0.50" -> "0.5", "2.00" -> "2").
fn trim_decimals(s: String) -> String {
    if !s.contains('.') {
        return s;
    }
    let t = s.trim_end_matches('0').trim_end_matches('.');
    if t == "-0" {
        "0".to_string()
    } else {
        t.to_string()
    }
}

/// Replaces control characters, which cannot appear in SVG text.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Draws the whole chart on any plotters backend.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[Series<'_>],
    layout: &Layout,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;

    let title = printable(title);
    // Shrink long titles so they fit the width (DejaVu averages ~0.55 em).
    let chars = title.chars().count().max(1) as f64;
    let title_size = (f64::from(WIDTH) * 0.92 / (0.58 * chars)).clamp(10.0, 26.0);

    let mut chart = ChartBuilder::on(root)
        .caption(&title, (FAMILY, title_size))
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(78)
        .build_cartesian_2d(layout.x.clone(), layout.y.clone())?;

    // Epochs count from 1; a lone epoch sits on a 0..2 axis, leave 0 blank.
    let x_fmt = |x: &u64| {
        if *x == 0 {
            String::new()
        } else {
            x.to_string()
        }
    };
    let y_fmt = |y: &f64| layout.y_label(*y);
    // Log scale: ticks on whole decades (the range spans >= 3 of them).
    let y_labels = if layout.log_scale {
        ((layout.y.end - layout.y.start) as usize + 1).min(11)
    } else {
        10
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc("Epoch")
        .y_desc("Loss")
        .axis_desc_style((FAMILY, 18))
        .label_style((FAMILY, 14))
        .x_labels(10)
        .y_labels(y_labels)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_max_light_lines(4)
        .y_max_light_lines(4)
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(200, 200, 200));
    if layout.log_scale {
        // Linear subdivisions of log10 mean nothing; draw 2..9 below instead.
        mesh.y_max_light_lines(0);
    }
    mesh.draw()?;

    if layout.log_scale && layout.y.end - layout.y.start <= 8.0 {
        let start = layout.y.start as i32;
        let end = layout.y.end as i32;
        let (x0, x1) = (layout.x.start, layout.x.end);
        for decade in start..end {
            for k in 2..10 {
                let y = f64::from(decade) + f64::from(k).log10();
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x0, y), (x1, y)],
                    RGBColor(235, 235, 235),
                )))?;
            }
        }
    }

    let legend = series.len() > 1 || series.iter().any(|s| !s.label.is_empty());
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // Runs usually overlap (GPU vs CPU reference): draw the first line
        // wider so it stays visible around the ones drawn on top of it.
        let width = if i == 0 && series.len() > 1 { 4 } else { 2 };
        let style = color.stroke_width(width);
        let runs = finite_runs(s.losses, layout);
        // An empty element carries the legend entry even if nothing is drawn.
        let anno = chart.draw_series(std::iter::empty::<PathElement<(u64, f64)>>())?;
        if legend {
            anno.label(printable(s.label)).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
            });
        }
        for run in runs {
            if run.len() == 1 {
                // A lone point (single epoch, or between NaNs) has no line.
                chart.draw_series(std::iter::once(Circle::new(run[0], 3, style.filled())))?;
            } else {
                chart.draw_series(LineSeries::new(run, style))?;
            }
        }
    }

    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(12)
            .legend_area_size(30)
            .label_font((FAMILY, 16))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
    }
    Ok(())
}

/// Splits a history into runs of consecutive finite losses, as chart points
/// (epoch from 1, y position), so NaN/inf leave gaps instead of spikes.
fn finite_runs(losses: &[f32], layout: &Layout) -> Vec<Vec<(u64, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (i, &loss) in losses.iter().enumerate() {
        if loss.is_finite() {
            current.push((i as u64 + 1, layout.y_of(f64::from(loss))));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(trim_decimals("0.500".into()), "0.5");
        assert_eq!(trim_decimals("2.000".into()), "2");
        assert_eq!(trim_decimals("1000".into()), "1000");
        assert_eq!(scientific(3.0000000000000004e-7), "3e-7");
        assert_eq!(scientific(2.5e9), "2.5e9");
        assert_eq!(significant(0.030000000000000002), "0.03");
    }

    #[test]
    fn log_layout_spans_whole_decades() {
        let losses = [4000.0, 10.0, 0.0, 0.063, f32::NAN];
        let s = [Series {
            label: "a",
            losses: &losses,
        }];
        let l = Layout::new(&s, true).unwrap();
        assert_eq!(l.y, -2.0..4.0);
        assert!((l.floor - 0.063).abs() < 1e-6);
        assert_eq!(l.y_label(-2.0), "0.01");
        assert_eq!(l.y_label(0.0), "1");
        assert_eq!(l.y_label(3.0), "1000");
        assert_eq!(l.x, 1..5);
    }
}
