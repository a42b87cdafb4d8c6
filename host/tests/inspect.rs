//! `inspect` totals checked against the ONNX files themselves and hand-computed MACs.

use std::path::Path;

use lookout_host::report::inspect::inspect_file;
use tract_onnx::prelude::Framework;

/// Elements of every weight tensor stored in the ONNX file (initializers and `Constant` nodes), scalars left
/// out as in `inspect` (clip bounds are not weights). Read straight from the protobuf, not through tract's graph.
fn onnx_weight_elements(path: &Path) -> u64 {
    let proto = tract_onnx::onnx().proto_model_for_path(path).unwrap();
    let graph = proto.graph.unwrap();
    let mut sizes: Vec<u64> = graph
        .initializer
        .iter()
        .map(|t| t.dims.iter().product::<i64>() as u64)
        .collect();
    for node in graph.node.iter().filter(|n| n.op_type == "Constant") {
        for attr in &node.attribute {
            if let Some(t) = &attr.t {
                sizes.push(t.dims.iter().product::<i64>() as u64);
            }
        }
    }
    sizes.into_iter().filter(|&n| n > 1).sum()
}

#[test]
fn lite0_features_totals_match_the_onnx_initializers() {
    let shared = lookout_testdata::require_shared!();
    let path = shared.join("models/efficientnet_lite0_features_dynbatch.onnx");
    let summary = inspect_file(&path, Some(&[1, 3, 224, 224]), None).unwrap();
    let expected = onnx_weight_elements(&path);
    eprintln!(
        "Lite0 features: {} params (ONNX initializers {expected}), {} MACs",
        summary.total_params, summary.total_macs
    );
    assert_eq!(summary.total_params, expected);
    assert_eq!(summary.param_bytes, expected * 4);

    // Stem: 3×3 stride-2 conv 3→32 on 224×224 → [1,32,112,112]: 32·112·112 · 3·3·3 MACs.
    let stem = summary
        .rows
        .iter()
        .find(|r| r.op.contains("Conv") && r.output_shape == [1, 32, 112, 112])
        .expect("stem conv row");
    assert_eq!(stem.macs, 32 * 112 * 112 * 3 * 3 * 3);
    assert_eq!(stem.params, 32 * 3 * 3 * 3 + 32);
    // Head: 1×1 conv 320→1280 on 7×7 (tract may declutter a 1×1 conv into a matrix product).
    let head = summary
        .rows
        .iter()
        .rfind(|r| r.macs > 0 && r.output_shape == [1, 1280, 7, 7])
        .unwrap_or_else(|| {
            panic!(
                "head conv row in {:#?}",
                &summary.rows[summary.rows.len().saturating_sub(4)..]
            )
        });
    assert_eq!(head.macs, 1280 * 7 * 7 * 320);
    // tract turns this 1×1 conv into a matrix product and moves its bias (1280) into the following Add row.
    assert!(
        [1280 * 320, 1280 * 320 + 1280].contains(&head.params),
        "{}",
        head.params
    );
    // A depthwise conv (group = channels): one 3×3 window per output element.
    let depthwise = summary
        .rows
        .iter()
        .find(|r| {
            r.op.contains("Conv") && r.output_shape == [1, 32, 112, 112] && r.params == 32 * 9 + 32
        })
        .expect("first depthwise conv row");
    assert_eq!(depthwise.macs, 32 * 112 * 112 * 9);
    // EfficientNet-Lite0 is published at ≈ 0.4 G multiply-adds; the sum of the rows is the total.
    assert_eq!(
        summary.rows.iter().map(|r| r.macs).sum::<u64>(),
        summary.total_macs
    );
    assert!(
        (0.35e9..0.45e9).contains(&(summary.total_macs as f64)),
        "{}",
        summary.total_macs
    );
}

#[test]
fn lite0_classifier_adds_the_fc_layer() {
    let shared = lookout_testdata::require_shared!();
    let features = inspect_file(
        &shared.join("models/efficientnet_lite0_features_dynbatch.onnx"),
        None,
        None,
    )
    .unwrap();
    let path = shared.join("models/efficientnet_lite0_classifier_dynbatch.onnx");
    let classifier = inspect_file(&path, None, None).unwrap();
    assert_eq!(
        classifier.input_shape,
        [1, 3, 224, 224],
        "symbolic batch set to 1"
    );
    assert_eq!(classifier.total_params, onnx_weight_elements(&path));
    // FC 1280→1000 with bias, and 1280·1000 MACs.
    assert_eq!(
        classifier.total_params - features.total_params,
        1280 * 1000 + 1000
    );
    assert_eq!(classifier.total_macs - features.total_macs, 1280 * 1000);
}

#[test]
fn mobilenet_v3_small_totals_and_depth_grouping() {
    let shared = lookout_testdata::require_shared!();
    let path = shared.join("models/mobilenet_v3_small_tfslim_features_dynbatch.onnx");
    let summary = inspect_file(&path, None, None).unwrap();
    assert_eq!(summary.total_params, onnx_weight_elements(&path));
    let grouped = inspect_file(&path, None, Some(1)).unwrap();
    assert!(grouped.rows.len() < summary.rows.len());
    assert_eq!(
        grouped.rows.iter().map(|r| r.params).sum::<u64>(),
        summary.total_params
    );
    assert_eq!(
        grouped.rows.iter().map(|r| r.macs).sum::<u64>(),
        summary.total_macs
    );
    let table = summary.to_table();
    assert!(table.contains("Total params: "), "{table}");
}
