//! The WGSL sources: train.wgsl, the templates the fused and samples
//! schedules fill in (shaders/*.wgsl, with `{{named}}` holes), and the
//! module a run compiles, labelled by schedule and architecture and written
//! to `GPU_C2F_DUMP_WGSL=DIR` when that is set.

use super::plan::Tile;
use crate::error::{Error, Result};
use std::borrow::Cow;

/// Every training kernel and the functions they share.
pub const TRAIN_SHADER: &str = include_str!("../../shaders/train.wgsl");

/// The fused schedule's entry point, with the hole `{{operations}}`.
pub const FUSED_STEPS_TEMPLATE: &str = include_str!("../../shaders/fused_steps.wgsl");

/// The samples schedule's kernel, with the holes `{{load_weights}}`,
/// `{{zero_sums}}`, `{{per_sample}}` and `{{store_sums}}`.
pub const SAMPLE_PARTIALS_TEMPLATE: &str = include_str!("../../shaders/sample_partials.wgsl");

/// The environment variable naming a folder to write every compiled module to.
pub const DUMP_VARIABLE: &str = "GPU_C2F_DUMP_WGSL";

/// The markers around train.wgsl's code for tiles wider than 4.
pub const WIDE_TILES_BEGIN: &str = "// wide tiles only {";
pub const WIDE_TILES_END: &str = "// } wide tiles only";

/// train.wgsl as a module whose dense layers run in `tile`: without the
/// code marked "wide tiles only" when neither side of the tile exceeds 4,
/// so the driver never compiles what cannot run (on lavapipe that halves
/// the fused schedule's pipeline creation).
pub fn train_shader(tile: Tile) -> Cow<'static, str> {
    if tile.is_wide() {
        return Cow::Borrowed(TRAIN_SHADER);
    }
    let mut narrow = String::with_capacity(TRAIN_SHADER.len());
    let mut rest = TRAIN_SHADER;
    while let Some(begin) = rest.find(WIDE_TILES_BEGIN) {
        narrow.push_str(&rest[..begin]);
        let end = rest[begin..]
            .find(WIDE_TILES_END)
            .expect("train.wgsl's wide-tile markers come in pairs (src/gpu/tests/shaders.rs)");
        rest = &rest[begin + end + WIDE_TILES_END.len()..];
    }
    narrow.push_str(rest);
    Cow::Owned(narrow)
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

/// A WGSL module to compile, and its label (the shader module's label in
/// wgpu's errors and in graphics debuggers, and the dump's file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSource {
    pub label: String,
    pub text: String,
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
