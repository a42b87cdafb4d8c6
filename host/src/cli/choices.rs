//! Command-line spellings of library types. The library's types are file formats (run.json, the features
//! manifest); clap lives here, so a flag can change without touching a format and the other way round.

use lookout_host::features::extract::AugmentJob;
use lookout_host::features::Pooling;
use lookout_host::head::net::HeadKind;
use lookout_host::head::unknown::UnknownConfig;
use lookout_host::transform::{AugmentPolicy, DEFAULT_POLICY};

/// `--head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadChoice {
    /// The tutorial's: flatten → Linear(→hidden) → ReLU → Dropout → Linear(→outputs).
    Tutorial,
    /// Logistic regression: flatten → Linear(→outputs).
    Linear,
    /// Two hidden layers: Linear(→hidden) → ReLU → Dropout → Linear(→hidden) → ReLU → Dropout → Linear.
    Mlp,
}

impl From<HeadChoice> for HeadKind {
    fn from(choice: HeadChoice) -> Self {
        match choice {
            HeadChoice::Tutorial => HeadKind::Tutorial,
            HeadChoice::Linear => HeadKind::Linear,
            HeadChoice::Mlp => HeadKind::Mlp,
        }
    }
}

/// `--pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolChoice {
    /// Keep the full feature map.
    None,
    /// Global average pooling: `[C, H, W]` → `[C]` (a much smaller, faster head).
    Avg,
}

impl From<PoolChoice> for Pooling {
    fn from(choice: PoolChoice) -> Self {
        match choice {
            PoolChoice::None => Pooling::None,
            PoolChoice::Avg => Pooling::Avg,
        }
    }
}

/// The rejection of images that are none of the classes, fitted beside the head.
#[derive(Debug, Clone, clap::Args)]
pub struct UnknownFitArgs {
    /// Calibrate the rejection to keep this fraction of held-out photos of the classes (the rest are
    /// called unknown: lower rejects more of what is none of the classes, and more of what is). Default:
    /// 0.97 of clean photos; 0.98 of the photos and their views when there are augmented views (measured:
    /// docs/camera.md).
    #[arg(long, value_name = "FRACTION")]
    pub unknown_keep: Option<f32>,
    /// Compare each image with at most this many training photos (a coreset of the training set), and with
    /// augmented views at most this many more views the photos do not cover: the bank is its rows × the
    /// backbone's channels floats in the bundle.
    #[arg(long, default_value_t = UnknownConfig::default().bank, value_name = "N")]
    pub unknown_bank: usize,
    /// Fit no rejection: every image gets one of the labels, however unlike them it is.
    #[arg(long)]
    pub no_unknown: bool,
    /// Fit the rejection on clean photos only. By default, when the features have augmented views
    /// (--augment), its bank holds the training views the photos do not cover and it is calibrated on the
    /// validation photos and their views together, so dim, blurred, noisy or off-centre frames of the classes
    /// are kept about as often as clean photos.
    #[arg(long, conflicts_with = "no_unknown")]
    pub unknown_clean: bool,
}

impl UnknownFitArgs {
    /// The library's settings for these flags.
    pub fn config(&self) -> Option<UnknownConfig> {
        (!self.no_unknown).then_some(UnknownConfig {
            keep: self.unknown_keep,
            bank: self.unknown_bank,
            on_views: !self.unknown_clean,
        })
    }
}

/// Augmented views of the training photos, extracted once and cached.
#[derive(Debug, Clone, clap::Args)]
pub struct AugmentArgs {
    /// Also extract K augmented views of every training photo (random crop, flip, colour, rotation, blur,
    /// noise, JPEG: see --augment-policy), once, cached beside the clean features; training draws each photo
    /// from its clean features or one of its views every epoch. Extraction does (K + 1)x the work for the
    /// training split; the test split is never augmented.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub augment: u32,
    /// How the views are drawn: a preset (`default`, `camera`: dim light, sensor noise, motion blur, low
    /// resolution and wide crops as a fixed camera delivers them), comma-separated crop=MIN_AREA, flip,
    /// jitter=J, rotate=DEGREES, blur=SIGMA, noise=SIGMA, jpeg=MIN_QUALITY, dark=GAMMA, motion=FRACTION,
    /// lowres=FRACTION, mono=PROBABILITY, or a preset followed by some of them: `camera,mono=0.25` for a
    /// camera whose night mode is infrared (monochrome frames).
    #[arg(long, value_name = "SPEC", default_value = DEFAULT_POLICY, requires = "augment")]
    pub augment_policy: AugmentPolicy,
}

impl AugmentArgs {
    /// The extraction's augmentation, if asked for.
    pub fn job(&self) -> Option<AugmentJob> {
        (self.augment > 0).then(|| AugmentJob {
            views: self.augment,
            policy: self.augment_policy.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn flag_spellings_are_the_recorded_names() {
        // `--pool avg` is what run.json and the manifest say: a user reads one word for one thing.
        for choice in PoolChoice::value_variants() {
            let name = choice.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(Pooling::from(*choice).as_str()));
        }
        for choice in HeadChoice::value_variants() {
            let name = choice.to_possible_value().map(|v| v.get_name().to_string());
            let recorded = serde_json::to_value(HeadKind::from(*choice)).unwrap();
            assert_eq!(name.as_deref(), recorded.as_str());
        }
    }
}
