//! A bundle's model, loaded into tract and ready to classify images.

use std::path::Path;

use std::time::{Duration, Instant};

use image::RgbImage;
use lookout_shared::bundle::{Bundle, BundleHeader, ModelFormat, OutputKind};
use lookout_shared::preprocess::Preprocessor;
use tract_core::prelude::*;
use tract_linalg::multithread::{multithread_tract_scope, Executor};

use crate::error::RuntimeError;
use crate::shape::{pin_input_shape, ShapeError};
use crate::weights::{expand_block_quant, WeightMemory};

/// How the runtime executes models.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeOptions {
    /// Threads for tract's matrix kernels: 1 runs on the calling thread, 0 uses every core.
    pub threads: usize,
    /// What to do with the bundle's rejection of unknown images (when it has one).
    pub unknown: UnknownPolicy,
    /// How block-quantized weights (`q4` bundles) are held in memory.
    pub weights: WeightMemory,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            unknown: UnknownPolicy::AsExported,
            weights: WeightMemory::Expanded,
        }
    }
}

/// Whether and where images are called unknown.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum UnknownPolicy {
    /// The bundle's own threshold.
    #[default]
    AsExported,
    /// Another threshold on the bundle's score (higher lets more through).
    Threshold(f32),
    /// Never call an image unknown (the score is still reported).
    Off,
}

impl RuntimeOptions {
    /// The number of threads these options stand for (0 resolved to the number of cores).
    pub fn resolved_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// The result of classifying one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Index of the chosen label in the bundle's labels.
    pub label: usize,
    /// Probability of the chosen label.
    pub score: f32,
    /// One probability per label. For a sigmoid model: `[1 - p, p]`, where p is the model's output.
    pub probabilities: Vec<f32>,
    /// Time spent preprocessing (zero for [`Model::classify_tensor`]).
    pub preprocess: Duration,
    /// Time spent running the model.
    pub inference: Duration,
    /// The bundle's out-of-distribution score for the image (`None` when the bundle has no rejection):
    /// higher means less like the training images.
    pub ood_score: Option<f32>,
    /// True when the score is over the threshold: the image is none of the labels, whatever `label` says.
    pub unknown: bool,
    /// True when `label` is the bundle's background (the camera's empty scene, `lookout fit --background`) and
    /// the image is not unknown: there is nothing to act on. Never true for a bundle without a background.
    pub background: bool,
}

impl Prediction {
    /// True when the image is one of the labels that can act: neither unknown nor the empty scene.
    pub fn is_actionable(&self) -> bool {
        !self.unknown && !self.background
    }
}

/// A loaded bundle: header, preprocessing and an optimised tract plan with its reusable state.
pub struct Model {
    header: BundleHeader,
    preprocessor: Preprocessor,
    input_shape: Vec<usize>,
    input_type: DatumType,
    tensor_len: usize,
    state: TypedSimpleState,
    executor: Executor,
    /// Reused between frames so classifying does not allocate the input tensor's buffer each time.
    input_buffer: Vec<f32>,
    load_time: Duration,
    /// Scores above this are unknown (`None`: no rejection, or turned off).
    unknown_threshold: Option<f32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("labels", &self.header.labels.len())
            .field("input_shape", &self.input_shape)
            .field("output", &self.header.output)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Reads a `.lookout` bundle file and loads its model, parsing the model from the file as it reads it
    /// (after the bundle's checksum is verified), so the file's bytes are never all in memory.
    pub fn load(path: &Path, opts: &RuntimeOptions) -> Result<Model, RuntimeError> {
        let start = Instant::now();
        let (header, mut model_reader) = Bundle::open_file(path)?.into_model_reader()?;
        let mut model = Model::from_model_reader(header, &mut model_reader, opts)?;
        model.load_time = start.elapsed();
        Ok(model)
    }

    /// Loads the model of an in-memory bundle, checking it against the header.
    pub fn from_bundle(bundle: Bundle, opts: &RuntimeOptions) -> Result<Model, RuntimeError> {
        let Bundle { header, model } = bundle;
        Model::from_model_reader(header, &mut model.as_slice(), opts)
    }

    /// Loads a model from its serialised bytes, read from `model_bytes`, checking it against `header`.
    fn from_model_reader(
        header: BundleHeader,
        model_bytes: &mut dyn std::io::Read,
        opts: &RuntimeOptions,
    ) -> Result<Model, RuntimeError> {
        let start = Instant::now();
        check_header(&header)?;
        let preprocessor = Preprocessor::new(&header.preprocess)?;
        let input_shape: Vec<usize> = header.input_shape.iter().map(|&d| d as usize).collect();
        let recipe_shape = header.preprocess.input_shape()?;
        if input_shape != recipe_shape {
            return Err(RuntimeError::InvalidBundle(format!(
                "the header's input shape {:?} differs from what its preprocessing recipe makes {:?}; re-export the bundle",
                header.input_shape, recipe_shape
            )));
        }

        let model = match header.model_format {
            // tract's reader tells a gzip stream by its magic bytes and inflates it as it reads.
            ModelFormat::NnefTar | ModelFormat::NnefTarGz => tract_nnef::nnef()
                .model_for_read(model_bytes)
                .map_err(|e| RuntimeError::ModelLoad(format!("{e:#}")))?,
        };
        let mut model = pin_and_check(model, &header, &input_shape)?;
        if opts.weights == WeightMemory::Expanded {
            expand_block_quant(&mut model)
                .map_err(|e| RuntimeError::ModelLoad(format!("expanding the weights: {e:#}")))?;
        }
        let input_type = model
            .input_fact(0)
            .map_err(|e| RuntimeError::ModelLoad(format!("{e:#}")))?
            .datum_type;
        let plan = crate::plan::optimize(model)
            .and_then(|m| m.into_runnable())
            .map_err(|e| RuntimeError::ModelLoad(format!("optimising: {e:#}")))?;
        let state = plan
            .spawn()
            .map_err(|e| RuntimeError::ModelLoad(format!("{e:#}")))?;

        let threads = opts.resolved_threads();
        let executor = if threads <= 1 {
            Executor::SingleThread
        } else {
            Executor::multithread(threads)
        };
        let tensor_len = input_shape.iter().product();
        let unknown_threshold = match (&header.unknown, opts.unknown) {
            (None, _) | (_, UnknownPolicy::Off) => None,
            (Some(info), UnknownPolicy::AsExported) => Some(info.threshold),
            (Some(_), UnknownPolicy::Threshold(t)) => Some(t),
        };
        Ok(Model {
            unknown_threshold,
            header,
            preprocessor,
            input_shape,
            input_type,
            tensor_len,
            state,
            executor,
            input_buffer: vec![0.0; tensor_len],
            load_time: start.elapsed(),
        })
    }

    /// The bundle header.
    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    /// The threshold above which an image is unknown, as these options apply it (`None`: no rejection).
    pub fn unknown_threshold(&self) -> Option<f32> {
        self.unknown_threshold
    }

    /// Class names, the index being the label index.
    pub fn labels(&self) -> &[String] {
        &self.header.labels
    }

    /// The index of the background label (the camera's empty scene), if the bundle has one.
    pub fn background_label(&self) -> Option<usize> {
        self.header.background_label()
    }

    /// Time it took to read (for [`Model::load`]), load and optimise the model.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Number of f32 values of one input tensor.
    pub fn tensor_len(&self) -> usize {
        self.tensor_len
    }

    /// Preprocesses one image into `tensor` (of [`Model::tensor_len`] values) with the bundle's recipe.
    pub fn preprocess_into(
        &mut self,
        image: &RgbImage,
        tensor: &mut [f32],
    ) -> Result<(), RuntimeError> {
        if tensor.len() != self.tensor_len {
            return Err(RuntimeError::InputLength {
                expected: self.tensor_len,
                got: tensor.len(),
            });
        }
        self.preprocessor
            .run_into(image, tensor)
            .map_err(RuntimeError::from)
    }

    /// Decodes the image file at `path` for this bundle's recipe, which will see each of `regions` of it (all of
    /// it when there are none): a large JPEG is decoded smaller where the recipe keeps no more detail
    /// ([`lookout_shared::image_io::decode_file_for`]), as the host decoded the photos it was trained on.
    pub fn decode_file(
        &self,
        path: &Path,
        regions: &[lookout_shared::Region],
    ) -> Result<RgbImage, lookout_shared::image_io::DecodeError> {
        lookout_shared::image_io::decode_file_for(path, self.preprocessor.spec(), regions)
    }

    /// The bundle's preprocessing recipe.
    pub fn preprocess_spec(&self) -> &lookout_shared::preprocess::PreprocessSpec {
        self.preprocessor.spec()
    }

    /// Preprocesses and classifies one image.
    pub fn classify(&mut self, image: &RgbImage) -> Result<Prediction, RuntimeError> {
        let start = Instant::now();
        let mut buffer = std::mem::take(&mut self.input_buffer);
        let preprocessed = self
            .preprocessor
            .run_into(image, &mut buffer)
            .map_err(RuntimeError::from);
        let preprocess = start.elapsed();
        let result = preprocessed.and_then(|()| self.classify_tensor(&buffer));
        self.input_buffer = buffer;
        let mut prediction = result?;
        prediction.preprocess = preprocess;
        Ok(prediction)
    }

    /// Classifies an already preprocessed input tensor.
    pub fn classify_tensor(&mut self, input: &[f32]) -> Result<Prediction, RuntimeError> {
        let start = Instant::now();
        let (outputs, ood_score) = self.run_outputs(input)?;
        let inference = start.elapsed();
        let (label, probabilities) = match self.header.output {
            OutputKind::Sigmoid => {
                let p = outputs[0];
                let label = usize::from(p >= self.header.threshold);
                (label, vec![1.0 - p, p])
            }
            OutputKind::Softmax => {
                let label = argmax(&outputs);
                (label, outputs)
            }
        };
        let unknown = match (ood_score, self.unknown_threshold) {
            (Some(score), Some(threshold)) => score > threshold,
            _ => false,
        };
        let background = !unknown && self.header.is_background(label);
        Ok(Prediction {
            label,
            score: probabilities[label],
            probabilities,
            preprocess: Duration::ZERO,
            inference,
            ood_score,
            unknown,
            background,
        })
    }

    /// Runs the model on one preprocessed input tensor and returns its raw probabilities: one value (the
    /// probability of label 1) for a sigmoid model, one per label for a softmax model.
    pub fn run_tensor(&mut self, input: &[f32]) -> Result<Vec<f32>, RuntimeError> {
        self.run_outputs(input)
            .map(|(probabilities, _)| probabilities)
    }

    /// One input as the plan takes it (cast to the model's input type, e.g. f16).
    pub(crate) fn input_tensor(&self, input: &[f32]) -> Result<Tensor, RuntimeError> {
        let expected = self.tensor_len;
        if input.len() != expected {
            return Err(RuntimeError::InputLength {
                expected,
                got: input.len(),
            });
        }
        Tensor::from_shape(&self.input_shape, input)
            .and_then(|t| {
                if self.input_type == f32::datum_type() {
                    Ok(t)
                } else {
                    t.cast_to_dt(self.input_type).map(|t| t.into_owned())
                }
            })
            .map_err(|e| RuntimeError::Inference(format!("{e:#}")))
    }

    /// The plan's state and the executor it runs under.
    pub(crate) fn state_and_executor(&mut self) -> (&mut TypedSimpleState, Executor) {
        (&mut self.state, self.executor.clone())
    }

    /// Node `id` of the optimised plan (a profile names its slowest layers).
    pub(crate) fn plan_node(&self, id: usize) -> &TypedNode {
        self.state.model().node(id)
    }

    /// The probabilities and, for a bundle with rejection, the out-of-distribution score (the graph's second
    /// output).
    fn run_outputs(&mut self, input: &[f32]) -> Result<(Vec<f32>, Option<f32>), RuntimeError> {
        let tensor = self.input_tensor(input)?;
        let state = &mut self.state;
        let outputs = multithread_tract_scope(self.executor.clone(), || {
            state.run(tvec!(tensor.into_tvalue()))
        })
        .map_err(|e| RuntimeError::Inference(format!("{e:#}")))?;
        let mut outputs = outputs.into_iter().map(|output| {
            let values = output
                .cast_to::<f32>()
                .and_then(|t| {
                    t.try_as_plain_ram()
                        .and_then(|view| view.as_slice::<f32>().map(<[f32]>::to_vec))
                })
                .map_err(|e| RuntimeError::Inference(format!("{e:#}")))?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(RuntimeError::NonFiniteOutput);
            }
            Ok(values)
        });
        let probabilities = outputs
            .next()
            .ok_or_else(|| RuntimeError::Inference("the model returned no output".into()))??;
        let ood_score = match (&self.header.unknown, outputs.next()) {
            (Some(_), Some(score)) => score?.first().copied(),
            _ => None,
        };
        Ok((probabilities, ood_score))
    }
}

/// Index of the largest value (the first one on ties).
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Header-only sanity checks, before anything is loaded.
fn check_header(header: &BundleHeader) -> Result<(), RuntimeError> {
    match header.output {
        OutputKind::Sigmoid if header.labels.len() != 2 => {
            Err(RuntimeError::InvalidBundle(format!(
                "a sigmoid model needs exactly 2 labels, the bundle has {}; re-export it",
                header.labels.len()
            )))
        }
        OutputKind::Softmax if header.labels.len() < 2 => {
            Err(RuntimeError::InvalidBundle(format!(
                "a softmax model needs at least 2 labels, the bundle has {}; re-export it",
                header.labels.len()
            )))
        }
        OutputKind::Sigmoid if !(header.threshold > 0.0 && header.threshold < 1.0) => {
            Err(RuntimeError::InvalidBundle(format!(
                "the decision threshold {} is not between 0 and 1; re-export the bundle",
                header.threshold
            )))
        }
        _ if header
            .background_label()
            .is_some_and(|index| index >= header.labels.len()) =>
        {
            Err(RuntimeError::InvalidBundle(format!(
                "the background label is number {} of {} labels; re-export the bundle",
                header.background.unwrap_or_default() + 1,
                header.labels.len()
            )))
        }
        _ => Ok(()),
    }
}

/// Pins symbolic input dimensions (e.g. a dynamic batch) to the header's shape, then checks the model's input
/// and output facts against the header.
fn pin_and_check(
    model: TypedModel,
    header: &BundleHeader,
    shape: &[usize],
) -> Result<TypedModel, RuntimeError> {
    let load = |e: TractError| RuntimeError::ModelLoad(format!("{e:#}"));
    // With rejection, the graph's second output is the out-of-distribution score.
    let outputs = 1 + usize::from(header.unknown.is_some());
    if model.inputs.len() != 1 || model.outputs.len() != outputs {
        return Err(RuntimeError::InvalidBundle(format!(
            "the model has {} inputs and {} outputs, this bundle's header says 1 and {outputs}; re-export the \
             bundle",
            model.inputs.len(),
            model.outputs.len()
        )));
    }
    let input = model.input_fact(0).map_err(load)?.clone();
    let model = pin_input_shape(model, shape).map_err(|e| match e {
        ShapeError::Tract { .. } => RuntimeError::ModelLoad(crate::error_line(&e)),
        _ => RuntimeError::InputShapeMismatch {
            header: header.input_shape.clone(),
            model: format!("{input:?}"),
        },
    })?;

    let output = model.output_fact(0).map_err(load)?;
    let (expected, why) = match header.output {
        OutputKind::Sigmoid => (
            1,
            "a sigmoid model outputs the probability of label 1".to_string(),
        ),
        OutputKind::Softmax => (
            header.labels.len(),
            format!(
                "a softmax model outputs one probability per label, {} labels",
                header.labels.len()
            ),
        ),
    };
    if output.shape.volume().as_i64() != Some(expected as i64) {
        return Err(RuntimeError::OutputSizeMismatch {
            model: format!("{:?}", output.shape),
            expected,
            why,
        });
    }
    if header.unknown.is_some() {
        let score = model.output_fact(1).map_err(load)?;
        if score.shape.volume().as_i64() != Some(1) {
            return Err(RuntimeError::OutputSizeMismatch {
                model: format!("{:?}", score.shape),
                expected: 1,
                why: "the out-of-distribution score is one value per image".into(),
            });
        }
    }
    Ok(model)
}
