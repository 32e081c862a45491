//! An ONNX model of the network's forward pass, for any ONNX runtime: a
//! float32 input `input` of shape `[batch, inputs]` (the batch dynamic),
//! one `Gemm` per Dense layer (`Y = X W + b`, the kernel in Keras's
//! `(inputs, units)` layout as `B`), its activation as ONNX operators
//! (`Identity` for a linear one, so every layer names its output alike), and
//! a float32 output `output` of shape `[batch, units]`. IR version 8,
//! opset 17 (ONNX 1.12, 2022: every maintained runtime runs it); gelu is
//! written as its erf formula, since `Gelu` came only in opset 20.
//!
//! The protobuf encoding is prost's. The messages below are the few of
//! onnx.proto (github.com/onnx/onnx, onnx/onnx.proto) a Dense network
//! needs, with onnx.proto's field numbers; they are declared here because
//! no maintained crate ships ONNX's messages for writing without a protoc
//! build step, and a Dense network needs eleven fields of them.

use super::model_file_error;
use crate::activation::Activation;
use crate::error::Result;
use crate::model::Model;
use prost::Message;

/// ONNX's IR version 8 (ONNX 1.10 and later).
pub const IR_VERSION: i64 = 8;
/// The default domain's operator set version.
pub const OPSET: i64 = 17;
/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;
/// `AttributeProto.AttributeType.FLOAT`.
const ATTRIBUTE_FLOAT: i32 = 1;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(string, tag = "6")]
    doc_string: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(float, tag = "2")]
    f: f32,
    #[prost(int32, tag = "20")]
    r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorType>,
}

/// onnx.proto's `TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
struct TensorType {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

/// onnx.proto's `TensorShapeProto.Dimension`: a size or a symbolic name.
#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// A float32 `[batch, width]` value of the graph's signature.
fn batch_of(name: &str, width: usize) -> ValueInfoProto {
    let dims = vec![
        Dimension {
            dim_value: None,
            dim_param: Some("batch".into()),
        },
        Dimension {
            dim_value: Some(width as i64),
            dim_param: None,
        },
    ];
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    }
}

fn tensor(name: &str, dims: &[usize], values: Vec<f32>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: FLOAT,
        float_data: values,
        name: name.into(),
    }
}

/// The graph under construction: nodes in order, each value named.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    fn node(&mut self, op_type: &str, inputs: &[&str], output: &str) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: output.into(),
            op_type: op_type.into(),
            attribute: Vec::new(),
        });
    }

    /// The last node gets a float attribute.
    fn with_float(&mut self, name: &str, value: f32) {
        let node = self.nodes.last_mut().expect("a node was just added");
        node.attribute.push(AttributeProto {
            name: name.into(),
            f: value,
            r#type: ATTRIBUTE_FLOAT,
        });
    }

    /// A scalar constant, once.
    fn constant(&mut self, name: &str, value: f32) -> String {
        if !self.initializers.iter().any(|t| t.name == name) {
            self.initializers.push(tensor(name, &[], vec![value]));
        }
        name.into()
    }

    /// `activation` of `z` into `out`, as Keras defines it.
    fn activation(&mut self, activation: Activation, z: &str, out: &str) {
        let op = |graph: &mut Self, op_type: &str| graph.node(op_type, &[z], out);
        match activation {
            Activation::Linear => op(self, "Identity"),
            Activation::Relu => op(self, "Relu"),
            Activation::Tanh => op(self, "Tanh"),
            Activation::Sigmoid => op(self, "Sigmoid"),
            Activation::Softplus => op(self, "Softplus"),
            Activation::Elu => {
                op(self, "Elu");
                self.with_float("alpha", 1.0);
            }
            Activation::LeakyRelu => {
                op(self, "LeakyRelu");
                self.with_float("alpha", 0.2);
            }
            Activation::Silu => {
                let sigmoid = format!("{out}_sigmoid");
                self.node("Sigmoid", &[z], &sigmoid);
                self.node("Mul", &[z, &sigmoid], out);
            }
            Activation::Gelu => {
                // 0.5 z (1 + erf(z / sqrt 2)), Keras's exact gelu.
                let (sqrt2, one, half) = (
                    self.constant("sqrt_2", std::f32::consts::SQRT_2),
                    self.constant("one", 1.0),
                    self.constant("half", 0.5),
                );
                let scaled = format!("{out}_scaled");
                let erf = format!("{out}_erf");
                let plus = format!("{out}_plus_one");
                let times = format!("{out}_times_z");
                self.node("Div", &[z, &sqrt2], &scaled);
                self.node("Erf", &[&scaled], &erf);
                self.node("Add", &[&erf, &one], &plus);
                self.node("Mul", &[z, &plus], &times);
                self.node("Mul", &[&times, &half], out);
            }
        }
    }
}

/// The ONNX file of `model`'s forward pass.
pub(super) fn to_bytes(model: &Model) -> Result<Vec<u8>> {
    let architecture = model.architecture();
    let widths = architecture.widths();
    let mut graph = Graph::default();
    let mut value = "input".to_string();
    let layers = model.dense_weights();
    for (index, (layout, layer)) in architecture.layers().iter().zip(layers).enumerate() {
        let name = super::layer_name("dense", index);
        let (kernel, bias) = (format!("{name}/kernel"), format!("{name}/bias"));
        let dims = [layout.inputs, layout.units];
        graph
            .initializers
            .push(tensor(&kernel, &dims, layer.kernel.concat()));
        graph
            .initializers
            .push(tensor(&bias, &[layout.units], layer.bias));
        let last = index + 1 == widths.len() - 1;
        let out = if last {
            "output".to_string()
        } else {
            format!("{name}/out")
        };
        let z = format!("{name}/z");
        graph.node("Gemm", &[&value, &kernel, &bias], &z);
        graph.activation(layout.activation, &z, &out);
        value = out;
    }
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "gpu-c2f".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "A {} Dense network trained by gpu-c2f",
            architecture.describe()
        ),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: "gpu_c2f".into(),
            initializer: graph.initializers,
            input: vec![batch_of("input", widths[0])],
            output: vec![batch_of("output", widths[widths.len() - 1])],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
    };
    let mut bytes = Vec::with_capacity(model.encoded_len());
    model
        .encode(&mut bytes)
        .map_err(|error| model_file_error(format!("cannot encode the ONNX model: {error}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;

    #[test]
    fn the_graph_is_one_gemm_per_layer_and_its_activation() {
        let architecture = Architecture::with_layers(
            &[(4, Activation::Gelu), (3, Activation::LeakyRelu)],
            Activation::Linear,
        )
        .unwrap();
        let model = Model::glorot_uniform(architecture, 1);
        let bytes = to_bytes(&model).unwrap();
        let decoded = ModelProto::decode(&bytes[..]).unwrap();
        let graph = decoded.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            [
                "Gemm",
                "Div",
                "Erf",
                "Add",
                "Mul",
                "Mul",
                "Gemm",
                "LeakyRelu",
                "Gemm",
                "Identity"
            ]
        );
        assert_eq!(graph.node.last().unwrap().output, ["output"]);
        assert_eq!(graph.node[7].attribute[0].f, 0.2);
        let kernel = &graph.initializer[0];
        assert_eq!(
            (kernel.name.as_str(), &kernel.dims[..]),
            ("dense/kernel", &[1, 4][..])
        );
        assert_eq!(kernel.float_data, model.params()[..4]);
        let input = graph.input[0].r#type.clone().unwrap().tensor_type.unwrap();
        let batch = &input.shape.unwrap().dim[0];
        assert_eq!(batch.dim_param.as_deref(), Some("batch"));
        assert_eq!(decoded.opset_import[0].version, OPSET);
    }
}
