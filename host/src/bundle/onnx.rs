//! `lookout export --onnx FILE`: the same combined model as an ONNX file, for people who run other engines
//! (onnxruntime, OpenVINO, TensorRT, ...).
//!
//! tract has no ONNX writer, but its protobuf types (`tract_onnx::pb`) are public: the backbone's own ONNX is
//! decoded, cut where extraction cut it, and the head is appended as standard ONNX nodes
//! (GlobalAveragePool → Flatten → Gemm → Relu → ... → Sigmoid | Softmax). The batch dimension stays whatever
//! the backbone declares (dynamic for the `_dynbatch` files). The input is the preprocessed tensor, as for
//! the bundle; the preprocessing recipe and class names go into the model's `metadata_props`
//! (`lookout.preprocess`, `lookout.classes`, `lookout.output`) so nothing the bundle knows is lost.

use std::collections::HashSet;
use std::path::Path;

use lookout_shared::atomic::write_atomic;
use prost::Message;
use tract_onnx::pb;

use super::ExportError;
use lookout_shared::bundle::OutputKind;

use crate::features::Pooling;
use crate::head::run::Run;

/// Name of the probabilities output of the written ONNX model.
pub const ONNX_OUTPUT: &str = "probabilities";

const HEAD_PREFIX: &str = "lookout_head";

/// Writes the run's backbone + head as ONNX at `out` (atomically); returns the file size in bytes.
///
/// Only ONNX backbones can be written back as ONNX: a backbone converted from PyTorch weights (NNEF) has no
/// ONNX form to extend.
pub fn write_onnx(run: &Run, out: &Path) -> Result<u64, ExportError> {
    let record = &run.config.features.recipe.backbone;
    let fail = |reason: String| ExportError::Onnx(reason);
    let is_onnx = record
        .path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if !is_onnx {
        return Err(fail(format!(
            "the run's backbone {} is not an ONNX file (converted backbones are stored as NNEF); --onnx needs a \
             run extracted with an .onnx backbone",
            record.path.display()
        )));
    }
    let bytes = std::fs::read(&record.path).map_err(|source| ExportError::Read {
        path: record.path.clone(),
        source,
    })?;
    let mut model = pb::ModelProto::decode(bytes.as_slice()).map_err(|e| {
        fail(format!(
            "the backbone {} is not a valid ONNX protobuf: {e}",
            record.path.display()
        ))
    })?;
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| fail("the backbone ONNX has no graph".into()))?;
    if graph.output.len() != 1 && record.identity.cut.is_none() {
        return Err(fail(format!(
            "the backbone has {} outputs; a backbone needs exactly one",
            graph.output.len()
        )));
    }
    let features = match record.identity.cut.as_deref() {
        Some(cut) => cut_tensor(graph, cut)?,
        None => graph.output[0].name.clone(),
    };
    prune(graph, &features);
    append_head(graph, &features, run);
    model.metadata_props.extend(metadata(run)?);
    model.producer_name = "lookout".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    let encoded = model.encode_to_vec();
    write_atomic(out, &encoded)?;
    Ok(encoded.len() as u64)
}

/// The tensor a cut names: a node's (first) output by node name, or a tensor name itself.
fn cut_tensor(graph: &pb::GraphProto, cut: &str) -> Result<String, ExportError> {
    if let Some(node) = graph.node.iter().find(|n| n.name == cut) {
        if let Some(first) = node.output.first() {
            return Ok(first.clone());
        }
    }
    if graph.node.iter().any(|n| n.output.iter().any(|o| o == cut)) {
        return Ok(cut.to_string());
    }
    Err(ExportError::Onnx(format!(
        "the cut {cut:?} the features were extracted at is no node or tensor of the backbone ONNX"
    )))
}

/// Keeps only the nodes (and initializers) that `output` depends on, and makes it the only graph output.
fn prune(graph: &mut pb::GraphProto, output: &str) {
    let mut needed: HashSet<String> = HashSet::from([output.to_string()]);
    let mut keep = vec![false; graph.node.len()];
    // ONNX nodes are stored in topological order: one backward sweep finds every ancestor.
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(node.input.iter().filter(|s| !s.is_empty()).cloned());
        }
    }
    let mut index = 0;
    graph.node.retain(|_| {
        index += 1;
        keep[index - 1]
    });
    // Older ONNX files also list initializers among the graph inputs: drop those with their initializer, or
    // they would become inputs the caller must feed.
    let dropped: HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| !needed.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph.input.retain(|i| !dropped.contains(&i.name));
    graph
        .value_info
        .retain(|v| needed.contains(&v.name) && v.name != output);
    graph.output.clear();
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn int_attribute(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn float_initializer(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Pooling, flatten, the dense layers and the activation after `features`; output [batch, classes].
fn append_head(graph: &mut pb::GraphProto, features: &str, run: &Run) {
    let head = &run.head;
    let mut wire = features.to_string();
    // Extraction or training (never both: the cache is then [C] already) averaged [C, H, W] maps over H, W.
    if run.config.features.recipe.pooling == Pooling::Avg || head.pool == Pooling::Avg {
        let pooled_wire = format!("{HEAD_PREFIX}/pool");
        graph.node.push(node(
            "GlobalAveragePool",
            &pooled_wire,
            &[&wire],
            &pooled_wire,
        ));
        wire = pooled_wire;
    }
    let flat = format!("{HEAD_PREFIX}/flatten");
    let mut flatten = node("Flatten", &flat, &[&wire], &flat);
    flatten.attribute.push(int_attribute("axis", 1));
    graph.node.push(flatten);
    wire = flat;
    let last = head.layers.len().saturating_sub(1);
    for (i, layer) in head.layers.iter().enumerate() {
        let weight = format!("{HEAD_PREFIX}/{}.weight", layer.name);
        let bias = format!("{HEAD_PREFIX}/{}.bias", layer.name);
        graph.initializer.push(float_initializer(
            &weight,
            &[layer.outputs, layer.inputs],
            &layer.weight,
        ));
        graph
            .initializer
            .push(float_initializer(&bias, &[layer.outputs], &layer.bias));
        let out = format!("{HEAD_PREFIX}/{}", layer.name);
        let mut gemm = node("Gemm", &out, &[&wire, &weight, &bias], &out);
        gemm.attribute.push(int_attribute("transB", 1));
        graph.node.push(gemm);
        wire = out;
        if i < last {
            let relu = format!("{HEAD_PREFIX}/{}.relu", layer.name);
            graph.node.push(node("Relu", &relu, &[&wire], &relu));
            wire = relu;
        }
    }
    let activation = match run.config.output {
        OutputKind::Sigmoid => node("Sigmoid", ONNX_OUTPUT, &[&wire], ONNX_OUTPUT),
        OutputKind::Softmax => {
            let mut softmax = node("Softmax", ONNX_OUTPUT, &[&wire], ONNX_OUTPUT);
            softmax.attribute.push(int_attribute("axis", 1));
            softmax
        }
    };
    graph.node.push(activation);
    let classes = head.layers.last().map_or(0, |l| l.outputs);
    graph.output.push(pb::ValueInfoProto {
        name: ONNX_OUTPUT.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: vec![
                        pb::tensor_shape_proto::Dimension {
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimParam(
                                "batch".into(),
                            )),
                            ..Default::default()
                        },
                        pb::tensor_shape_proto::Dimension {
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(
                                classes as i64,
                            )),
                            ..Default::default()
                        },
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    });
}

/// What the bundle header would tell: class names, preprocessing, how to read the output.
fn metadata(run: &Run) -> Result<Vec<pb::StringStringEntryProto>, ExportError> {
    let json_err = |e: serde_json::Error| ExportError::Onnx(e.to_string());
    let entry = |key: &str, value: String| pb::StringStringEntryProto {
        key: key.into(),
        value,
    };
    let output = match run.config.output {
        OutputKind::Sigmoid => "sigmoid: one probability, of the second class",
        OutputKind::Softmax => "softmax: one probability per class",
    };
    Ok(vec![
        entry(
            "lookout.classes",
            serde_json::to_string(&run.config.classes).map_err(json_err)?,
        ),
        entry(
            "lookout.preprocess",
            serde_json::to_string(&run.config.features.recipe.preprocess).map_err(json_err)?,
        ),
        entry("lookout.output", output.into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(name: &str) -> pb::ValueInfoProto {
        pb::ValueInfoProto {
            name: name.into(),
            ..Default::default()
        }
    }

    /// x → Relu "first" → t1 → Relu "second" → t2; an unused initializer `w` also listed as an input (old IR).
    fn two_relus() -> pb::GraphProto {
        pb::GraphProto {
            node: vec![
                node("Relu", "first", &["x"], "t1"),
                node("Relu", "second", &["t1"], "t2"),
            ],
            initializer: vec![float_initializer("w", &[1], &[1.0])],
            input: vec![value("x"), value("w")],
            output: vec![value("t2")],
            ..Default::default()
        }
    }

    #[test]
    fn a_cut_by_node_or_tensor_name_keeps_only_its_ancestors() {
        let graph = two_relus();
        assert_eq!(cut_tensor(&graph, "first").unwrap(), "t1");
        assert_eq!(cut_tensor(&graph, "t1").unwrap(), "t1");
        assert!(cut_tensor(&graph, "third").is_err());

        let mut graph = two_relus();
        prune(&mut graph, "t1");
        let names: Vec<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["first"]);
        assert!(graph.initializer.is_empty());
        let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inputs, ["x"]);
        assert!(graph.output.is_empty());
    }
}
