//! Keras 3's weights file (`model.save_weights("x.weights.h5")`, and
//! `model.weights.h5` inside a `.keras` archive), as keras/src/saving/
//! saving_lib.py's `H5IOStore` lays it out: one HDF5 group per layer that
//! owns variables, named after the layer's class in snake case with a
//! counter (`layers/dense`, `layers/dense_1`, ...: not the layer's own
//! name), its variables numbered in `vars` (a Dense layer's `0` is the
//! kernel, shape `(inputs, units)`, `1` the bias); the optimizer's in
//! `optimizer/vars` (`0` the iteration count, `1` the learning rate, then
//! each trainable variable's momentum and velocity, in the model's
//! variable order); the model's own in `vars` (none for a Sequential).
//! Reading and writing HDF5 is hdf5-pure's; this file only names things.

use super::{Loaded, SavedAdam, flatten_like, layer_name, model_file_error, per_layer};
use crate::error::Result;
use crate::model::{DenseWeights, Model};
use crate::optimizer::AdamState;
use crate::optimizer::MOST_ITERATIONS;
use hdf5_pure::{AttrValue, DType, File, FileBuilder};

/// The class every layer is: Keras's `Dense`, in snake case.
const DENSE: &str = "dense";

/// A Keras weights file of `model`, with Adam's variables when given.
pub(super) fn to_bytes(model: &Model, optimizer: Option<&SavedAdam>) -> Result<Vec<u8>> {
    let mut file = FileBuilder::new();
    let mut layers = file.create_group("layers");
    for (index, layer) in model.dense_weights().iter().enumerate() {
        let name = layer_name(DENSE, index);
        let mut group = layers.create_group(&name);
        let mut vars = group.create_group("vars");
        let (kernel, bias) = tensors(layer);
        vars.set_attr("name", AttrValue::String(name));
        vars.create_dataset("0")
            .with_f32_data(&kernel.0)
            .with_shape(&kernel.1);
        vars.create_dataset("1")
            .with_f32_data(&bias.0)
            .with_shape(&bias.1);
        group.add_group(vars.finish());
        layers.add_group(group.finish());
    }
    file.add_group(layers.finish());
    if let Some(adam) = optimizer {
        let mut group = file.create_group("optimizer");
        let mut vars = group.create_group("vars");
        vars.set_attr("name", AttrValue::String("adam".into()));
        // Keras's `iterations` is an integer scalar (int32 as Keras on JAX
        // writes it, int64 on TensorFlow; its loader takes either) and
        // must be a scalar, shape (); `learning_rate` a float32 scalar,
        // which Keras's loader takes over the config's.
        let iterations = [adam.state.iterations as i64];
        vars.create_dataset("0")
            .with_i64_data(&iterations)
            .with_shape(&[]);
        vars.create_dataset("1")
            .with_f32_data(&[adam.learning_rate])
            .with_shape(&[]);
        let m = per_layer(model, &adam.state.m)?;
        let v = per_layer(model, &adam.state.v)?;
        let moments = m.iter().zip(&v).flat_map(|(m, v)| {
            let ((m_kernel, m_bias), (v_kernel, v_bias)) = (tensors(m), tensors(v));
            [m_kernel, v_kernel, m_bias, v_bias]
        });
        for (index, (values, shape)) in moments.enumerate() {
            let name = (index + 2).to_string();
            vars.create_dataset(&name)
                .with_f32_data(&values)
                .with_shape(&shape);
        }
        group.add_group(vars.finish());
        file.add_group(group.finish());
    }
    let vars = file.create_group("vars");
    file.add_group(vars.finish());
    file.finish()
        .map_err(|error| model_file_error(format!("cannot write the HDF5 file: {error}")))
}

/// A layer's kernel and bias as flat values with their shapes.
type Tensor = (Vec<f32>, Vec<u64>);

fn tensors(layer: &DenseWeights) -> (Tensor, Tensor) {
    let (inputs, units) = (layer.kernel.len() as u64, layer.bias.len() as u64);
    (
        (layer.kernel.concat(), vec![inputs, units]),
        (layer.bias.clone(), vec![units]),
    )
}

/// A `.weights.h5` file's model: its Dense layers' widths and weights,
/// every layer linear (the file names no activations), Adam starting fresh.
pub(super) fn parse(bytes: &[u8]) -> Result<Loaded> {
    let file = open(bytes)?;
    Ok(Loaded {
        model: read_layers(&file, None)?,
        optimizer: None,
        has_activations: false,
        optimizer_note: None,
    })
}

/// The HDF5 file in `bytes`, or an error that says it is not one.
pub(super) fn open(bytes: &[u8]) -> Result<File> {
    File::from_bytes(bytes.to_vec())
        .map_err(|error| model_file_error(format!("not an HDF5 weights file: {error}")))
}

/// The model of a weights file's `layers` groups: `dense`, `dense_1`, ...
/// in order, with `activations` (one per layer) where given, else linear.
/// A group of another class (`dropout`, `conv2d`) is refused by name.
pub(super) fn read_layers(file: &File, activations: Option<&[crate::Activation]>) -> Result<Model> {
    let groups = (file.group("layers"))
        .and_then(|layers| layers.groups())
        .map_err(|error| model_file_error(format!("no layers group: {error}")))?;
    if let Some(other) = groups.iter().find(|name| dense_index(name).is_none()) {
        return Err(model_file_error(format!(
            "layers/{other}: only Dense layers are supported (groups: {})",
            groups.join(", ")
        )));
    }
    if let Some(activations) = activations.filter(|a| a.len() != groups.len()) {
        return Err(model_file_error(format!(
            "the config has {} Dense layers but the weights file {} (groups: {})",
            activations.len(),
            groups.len(),
            groups.join(", ")
        )));
    }
    let mut layers = Vec::new();
    while groups.contains(&layer_name(DENSE, layers.len())) {
        let name = layer_name(DENSE, layers.len());
        let path = format!("layers/{name}/vars");
        let kernel = read_f32(file, &format!("{path}/0"), 2)?;
        let bias = read_f32(file, &format!("{path}/1"), 1)?;
        if file.dataset(&format!("{path}/2")).is_ok() {
            return Err(model_file_error(format!(
                "{path} holds more than a kernel and a bias; gpu-c2f reads Dense layers"
            )));
        }
        // As many activations as groups (checked above), and no more
        // layers than groups.
        let activation = activations.map_or(Default::default(), |a| a[layers.len()]);
        layers.push(dense(kernel, bias, activation));
    }
    if layers.len() != groups.len() {
        return Err(model_file_error(format!(
            "the layers groups are not dense, dense_1, ... in order (groups: {})",
            groups.join(", ")
        )));
    }
    if layers.is_empty() {
        return Err(model_file_error("no Dense layer in layers/".into()));
    }
    Model::from_dense_weights(&layers).map_err(|error| model_file_error(error.to_string()))
}

/// `Some(k)` for the k-th Dense layer's group name (`dense` is 0).
fn dense_index(name: &str) -> Option<usize> {
    match name.strip_prefix(DENSE)? {
        "" => Some(0),
        rest => rest.strip_prefix('_')?.parse().ok().filter(|&k| k > 0),
    }
}

/// A dataset's float32 values and shape, refusing another dtype or rank.
fn read_f32(file: &File, path: &str, rank: usize) -> Result<Tensor> {
    let dataset = (file.dataset(path))
        .map_err(|error| model_file_error(format!("{path}: not found: {error}")))?;
    let error = |error: hdf5_pure::Error| model_file_error(format!("{path}: {error}"));
    let dtype = dataset.dtype().map_err(error)?;
    if dtype != DType::F32 {
        return Err(model_file_error(format!(
            "{path} is {dtype:?}; gpu-c2f trains float32 weights"
        )));
    }
    let shape = dataset.shape().map_err(error)?;
    if shape.len() != rank {
        return Err(model_file_error(format!(
            "{path} has shape {shape:?}; expected {rank} dimensions"
        )));
    }
    Ok((dataset.read_f32().map_err(error)?, shape))
}

fn dense(
    (kernel, shape): Tensor,
    (bias, _): Tensor,
    activation: crate::Activation,
) -> DenseWeights {
    let units = (shape[1] as usize).max(1);
    DenseWeights {
        kernel: kernel.chunks(units).map(<[f32]>::to_vec).collect(),
        bias,
        activation,
    }
}

/// Adam's state in `optimizer/vars` for `model`: `None` when the
/// optimizer never stepped (Keras then saves only `iterations` and
/// `learning_rate`).
pub(super) fn read_adam(file: &File, model: &Model) -> Result<Option<SavedAdam>> {
    let path = "optimizer/vars";
    let names = (file.group(path))
        .and_then(|group| group.datasets())
        .map_err(|error| model_file_error(format!("{path}: {error}")))?;
    let scalar = |index: usize| {
        let name = format!("{path}/{index}");
        let dataset = (file.dataset(&name))
            .map_err(|error| model_file_error(format!("{name}: not found: {error}")))?;
        dataset
            .read_f64()
            .ok()
            .filter(|values| values.len() == 1)
            .map(|values| values[0])
            .ok_or_else(|| model_file_error(format!("{name} is not a number")))
    };
    let (iterations, learning_rate) = (scalar(0)?, scalar(1)?);
    if !(iterations >= 0.0 && iterations.fract() == 0.0 && iterations <= MOST_ITERATIONS as f64) {
        return Err(model_file_error(format!(
            "{path}/0, Adam's iteration count, is {iterations}: not a whole number from 0 to \
             {MOST_ITERATIONS}"
        )));
    }
    if !(learning_rate.is_finite() && learning_rate > 0.0) {
        return Err(model_file_error(format!(
            "{path}/1, Adam's learning rate, is {learning_rate}: not a number above 0"
        )));
    }
    let variables = 2 * model.architecture().layers().len();
    if names.len() == 2 || iterations == 0.0 {
        return Ok(None);
    }
    if names.len() != 2 + 2 * variables {
        return Err(model_file_error(format!(
            "{path} holds {} variables; Adam on this {} network has {} (iterations, \
             learning_rate, then m and v of each of its {variables} variables)",
            names.len(),
            model.architecture().describe(),
            2 + 2 * variables
        )));
    }
    let mut m = Vec::new();
    let mut v = Vec::new();
    for layer in 0..variables / 2 {
        let read =
            |k: usize, rank: usize| read_f32(file, &format!("{path}/{}", 2 + 4 * layer + k), rank);
        m.push(dense(read(0, 2)?, read(2, 1)?, Default::default()));
        v.push(dense(read(1, 2)?, read(3, 1)?, Default::default()));
    }
    Ok(Some(SavedAdam {
        learning_rate: learning_rate as f32,
        state: AdamState {
            iterations: iterations as u64,
            m: flatten_like(model, &m, "Adam's momentums")?,
            v: flatten_like(model, &v, "Adam's velocities")?,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;
    use crate::model::Architecture;

    fn relu_tanh() -> Model {
        let architecture = Architecture::with_layers(
            &[(4, Activation::Relu), (2, Activation::Tanh)],
            Activation::Linear,
        )
        .unwrap();
        Model::glorot_uniform(architecture, 5)
    }

    #[test]
    fn weights_and_adam_go_through_keras_layout_and_back() {
        let model = relu_tanh();
        let count = model.params().len();
        let adam = SavedAdam {
            learning_rate: 0.1,
            state: AdamState {
                iterations: 500,
                m: (0..count).map(|i| i as f32 * 0.25).collect(),
                v: (0..count).map(|i| i as f32 * 0.5).collect(),
            },
        };
        let bytes = to_bytes(&model, Some(&adam)).unwrap();
        let file = open(&bytes).unwrap();
        let kernel = file.dataset("layers/dense_1/vars/0").unwrap();
        assert_eq!(kernel.shape().unwrap(), [4, 2]);
        assert_eq!(
            file.dataset("layers/dense_2/vars/1")
                .unwrap()
                .shape()
                .unwrap(),
            [1]
        );
        // The second variable's momentum (the first layer's bias) is
        // optimizer/vars/4, the model's params 4..8.
        let bias_m = file
            .dataset("optimizer/vars/4")
            .unwrap()
            .read_f32()
            .unwrap();
        assert_eq!(bias_m, [1.0, 1.25, 1.5, 1.75]);
        let activations = model.architecture().activations();
        let read = read_layers(&file, Some(activations)).unwrap();
        assert_eq!(read, model);
        assert_eq!(read_adam(&file, &model).unwrap(), Some(adam));
        let plain = parse(&to_bytes(&model, None).unwrap()).unwrap();
        assert!(!plain.has_activations);
        assert_eq!(plain.model.params(), model.params());
    }

    #[test]
    fn group_names_are_keras_class_counters() {
        assert_eq!(dense_index("dense"), Some(0));
        assert_eq!(dense_index("dense_12"), Some(12));
        for other in ["dense_0", "dense_x", "dropout", "densely"] {
            assert_eq!(dense_index(other), None, "{other}");
        }
        let error = parse(b"not hdf5").unwrap_err().to_string();
        assert!(error.contains("not an HDF5 weights file"), "{error}");
    }
}
