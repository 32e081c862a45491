//! Training data: celsius inputs and fahrenheit targets.

use anyhow::{Context, Result, bail};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::path::Path;

/// Paired samples, stored as f32 as Keras casts them to `floatx`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub celsius: Vec<f32>,
    pub fahrenheit: Vec<f32>,
}

impl Dataset {
    /// The seed program's 7 pairs (fahrenheit rounded to whole degrees).
    pub fn seed() -> Self {
        Self {
            celsius: vec![-40.0, -10.0, 0.0, 8.0, 15.0, 22.0, 38.0],
            fahrenheit: vec![-40.0, 14.0, 32.0, 46.0, 59.0, 72.0, 100.0],
        }
    }

    /// `samples` points of the exact formula F = 1.8 C + 32 (computed in f64,
    /// rounded to f32), celsius uniform in [-50, 150) from a ChaCha8 stream
    /// seeded with `seed`: the same data on every machine.
    pub fn from_formula(samples: u64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xDA7A_5EED);
        let celsius: Vec<f32> = (0..samples)
            .map(|_| (-50.0 + 200.0 * (rng.next_u32() as f64 / 4_294_967_296.0)) as f32)
            .collect();
        let fahrenheit = celsius
            .iter()
            .map(|&c| (c as f64 * 1.8 + 32.0) as f32)
            .collect();
        Self {
            celsius,
            fahrenheit,
        }
    }

    pub fn len(&self) -> usize {
        self.celsius.len()
    }

    pub fn is_empty(&self) -> bool {
        self.celsius.is_empty()
    }

    /// Reads `celsius,fahrenheit` rows. The first line may be a header (it is
    /// skipped when its cells are not numbers); blank lines and CRLF line
    /// endings are accepted. Errors name the file and the 1-based line.
    pub fn from_csv_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read data file {}", path.display()))?;
        Self::from_csv_str(&text).with_context(|| format!("in data file {}", path.display()))
    }

    /// Parses CSV text as [`Dataset::from_csv_file`] does; errors name the line.
    pub fn from_csv_str(text: &str) -> Result<Self> {
        let mut data = Dataset {
            celsius: Vec::new(),
            fahrenheit: Vec::new(),
        };
        let mut seen_first_row = false;
        // A byte-order mark (spreadsheet exports write one) is not data.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw_line) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = raw_line.trim_end_matches('\r').trim();
            if line.is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let is_first_row = !seen_first_row;
            seen_first_row = true;
            if cells.len() != 2 {
                bail!(
                    "line {line_number}: expected 2 columns (celsius,fahrenheit), found {}",
                    cells.len()
                );
            }
            let parsed: Vec<Option<f32>> = cells.iter().map(|c| c.parse::<f32>().ok()).collect();
            if is_first_row && parsed.iter().all(Option::is_none) {
                continue; // a header line
            }
            for (cell, value, column) in [
                (cells[0], parsed[0], "celsius"),
                (cells[1], parsed[1], "fahrenheit"),
            ] {
                match value {
                    None => bail!("line {line_number}: {column} value {cell:?} is not a number"),
                    Some(v) if !v.is_finite() => {
                        bail!("line {line_number}: {column} value {cell:?} is not finite")
                    }
                    Some(_) => {}
                }
            }
            data.celsius.push(parsed[0].unwrap_or_default());
            data.fahrenheit.push(parsed[1].unwrap_or_default());
        }
        if data.is_empty() {
            bail!("no data rows: expected lines of celsius,fahrenheit");
        }
        Ok(data)
    }

    /// The ordinary least-squares line `fahrenheit = slope * celsius + intercept`,
    /// in f64: the answer every converged run of a linear network approaches.
    pub fn least_squares_line(&self) -> (f64, f64) {
        let n = self.len() as f64;
        let mean_x = self.celsius.iter().map(|&x| x as f64).sum::<f64>() / n;
        let mean_y = self.fahrenheit.iter().map(|&y| y as f64).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (&x, &y) in self.celsius.iter().zip(&self.fahrenheit) {
            sxy += (x as f64 - mean_x) * (y as f64 - mean_y);
            sxx += (x as f64 - mean_x) * (x as f64 - mean_x);
        }
        let slope = if sxx == 0.0 { 0.0 } else { sxy / sxx };
        (slope, mean_y - slope * mean_x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blank_lines_and_crlf_are_accepted() {
        let data = Dataset::from_csv_str("celsius,fahrenheit\r\n\r\n0,32\r\n100, 212\n\n").unwrap();
        assert_eq!(data.celsius, vec![0.0, 100.0]);
        assert_eq!(data.fahrenheit, vec![32.0, 212.0]);
    }

    #[test]
    fn a_byte_order_mark_is_not_data() {
        let data = Dataset::from_csv_str("\u{feff}0,32\n100,212\n").unwrap();
        assert_eq!(data.celsius, vec![0.0, 100.0]);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("0,32\n1,2,3\n", "line 2", "2 columns"),
            ("0,32\nx,5\n", "line 2", "not a number"),
            ("0,32\n\n5,NaN\n", "line 3", "not finite"),
            ("0,32\n5,inf\n", "line 2", "not finite"),
            ("celsius,fahrenheit\n", "", "no data rows"),
            ("", "", "no data rows"),
        ];
        for (text, line, words) in cases {
            let err = Dataset::from_csv_str(text).unwrap_err().to_string();
            assert!(err.contains(line) && err.contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn formula_data_is_seeded_in_range_and_exact() {
        let data = Dataset::from_formula(1000, 7);
        assert_eq!(data, Dataset::from_formula(1000, 7));
        assert_ne!(data, Dataset::from_formula(1000, 8));
        assert!(data.celsius.iter().all(|&c| (-50.0..150.0).contains(&c)));
        let (slope, intercept) = data.least_squares_line();
        // f32 rounding of values up to 302 F: the line is exact to ~1e-6.
        assert!((slope - 1.8).abs() < 1e-6 && (intercept - 32.0).abs() < 1e-4);
    }

    #[test]
    fn least_squares_of_the_seed_pairs_matches_the_closed_form() {
        // Closed form from shared/notes/keras-semantics.md (numpy, f64).
        let (slope, intercept) = Dataset::seed().least_squares_line();
        assert!((slope - 1.79794910748196).abs() < 1e-12);
        assert!((intercept - 31.9525256361565).abs() < 1e-10);
    }
}
