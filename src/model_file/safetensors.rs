//! Model files in the safetensors format (<https://github.com/huggingface/safetensors>):
//! one float32 tensor per Dense layer's kernel and bias, named after the
//! layers as Keras 3 names them in a `Sequential` (`dense`, `dense_1`, ...:
//! `dense/kernel` of shape `[inputs, units]`, Keras's `get_weights()`
//! layout, and `dense/bias` of shape `[units]`), and in the file's
//! metadata the network (`architecture`, e.g. `1-3-3-1`), each layer's
//! activation (`activations`, Keras names, comma-separated) and what
//! `--save` adds (`gpu_c2f`, a JSON object). Reading and writing are the
//! `safetensors` crate's; this file only names the tensors.

use super::model_file_error;
use crate::activation::Activation;
use crate::error::Result;
use crate::model::{DenseWeights, Model};
use ::safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;

/// The metadata key of the layers' activations.
const ACTIVATIONS: &str = "activations";

/// Keras 3's name of the `index`-th Dense layer of a fresh `Sequential`.
fn layer_name(index: usize) -> String {
    super::layer_name("dense", index)
}

/// The file's bytes: every layer's kernel and bias, the metadata above.
pub fn to_bytes(model: &Model, extra: &serde_json::Value) -> Result<Vec<u8>> {
    let layers = model.dense_weights();
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = (layers.iter().enumerate())
        .flat_map(|(index, layer)| {
            let name = layer_name(index);
            let kernel: Vec<f32> = layer.kernel.concat();
            let shape = vec![layer.kernel.len(), layer.bias.len()];
            [
                (format!("{name}/kernel"), shape, kernel),
                (
                    format!("{name}/bias"),
                    vec![layer.bias.len()],
                    layer.bias.clone(),
                ),
            ]
        })
        .map(|(name, shape, values)| (name, shape, bytemuck::cast_slice(&values).to_vec()))
        .collect();
    let views = data
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes);
            view.map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| model_file_error(format!("cannot write the tensors: {error}")))?;
    let activations: Vec<&str> = layers.iter().map(|l| l.activation.name()).collect();
    let metadata = HashMap::from([
        ("format".to_string(), "gpu-c2f model v1".to_string()),
        ("architecture".to_string(), model.architecture().describe()),
        (ACTIVATIONS.to_string(), activations.join(",")),
        ("gpu_c2f".to_string(), extra.to_string()),
    ]);
    ::safetensors::serialize(views, Some(metadata))
        .map_err(|error| model_file_error(format!("cannot write the file: {error}")))
}

/// A model from a file's bytes: the layers `dense`, `dense_1`, ... in
/// order, each a float32 kernel of rank 2 and bias of rank 1, their
/// activations from the metadata (linear where it names none).
pub fn parse(bytes: &[u8]) -> Result<Model> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|error| model_file_error(format!("not a safetensors file: {error}")))?;
    let (_, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|error| model_file_error(format!("not a safetensors file: {error}")))?;
    let activations = match metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(ACTIVATIONS))
    {
        Some(names) => names
            .split(',')
            .map(|name| Activation::from_name(name.trim()))
            .collect::<Result<Vec<_>>>()
            .map_err(|error| model_file_error(format!("metadata {ACTIVATIONS:?}: {error}")))?,
        None => Vec::new(),
    };
    let mut layers = Vec::new();
    while let Ok(kernel) = file.tensor(&format!("{}/kernel", layer_name(layers.len()))) {
        let name = layer_name(layers.len());
        let bias = file
            .tensor(&format!("{name}/bias"))
            .map_err(|_| model_file_error(format!("{name}/kernel has no {name}/bias")))?;
        let kernel_values = floats(&format!("{name}/kernel"), &kernel, 2)?;
        let bias_values = floats(&format!("{name}/bias"), &bias, 1)?;
        let units = kernel.shape()[1];
        layers.push(DenseWeights {
            kernel: kernel_values
                .chunks(units.max(1))
                .map(<[f32]>::to_vec)
                .collect(),
            bias: bias_values,
            activation: activations.get(layers.len()).copied().unwrap_or_default(),
        });
    }
    if layers.is_empty() {
        let names = file.names().join(", ");
        return Err(model_file_error(format!(
            "no dense/kernel tensor: expected Dense layers named dense, dense_1, ... \
             (tensors found: {names})"
        )));
    }
    if activations.len() > layers.len() {
        return Err(model_file_error(format!(
            "metadata {ACTIVATIONS:?} names {} activations for {} layers",
            activations.len(),
            layers.len()
        )));
    }
    Model::from_dense_weights(&layers).map_err(|error| model_file_error(error.to_string()))
}

/// A float32 tensor of `rank` as values, or an error naming it.
fn floats(name: &str, tensor: &TensorView, rank: usize) -> Result<Vec<f32>> {
    if tensor.dtype() != Dtype::F32 {
        return Err(model_file_error(format!(
            "{name} is {:?}; gpu-c2f trains float32 (F32) weights",
            tensor.dtype()
        )));
    }
    if tensor.shape().len() != rank {
        return Err(model_file_error(format!(
            "{name} has shape {:?}; expected {rank} dimensions",
            tensor.shape()
        )));
    }
    Ok(bytemuck::pod_collect_to_vec(tensor.data()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;

    #[test]
    fn a_saved_file_loads_back_to_the_same_model_with_its_activations() {
        let architecture = Architecture::with_layers(
            &[(5, Activation::Relu), (2, Activation::Tanh)],
            Activation::Sigmoid,
        )
        .unwrap();
        let model = Model::glorot_uniform(architecture, 9);
        let bytes = to_bytes(&model, &serde_json::json!({"seed": 9})).unwrap();
        assert_eq!(parse(&bytes).unwrap(), model);
        let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
        let metadata = metadata.metadata().clone().unwrap();
        assert_eq!(metadata["architecture"], "1-5relu-2tanh-1sigmoid");
        assert_eq!(metadata[ACTIVATIONS], "relu,tanh,sigmoid");
        let file = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("dense_1/kernel").unwrap().shape(), [5, 2]);
        assert_eq!(file.tensor("dense_2/bias").unwrap().shape(), [1]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let model = Model::glorot_uniform(Architecture::seed(), 1);
        let good = to_bytes(&model, &serde_json::json!({})).unwrap();
        let with = |tensors: Vec<(&str, Dtype, Vec<usize>)>, activations: Option<&str>| {
            let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
                .into_iter()
                .map(|(name, dtype, shape)| {
                    let bytes = shape.iter().product::<usize>() * dtype.bitsize() / 8;
                    (name.to_string(), dtype, shape, vec![0u8; bytes])
                })
                .collect();
            let views = data.iter().map(|(name, dtype, shape, bytes)| {
                (
                    name.clone(),
                    TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
                )
            });
            let metadata =
                activations.map(|a| HashMap::from([(ACTIVATIONS.to_string(), a.to_string())]));
            ::safetensors::serialize(views, metadata).unwrap()
        };
        let f32_layer = vec![
            ("dense/kernel", Dtype::F32, vec![1, 3]),
            ("dense/bias", Dtype::F32, vec![3]),
        ];
        let cases = [
            (b"not a file".to_vec(), "not a safetensors file"),
            (
                with(vec![("weight", Dtype::F32, vec![3])], None),
                "tensors found: weight",
            ),
            (
                with(
                    vec![
                        ("dense/kernel", Dtype::F16, vec![1, 3]),
                        ("dense/bias", Dtype::F32, vec![3]),
                    ],
                    None,
                ),
                "dense/kernel is F16",
            ),
            (
                with(
                    vec![
                        ("dense/kernel", Dtype::F32, vec![3]),
                        ("dense/bias", Dtype::F32, vec![3]),
                    ],
                    None,
                ),
                "expected 2 dimensions",
            ),
            (
                with(vec![("dense/kernel", Dtype::F32, vec![1, 3])], None),
                "has no dense/bias",
            ),
            (with(f32_layer.clone(), Some("bogus")), "bogus"),
            (
                with(f32_layer, Some("relu,relu")),
                "2 activations for 1 layers",
            ),
            (
                with(
                    vec![
                        ("dense/kernel", Dtype::F32, vec![1, 3]),
                        ("dense/bias", Dtype::F32, vec![2]),
                    ],
                    None,
                ),
                "layer 0",
            ),
        ];
        assert!(parse(&good).is_ok());
        for (bytes, words) in cases {
            let error = format!("{:#}", parse(&bytes).unwrap_err());
            assert!(error.contains(words), "{words}: {error}");
        }
    }
}
