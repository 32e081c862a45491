//! The network: a stack of Dense layers, each with a Keras activation
//! (linear unless given), its parameter layout in one flat `f32` vector, and
//! Keras's default initialisation.
//!
//! Parameters are stored in the order of Keras's `model.trainable_weights`:
//! layer 0 kernel, layer 0 bias, layer 1 kernel, ... Each kernel is row-major
//! `kernel[input][unit]`, the layout of Keras's `get_weights()`.

use crate::activation::Activation;
use crate::error::{Result, fail};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// Most units in one layer. A kernel thread loops over a layer's inputs or
/// units, and llvmpipe ends any invocation's loops after 65 535 iterations;
/// 16 384 keeps every loop well inside that.
pub const MAX_WIDTH: usize = 16_384;

/// Most hidden layers (an epoch's dispatch list holds at most 64 entries).
pub const MAX_HIDDEN_LAYERS: usize = 28;

/// Most parameters: 2^26 weights, with Adam's two moments 768 MiB of f32.
pub const MAX_PARAMS: usize = 1 << 26;

/// Widths of every layer of activations, input (1) and output (1) included
/// (the seed network 1 -> 3 -> 3 -> 1 is `[1, 3, 3, 1]`), and each Dense
/// layer's activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Architecture {
    widths: Vec<usize>,
    /// One per Dense layer, the output layer's last.
    activations: Vec<Activation>,
}

/// Where one Dense layer's kernel and bias sit in the flat parameter vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenseLayout {
    /// Width of the layer's input: the kernel's rows.
    pub inputs: usize,
    /// The layer's units: the width of its output, the kernel's columns and
    /// the bias's length.
    pub units: usize,
    /// Index of `kernel[0][0]`; `kernel[i][j]` is at `kernel_offset + i * units + j`.
    pub kernel_offset: usize,
    /// Index of `bias[0]`, right after the kernel.
    pub bias_offset: usize,
    /// What the layer applies to its sums.
    pub activation: Activation,
}

impl Architecture {
    /// One input, the given hidden widths, one output, every layer linear
    /// (see [`Self::with_activations`]). Every width must be
    /// in 1..=[`MAX_WIDTH`], at most [`MAX_HIDDEN_LAYERS`] hidden layers and
    /// [`MAX_PARAMS`] parameters in all, checked before anything is allocated.
    pub fn new(hidden: &[usize]) -> Result<Self> {
        if let Some(pos) = hidden.iter().position(|&w| w == 0) {
            fail!(
                InvalidConfig,
                "hidden layer {} has width 0; every width must be at least 1",
                pos + 1
            );
        }
        if let Some(pos) = hidden.iter().position(|&w| w > MAX_WIDTH) {
            fail!(
                InvalidConfig,
                "hidden layer {} has width {}; at most {MAX_WIDTH} units per layer are supported",
                pos + 1,
                hidden[pos]
            );
        }
        if hidden.len() > MAX_HIDDEN_LAYERS {
            fail!(
                InvalidConfig,
                "{} hidden layers; at most {MAX_HIDDEN_LAYERS} are supported",
                hidden.len()
            );
        }
        let mut widths = Vec::with_capacity(hidden.len() + 2);
        widths.push(1);
        widths.extend_from_slice(hidden);
        widths.push(1);
        let activations = vec![Activation::Linear; widths.len() - 1];
        Self {
            widths,
            activations,
        }
        .within_param_limit()
    }

    /// This network, unless it has more than [`MAX_PARAMS`] parameters.
    fn within_param_limit(self) -> Result<Self> {
        let count = self.param_count();
        if count > MAX_PARAMS {
            fail!(
                InvalidConfig,
                "a {} network has {count} parameters; at most {MAX_PARAMS} are supported",
                self.describe()
            );
        }
        Ok(self)
    }

    /// The seed's model: Dense(3), Dense(3), Dense(1).
    pub fn seed() -> Self {
        Self::new(&[3, 3]).expect("the seed widths are valid")
    }

    /// Hidden layers of these widths and activations, then the output unit
    /// with `output` (`Dense(16, activation="relu")` is `(16, Relu)`).
    pub fn with_layers(hidden: &[(usize, Activation)], output: Activation) -> Result<Self> {
        let widths: Vec<usize> = hidden.iter().map(|&(width, _)| width).collect();
        let activations = hidden.iter().map(|&(_, activation)| activation);
        Self::new(&widths)?.with_activations(activations.chain([output]).collect())
    }

    /// The same hidden layers between `inputs` inputs and `outputs` output
    /// units (the data's columns); the same limits as [`Self::new`].
    pub fn with_io(self, inputs: usize, outputs: usize) -> Result<Self> {
        for (what, width) in [("input", inputs), ("output", outputs)] {
            if !(1..=MAX_WIDTH).contains(&width) {
                fail!(
                    InvalidConfig,
                    "the {what} layer has width {width}; it must be 1 to {MAX_WIDTH}"
                );
            }
        }
        let mut widths = self.widths;
        let last = widths.len() - 1;
        widths[0] = inputs;
        widths[last] = outputs;
        Self { widths, ..self }.within_param_limit()
    }

    /// The same widths with these activations, one per Dense layer (the
    /// hidden layers' in order, then the output layer's).
    pub fn with_activations(self, activations: Vec<Activation>) -> Result<Self> {
        if activations.len() != self.activations.len() {
            fail!(
                InvalidConfig,
                "a {} network has {} Dense layers, but {} activations were given",
                self.describe(),
                self.activations.len(),
                activations.len()
            );
        }
        Ok(Self {
            activations,
            ..self
        })
    }

    /// Activation widths, input and output included.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Each Dense layer's activation, the output layer's last.
    pub fn activations(&self) -> &[Activation] {
        &self.activations
    }

    /// Whether every layer is linear (the whole network is then affine).
    pub fn is_linear(&self) -> bool {
        self.activations.iter().all(|a| a.is_linear())
    }

    /// Kernel and bias positions of every Dense layer, in parameter order.
    pub fn layers(&self) -> Vec<DenseLayout> {
        let mut offset = 0;
        self.widths
            .windows(2)
            .zip(&self.activations)
            .map(|(pair, &activation)| {
                let (inputs, units) = (pair[0], pair[1]);
                let layout = DenseLayout {
                    inputs,
                    units,
                    kernel_offset: offset,
                    bias_offset: offset + inputs * units,
                    activation,
                };
                offset += inputs * units + units;
                layout
            })
            .collect()
    }

    /// Total number of trainable parameters (22 for the seed network).
    pub fn param_count(&self) -> usize {
        self.widths.windows(2).map(|p| p[0] * p[1] + p[1]).sum()
    }

    /// A short name such as `1-3-3-1`, each nonlinear layer's width
    /// followed by its activation (`1-16relu-16relu-1`); it also names
    /// files, so it holds no `:`.
    pub fn describe(&self) -> String {
        let layers = self.activations.iter().map(|a| match a {
            Activation::Linear => "",
            other => other.name(),
        });
        let parts: Vec<String> = std::iter::once(String::new())
            .chain(layers.map(str::to_string))
            .zip(&self.widths)
            .map(|(activation, width)| format!("{width}{activation}"))
            .collect();
        parts.join("-")
    }
}

/// One Dense layer's weights in Keras's `get_weights()` layout, and its
/// activation (linear when a model file leaves it out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseWeights {
    /// `kernel[input][unit]`.
    pub kernel: Vec<Vec<f32>>,
    /// `bias[unit]`.
    pub bias: Vec<f32>,
    /// The layer's activation; a file without it, or with `null` (Keras's
    /// `activation=None`), means linear.
    #[serde(default, deserialize_with = "linear_when_null")]
    pub activation: Activation,
}

fn linear_when_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Activation, D::Error> {
    Ok(Option::<Activation>::deserialize(deserializer)?.unwrap_or_default())
}

/// A network's architecture and all its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    architecture: Architecture,
    params: Vec<f32>,
}

impl Model {
    /// Wraps a flat parameter vector; its length must match the architecture.
    pub fn from_params(architecture: Architecture, params: Vec<f32>) -> Result<Self> {
        if params.len() != architecture.param_count() {
            fail!(
                InvalidModel,
                "a {} network has {} parameters, got {}",
                architecture.describe(),
                architecture.param_count(),
                params.len()
            );
        }
        Ok(Self {
            architecture,
            params,
        })
    }

    /// Keras's default initialisation: every kernel glorot_uniform, every bias
    /// zero. Glorot uniform draws from U(-limit, limit) with
    /// `limit = sqrt(6 / (fan_in + fan_out))` (Keras `VarianceScaling`,
    /// scale 1, mode fan_avg). The stream is ChaCha8 seeded with `seed`, so a
    /// seed gives the same weights on every machine and release. Keras's own
    /// Philox stream is not reproduced; the distribution is.
    pub fn glorot_uniform(architecture: Architecture, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = vec![0.0f32; architecture.param_count()];
        for layer in architecture.layers() {
            let limit = (6.0f64 / (layer.inputs + layer.units) as f64).sqrt() as f32;
            let kernel = &mut params[layer.kernel_offset..layer.bias_offset];
            for weight in kernel {
                *weight = uniform(&mut rng, -limit, limit);
            }
        }
        Self {
            architecture,
            params,
        }
    }

    /// Builds a model from per-layer Keras weights, checking that the shapes
    /// chain: the first kernel's rows are the inputs, the last bias's
    /// entries the outputs.
    pub fn from_dense_weights(layers: &[DenseWeights]) -> Result<Self> {
        if layers.is_empty() {
            fail!(
                InvalidModel,
                "the model has no layers; expected at least one Dense layer"
            );
        }
        let mut hidden = Vec::new();
        let first_inputs = layers[0].kernel.len();
        if first_inputs == 0 {
            fail!(
                InvalidModel,
                "layer 0: kernel has no rows; a Dense layer needs at least one input"
            );
        }
        let mut inputs = first_inputs;
        let mut params = Vec::new();
        for (index, layer) in layers.iter().enumerate() {
            let name = format!("layer {index}");
            if layer.kernel.len() != inputs {
                fail!(
                    InvalidModel,
                    "{name}: kernel has {} rows but the layer before gives {inputs} input(s)",
                    layer.kernel.len()
                );
            }
            let units = layer.bias.len();
            if units == 0 {
                fail!(
                    InvalidModel,
                    "{name}: bias is empty; a Dense layer needs at least one unit"
                );
            }
            for (row_index, row) in layer.kernel.iter().enumerate() {
                if row.len() != units {
                    fail!(
                        InvalidModel,
                        "{name}: kernel row {row_index} has {} values but bias has {units}",
                        row.len()
                    );
                }
            }
            let values = layer.kernel.iter().flatten().chain(&layer.bias);
            if let Some(bad) = values.clone().find(|v| !v.is_finite()) {
                fail!(InvalidModel, "{name}: contains a non-finite number ({bad})");
            }
            params.extend(values);
            if index + 1 < layers.len() {
                hidden.push(units);
            }
            inputs = units;
        }
        let activations = layers.iter().map(|layer| layer.activation).collect();
        let architecture = Architecture::new(&hidden)?
            .with_activations(activations)?
            .with_io(first_inputs, inputs)?;
        Self::from_params(architecture, params)
    }

    /// The network's layer widths.
    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// The flat parameter vector (see the module docs for its order).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Every layer's weights in Keras's `get_weights()` layout.
    pub fn dense_weights(&self) -> Vec<DenseWeights> {
        self.architecture
            .layers()
            .iter()
            .map(|layer| DenseWeights {
                kernel: self.params[layer.kernel_offset..layer.bias_offset]
                    .chunks(layer.units)
                    .map(<[f32]>::to_vec)
                    .collect(),
                bias: self.params[layer.bias_offset..layer.bias_offset + layer.units].to_vec(),
                activation: layer.activation,
            })
            .collect()
    }

    /// The network's first output for one input (the seed's: fahrenheit
    /// for celsius), in f32 with the training kernels' order of operations.
    pub fn predict(&self, celsius: f32) -> f32 {
        self.predict_row(&[celsius])[0]
    }

    /// The network's outputs for one sample's inputs, in f32 with the
    /// training kernels' order of operations.
    ///
    /// # Panics
    ///
    /// When `inputs` is not as long as the network's input width.
    pub fn predict_row(&self, inputs: &[f32]) -> Vec<f32> {
        let width = self.architecture.widths()[0];
        assert_eq!(
            inputs.len(),
            width,
            "a {} network takes {width} input(s)",
            self.architecture.describe()
        );
        let (mut outputs, mut sums) = (Vec::new(), Vec::new());
        let layers = self.architecture.layers();
        forward_one(&self.params, &layers, inputs, &mut outputs, &mut sums);
        outputs
    }
}

/// A float in `[low, high)` from the top 24 bits of one draw: every value is
/// exactly representable, and the same bits give the same float everywhere.
fn uniform(rng: &mut ChaCha8Rng, low: f32, high: f32) -> f32 {
    let unit = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
    low + (high - low) * unit
}

/// One sample through the network, one value at a time in the kernels'
/// order (each sum from 0 in index order, the bias last, then the
/// activation): its `outputs`, and the output layer's `sums` z.
pub fn forward_one(
    params: &[f32],
    layers: &[DenseLayout],
    x: &[f32],
    outputs: &mut Vec<f32>,
    sums: &mut Vec<f32>,
) {
    outputs.clear();
    outputs.extend_from_slice(x);
    for layer in layers {
        let inputs = std::mem::take(outputs);
        sums.clear();
        for j in 0..layer.units {
            let mut sum = 0.0f32;
            for (i, &value) in inputs.iter().enumerate() {
                sum += value * params[layer.kernel_offset + i * layer.units + j];
            }
            let z = sum + params[layer.bias_offset + j];
            sums.push(z);
            outputs.push(layer.activation.apply(z));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_architecture_has_22_parameters_in_keras_order() {
        let arch = Architecture::seed();
        assert_eq!(arch.param_count(), 22);
        let layers = arch.layers();
        assert_eq!(layers[0].kernel_offset, 0);
        assert_eq!(layers[0].bias_offset, 3);
        assert_eq!(layers[1].kernel_offset, 6);
        assert_eq!(layers[2].bias_offset, 21);
    }

    #[test]
    fn glorot_uniform_stays_inside_the_keras_limit_and_biases_are_zero() {
        let model = Model::glorot_uniform(Architecture::new(&[64, 17]).unwrap(), 7);
        for (layer, weights) in model
            .architecture()
            .layers()
            .iter()
            .zip(model.dense_weights())
        {
            let limit = (6.0f32 / (layer.inputs + layer.units) as f32).sqrt();
            let kernel: Vec<f32> = weights.kernel.concat();
            assert!(kernel.iter().all(|w| w.abs() <= limit));
            // A uniform draw of this many values spans most of the range.
            if kernel.len() >= 64 {
                let max = kernel.iter().fold(0.0f32, |m, w| m.max(w.abs()));
                assert!(max > 0.9 * limit, "max {max} limit {limit}");
            }
            assert!(weights.bias.iter().all(|&b| b == 0.0));
        }
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        let a = Model::glorot_uniform(Architecture::seed(), 1);
        let b = Model::glorot_uniform(Architecture::seed(), 1);
        let c = Model::glorot_uniform(Architecture::seed(), 2);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn dense_weights_round_trip_and_shape_errors_name_the_layer() {
        let model = Model::glorot_uniform(Architecture::new(&[4, 2]).unwrap(), 3);
        let again = Model::from_dense_weights(&model.dense_weights()).unwrap();
        assert_eq!(model, again);

        let mut broken = model.dense_weights();
        broken[1].kernel.pop();
        let err = Model::from_dense_weights(&broken).unwrap_err().to_string();
        assert!(err.contains("layer 1"), "{err}");

        let mut nan = model.dense_weights();
        nan[2].bias[0] = f32::NAN;
        let err = Model::from_dense_weights(&nan).unwrap_err().to_string();
        assert!(
            err.contains("layer 2") && err.contains("non-finite"),
            "{err}"
        );
    }

    #[test]
    fn predict_composes_the_affine_layers() {
        // 1 -> 1 -> 1: y = (x * 2 + 1) * 3 + 4
        let model =
            Model::from_params(Architecture::new(&[1]).unwrap(), vec![2.0, 1.0, 3.0, 4.0]).unwrap();
        assert_eq!(model.predict(5.0), 37.0);
    }
}
