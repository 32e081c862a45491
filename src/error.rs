//! The library's errors: one variant per way a run can fail, each carrying
//! what a caller needs to act on it, and a message that says what was
//! wrong and where. The command line turns them into its messages
//! (src/main.rs prints the whole chain of causes).

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in gpu-c2f.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter on the backends tried.
    #[error("{0}")]
    NoAdapter(String),
    /// Adapters were found, but none the selector names.
    #[error("{0}")]
    AdapterNotFound(String),
    /// The adapter or device cannot run the kernels (too few storage
    /// buffers per stage), or refused a device.
    #[error("{0}")]
    AdapterUnsuitable(String),
    /// The run needs a buffer, an index or a step count beyond what the
    /// device or the kernels allow.
    #[error("{0}")]
    LimitExceeded(String),
    /// A training setting no run can take: an architecture, batch size,
    /// learning rate, schedule or workgroup size out of range.
    #[error("{0}")]
    InvalidConfig(String),
    /// A model's weights do not make a model: shapes, non-finite values.
    #[error("{0}")]
    InvalidModel(String),
    /// The loss or a weight stopped being finite.
    #[error(transparent)]
    Diverged(#[from] Diverged),
    /// A data file (or text) that cannot be read as celsius,fahrenheit pairs.
    #[error("{}", DataLocation { file, line, column, message })]
    Data {
        /// The data file, once known ([`Error::in_data_file`]); `None` for text.
        file: Option<PathBuf>,
        /// 1-based line of the file.
        line: Option<u64>,
        /// 1-based column (cell) of the line.
        column: Option<usize>,
        /// What is wrong, without the place.
        message: String,
    },
    /// A model file that cannot be read as a model.
    #[error("{}{message}", file.as_ref().map(|f| format!("in model file {}: ", f.display())).unwrap_or_default())]
    ModelFile {
        /// The model file, when the model was read from one.
        file: Option<PathBuf>,
        /// What is wrong with its contents.
        message: String,
    },
    /// The WGSL modules failed the device's validation.
    #[error("the training shaders ({label}) failed to build: {message}")]
    ShaderBuild {
        /// The shader module's label (schedule and architecture).
        label: String,
        /// The device's validation error.
        message: String,
    },
    /// The GPU reported errors (validation, the driver's log).
    #[error("the GPU reported an error on {adapter}:\n{message}")]
    Gpu {
        /// The adapter's name.
        adapter: String,
        /// What went wrong; several errors one per line.
        message: String,
    },
    /// An allocation the device could not make.
    #[error("the GPU ran out of memory for this run's buffers: {0}")]
    OutOfMemory(String),
    /// The device was lost (driver reset, GPU removed).
    #[error("the GPU ({adapter}) was lost: {message}")]
    DeviceLost {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason for the loss and its message.
        message: String,
    },
    /// The GPU did not finish in time.
    #[error("the GPU ({adapter}) did not finish within {seconds} s; the driver may be hung")]
    Timeout {
        /// The adapter's name.
        adapter: String,
        /// The wait's limit, in seconds.
        seconds: u64,
    },
    /// A file the library reads or writes.
    #[error("{what}")]
    Io {
        /// What was being done and to which file (the error's message).
        what: String,
        /// The I/O error behind it.
        #[source]
        source: std::io::Error,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `in data file F: line L, column C: message`, each part when known.
struct DataLocation<'a> {
    file: &'a Option<PathBuf>,
    line: &'a Option<u64>,
    column: &'a Option<usize>,
    message: &'a str,
}

impl fmt::Display for DataLocation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = self.file {
            write!(f, "in data file {}: ", file.display())?;
        }
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        f.write_str(self.message)
    }
}

impl Error {
    /// A data error at `line` (and `column`), not yet tied to a file.
    pub fn data(line: Option<u64>, column: Option<usize>, message: impl Into<String>) -> Self {
        Error::Data {
            file: None,
            line,
            column,
            message: message.into(),
        }
    }

    /// This error as met in data file `file`.
    pub fn in_data_file(self, file: PathBuf) -> Self {
        match self {
            Error::Data {
                line,
                column,
                message,
                ..
            } => Error::Data {
                file: Some(file),
                line,
                column,
                message,
            },
            other => other,
        }
    }
}

/// `bail!` for a variant that takes one message.
macro_rules! fail {
    ($variant:ident, $($message:tt)+) => {
        return Err($crate::error::Error::$variant(format!($($message)+)))
    };
}
pub(crate) use fail;

/// Training stopped being meaningful: after training step `batch` of
/// `epoch` (both 1-based) the loss, or a weight after that step's update,
/// was not a finite number. Both trainers return it (the GPU flags it in
/// the kernels) and never a model, and say it in the same words: the step
/// where it happened, not a loss value, since the paths hold different
/// partial sums of a broken epoch; and, when the data itself is too large
/// for f32 arithmetic, which value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diverged {
    /// 1-based epoch of the step.
    pub epoch: usize,
    /// 1-based batch (step) within that epoch.
    pub batch: usize,
    /// Batches per epoch (at least 1); above 1 the message names the batch.
    pub batches_per_epoch: usize,
    /// The data's largest value, when it is too large for f32 training:
    /// then the data, not the learning rate, is the cause.
    pub overflow: Option<DataOverflow>,
}

/// A data value too large for training in f32: beyond the square root of
/// f32's largest number (1.8e19), so squaring it, as the squared error and
/// Adam's second moment do with the errors and gradients that scale with
/// it, overflows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataOverflow {
    /// 0-based sample (row of the data).
    pub sample: usize,
    /// Whether the value is a target (else an input).
    pub target: bool,
    /// Its 0-based column among the inputs or the targets.
    pub column: usize,
    /// The value.
    pub value: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_errors_say_file_line_and_column() {
        let error = Error::data(Some(3), Some(2), "fahrenheit \"x\" is not a number")
            .in_data_file("temps.csv".into());
        assert_eq!(
            error.to_string(),
            "in data file temps.csv: line 3, column 2: fahrenheit \"x\" is not a number"
        );
        assert!(matches!(
            error,
            Error::Data {
                line: Some(3),
                column: Some(2),
                ..
            }
        ));
    }
}
