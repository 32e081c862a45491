//! Property tests for everything that reads untrusted text: the CSV data
//! parser, the model-file parser and the command-line flags. Each property
//! asserts that the parser never panics, and, where the answer is well
//! defined, that it accepts exactly what it should (with the generated
//! numbers, bit for bit) and rejects what it should (naming the line or the
//! layer). `cargo fuzz` targets for the two file parsers live in `fuzz/`.

use clap::Parser;
use gpu_c2f::cli::Cli;
use gpu_c2f::model_file;
use gpu_c2f::{Architecture, Dataset, DenseWeights, Model, TrainConfig};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Number, Value};
use std::ffi::OsString;

/// 256 cases per property keeps the whole file well under a second in a
/// debug build. Failures are not persisted to files (the shrunk input is printed).
/// `PROPTEST_CASES=N` in the environment runs N cases instead.
fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            256
        },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- numbers

/// Finite f32 values, with the awkward ones (signed zero, extremes,
/// subnormals) drawn more often than chance would draw them.
fn finite_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => any::<f32>().prop_filter("finite", |v| v.is_finite()),
        2 => -1000.0f32..1000.0,
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            -f32::from_bits(1),
            f32::EPSILON,
            16_777_217.0,
        ]),
    ]
}

/// An f32 written in one of the forms Rust prints and parses back exactly:
/// `{}` (no exponent), `{:?}`, `{:e}`, `{:E}`, optionally with a `+`.
fn format_f32(value: f32, style: u8) -> String {
    let text = match style % 4 {
        0 => format!("{value}"),
        1 => format!("{value:?}"),
        2 => format!("{value:e}"),
        _ => format!("{value:E}"),
    };
    if style >= 4 && !text.starts_with('-') {
        format!("+{text}")
    } else {
        text
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

// -------------------------------------------------------------------- CSV

#[derive(Debug, Clone)]
struct CsvRow {
    celsius: f32,
    fahrenheit: f32,
    styles: (u8, u8),
    /// Padding before celsius, after celsius, before fahrenheit, after it.
    pads: [&'static str; 4],
    blank_lines_before: Vec<&'static str>,
}

#[derive(Debug, Clone)]
struct CsvFile {
    blank_lines_first: Vec<&'static str>,
    header: Option<&'static str>,
    rows: Vec<CsvRow>,
    blank_lines_last: Vec<&'static str>,
    /// Bit `i % 64` set: line `i` ends with CRLF instead of LF.
    crlf_mask: u64,
    final_newline: bool,
}

fn pad() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", " ", "  ", "\t", " \t "])
}

fn blank_line() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", " ", "\t", "   \t"])
}

/// Header lines: the two columns named (any case, padded, quoted).
fn header() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "celsius,fahrenheit",
        "CELSIUS,Fahrenheit",
        " Celsius , Fahrenheit ",
        "\"celsius\",\"fahrenheit\"",
        "\" celsius \",fahrenheit",
    ])
}

fn csv_row() -> impl Strategy<Value = CsvRow> {
    (
        finite_f32(),
        finite_f32(),
        (0u8..8, 0u8..8),
        [pad(), pad(), pad(), pad()],
        vec(blank_line(), 0..3),
    )
        .prop_map(
            |(celsius, fahrenheit, styles, pads, blank_lines_before)| CsvRow {
                celsius,
                fahrenheit,
                styles,
                pads,
                blank_lines_before,
            },
        )
}

fn csv_file(rows: std::ops::Range<usize>) -> impl Strategy<Value = CsvFile> {
    (
        vec(blank_line(), 0..3),
        prop::option::of(header()),
        vec(csv_row(), rows),
        vec(blank_line(), 0..3),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(blank_lines_first, header, rows, blank_lines_last, crlf_mask, final_newline)| {
                CsvFile {
                    blank_lines_first,
                    header,
                    rows,
                    blank_lines_last,
                    crlf_mask,
                    final_newline,
                }
            },
        )
}

impl CsvRow {
    fn line(&self) -> String {
        let [a, b, c, d] = self.pads;
        format!(
            "{a}{}{b},{c}{}{d}",
            format_f32(self.celsius, self.styles.0),
            format_f32(self.fahrenheit, self.styles.1)
        )
    }
}

impl CsvFile {
    /// The text, and the 1-based line number of every data row. Row
    /// `replace.0`, if given, is written as `replace.1` instead.
    fn render(&self, replace: Option<(usize, &str)>) -> (String, Vec<usize>) {
        let mut lines: Vec<String> = Vec::new();
        let mut row_lines = Vec::new();
        lines.extend(self.blank_lines_first.iter().map(|s| s.to_string()));
        if let Some(header) = self.header {
            lines.push(header.to_string());
        }
        for (index, row) in self.rows.iter().enumerate() {
            lines.extend(row.blank_lines_before.iter().map(|s| s.to_string()));
            match replace {
                Some((at, text)) if at == index => lines.push(text.to_string()),
                _ => lines.push(row.line()),
            }
            row_lines.push(lines.len());
        }
        lines.extend(self.blank_lines_last.iter().map(|s| s.to_string()));
        let mut text = String::new();
        let count = lines.len();
        for (index, line) in lines.into_iter().enumerate() {
            text += &line;
            if index + 1 < count || self.final_newline {
                text += if self.crlf_mask >> (index % 64) & 1 == 1 {
                    "\r\n"
                } else {
                    "\n"
                };
            }
        }
        (text, row_lines)
    }
}

/// A cell that is not a number at all (so `str::parse::<f32>` fails).
fn not_a_number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "", "abc", "1.2.3", "--1", "0x10", "1e", "e5", "1_000", "½", "١٢", "1 2", "5\"",
            "NaNa", "∞", "+-1", ".",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z_°%]{1,8}",
    ]
    .prop_filter("must not parse as f32", |s| s.parse::<f32>().is_err())
}

/// A cell that parses as an f32 but is not finite.
fn not_finite() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "NaN",
        "nan",
        "-NaN",
        "inf",
        "-inf",
        "+Infinity",
        "INF",
        "1e39",
        "-1e39",
        "3.5e38",
        "1e999",
    ])
}

#[derive(Debug, Clone)]
enum Corruption {
    /// A line with other than 2 comma-separated cells.
    Columns(&'static str),
    /// One cell (0 celsius, 1 fahrenheit) is not a number.
    NotANumber(usize, String),
    /// One cell is NaN or infinite (or overflows f32).
    NotFinite(usize, &'static str),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        prop::sample::select(vec!["5", "1,2,3", "1,2,", ",,", " 7 ", "1,2,3,4"])
            .prop_map(Corruption::Columns),
        (0usize..2, not_a_number()).prop_map(|(c, s)| Corruption::NotANumber(c, s)),
        (0usize..2, not_finite()).prop_map(|(c, s)| Corruption::NotFinite(c, s)),
    ]
}

impl Corruption {
    /// The corrupted line, its other cell taken from `row`, and words the
    /// error must contain besides the line number.
    fn line(&self, row: &CsvRow) -> (String, Vec<&'static str>) {
        let column = |c: usize| if c == 0 { "celsius" } else { "fahrenheit" };
        let cells = |c: usize, bad: &str| {
            let good = if c == 0 {
                format_f32(row.fahrenheit, row.styles.1)
            } else {
                format_f32(row.celsius, row.styles.0)
            };
            if c == 0 {
                format!("{bad},{good}")
            } else {
                format!("{good},{bad}")
            }
        };
        match self {
            Corruption::Columns(text) => (text.to_string(), vec!["expected 2 columns"]),
            Corruption::NotANumber(c, bad) => (cells(*c, bad), vec![column(*c), "not a number"]),
            Corruption::NotFinite(c, bad) => (cells(*c, bad), vec![column(*c), "not finite"]),
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes at all, read as (lossy) UTF-8: an answer, never a panic.
    #[test]
    fn csv_arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(data) = Dataset::from_csv_str(&text, None) {
            prop_assert!(!data.is_empty());
            prop_assert_eq!(data.x.len(), data.y.len());
        }
    }

    /// Text made of the characters a CSV of numbers uses reaches deeper into
    /// the parser than random bytes; whatever it accepts is finite.
    #[test]
    fn csv_number_like_text_never_panics(text in "[0-9eE.,+\\- \t\r\nnaNifINFcelsiu]{0,200}") {
        if let Ok(data) = Dataset::from_csv_str(&text, None) {
            prop_assert!(!data.is_empty());
            prop_assert_eq!(data.x.len(), data.y.len());
            prop_assert!(data.x.iter().chain(&data.y).all(|v| v.is_finite()));
        }
    }

    /// Well-formed files (header or not, blank lines, CRLF or LF, padding,
    /// any number format Rust prints) give back exactly the numbers written.
    #[test]
    fn csv_well_formed_files_parse_to_the_written_numbers(file in csv_file(1..24)) {
        let (text, _) = file.render(None);
        let data = Dataset::from_csv_str(&text, None)
            .map_err(|e| TestCaseError::fail(format!("{text:?} was refused: {e:#}")))?;
        let celsius: Vec<f32> = file.rows.iter().map(|r| r.celsius).collect();
        let fahrenheit: Vec<f32> = file.rows.iter().map(|r| r.fahrenheit).collect();
        prop_assert_eq!(bits(&data.x), bits(&celsius), "{:?}", text);
        prop_assert_eq!(bits(&data.y), bits(&fahrenheit), "{:?}", text);
    }

    /// A header and blank lines but no rows: refused as having no data.
    #[test]
    fn csv_files_without_rows_are_refused(file in csv_file(0..1)) {
        let (text, _) = file.render(None);
        let err = format!("{:#}", Dataset::from_csv_str(&text, None).unwrap_err());
        prop_assert!(err.contains("no data rows"), "{:?}: {}", text, err);
    }

    /// One corrupted row (wrong column count, a non-number, NaN or an
    /// infinity) is refused, and the error names its 1-based line.
    #[test]
    fn csv_one_corrupted_line_is_refused_naming_its_line(
        file in csv_file(1..16),
        bad in corruption(),
        pick in any::<prop::sample::Index>(),
    ) {
        let at = pick.index(file.rows.len());
        let (line, words) = bad.line(&file.rows[at]);
        let (text, row_lines) = file.render(Some((at, &line)));
        // "line 3: expected 2 columns" or "line 3, column 1 (celsius): ...".
        let expected = format!("line {}", row_lines[at]);
        match Dataset::from_csv_str(&text, None) {
            Ok(data) => prop_assert!(false, "{:?} was accepted: {:?}", text, data),
            Err(err) => {
                let err = format!("{err:#}");
                let named = [":", ","].iter().any(|end| err.contains(&format!("{expected}{end}")));
                prop_assert!(named, "{:?}: {} (wanted {})", text, err, expected);
                for word in words {
                    prop_assert!(err.contains(word), "{:?}: {} (wanted {:?})", text, err, word);
                }
            }
        }
    }
}

// ------------------------------------------------------------- model files

/// JSON numbers, among them ones f32 cannot hold (1e39 overflows to
/// infinity) and signed zero.
fn json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |v| Number::from_f64(v).map(Value::Number)),
        finite_f32().prop_map(|v| Value::from(v as f64)),
        prop::sample::select(vec![
            1e39,
            -1e39,
            -0.0,
            0.0,
            1e308,
            -1e308,
            3.5e38,
            3.4028235e38,
            1e-320,
            f64::MIN_POSITIVE,
        ])
        .prop_map(Value::from),
    ]
}

/// Arbitrary JSON trees: scalars, strings, arrays and objects (whose keys
/// are often the ones the model file uses), nested a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        let key = prop_oneof![
            prop::sample::select(vec!["layers", "kernel", "bias", "format"])
                .prop_map(str::to_string),
            ".{0,6}",
        ];
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(key, inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Model-shaped JSON with random shapes and random numbers (sometimes
/// other values): gets past serde into the shape checks.
fn model_shaped_json() -> impl Strategy<Value = Value> {
    let cell = prop_oneof![8 => json_number(), 1 => json_value()];
    let layer = (vec(vec(cell.clone(), 0..5), 0..5), vec(cell, 0..5)).prop_map(|(kernel, bias)| {
        let kernel: Vec<Value> = kernel.into_iter().map(Value::Array).collect();
        serde_json::json!({ "kernel": kernel, "bias": bias })
    });
    vec(layer, 0..5).prop_map(|layers| serde_json::json!({ "layers": layers }))
}

/// Well-formed Keras weights: 0 to 3 hidden layers of width 1 to 6, then
/// Dense(1); every kernel `[inputs][units]`, every number finite.
fn model_layers() -> impl Strategy<Value = Vec<DenseWeights>> {
    vec(1usize..=6, 0..4).prop_flat_map(|hidden| {
        let mut widths = vec![1];
        widths.extend(&hidden);
        widths.push(1);
        let layers: Vec<_> = widths
            .windows(2)
            .map(|pair| {
                let (inputs, units) = (pair[0], pair[1]);
                (
                    vec(vec(finite_f32(), units), inputs),
                    vec(finite_f32(), units),
                )
                    .prop_map(|(kernel, bias)| DenseWeights {
                        kernel,
                        bias,
                        activation: Default::default(),
                    })
            })
            .collect();
        layers
    })
}

/// How to write a model file by hand: number format, key order, extra keys,
/// whitespace.
#[derive(Debug, Clone)]
struct JsonStyle {
    number_style: u8,
    bias_first: bool,
    extra_keys: bool,
    pretty: bool,
}

fn json_style() -> impl Strategy<Value = JsonStyle> {
    (0u8..4, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(number_style, bias_first, extra_keys, pretty)| JsonStyle {
            number_style,
            bias_first,
            extra_keys,
            pretty,
        },
    )
}

/// Writes `layers` as a model file. Number `replace.0` (counting every
/// kernel and bias value in file order) is written as `replace.1`.
fn model_json(
    layers: &[DenseWeights],
    style: &JsonStyle,
    replace: Option<(usize, &str)>,
) -> String {
    let space = if style.pretty { "\n    " } else { "" };
    let mut count = 0usize;
    let mut number = |value: f32| {
        let text = match replace {
            Some((at, text)) if at == count => text.to_string(),
            _ => format_f32(value, style.number_style),
        };
        count += 1;
        text
    };
    let mut written = Vec::new();
    for layer in layers {
        let rows: Vec<String> = layer
            .kernel
            .iter()
            .map(|row| {
                let cells: Vec<String> = row.iter().map(|&v| number(v)).collect();
                format!("[{}]", cells.join(", "))
            })
            .collect();
        let kernel = format!("\"kernel\": [{space}{}]", rows.join(&format!(",{space}")));
        let cells: Vec<String> = layer.bias.iter().map(|&v| number(v)).collect();
        let bias = format!("\"bias\" :[{}]", cells.join(","));
        let mut fields = if style.bias_first {
            vec![bias, kernel]
        } else {
            vec![kernel, bias]
        };
        if style.extra_keys {
            fields.insert(1, "\"activation\": null, \"name\": \"dense\"".to_string());
        }
        written.push(format!("{{{space}{}}}", fields.join(&format!(",{space}"))));
    }
    let extra = if style.extra_keys {
        "\"format\": \"gpu-c2f model v1\", \"seed\": 42, "
    } else {
        ""
    };
    format!(
        "{{{extra}\"layers\": [{space}{}]}}\n",
        written.join(&format!(",{space}"))
    )
}

fn weight_bits(layers: &[DenseWeights]) -> Vec<(Vec<Vec<u32>>, Vec<u32>)> {
    layers
        .iter()
        .map(|l| (l.kernel.iter().map(|r| bits(r)).collect(), bits(&l.bias)))
        .collect()
}

/// What every accepted model must satisfy.
fn check_accepted(model: &Model) -> Result<(), TestCaseError> {
    let widths = model.architecture().widths();
    prop_assert!(widths.len() >= 2 && widths.iter().all(|&w| w >= 1));
    prop_assert!(model.params().iter().all(|v| v.is_finite()));
    prop_assert_eq!(model.params().len(), model.architecture().param_count());
    let again = Model::from_dense_weights(&model.dense_weights())
        .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    prop_assert_eq!(&again, model);
    Ok(())
}

#[derive(Debug, Clone)]
enum Breakage {
    /// Remove one row of layer K's kernel.
    DropRow,
    /// Add one unit to layer K's bias (its kernel rows keep their length).
    AddBiasUnit,
    /// Give the last layer no units (any other count is a network of that
    /// many outputs).
    NoLastUnits,
    /// Write a number f32 cannot hold, or a non-finite one, in layer K.
    Huge(&'static str),
}

fn breakage() -> impl Strategy<Value = Breakage> {
    prop_oneof![
        Just(Breakage::DropRow),
        Just(Breakage::AddBiasUnit),
        Just(Breakage::NoLastUnits),
        prop::sample::select(vec!["1e39", "-1e39", "3.5e38", "-1e300"]).prop_map(Breakage::Huge),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes at all as a model file: an answer, never a panic.
    #[test]
    fn model_file_arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        if let Ok(model) = model_file::parse(&String::from_utf8_lossy(&bytes)) {
            check_accepted(&model)?;
        }
    }

    /// Any JSON value as a model file: an answer, never a panic, and what is
    /// accepted is a well-formed model.
    #[test]
    fn model_file_arbitrary_json_never_panics(value in json_value()) {
        let text = serde_json::to_string(&value).unwrap();
        if let Ok(model) = model_file::parse(&text) {
            check_accepted(&model)?;
        }
    }

    /// `{"layers": [...]}` with random shapes and numbers (huge ones, -0.0,
    /// integers, the odd string): never a panic; what is accepted is
    /// well-formed and holds exactly the numbers of the file (as f32).
    #[test]
    fn model_file_random_shapes_never_panic(value in model_shaped_json()) {
        let text = serde_json::to_string(&value).unwrap();
        if let Ok(model) = model_file::parse(&text) {
            check_accepted(&model)?;
            let layers: Vec<DenseWeights> = serde_json::from_value(value["layers"].clone()).unwrap();
            prop_assert_eq!(weight_bits(&model.dense_weights()), weight_bits(&layers));
        }
    }

    /// A well-formed file cut short or with one character changed: never a panic.
    #[test]
    fn model_file_damaged_text_never_panics(
        layers in model_layers(),
        style in json_style(),
        cut in any::<prop::sample::Index>(),
        junk in prop::sample::select(vec!["", "]", "}", "[", ",", "\"", "-", "e", "9", "é", "\u{0}"]),
    ) {
        let text = model_json(&layers, &style, None);
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let damaged = format!("{}{junk}", &text[..at]);
        if let Ok(model) = model_file::parse(&damaged) {
            check_accepted(&model)?;
        }
    }

    /// Well-formed files, however they are written (number format, key
    /// order, extra keys, whitespace), load to exactly the weights written.
    #[test]
    fn model_file_well_formed_files_load_to_the_written_weights(
        layers in model_layers(),
        style in json_style(),
    ) {
        let text = model_json(&layers, &style, None);
        let model = model_file::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text} was refused: {e:#}")))?;
        prop_assert_eq!(weight_bits(&model.dense_weights()), weight_bits(&layers), "{}", text);
        let hidden: Vec<usize> = layers[..layers.len() - 1].iter().map(|l| l.bias.len()).collect();
        prop_assert_eq!(model.architecture(), &Architecture::new(&hidden).unwrap());
    }

    /// Shapes that do not chain, a last layer of no units, or a
    /// number f32 cannot hold: refused, and the error names the layer.
    #[test]
    fn model_file_broken_shapes_are_refused_naming_the_layer(
        mut layers in model_layers(),
        style in json_style(),
        broken in breakage(),
        pick in any::<prop::sample::Index>(),
    ) {
        let last = layers.len() - 1;
        let mut k = pick.index(layers.len());
        let mut replace = None;
        match &broken {
            Breakage::DropRow => {
                let row = pick.index(layers[k].kernel.len());
                layers[k].kernel.remove(row);
            }
            Breakage::AddBiasUnit => layers[k].bias.push(0.5),
            Breakage::NoLastUnits => {
                k = last;
                for row in &mut layers[k].kernel {
                    row.clear();
                }
                layers[k].bias.clear();
            }
            Breakage::Huge(text) => {
                // Index of one of layer k's numbers among all numbers in file order.
                let before: usize = layers[..k]
                    .iter()
                    .map(|l| l.kernel.iter().map(Vec::len).sum::<usize>() + l.bias.len())
                    .sum();
                let here = layers[k].kernel.iter().map(Vec::len).sum::<usize>() + layers[k].bias.len();
                replace = Some((before + pick.index(here), *text));
            }
        }
        let text = model_json(&layers, &style, replace);
        let expected = format!("layer {k}:");
        match model_file::parse(&text) {
            Ok(model) => prop_assert!(false, "{} was accepted: {:?}", text, model),
            Err(err) => {
                let err = format!("{err:#}");
                prop_assert!(err.contains(&expected), "{}: {} (wanted {})", text, err, expected);
                if matches!(broken, Breakage::Huge(_)) {
                    prop_assert!(err.contains("non-finite"), "{}: {}", text, err);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ flags

/// Flag values: sensible ones, negative and huge numbers, empty strings,
/// unicode, things that look like flags, random text.
fn flag_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "0",
            "1",
            "-1",
            "-0",
            "+5",
            "0.1",
            "-0.1",
            "1e-45",
            "1e39",
            "-1e39",
            "NaN",
            "inf",
            "-inf",
            "none",
            "NONE",
            "3,3",
            "3,,3",
            ",",
            "0,3",
            "64, 17",
            "auto",
            "0",
            "vulkan",
            "gl",
            "metal",
            "dx12",
            "all",
            "fused",
            "samples",
            "dispatch",
            "AUTO",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "99999999999999999999999999999",
            "1e400",
            "°C",
            "\u{202e}",
            "日本語",
            "\u{0}",
            "--",
            "-",
            "--json",
            "--hidden",
            "model.json",
            "/",
            ".",
            "../x.csv",
            "16:relu,8:tanh",
            "3:swish",
            "8:",
            ":relu",
            "sigmoid",
            "leaky_relu",
            "mse",
            "bce",
            "binary_crossentropy",
            "huber",
            "0.2",
            "0.99",
            "true",
            "false",
        ])
        .prop_map(str::to_string),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f32>().prop_map(|v| format!("{v}")),
        vec(1usize..100, 0..5)
            .prop_map(|w| { w.iter().map(usize::to_string).collect::<Vec<_>>().join(",") }),
        ".{0,12}",
    ]
}

const VALUE_FLAGS: [&str; 21] = [
    "--hidden",
    "--epochs",
    "--learning-rate",
    "--predict",
    "--seed",
    "--schedule",
    "--backend",
    "--adapter",
    "--data",
    "--init",
    "--save",
    "--samples",
    "--plot",
    "--output-activation",
    "--loss",
    "--validation-split",
    "--patience",
    "--min-delta",
    "--x",
    "--y",
    "--shuffle",
];
const SWITCHES: [&str; 10] = [
    "--json",
    "--from-logits",
    "--restore-best-weights",
    "--cpu-reference",
    "--list-adapters",
    "--plot-log",
    "--compare",
    "--quiet",
    "--help",
    "--version",
];

/// One or two command-line words: `--flag value`, `--flag=value`, a bare
/// switch, a value alone, an unknown flag.
fn flag_words() -> impl Strategy<Value = Vec<OsString>> {
    prop_oneof![
        6 => (prop::sample::select(VALUE_FLAGS.to_vec()), flag_value())
            .prop_map(|(f, v)| vec![f.into(), v.into()]),
        3 => (prop::sample::select(VALUE_FLAGS.to_vec()), flag_value())
            .prop_map(|(f, v)| vec![format!("{f}={v}").into()]),
        2 => prop::sample::select(SWITCHES.to_vec()).prop_map(|s| vec![s.into()]),
        1 => prop::sample::select(VALUE_FLAGS.to_vec()).prop_map(|f| vec![f.into()]),
        1 => flag_value().prop_map(|v| vec![v.into()]),
        1 => "-{1,2}[a-z-]{0,10}".prop_map(|v| vec![v.into()]),
        1 => (prop::sample::select(VALUE_FLAGS.to_vec()), vec(any::<u8>(), 0..8))
            .prop_map(|(f, bytes)| vec![f.into(), os_bytes(bytes)]),
    ]
}

/// Arguments need not be UTF-8 on Unix.
#[cfg(unix)]
fn os_bytes(bytes: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes)
}

#[cfg(not(unix))]
fn os_bytes(bytes: Vec<u8>) -> OsString {
    String::from_utf8_lossy(&bytes).into_owned().into()
}

fn parse_flags(words: &[OsString]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once(OsString::from("gpu-c2f")).chain(words.iter().cloned()))
}

fn args(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

proptest! {
    #![proptest_config(config())]

    /// Random flag combinations with random values: an `Err` is fine, a
    /// panic is a bug. Whatever is accepted passes the checks training
    /// would run on it (widths >= 1, a finite positive learning rate,
    /// finite predictions, --samples in range) and the conflicts hold
    /// (--samples/--data, --compare/--cpu-reference,
    /// --plot-log only with --plot).
    #[test]
    fn flags_random_combinations_never_panic(words in vec(flag_words(), 0..8)) {
        let words: Vec<OsString> = words.into_iter().flatten().collect();
        if let Ok(cli) = parse_flags(&words) {
            let learning_rate = cli.learning_rate.unwrap_or(gpu_c2f::training::DEFAULT_LEARNING_RATE);
            prop_assert!(learning_rate.is_finite() && learning_rate > 0.0);
            prop_assert!(cli.predict.iter().flatten().all(|v| v.is_finite()));
            prop_assert!(!(cli.samples.is_some() && cli.data.is_some()));
            prop_assert!(cli.samples.is_none_or(|n| (1..=u32::MAX as u64).contains(&n)));
            prop_assert!(!cli.plot_log || cli.plot.is_some());
            prop_assert!(!(cli.compare && cli.cpu_reference));
            // --min-delta and --restore-best-weights only with --patience.
            prop_assert!(cli.patience.is_some() || (cli.min_delta == 0.0 && !cli.restore_best_weights));
            if let Some(hidden) = &cli.hidden {
                // Size limits (MAX_WIDTH, MAX_PARAMS, ...) are checked when the
                // network is built, not by the flag parser: any answer, no panic.
                prop_assert!(hidden.widths().iter().all(|&w| w >= 1));
                let layers: Vec<_> = hidden.0.iter().map(|l| (l.units, l.activation)).collect();
                let _ = Architecture::with_layers(&layers, cli.output_activation.unwrap_or_default());
            }
            let config = TrainConfig {
                data: Dataset::seed(),
                epochs: cli.epochs,
                learning_rate,
                batch_size: cli.batch_size.0,
                shuffle_seed: cli.seed.unwrap_or(gpu_c2f::cli::DEFAULT_SEED),
                shuffle: cli.shuffle,
                loss: Default::default(),
                validation_split: 0.0,
                early_stopping: None,
                metrics: Vec::new(),
                adam_state: None,
            };
            prop_assert!(config.validate().is_ok());
        }
    }

    /// Valid values are accepted and read exactly.
    #[test]
    fn flags_valid_values_are_read_exactly(
        epochs in any::<u32>(),
        rate in finite_f32().prop_filter("positive", |v| *v > 0.0),
        seed in any::<u64>(),
        hidden in vec(1usize..=4096, 1..6),
        predict in vec(finite_f32(), 0..4),
        style in 0u8..8,
    ) {
        let hidden_text = hidden.iter().map(usize::to_string).collect::<Vec<_>>().join(" , ");
        let mut words = args(&["--epochs", &epochs.to_string(), "--seed", &seed.to_string()]);
        words.push(format!("--learning-rate={}", format_f32(rate, style)).into());
        words.extend(args(&["--hidden", &hidden_text]));
        for value in &predict {
            words.push(format!("--predict={}", format_f32(*value, style)).into());
        }
        let cli = parse_flags(&words).map_err(|e| TestCaseError::fail(format!("{words:?}: {e}")))?;
        prop_assert_eq!(cli.epochs, epochs as usize);
        prop_assert_eq!(cli.learning_rate.map(f32::to_bits), Some(rate.to_bits()));
        prop_assert_eq!(cli.seed, Some(seed));
        prop_assert_eq!(cli.hidden.map(|h| h.widths()), Some(hidden));
        prop_assert_eq!(bits(&cli.predict.concat()), bits(&predict));
    }

    /// Learning rates that are not finite and positive, widths of 0, negative
    /// epochs, and non-finite predictions are refused.
    #[test]
    fn flags_invalid_values_are_refused(
        rate_text in prop_oneof![
            finite_f32().prop_map(|v| format!("{}", -v.abs())),
            not_finite().prop_map(str::to_string),
            Just("0".to_string()),
        ],
        zero_at in any::<prop::sample::Index>(),
        hidden in vec(1usize..=64, 1..5),
        epochs in 1u64..=u64::MAX,
        bad_number in not_finite(),
    ) {
        let words = args(&["--learning-rate", &rate_text]);
        prop_assert!(parse_flags(&words).is_err(), "{:?} was accepted", words);

        let mut widths = hidden;
        let at = zero_at.index(widths.len());
        widths[at] = 0;
        let text = widths.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        let words = args(&["--hidden", &text]);
        prop_assert!(parse_flags(&words).is_err(), "{:?} was accepted", words);

        let words = args(&["--epochs", &format!("-{epochs}")]);
        prop_assert!(parse_flags(&words).is_err(), "{:?} was accepted", words);

        let words = args(&["--predict", bad_number]);
        prop_assert!(parse_flags(&words).is_err(), "{:?} was accepted", words);
    }
}

/// `--predict -1e-7` (a negative number with a negative exponent, as `{:?}`
/// prints small negative f32 values) as two words: clap's own negative-number
/// test (clap_lex `is_number`) does not allow a `-` after the `e`, so these
/// flags take hyphen values and let their parsers judge them.
#[test]
fn flags_negative_numbers_with_negative_exponents_are_values() {
    for value in ["-1e-7", "-2.5E-3"] {
        for flag in ["--predict", "--learning-rate"] {
            let words = args(&[flag, value]);
            let parsed = parse_flags(&words);
            if flag == "--predict" {
                assert!(parsed.is_ok(), "{words:?}: {}", parsed.unwrap_err());
            } else {
                let err = parsed.unwrap_err().to_string();
                assert!(err.contains("greater than 0"), "{words:?}: {err}");
            }
        }
    }
}
