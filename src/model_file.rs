//! Model files: JSON whose `layers` holds one `{"kernel", "bias"}` per Dense
//! layer in Keras's `get_weights()` layout (`kernel[input][unit]`), so
//! weights exported from Keras load directly. Other keys are ignored on
//! load; gpu-c2f writes a few for people reading the file.
//!
//! Output files are written to a temporary file beside the target and
//! renamed into place, so an existing file is never left half-written.

use crate::model::{DenseWeights, Model};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize, Deserialize)]
struct ModelFile {
    layers: Vec<DenseWeights>,
}

#[derive(Serialize)]
struct SavedModel<'a> {
    format: &'static str,
    architecture: String,
    #[serde(flatten)]
    extra: &'a serde_json::Value,
    layers: Vec<DenseWeights>,
}

/// Reads a model file; errors name the file and, for shape problems, the layer.
pub fn load(path: &Path) -> Result<Model> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    parse(&text).with_context(|| format!("in model file {}", path.display()))
}

/// Parses model-file JSON text.
pub fn parse(text: &str) -> Result<Model> {
    let file: ModelFile = serde_json::from_str(text).context(
        "not a model file: expected JSON like {\"layers\": [{\"kernel\": [[...]], \"bias\": [...]}, ...]}",
    )?;
    Model::from_dense_weights(&file.layers)
}

/// The JSON text `save` writes: the layers plus `extra` (an object of
/// descriptive keys such as the seed and final loss).
pub fn to_json(model: &Model, extra: &serde_json::Value) -> Result<String> {
    if model.params().iter().any(|p| !p.is_finite()) {
        bail!("refusing to save a model with non-finite weights");
    }
    let saved = SavedModel {
        format: "gpu-c2f model v1",
        architecture: model.architecture().describe(),
        extra,
        layers: model.dense_weights(),
    };
    Ok(serde_json::to_string_pretty(&saved)? + "\n")
}

/// An output file reserved before the work that fills it: creating the
/// temporary file up front proves the folder is writable (fail fast), and
/// [`OutputFile::commit`] renames it over the target only once it is
/// complete. Dropped without a commit, the temporary file is removed.
pub struct OutputFile {
    target: PathBuf,
    temporary: PathBuf,
    file: Option<File>,
}

impl OutputFile {
    pub fn create(target: &Path, flag: &str) -> Result<Self> {
        if target.is_dir() {
            bail!(
                "{flag} {}: is a folder, expected a file name",
                target.display()
            );
        }
        let folder = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .with_context(|| format!("{flag} {}: not a file name", target.display()))?;
        let temporary = folder.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&temporary).with_context(|| {
            format!(
                "{flag} {}: cannot write in {}",
                target.display(),
                folder.display()
            )
        })?;
        Ok(Self {
            target: target.to_path_buf(),
            temporary,
            file: Some(file),
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Writes `bytes`, flushes them to disk and renames the file into place.
    pub fn commit(mut self, bytes: &[u8]) -> Result<()> {
        let mut file = self.file.take().expect("committed once");
        let write = file.write_all(bytes).and_then(|_| file.sync_all());
        drop(file);
        write
            .and_then(|_| std::fs::rename(&self.temporary, &self.target))
            .with_context(|| format!("cannot write {}", self.target.display()))
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        // After a commit the temporary name no longer exists; otherwise the
        // work failed and the partial file goes.
        let _ = std::fs::remove_file(&self.temporary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;

    #[test]
    fn saved_json_loads_back_to_the_same_model() {
        let model = Model::glorot_uniform(Architecture::new(&[5, 2]).unwrap(), 9);
        let json = to_json(&model, &serde_json::json!({"seed": 9})).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["seed"], 9);
        assert_eq!(value["architecture"], "1-5-2-1");
        assert_eq!(parse(&json).unwrap(), model);
    }

    #[test]
    fn keras_layout_is_kernel_input_by_unit() {
        let model = parse(
            r#"{"layers": [{"kernel": [[1, 2]], "bias": [0, 0]},
                                         {"kernel": [[3], [4]], "bias": [5]}]}"#,
        )
        .unwrap();
        // y = 3 * (1 x) + 4 * (2 x) + 5 = 11 x + 5
        assert_eq!(model.predict(2.0), 27.0);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("not json", "not a model file"),
            (r#"{"layers": []}"#, "no layers"),
            (
                r#"{"layers": [{"kernel": [[1, 2]], "bias": [0]}]}"#,
                "layer 0",
            ),
            (
                r#"{"layers": [{"kernel": [[1, 2]], "bias": [0, 0]}, {"kernel": [[1]], "bias": [0]}]}"#,
                "layer 1",
            ),
            (
                r#"{"layers": [{"kernel": [[1e999]], "bias": [0]}]}"#,
                "not a model file",
            ),
        ];
        for (text, words) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(words), "{text}: {err}");
        }
    }

    #[test]
    fn uncommitted_output_leaves_the_old_file_alone() {
        let folder = std::env::temp_dir().join(format!("gpu-c2f-out-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let target = folder.join("model.json");
        std::fs::write(&target, "old").unwrap();
        drop(OutputFile::create(&target, "--save").unwrap());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        OutputFile::create(&target, "--save")
            .unwrap()
            .commit(b"new")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
