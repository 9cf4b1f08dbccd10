//! Line charts as PNG-ready images, with no font or plotting dependency: panels side by side,
//! each with axes, ticks, a legend and a title, text in a built-in 5x7 pixel font.

use fqgan::image::RgbImage;
use image::Rgb;

/// One line of a panel.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: Rgb<u8>,
}

/// One chart: its title, y-axis name and lines, sharing the x axis named by [`render`].
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const PANEL_W: u32 = 640;
const PANEL_H: u32 = 420;
const LEFT: u32 = 92;
const RIGHT: u32 = 20;
const TOP: u32 = 44;
const BOTTOM: u32 = 56;
/// Text is drawn at twice the font's size.
const SCALE: u32 = 2;
const BLACK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([228, 228, 228]);

/// Light and dark shades for a raw series and its smoothed version.
pub const BLUE: (Rgb<u8>, Rgb<u8>) = (Rgb([176, 200, 232]), Rgb([31, 90, 170]));
pub const ORANGE: (Rgb<u8>, Rgb<u8>) = (Rgb([246, 206, 160]), Rgb([214, 110, 20]));
pub const GREEN: Rgb<u8> = Rgb([40, 150, 70]);
pub const GREY: Rgb<u8> = Rgb([120, 120, 120]);

/// The panels side by side on a white canvas.
pub fn render(panels: &[Panel], x_label: &str) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(PANEL_W * panels.len().max(1) as u32, PANEL_H, Rgb([255, 255, 255]));
    for (i, panel) in panels.iter().enumerate() {
        draw_panel(&mut canvas, i as u32 * PANEL_W, panel, x_label);
    }
    canvas
}

/// The mean of each point's `window` neighbours up to it (a trailing moving average).
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= window {
                sum -= points[i - window].1;
            }
            (x, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

fn draw_panel(canvas: &mut RgbImage, x0: u32, panel: &Panel, x_label: &str) {
    let all: Vec<(f64, f64)> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (plot_x, plot_y) = (x0 + LEFT, TOP);
    let (plot_w, plot_h) = (PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM);
    draw_text(canvas, x0 + LEFT, 12, &panel.title, BLACK);
    if all.is_empty() {
        draw_text(canvas, plot_x + 20, plot_y + plot_h / 2, "no data", GREY);
        return;
    }
    let x_range = span(
        all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min),
        all.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max),
    );
    // Robust y range: spikes beyond the 1st..99th percentile are clipped at the frame.
    let mut ys: Vec<f64> = all.iter().map(|p| p.1).collect();
    ys.sort_by(f64::total_cmp);
    let pick = |q: f64| ys[((ys.len() - 1) as f64 * q).round() as usize];
    let (low, high) = (pick(0.01), pick(0.99));
    let pad = ((high - low) * 0.06).max(1e-9);
    let y_range = span(low - pad, high + pad);
    let to_px = |(x, y): (f64, f64)| {
        let px = plot_x as f64 + (x - x_range.0) / (x_range.1 - x_range.0) * plot_w as f64;
        let py = (plot_y + plot_h) as f64 - (y - y_range.0) / (y_range.1 - y_range.0) * plot_h as f64;
        (px, py.clamp(plot_y as f64, (plot_y + plot_h) as f64))
    };

    for (value, label) in ticks(y_range) {
        let (_, py) = to_px((x_range.0, value));
        hline(canvas, plot_x, plot_x + plot_w, py as u32, GRID);
        let width = text_width(&label);
        draw_text(canvas, plot_x.saturating_sub(width + 8), (py as u32).saturating_sub(7), &label, BLACK);
    }
    for (value, label) in ticks(x_range) {
        let (px, _) = to_px((value, y_range.0));
        vline(canvas, px as u32, plot_y, plot_y + plot_h, GRID);
        let width = text_width(&label);
        draw_text(canvas, (px as u32).saturating_sub(width / 2), plot_y + plot_h + 8, &label, BLACK);
    }
    for s in &panel.series {
        let points: Vec<(f64, f64)> =
            s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).map(to_px).collect();
        for pair in points.windows(2) {
            line(canvas, pair[0], pair[1], s.color);
        }
        if let [single] = points[..] {
            line(canvas, single, single, s.color);
        }
    }
    hline(canvas, plot_x, plot_x + plot_w, plot_y + plot_h, BLACK);
    vline(canvas, plot_x, plot_y, plot_y + plot_h, BLACK);
    draw_text(canvas, plot_x + plot_w - text_width(x_label), PANEL_H - 22, x_label, BLACK);
    draw_text(canvas, x0 + 8, PANEL_H - 22, &panel.y_label, GREY);
    // The legend on a white box, so that lines under it do not cross its text.
    let legend_w = 52 + panel.series.iter().map(|s| text_width(&s.label)).max().unwrap_or(0);
    for y in plot_y + 4..plot_y + 12 + panel.series.len() as u32 * 18 {
        hline(canvas, plot_x + 6, (plot_x + 6 + legend_w).min(plot_x + plot_w - 1), y, Rgb([255, 255, 255]));
    }
    for (i, s) in panel.series.iter().enumerate() {
        let y = plot_y + 10 + i as u32 * 18;
        for dy in 0..3 {
            hline(canvas, plot_x + 12, plot_x + 36, y + 6 + dy, s.color);
        }
        draw_text(canvas, plot_x + 44, y, &s.label, BLACK);
    }
}

/// A range that is not empty.
fn span(low: f64, high: f64) -> (f64, f64) {
    if high > low {
        (low, high)
    } else {
        (low - 0.5, low + 0.5)
    }
}

/// About five round values inside `range`, with labels of just enough decimals.
fn ticks(range: (f64, f64)) -> Vec<(f64, String)> {
    let raw = (range.1 - range.0) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let mut value = (range.0 / step).ceil() * step;
    let mut out = Vec::new();
    while value <= range.1 + step * 1e-9 {
        let label = if step >= 1000.0 && value.abs() >= 1000.0 && value % 1000.0 == 0.0 {
            format!("{}k", value / 1000.0)
        } else {
            format!("{value:.decimals$}")
        };
        out.push((value, label));
        value += step;
    }
    out
}

fn put(canvas: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < canvas.width() && (y as u32) < canvas.height() {
        canvas.put_pixel(x as u32, y as u32, color);
    }
}

fn hline(canvas: &mut RgbImage, x0: u32, x1: u32, y: u32, color: Rgb<u8>) {
    for x in x0..=x1 {
        put(canvas, x.into(), y.into(), color);
    }
}

fn vline(canvas: &mut RgbImage, x: u32, y0: u32, y1: u32, color: Rgb<u8>) {
    for y in y0..=y1 {
        put(canvas, x.into(), y.into(), color);
    }
}

/// A 2-pixel-wide line between two points.
fn line(canvas: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), color: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = ((x0 + (x1 - x0) * t).round() as i64, (y0 + (y1 - y0) * t).round() as i64);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            put(canvas, x + dx, y + dy, color);
        }
    }
}

fn text_width(text: &str) -> u32 {
    text.chars().count() as u32 * 6 * SCALE
}

/// `text` with its top-left corner at (x, y).
fn draw_text(canvas: &mut RgbImage, x: u32, y: u32, text: &str, color: Rgb<u8>) {
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c);
        let left = x + i as u32 * 6 * SCALE;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    for (sx, sy) in (0..SCALE).flat_map(|sx| (0..SCALE).map(move |sy| (sx, sy))) {
                        put(canvas, (left + col * SCALE + sx).into(), (y + row as u32 * SCALE + sy).into(), color);
                    }
                }
            }
        }
    }
}

/// Rows of a 5x7 glyph, top first, bit 4 the leftmost pixel; an unknown character is a box.
fn glyph(c: char) -> [u8; 7] {
    let index = FONT_CHARS.chars().position(|f| f == c);
    index.map_or([0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F], |i| FONT[i])
}

const FONT_CHARS: &str = " .,-+:()/%=_|0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

#[rustfmt::skip]
const FONT: [[u8; 7]; 75] = [
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // space
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C], // .
    [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08], // ,
    [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00], // -
    [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00], // +
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00], // :
    [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02], // (
    [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08], // )
    [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00], // /
    [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03], // %
    [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00], // =
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F], // _
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04], // |
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], // 0
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E], // 1
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], // 2
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E], // 3
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], // 4
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E], // 5
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], // 6
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08], // 7
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], // 8
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C], // 9
    [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F], // a
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E], // b
    [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E], // c
    [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F], // d
    [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E], // e
    [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08], // f
    [0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E], // g
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11], // h
    [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E], // i
    [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C], // j
    [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12], // k
    [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], // l
    [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11], // m
    [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11], // n
    [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E], // o
    [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10], // p
    [0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01], // q
    [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10], // r
    [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E], // s
    [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06], // t
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D], // u
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04], // v
    [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A], // w
    [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11], // x
    [0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E], // y
    [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F], // z
    [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11], // A
    [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E], // B
    [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E], // C
    [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C], // D
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F], // E
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10], // F
    [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F], // G
    [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], // H
    [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], // I
    [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C], // J
    [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], // K
    [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F], // L
    [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11], // M
    [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11], // N
    [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], // O
    [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10], // P
    [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D], // Q
    [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11], // R
    [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E], // S
    [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04], // T
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], // U
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04], // V
    [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A], // W
    [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11], // X
    [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04], // Y
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F], // Z
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_font_covers_its_characters() {
        assert_eq!(FONT_CHARS.chars().count(), FONT.len());
        assert_ne!(glyph('P'), glyph('?'));
    }

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        let t = ticks((0.0, 5000.0));
        assert_eq!(t.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(), ["0", "1k", "2k", "3k", "4k", "5k"]);
        let t = ticks((0.013, 0.061));
        assert!(t.iter().all(|(v, _)| (0.013..=0.061).contains(v)), "{:?}", t.iter().map(|p| p.0).collect::<Vec<_>>());
        assert_eq!(t[0].1, "0.02");
    }

    #[test]
    fn smoothing_averages_the_trailing_window() {
        let s = smooth(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)], 2);
        assert_eq!(s, [(0.0, 1.0), (1.0, 2.0), (2.0, 4.0)]);
    }

    #[test]
    fn a_rising_line_is_drawn_up_and_to_the_right() {
        let panel = Panel {
            title: "t".into(),
            y_label: "y".into(),
            series: vec![Series { label: "s".into(), points: vec![(0.0, 0.0), (1.0, 1.0)], color: GREEN }],
        };
        let image = render(&[panel], "x");
        let greens: Vec<(u32, u32)> =
            image.enumerate_pixels().filter(|(_, _, p)| **p == GREEN).map(|(x, y, _)| (x, y)).collect();
        // Beyond the legend's swatch, the line's left end is lower (larger y) than its right end.
        let line: Vec<&(u32, u32)> = greens.iter().filter(|(x, _)| *x > LEFT + 60).collect();
        let left = line.iter().min_by_key(|p| p.0).unwrap();
        let right = line.iter().max_by_key(|p| p.0).unwrap();
        assert!(left.1 > right.1 && right.0 > left.0, "{left:?} {right:?}");
    }
}
