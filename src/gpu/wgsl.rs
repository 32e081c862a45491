//! The WGSL sources, one file per concept (shaders/*.wgsl, each named after
//! its Rust twin), how a module takes the parts of them a job uses, and the
//! compiled module's label and dump (`GPU_C2F_DUMP_WGSL=DIR`).
//!
//! A source marks what only some jobs need with comment lines, so every
//! file reads as plain WGSL:
//! - `// if NAME {` ... `// } NAME`: kept when the job has the feature NAME
//!   (`// if !NAME {` ... `// } !NAME`: when it has not);
//! - `// for each NAME {` ... `// } each NAME`: written once per value of
//!   the list NAME (the activations a job's layers use), each `{{NAME}}`
//!   inside replaced by the value.
//!
//! src/gpu/module.rs decides the features and lists of a job and assembles
//! its module.

use crate::error::{Error, Result};
use std::collections::BTreeSet;

/// The structs and bindings every kernel shares with the host (src/gpu/abi.rs).
pub const ABI_SHADER: &str = include_str!("../../shaders/abi.wgsl");
/// Batches and the shuffle (src/batching.rs).
pub const BATCH_SHADER: &str = include_str!("../../shaders/batch.wgsl");
/// Keras's activations (src/activation.rs).
pub const ACTIVATION_SHADER: &str = include_str!("../../shaders/activation.wgsl");
/// Dense layers forward and back (src/cpu.rs's `dense_forward`, `dense_backward`).
pub const DENSE_SHADER: &str = include_str!("../../shaders/dense.wgsl");
/// Keras's losses and metrics (src/loss.rs).
pub const LOSS_SHADER: &str = include_str!("../../shaders/loss.wgsl");
/// Sums over samples (src/cpu.rs's `gradient_partials`, `reduce_partials`).
pub const REDUCE_SHADER: &str = include_str!("../../shaders/reduce.wgsl");
/// Keras's Adam and the step records (src/optimizer.rs).
pub const ADAM_SHADER: &str = include_str!("../../shaders/adam.wgsl");
/// The history, validation and early stopping (src/training.rs).
pub const EPOCH_SHADER: &str = include_str!("../../shaders/epoch.wgsl");
/// The fused schedule's entry point, with the hole `{{operations}}`
/// (src/gpu/fused.rs).
pub const FUSED_TEMPLATE: &str = include_str!("../../shaders/fused.wgsl");
/// The samples schedule's per-sample function, with the holes
/// `{{load_weights}}`, `{{zero_sums}}`, `{{per_sample}}` and `{{store_sums}}`
/// (src/gpu/samples.rs).
pub const SAMPLES_TEMPLATE: &str = include_str!("../../shaders/samples.wgsl");

/// Every source, by file name (the tests check each).
#[cfg(test)]
pub const SOURCES: [(&str, &str); 10] = [
    ("abi.wgsl", ABI_SHADER),
    ("activation.wgsl", ACTIVATION_SHADER),
    ("adam.wgsl", ADAM_SHADER),
    ("batch.wgsl", BATCH_SHADER),
    ("dense.wgsl", DENSE_SHADER),
    ("epoch.wgsl", EPOCH_SHADER),
    ("fused.wgsl", FUSED_TEMPLATE),
    ("loss.wgsl", LOSS_SHADER),
    ("reduce.wgsl", REDUCE_SHADER),
    ("samples.wgsl", SAMPLES_TEMPLATE),
];

/// The environment variable naming a folder to write every compiled module to.
pub const DUMP_VARIABLE: &str = "GPU_C2F_DUMP_WGSL";

/// What a job takes from the sources: its features, and the values of each
/// `for each` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub features: BTreeSet<String>,
    pub lists: Vec<(String, Vec<String>)>,
}

impl Selection {
    fn has(&self, condition: &str) -> bool {
        match condition.strip_prefix('!') {
            Some(feature) => !self.features.contains(feature),
            None => self.features.contains(condition),
        }
    }

    fn list(&self, name: &str) -> &[String] {
        self.lists
            .iter()
            .find(|(list, _)| list == name)
            .map_or(&[], |(_, values)| values)
    }

    /// The parts of `source` this selection takes, without their markers.
    pub fn take(&self, source: &str) -> String {
        let lines: Vec<&str> = source.lines().collect();
        let mut out = String::with_capacity(source.len());
        self.expand(&lines, &mut out);
        out
    }

    fn expand(&self, lines: &[&str], out: &mut String) {
        let mut index = 0;
        while index < lines.len() {
            let line = lines[index].trim();
            let opening = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix(" {"))
            };
            if let Some(condition) = opening("// if ") {
                let end = closing(lines, index, &format!("// }} {condition}"));
                if self.has(condition) {
                    self.expand(&lines[index + 1..end], out);
                }
                index = end + 1;
            } else if let Some(name) = opening("// for each ") {
                let end = closing(lines, index, &format!("// }} each {name}"));
                for value in self.list(name) {
                    let mut body = String::new();
                    self.expand(&lines[index + 1..end], &mut body);
                    out.push_str(&body.replace(&format!("{{{{{name}}}}}"), value));
                }
                index = end + 1;
            } else {
                out.push_str(lines[index]);
                out.push('\n');
                index += 1;
            }
        }
    }
}

/// The line closing the section opened at `open`: sources are checked by
/// the tests, so an unclosed section is a bug in a source file.
fn closing(lines: &[&str], open: usize, marker: &str) -> usize {
    lines[open + 1..]
        .iter()
        .position(|line| line.trim() == marker)
        .map(|offset| open + 1 + offset)
        .unwrap_or_else(|| panic!("a WGSL source opens a section with no `{marker}`"))
}

/// `template` with each `{{name}}` replaced by its text. Every hole must be
/// filled and every text must have a hole: a template and its filler that
/// drift apart fail here (the tests build every template).
pub fn fill(template: &str, holes: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, text) in holes {
        let hole = format!("{{{{{name}}}}}");
        assert!(out.contains(&hole), "the template has no hole {hole}");
        out = out.replace(&hole, text);
    }
    assert!(
        !out.contains("{{"),
        "a hole of the template was left unfilled"
    );
    out
}

/// A WGSL module to compile, its label (the shader module's label in
/// wgpu's errors and in graphics debuggers, and the dump's file name), and
/// its entry points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSource {
    pub label: String,
    pub text: String,
    pub entry_points: Vec<String>,
}

impl ModuleSource {
    /// Writes the module to `DIR/<label>.wgsl` when [`DUMP_VARIABLE`] names
    /// a folder `DIR`.
    pub fn dump_if_asked(&self) -> Result<()> {
        let Some(folder) = std::env::var_os(DUMP_VARIABLE) else {
            return Ok(());
        };
        let path = std::path::Path::new(&folder).join(format!("{}.wgsl", self.label));
        std::fs::create_dir_all(&folder)
            .and_then(|()| std::fs::write(&path, &self.text))
            .map_err(|source| Error::Io {
                what: format!(
                    "cannot write the WGSL module to {} ({DUMP_VARIABLE})",
                    path.display()
                ),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(features: &[&str], lists: &[(&str, &[&str])]) -> Selection {
        Selection {
            features: features.iter().map(|f| f.to_string()).collect(),
            lists: lists
                .iter()
                .map(|(name, values)| {
                    (
                        name.to_string(),
                        values.iter().map(|v| v.to_string()).collect(),
                    )
                })
                .collect(),
        }
    }

    const SOURCE: &str = "a\n// if x {\nb\n    // if !y {\n    c\n    // } !y\n// } x\n\
                          // for each act {\nfn f_{{act}}() {}\n// if y {\ny_{{act}}\n// } y\n// } each act\nd\n";

    #[test]
    fn sections_are_kept_dropped_and_repeated() {
        assert_eq!(selection(&[], &[]).take(SOURCE), "a\nd\n");
        assert_eq!(selection(&["x"], &[]).take(SOURCE), "a\nb\n    c\nd\n");
        assert_eq!(
            selection(&["x", "y"], &[("act", &["relu", "tanh"])]).take(SOURCE),
            "a\nb\nfn f_relu() {}\ny_relu\nfn f_tanh() {}\ny_tanh\nd\n"
        );
    }

    #[test]
    #[should_panic(expected = "no `// } x`")]
    fn an_unclosed_section_is_caught() {
        selection(&[], &[]).take("// if x {\nb\n");
    }
}
