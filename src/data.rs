//! Training data: inputs and targets, celsius and fahrenheit unless a
//! CSV's header names other columns ([`ColumnNames`]). The fields keep the
//! seed's names whatever the columns are.

use crate::error::{Error, Result};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;
use std::path::Path;

/// Samples of inputs and targets, stored as f32 as Keras casts them to
/// `floatx`, row-major: sample s's inputs are `x[s * x_width..][..x_width]`,
/// its targets `y[s * y_width..][..y_width]` (the seed's: one celsius, one
/// fahrenheit). [`crate::TrainConfig::validate`] checks the shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Inputs, `x_width` per sample.
    pub x: Vec<f32>,
    /// Targets, `y_width` per sample.
    pub y: Vec<f32>,
    /// Input columns: the network's input width.
    pub x_width: usize,
    /// Target columns: the network's output units.
    pub y_width: usize,
}

impl Dataset {
    /// One input and one target per sample.
    pub fn new(x: Vec<f32>, y: Vec<f32>) -> Self {
        Self {
            x,
            y,
            x_width: 1,
            y_width: 1,
        }
    }

    /// Host memory one sample takes: its inputs and targets, f32 each.
    pub fn bytes_per_sample(&self) -> u64 {
        4 * (self.x_width + self.y_width) as u64
    }

    /// The seed program's 7 pairs (fahrenheit rounded to whole degrees).
    pub fn seed() -> Self {
        Self::new(
            vec![-40.0, -10.0, 0.0, 8.0, 15.0, 22.0, 38.0],
            vec![-40.0, 14.0, 32.0, 46.0, 59.0, 72.0, 100.0],
        )
    }

    /// Sample s's inputs.
    pub fn x_row(&self, s: usize) -> &[f32] {
        &self.x[s * self.x_width..][..self.x_width]
    }

    /// Sample s's targets.
    pub fn y_row(&self, s: usize) -> &[f32] {
        &self.y[s * self.y_width..][..self.y_width]
    }

    /// Rows `range`'s inputs and targets, row-major.
    pub fn rows(&self, range: std::ops::Range<usize>) -> (&[f32], &[f32]) {
        (
            &self.x[range.start * self.x_width..range.end * self.x_width],
            &self.y[range.start * self.y_width..range.end * self.y_width],
        )
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
        Self::new(celsius, fahrenheit)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x.len() / self.x_width.max(1)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// Reads a CSV of celsius and fahrenheit columns; see
    /// [`Dataset::from_csv_str`]. Errors name the file, the 1-based line and
    /// the column.
    pub fn from_csv_file(path: &Path, delimiter: Option<u8>) -> Result<Self> {
        Self::from_csv_file_with(path, delimiter, &ColumnNames::default())
    }

    /// [`Dataset::from_csv_file`] with the input and target taken from the
    /// header's columns `names`.
    pub fn from_csv_file_with(
        path: &Path,
        delimiter: Option<u8>,
        names: &ColumnNames,
    ) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: format!("cannot read data file {}", path.display()),
            source,
        })?;
        Self::from_csv_str_with(&text, delimiter, names)
            .map_err(|error| error.in_data_file(path.into()))
    }

    /// Parses CSV text with the columns `celsius` and `fahrenheit`; see
    /// [`Dataset::from_csv_str_with`].
    pub fn from_csv_str(text: &str, delimiter: Option<u8>) -> Result<Self> {
        Self::from_csv_str_with(text, delimiter, &ColumnNames::default())
    }

    /// Parses CSV text (RFC 4180 through the `csv` crate: quoted cells,
    /// CRLF, blank lines and a byte-order mark accepted; cells trimmed).
    ///
    /// - The delimiter is `delimiter`, or detected from the first non-blank
    ///   line: `;` if it has one, else `,`, else a tab if it has one.
    /// - In a `;`-separated file a number may have a decimal comma (`36,6`),
    ///   as spreadsheets write them where the comma is the decimal mark.
    /// - A first row with no number in it is a header. The columns are then
    ///   taken by name: `names` (`celsius` and `fahrenheit` by default) in
    ///   any case and order, other columns ignored; a header naming neither
    ///   is refused with what it does name. Without a header every row is
    ///   input, target.
    pub fn from_csv_str_with(
        text: &str,
        delimiter: Option<u8>,
        names: &ColumnNames,
    ) -> Result<Self> {
        // A byte-order mark (spreadsheet exports write one) is not data.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(text));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .delimiter(delimiter)
            .from_reader(text.as_bytes());
        let mut data = Dataset {
            x: Vec::new(),
            y: Vec::new(),
            x_width: names.x.len(),
            y_width: names.y.len(),
        };
        let mut columns: Option<Columns> = None;
        let mut row = Vec::new();
        // The csv crate's own line count skips blank lines, so lines are
        // counted here from the records' byte offsets.
        let mut lines = LineCounter::new(text);
        for record in reader.records() {
            // The text is UTF-8 and rows may differ in length: the reader
            // has nothing left to refuse but I/O on a string, which cannot fail.
            let record = record.map_err(|error| {
                Error::data(None, None, format!("cannot read the CSV: {error}"))
            })?;
            let line = lines.line_at(record.position().map_or(0, |p| p.byte()));
            // A blank (or all-whitespace) line is one empty cell.
            if record.len() == 1 && record[0].is_empty() {
                continue;
            }
            let columns = match &columns {
                Some(columns) => columns,
                None => {
                    // A header has at least two cells, a name in one and a
                    // number in none (a row of empty cells, or one cell of
                    // a file cut at the wrong delimiter, is a broken row).
                    let header = record.len() >= 2
                        && record
                            .iter()
                            .all(|cell| parse_number(cell, delimiter).is_none())
                        && record.iter().any(|cell| !cell.is_empty());
                    let found = if header {
                        Columns::from_header(&record, line, names)?
                    } else {
                        Columns::positional(names)
                    };
                    let columns = columns.insert(found);
                    if header {
                        continue;
                    }
                    columns
                }
            };
            columns.values(&record, line, delimiter, names, &mut row)?;
            let (x, y) = row.split_at(data.x_width);
            data.x.extend_from_slice(x);
            data.y.extend_from_slice(y);
        }
        if data.is_empty() {
            return Err(Error::data(
                None,
                None,
                format!("no data rows: expected lines of {}", names.listed()),
            ));
        }
        Ok(data)
    }

    /// The column names of CSV text's header (the first non-blank row, when
    /// it has no number in it, as [`Dataset::from_csv_str_with`] decides);
    /// `None` for a file without one. What a face offers as `--x` and `--y`.
    pub fn csv_header(text: &str, delimiter: Option<u8>) -> Option<Vec<String>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(text));
        let first = text.lines().find(|line| !line.trim().is_empty())?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .delimiter(delimiter)
            .from_reader(first.as_bytes());
        let record = reader.records().next()?.ok()?;
        let header = record.len() >= 2
            && record
                .iter()
                .all(|cell| parse_number(cell, delimiter).is_none());
        header.then(|| record.iter().map(str::to_string).collect())
    }

    /// The ordinary least-squares line `y = slope * x + intercept` of
    /// one-column data, in f64: the answer every converged run of a linear
    /// network approaches (of the first input and target columns for wider
    /// data).
    pub fn least_squares_line(&self) -> (f64, f64) {
        let n = self.len() as f64;
        let xs = || (0..self.len()).map(|s| self.x_row(s)[0] as f64);
        let ys = || (0..self.len()).map(|s| self.y_row(s)[0] as f64);
        let mean_x = xs().sum::<f64>() / n;
        let mean_y = ys().sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (x, y) in xs().zip(ys()) {
            sxy += (x - mean_x) * (y - mean_y);
            sxx += (x - mean_x) * (x - mean_x);
        }
        let slope = if sxx == 0.0 { 0.0 } else { sxy / sxx };
        (slope, mean_y - slope * mean_x)
    }
}

/// The delimiter of a CSV whose first non-blank line is in `text`: `;`,
/// else `,`, else a tab (see [`Dataset::from_csv_str`]).
fn detect_delimiter(text: &str) -> u8 {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let first = first.unwrap_or("");
    if first.contains(';') {
        b';'
    } else if !first.contains(',') && first.contains('\t') {
        b'\t'
    } else {
        b','
    }
}

/// A cell's number: Rust's float syntax, or in a `;`-separated file one
/// with a decimal comma in place of the point (`-36,6`).
fn parse_number(cell: &str, delimiter: u8) -> Option<f32> {
    cell.parse().ok().or_else(|| {
        let decimal_comma =
            delimiter == b';' && cell.matches(',').count() == 1 && !cell.contains('.');
        decimal_comma
            .then(|| cell.replace(',', ".").parse().ok())
            .flatten()
    })
}

/// 1-based line numbers of byte offsets, asked for in increasing order:
/// each call counts only the line breaks since the last one.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    /// The line of the record at `byte`. The csv crate gives a record the
    /// offset where it started looking for it, before any blank lines it
    /// skipped; no record starts with a line break, so those are passed over.
    fn line_at(&mut self, byte: u64) -> u64 {
        let mut end = (byte as usize).clamp(self.offset, self.text.len());
        while matches!(self.text.get(end), Some(b'\n' | b'\r')) {
            end += 1;
        }
        // A line ends at LF, CRLF or a lone CR, as the csv crate reads them.
        let text = self.text;
        self.line += (self.offset..end)
            .filter(|&i| text[i] == b'\n' || (text[i] == b'\r' && text.get(i + 1) != Some(&b'\n')))
            .count() as u64;
        self.offset = end;
        self.line
    }
}

/// The names of a CSV's input and target columns (`--x`, `--y`), matched
/// case-insensitively; they also label the reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnNames {
    /// The input columns, in the network's input order.
    pub x: Vec<String>,
    /// The target columns, one per output unit.
    pub y: Vec<String>,
}

impl Default for ColumnNames {
    /// The seed's `celsius` and `fahrenheit`.
    fn default() -> Self {
        Self {
            x: vec!["celsius".into()],
            y: vec!["fahrenheit".into()],
        }
    }
}

impl ColumnNames {
    /// Whether these are the seed's columns, whose values the reports
    /// write in degrees.
    pub fn are_temperatures(&self) -> bool {
        *self == Self::default()
    }

    /// Every column, inputs first.
    fn all(&self) -> impl Iterator<Item = &String> {
        self.x.iter().chain(&self.y)
    }

    /// `a,b,c` of every column, inputs first.
    fn listed(&self) -> String {
        self.all().map(String::as_str).collect::<Vec<_>>().join(",")
    }
}

/// Where each input and target is in a row, and how many cells a row has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Columns {
    /// The cell of every column, inputs first.
    at: Vec<usize>,
    /// The cells a row has: the header's count, or exactly the columns.
    count: usize,
    from_header: bool,
}

impl Columns {
    /// Without a header: the inputs, then the targets.
    fn positional(names: &ColumnNames) -> Self {
        let count = names.x.len() + names.y.len();
        Columns {
            at: (0..count).collect(),
            count,
            from_header: false,
        }
    }

    /// The columns a header row names, found case-insensitively.
    fn from_header(header: &csv::StringRecord, line: u64, names: &ColumnNames) -> Result<Self> {
        let find = |name: &str| {
            header
                .iter()
                .position(|cell| cell.eq_ignore_ascii_case(name))
        };
        let found: Vec<Option<usize>> = names.all().map(|name| find(name)).collect();
        if found.iter().all(Option::is_some) {
            return Ok(Columns {
                at: found.into_iter().flatten().collect(),
                count: header.len(),
                from_header: true,
            });
        }
        let missing: Vec<&str> = names
            .all()
            .zip(&found)
            .filter(|(_, at)| at.is_none())
            .map(|(name, _)| name.as_str())
            .collect();
        let cells: Vec<String> = header.iter().map(|c| format!("{c:?}")).collect();
        Err(Error::data(
            Some(line),
            None,
            format!(
                "the header names the columns {} but not {}; name the columns {} (any case, \
                 any order), choose others (--x and --y), or leave the header out (then the \
                 columns are {}, in that order)",
                cells.join(", "),
                missing.join(" or "),
                names.listed(),
                names.listed()
            ),
        ))
    }

    /// The row's values, inputs first; errors name line and column.
    fn values(
        &self,
        record: &csv::StringRecord,
        line: u64,
        delimiter: u8,
        names: &ColumnNames,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if record.len() != self.count {
            let expected = if self.from_header {
                format!("{} columns as the header has", self.count)
            } else {
                format!("{} columns ({})", self.count, names.listed())
            };
            let message = format!("expected {expected}, found {}", record.len());
            return Err(Error::data(Some(line), None, message));
        }
        out.clear();
        for (&index, name) in self.at.iter().zip(names.all()) {
            let cell = &record[index];
            let column = index + 1;
            let problem = match parse_number(cell, delimiter) {
                None => "is not a number",
                Some(v) if !v.is_finite() => "is not finite",
                Some(v) => {
                    out.push(v);
                    continue;
                }
            };
            let message = format!("{name} {cell:?} {problem}");
            return Err(Error::data(Some(line), Some(column), message));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_names_the_columns_a_face_offers() {
        let header =
            Dataset::csv_header("\u{feff}\n celsius ; wind_kmh;wind_chill\n-5;10;-9\n", None);
        assert_eq!(header.unwrap(), ["celsius", "wind_kmh", "wind_chill"]);
        assert_eq!(Dataset::csv_header("1,2\n3,4\n", None), None);
        assert_eq!(Dataset::csv_header("", None), None);
    }

    #[test]
    fn header_blank_lines_and_crlf_are_accepted() {
        let data =
            Dataset::from_csv_str("celsius,fahrenheit\r\n\r\n0,32\r\n100, 212\n\n", None).unwrap();
        assert_eq!(data.x, vec![0.0, 100.0]);
        assert_eq!(data.y, vec![32.0, 212.0]);
    }

    #[test]
    fn other_columns_are_taken_by_the_names_given() {
        let names = ColumnNames {
            x: vec!["x".into()],
            y: vec!["Warm".into()],
        };
        let text = "day,warm,X\nmon,1,20.5\ntue,0,3\n";
        let data = Dataset::from_csv_str_with(text, None, &names).unwrap();
        assert_eq!(data.x, vec![20.5, 3.0]);
        assert_eq!(data.y, vec![1.0, 0.0]);
        let missing = ColumnNames {
            x: vec!["x".into()],
            y: vec!["cold".into()],
        };
        let error = Dataset::from_csv_str_with(text, None, &missing)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 1") && error.contains("but not cold") && error.contains("--x"),
            "{error}"
        );
        let error = Dataset::from_csv_str_with("x,warm\n1,oops\n", None, &names)
            .unwrap_err()
            .to_string();
        assert!(error.contains("Warm \"oops\" is not a number"), "{error}");
    }

    #[test]
    fn a_byte_order_mark_is_not_data() {
        let data = Dataset::from_csv_str("\u{feff}0,32\n100,212\n", None).unwrap();
        assert_eq!(data.x, vec![0.0, 100.0]);
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
            let err = Dataset::from_csv_str(text, None).unwrap_err().to_string();
            assert!(err.contains(line) && err.contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn header_columns_are_taken_by_name_in_any_order_and_case() {
        for text in [
            "fahrenheit,celsius\n212,100\n32,0\n",
            "Fahrenheit , CELSIUS\n212,100\n32,0\n",
            "date,fahrenheit,note,celsius\nmon,212,boils,100\ntue,32,melts,0\n",
        ] {
            let data = Dataset::from_csv_str(text, None).unwrap();
            assert_eq!(data.x, vec![100.0, 0.0], "{text:?}");
            assert_eq!(data.y, vec![212.0, 32.0], "{text:?}");
        }
    }

    #[test]
    fn a_header_naming_neither_column_is_refused_with_what_it_names() {
        for (text, found) in [
            ("C,F\n0,32\n", "\"C\", \"F\""),
            ("celsius,temp_f\n0,32\n", "\"celsius\", \"temp_f\""),
        ] {
            let err = Dataset::from_csv_str(text, None).unwrap_err().to_string();
            assert!(
                err.contains("line 1") && err.contains(found),
                "{text:?}: {err}"
            );
        }
        let err = Dataset::from_csv_str("celsius,temp_f\n0,32\n", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("but not fahrenheit"), "{err}");
    }

    #[test]
    fn quoted_cells_and_other_delimiters_are_read() {
        let cases = [
            ("\"-40\",\"-40\"\n\"100\",\"212\"\n", None),
            ("celsius;fahrenheit\n-40;-40\n100;212\n", None),
            ("-40\t-40\n100\t212\n", None),
            ("-40|-40\n100|212\n", Some(b'|')),
            ("celsius;fahrenheit\n-40,0;-40\n100;212,0\n", None),
            ("-40;-40,0\n100;212\n", None),
            (
                "\"celsius\";\"fahrenheit\"\r\n\"-40\";\"-40\"\r\n100;212\r\n",
                None,
            ),
        ];
        for (text, delimiter) in cases {
            let data = Dataset::from_csv_str(text, delimiter).unwrap();
            assert_eq!(data.x, vec![-40.0, 100.0], "{text:?}");
            assert_eq!(data.y, vec![-40.0, 212.0], "{text:?}");
        }
        // A file cut with a delimiter other than the one given.
        let err = Dataset::from_csv_str("1;2\n", Some(b','))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("expected 2 columns"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let cases = [
            (
                "celsius,fahrenheit\n0,32\n1,x\n",
                "line 3, column 2: fahrenheit \"x\" is not a number",
            ),
            (
                "fahrenheit,celsius\n32,0\n1,x\n",
                "line 3, column 2: celsius \"x\" is not a number",
            ),
            (
                "a,celsius,fahrenheit\n1,2,3\n1,2\n",
                "line 3: expected 3 columns",
            ),
            ("0,32\n\"1,2\n", "line 2"),
            ("0,32\r1,x\r", "line 2, column 2"),
            ("0,32\r\n\r\n1,x\r\n", "line 3, column 2"),
            // Decimal commas only where `;` separates the cells.
            ("0,32\n1,5,3\n", "line 2: expected 2 columns"),
        ];
        for (text, words) in cases {
            let err = Dataset::from_csv_str(text, None).unwrap_err().to_string();
            assert!(err.contains(words), "{text:?}: {err}");
        }
        // The place is in the error's fields too, for a program to use.
        let error = Dataset::from_csv_str("0,32\n1,x\n", None).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Data {
                    line: Some(2),
                    column: Some(2),
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn formula_data_is_seeded_in_range_and_exact() {
        let data = Dataset::from_formula(1000, 7);
        assert_eq!(data, Dataset::from_formula(1000, 7));
        assert_ne!(data, Dataset::from_formula(1000, 8));
        assert!(data.x.iter().all(|&c| (-50.0..150.0).contains(&c)));
        let (slope, intercept) = data.least_squares_line();
        // f32 rounding of values up to 302 F: the line is exact to ~1e-6.
        assert!((slope - 1.8).abs() < 1e-6 && (intercept - 32.0).abs() < 1e-4);
    }

    #[test]
    fn least_squares_of_the_seed_pairs_matches_the_closed_form() {
        // Closed form: docs/keras-semantics.md, section 6 (exact: 4734/2633, 84131/2633).
        let (slope, intercept) = Dataset::seed().least_squares_line();
        assert!((slope - 1.79794910748196).abs() < 1e-12);
        assert!((intercept - 31.9525256361565).abs() < 1e-10);
    }
}
