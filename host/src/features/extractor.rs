//! Running a backbone over images: [`FeatureExtractor`] prepares the backbone on a device; an
//! [`ExtractorWorker`] per thread turns one image (or a batch) into feature rows. `lookout predict` uses the
//! same code, so training and prediction share one path.
//!
//! Speed: on the CPU, tract runs one image per call fastest (batching is slower per image, and a second
//! thread inside one inference gains nothing), so the default is one batch-1 worker per core, each doing
//! decode → preprocess → model for its own images. A batch > 1 (for GPUs) decodes the next batch on all cores
//! while the model runs the current one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use lookout_shared::image_io::{decode_file_for, DecodeError};
use lookout_shared::preprocess::{PreprocessError, Preprocessor};
use rayon::prelude::*;
use serde::Serialize;
use tract_core::internal::*;
use tract_core::runtime::{Runnable, State};

use super::device::{self, Device, DeviceChoice, DeviceError};
use super::error::FeaturesError;
use super::Pooling;
use crate::dataset::DataError;
use lookout_models::backbone::{Backbone, BackboneError};

/// What can go wrong extracting features.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Finding or loading the backbone.
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    /// Choosing the device.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Scanning or splitting the data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Reading or writing the cache.
    #[error(transparent)]
    Features(#[from] FeaturesError),
    /// The preprocessing recipe cannot run.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// tract failed while preparing or running the model.
    #[error("running the backbone failed")]
    Model(#[source] TractError),
    /// A worker thread panicked (a bug: the other workers' results are not trusted either).
    #[error("a feature-extraction worker thread panicked")]
    WorkerPanicked,
    /// The model output is not what feature extraction needs.
    #[error("unexpected model output: {0}")]
    Output(String),
}

fn model_err(e: impl Into<TractError>) -> ExtractError {
    ExtractError::Model(e.into())
}

/// How to run the backbone.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Take the features from this node instead of the model output.
    pub cut: Option<String>,
    /// Global pooling of the features.
    pub pool: Pooling,
    /// Where to run.
    pub device: DeviceChoice,
    /// Images per model call; `None` = 1 on the CPU (fastest there), 32 on a GPU.
    pub batch: Option<usize>,
}

/// Wall time spent in each stage, summed over workers.
#[derive(Debug, Default)]
struct StageClock {
    decode_ns: AtomicU64,
    preprocess_ns: AtomicU64,
    model_ns: AtomicU64,
}

impl StageClock {
    fn add(counter: &AtomicU64, since: Instant) {
        counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn times(&self) -> StageTimes {
        let s = |c: &AtomicU64| Duration::from_nanos(c.load(Ordering::Relaxed)).as_secs_f64();
        StageTimes {
            decode_s: s(&self.decode_ns),
            preprocess_s: s(&self.preprocess_ns),
            model_s: s(&self.model_ns),
        }
    }
}

/// Seconds spent per stage, summed over all workers (so they can add up to more than the wall time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Reading and decoding files.
    pub decode_s: f64,
    /// Resize, crop, normalise.
    pub preprocess_s: f64,
    /// The backbone.
    pub model_s: f64,
}

/// A backbone prepared on a device, turning images into feature vectors.
#[derive(Debug)]
pub struct FeatureExtractor {
    backbone: Backbone,
    runnable: Arc<dyn Runnable>,
    device: Device,
    device_note: Option<String>,
    batch: usize,
    raw_shape: Vec<usize>,
    feature_shape: Vec<usize>,
    pool: Pooling,
    clock: StageClock,
}

impl FeatureExtractor {
    /// Loads `backbone`, cuts and prepares it on the chosen device.
    pub fn new(backbone: &Backbone, options: &ExtractOptions) -> Result<Self, ExtractError> {
        let (device, device_note) = device::select(options.device)?;
        let batch = options
            .batch
            .unwrap_or(if device.is_gpu() { 32 } else { 1 })
            .max(1);
        let model = backbone.load_typed(batch, options.cut.as_deref())?;
        let fact = model.output_fact(0).map_err(model_err)?;
        let shape: Vec<usize> = fact
            .shape
            .as_concrete()
            .ok_or_else(|| {
                ExtractError::Output(format!("output shape {:?} is not fixed", fact.shape))
            })?
            .to_vec();
        if shape.first() != Some(&batch) {
            return Err(ExtractError::Output(format!(
                "output shape {shape:?} does not start with the batch size {batch}{}",
                if batch > 1 {
                    "; this model may have a fixed batch size: use --batch 1"
                } else {
                    ""
                }
            )));
        }
        let raw_shape = shape[1..].to_vec();
        let feature_shape = match (options.pool, raw_shape.len()) {
            (Pooling::Avg, n) if n >= 2 => {
                if backbone.channels_last() {
                    vec![raw_shape[n - 1]]
                } else {
                    vec![raw_shape[0]]
                }
            }
            _ => raw_shape.clone(),
        };
        let runnable: Arc<dyn Runnable> =
            Arc::from(device.runtime.prepare(model).map_err(model_err)?);
        Ok(FeatureExtractor {
            backbone: backbone.clone(),
            runnable,
            device,
            device_note,
            batch,
            raw_shape,
            feature_shape,
            pool: options.pool,
            clock: StageClock::default(),
        })
    }

    /// Shape of one image's features (after pooling).
    pub fn feature_shape(&self) -> &[usize] {
        &self.feature_shape
    }

    /// Number of f32 values per image.
    pub fn feature_dim(&self) -> usize {
        self.feature_shape.iter().product()
    }

    /// The device the model runs on (`cpu`, `cuda`, `metal`).
    pub fn device_name(&self) -> &'static str {
        self.device.name
    }

    /// Why `--device auto` fell back to the CPU, if it did.
    pub fn device_note(&self) -> Option<&str> {
        self.device_note.as_deref()
    }

    /// Images per model call.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// Time spent per stage so far, over every worker of this extractor.
    pub fn stage_times(&self) -> StageTimes {
        self.clock.times()
    }

    /// A worker with its own model state and preprocessing buffers (one per thread).
    pub fn worker(&self) -> Result<ExtractorWorker<'_>, ExtractError> {
        Ok(ExtractorWorker {
            extractor: self,
            state: self.runnable.spawn().map_err(model_err)?,
            preprocessor: Preprocessor::new(&self.backbone.preprocess)?,
        })
    }

    /// Features of one decoded image (convenience; reuse a [`ExtractorWorker`] for many images).
    pub fn extract_image(&self, image: &image::RgbImage) -> Result<Vec<f32>, ExtractError> {
        self.worker()?.extract_image(image)
    }

    /// Pools one image's raw output into its features.
    fn pool_into(&self, raw: &[f32], out: &mut Vec<f32>) {
        match (self.pool, self.raw_shape.len()) {
            (Pooling::Avg, n) if n >= 2 => {
                let channels = self.feature_shape[0];
                let positions = raw.len() / channels.max(1);
                let start = out.len();
                out.resize(start + channels, 0.0);
                let dst = &mut out[start..];
                if self.backbone.channels_last() {
                    for pixel in raw.chunks_exact(channels) {
                        for (d, v) in dst.iter_mut().zip(pixel) {
                            *d += v;
                        }
                    }
                } else {
                    for (d, plane) in dst.iter_mut().zip(raw.chunks_exact(positions)) {
                        *d = plane.iter().sum();
                    }
                }
                let scale = 1.0 / positions as f32;
                dst.iter_mut().for_each(|d| *d *= scale);
            }
            _ => out.extend_from_slice(raw),
        }
    }
}

/// One thread's model state and buffers.
pub struct ExtractorWorker<'a> {
    extractor: &'a FeatureExtractor,
    state: Box<dyn State>,
    preprocessor: Preprocessor,
}

impl std::fmt::Debug for ExtractorWorker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractorWorker").finish_non_exhaustive()
    }
}

impl ExtractorWorker<'_> {
    /// Decodes and preprocesses a file into `out` (one image's input tensor); `Err` = a bad image (skip it).
    fn load_into(&mut self, path: &Path, out: &mut [f32]) -> Result<(), String> {
        let clock = &self.extractor.clock;
        let t = Instant::now();
        let decoded = decode_file_for(path, self.preprocessor.spec(), &[]);
        StageClock::add(&clock.decode_ns, t);
        let image = decoded.map_err(|e: DecodeError| e.kind.to_string())?;
        let t = Instant::now();
        let done = self.preprocessor.run_into(&image, out);
        StageClock::add(&clock.preprocess_ns, t);
        done.map_err(|e| e.to_string())
    }

    /// Runs the model on a full batch of input tensors and returns the features, one row per image.
    fn run_model(&mut self, input: Vec<f32>) -> Result<Vec<f32>, ExtractError> {
        let extractor = self.extractor;
        let t = Instant::now();
        let shape = extractor.backbone.input_shape(extractor.batch)?;
        let tensor = tract_ndarray::ArrayD::from_shape_vec(tract_ndarray::IxDyn(&shape), input)
            .map_err(model_err)?
            .into_tensor();
        let outputs = self
            .state
            .run(tvec![tensor.into_tvalue()])
            .map_err(model_err)?;
        StageClock::add(&extractor.clock.model_ns, t);
        let output = outputs
            .first()
            .ok_or_else(|| ExtractError::Output("the model returned nothing".into()))?;
        let output = output.to_plain_array_view::<f32>().map_err(model_err)?;
        let raw_len: usize = extractor.raw_shape.iter().product();
        let values: Vec<f32> = output.iter().copied().collect();
        let mut features = Vec::with_capacity(extractor.batch * extractor.feature_dim());
        for raw in values.chunks_exact(raw_len.max(1)) {
            extractor.pool_into(raw, &mut features);
        }
        Ok(features)
    }

    /// Features of a batch of already preprocessed images: `input` holds [`FeatureExtractor::batch`] input
    /// tensors back to back; one row of [`FeatureExtractor::feature_dim`] values per image comes back. The same
    /// model call extraction makes, for inputs that come as tensors (reference fixtures).
    pub fn extract_tensors(&mut self, input: Vec<f32>) -> Result<Vec<f32>, ExtractError> {
        let expected = self.preprocessor.tensor_len() * self.extractor.batch;
        if input.len() != expected {
            return Err(ExtractError::Output(format!(
                "{} input values given, a batch of {} takes {expected}",
                input.len(),
                self.extractor.batch
            )));
        }
        self.run_model(input)
    }

    /// Decodes the image file at `path` for the backbone's recipe, which will see `regions` of it
    /// ([`lookout_shared::image_io::decode_file_for`], as extraction and the edge decode).
    pub fn decode_file(
        &self,
        path: &Path,
        regions: &[lookout_shared::Region],
    ) -> Result<image::RgbImage, DecodeError> {
        decode_file_for(path, self.preprocessor.spec(), regions)
    }

    /// The backbone's preprocessing recipe.
    pub fn preprocess_spec(&self) -> &lookout_shared::PreprocessSpec {
        self.preprocessor.spec()
    }

    /// Features of one decoded image.
    pub fn extract_image(&mut self, image: &image::RgbImage) -> Result<Vec<f32>, ExtractError> {
        let extractor = self.extractor;
        let len = self.preprocessor.tensor_len();
        let mut input = vec![0f32; len * extractor.batch];
        let t = Instant::now();
        self.preprocessor.run_into(image, &mut input[..len])?;
        StageClock::add(&extractor.clock.preprocess_ns, t);
        let mut features = self.run_model(input)?;
        features.truncate(extractor.feature_dim());
        Ok(features)
    }

    /// Features of one image file; `Ok(Err(reason))` when the file is not a usable image.
    pub fn extract_file(&mut self, path: &Path) -> Result<Result<Vec<f32>, String>, ExtractError> {
        let extractor = self.extractor;
        let len = self.preprocessor.tensor_len();
        let mut input = vec![0f32; len * extractor.batch];
        if let Err(reason) = self.load_into(path, &mut input[..len]) {
            return Ok(Err(reason));
        }
        let mut features = self.run_model(input)?;
        features.truncate(extractor.feature_dim());
        Ok(Ok(features))
    }
}

/// One image's outcome: its features, or why it gave none.
type Outcome = Result<Vec<f32>, String>;

impl FeatureExtractor {
    /// Features of many files, in order, using every core; bad images give `Err(reason)`, model failures abort.
    pub fn extract_files(
        &self,
        paths: &[PathBuf],
        progress: &ProgressBar,
    ) -> Result<Vec<Outcome>, ExtractError> {
        if self.batch == 1 {
            self.extract_files_batch1(paths, progress)
        } else {
            self.extract_files_batched(paths, progress)
        }
    }

    fn extract_files_batch1(
        &self,
        paths: &[PathBuf],
        progress: &ProgressBar,
    ) -> Result<Vec<Outcome>, ExtractError> {
        self.par_map_with_workers(paths, |worker, path| {
            let outcome = worker.extract_file(path);
            progress.inc(1);
            outcome
        })
    }

    /// `f` over `items` on every core, each rayon thread with its own worker (model state and buffers), created
    /// on first use and kept for the whole list; results in order.
    pub(crate) fn par_map_with_workers<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&mut ExtractorWorker<'_>, &T) -> Result<R, ExtractError> + Sync + Send,
    ) -> Result<Vec<R>, ExtractError> {
        let workers: Vec<Mutex<Option<ExtractorWorker<'_>>>> = (0..rayon::current_num_threads()
            .max(1))
            .map(|_| Mutex::new(None))
            .collect();
        items
            .par_iter()
            .with_max_len(1)
            .map(|item| {
                let slot = rayon::current_thread_index().unwrap_or(0) % workers.len();
                let mut guard = workers[slot]
                    .lock()
                    .map_err(|_| ExtractError::WorkerPanicked)?;
                if guard.is_none() {
                    *guard = Some(self.worker()?);
                }
                let worker = guard.as_mut().ok_or(ExtractError::WorkerPanicked)?;
                f(worker, item)
            })
            .collect()
    }

    fn extract_files_batched(
        &self,
        paths: &[PathBuf],
        progress: &ProgressBar,
    ) -> Result<Vec<Outcome>, ExtractError> {
        let batch = self.batch;
        let len = Preprocessor::new(&self.backbone.preprocess)?.tensor_len();
        let mut runner = self.worker()?;
        // Decode + preprocess one batch on all cores: the input tensor and the per-image load results.
        let prepare = |chunk: &[PathBuf]| -> (Vec<f32>, Vec<Result<(), String>>) {
            let mut input = vec![0f32; len * batch];
            let loaded = input
                .par_chunks_mut(len)
                .zip(chunk.par_iter())
                .map_init(
                    || Preprocessor::new(&self.backbone.preprocess),
                    |pre, (slot, path)| {
                        let pre = pre.as_mut().map_err(|e| e.to_string())?;
                        let t = Instant::now();
                        let image =
                            decode_file_for(path, pre.spec(), &[]).map_err(|e| e.kind.to_string());
                        StageClock::add(&self.clock.decode_ns, t);
                        let t = Instant::now();
                        let done = pre.run_into(&image?, slot).map_err(|e| e.to_string());
                        StageClock::add(&self.clock.preprocess_ns, t);
                        done
                    },
                )
                .collect();
            (input, loaded)
        };
        let chunks: Vec<&[PathBuf]> = paths.chunks(batch).collect();
        let mut outcomes = Vec::with_capacity(paths.len());
        let mut next = chunks.first().map(|c| prepare(c));
        for i in 0..chunks.len() {
            let Some((input, loaded)) = next.take() else {
                break;
            };
            // The model runs on this batch while the other cores prepare the next one.
            let (features, prepared) = rayon::join(
                || runner.run_model(input),
                || chunks.get(i + 1).map(|c| prepare(c)),
            );
            next = prepared;
            let features = features?;
            let dim = self.feature_dim();
            for (k, load) in loaded.into_iter().enumerate() {
                outcomes.push(load.map(|()| features[k * dim..(k + 1) * dim].to_vec()));
            }
            progress.inc(chunks[i].len() as u64);
        }
        Ok(outcomes)
    }
}
