//! Making a model's shapes concrete: the one place where a symbolic input dimension (the batch `N` that ONNX
//! exports and Lookout's own converted graphs keep) is replaced by a number.
//!
//! tract's way is to substitute the symbol through the whole graph ([`TypedModel::set_symbols`]); setting only
//! the input fact of a typed model (what `with_input_fact` does on an NNEF model) leaves every other fact
//! symbolic, and tract's fast convolution kernels need concrete shapes. Bundles ([`crate::Model`]) and backbone
//! files (`lookout_models::model_file`) both come through here.

use std::collections::HashMap;

use tract_core::prelude::*;

/// Why a model's input could not be pinned to a shape.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// The model has a different number of inputs than one.
    #[error("the model has {0} inputs; Lookout runs models with exactly one image input")]
    Inputs(usize),
    /// The input's rank or one of its fixed dimensions differs from the shape asked for.
    #[error("the model takes input {model}, which cannot hold {wanted:?}")]
    Mismatch {
        /// The model's input fact, as tract prints it.
        model: String,
        /// The shape asked for.
        wanted: Vec<usize>,
    },
    /// With the input concrete, an output still has a symbolic shape.
    #[error("output {index} of the model has shape {shape} even with input {wanted:?}; its size depends on something else than the input shape")]
    OutputNotFixed {
        /// Which output.
        index: usize,
        /// Its shape, as tract prints it.
        shape: String,
        /// The input shape given.
        wanted: Vec<usize>,
    },
    /// tract failed while substituting the dimensions through the graph.
    #[error("tract could not propagate the input shape {wanted:?} through the graph")]
    Tract {
        /// The input shape given.
        wanted: Vec<usize>,
        /// tract's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Pins the model's single input to `shape`: every symbolic input dimension becomes the number at its position
/// (through the whole graph), every fixed one must already be that number. Afterwards the input and every
/// output have concrete shapes, or this returns an error.
pub fn pin_input_shape(model: TypedModel, shape: &[usize]) -> Result<TypedModel, ShapeError> {
    let tract = |source: TractError| ShapeError::Tract {
        wanted: shape.to_vec(),
        source: source.into(),
    };
    if model.inputs.len() != 1 {
        return Err(ShapeError::Inputs(model.inputs.len()));
    }
    let input = model.input_fact(0).map_err(tract)?.clone();
    let mismatch = || ShapeError::Mismatch {
        model: format!("{input:?}"),
        wanted: shape.to_vec(),
    };
    if input.rank() != shape.len() {
        return Err(mismatch());
    }
    let mut substitutions = HashMap::new();
    for (dim, &want) in input.shape.iter().zip(shape) {
        match dim.as_i64() {
            Some(fixed) if fixed == want as i64 => {}
            Some(_) => return Err(mismatch()),
            None => match dim {
                TDim::Sym(symbol) => {
                    substitutions.insert(symbol.clone(), TDim::Val(want as i64));
                }
                // An expression of symbols (`2*N`) cannot be solved for one number here.
                _ => return Err(mismatch()),
            },
        }
    }
    let model = if substitutions.is_empty() {
        model
    } else {
        model.set_symbols(&substitutions).map_err(tract)?
    };
    if model.input_fact(0).map_err(tract)?.shape.as_concrete() != Some(shape) {
        return Err(mismatch());
    }
    for index in 0..model.outputs.len() {
        let fact = model.output_fact(index).map_err(tract)?;
        if fact.shape.as_concrete().is_none() {
            return Err(ShapeError::OutputNotFixed {
                index,
                shape: format!("{:?}", fact.shape),
                wanted: shape.to_vec(),
            });
        }
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::math::add;

    /// x → x + x with a symbolic batch, as a converted backbone has it.
    fn symbolic_batch_model() -> TypedModel {
        let mut model = TypedModel::default();
        let n = model.symbols.sym("N");
        let x = model
            .add_source("x", f32::fact(&[n.to_dim(), 3.to_dim(), 4.to_dim()]))
            .unwrap();
        let y = model.wire_node("y", add(), &[x, x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    #[test]
    fn the_batch_symbol_is_substituted_through_the_graph() {
        let model = symbolic_batch_model();
        assert!(model.output_fact(0).unwrap().shape.as_concrete().is_none());
        for batch in [1, 8] {
            let pinned = pin_input_shape(model.clone(), &[batch, 3, 4]).unwrap();
            assert_eq!(
                pinned.output_fact(0).unwrap().shape.as_concrete(),
                Some(&[batch, 3, 4][..])
            );
        }
    }

    #[test]
    fn a_fixed_dimension_that_differs_is_refused() {
        let err = pin_input_shape(symbolic_batch_model(), &[1, 4, 4]).unwrap_err();
        assert!(matches!(err, ShapeError::Mismatch { .. }), "{err}");
        let err = pin_input_shape(symbolic_batch_model(), &[1, 3]).unwrap_err();
        assert!(matches!(err, ShapeError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn an_already_concrete_model_is_kept() {
        let pinned = pin_input_shape(symbolic_batch_model(), &[2, 3, 4]).unwrap();
        let again = pin_input_shape(pinned, &[2, 3, 4]).unwrap();
        assert_eq!(again.nodes.len(), 2);
    }
}
