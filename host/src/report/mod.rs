//! Stage 5, reports: metrics on a split ([`evaluate`]), a bundle run over the test split as the Pi runs it ([`evaluate_bundle`]), the PNG plots ([`plots`]), what a model file holds
//! ([`inspect`]), and how well a run rejects what is none of its classes ([`ood`]).

pub mod conditions;
pub mod evaluate;
pub mod evaluate_bundle;
pub mod inspect;
pub mod mahalanobis;
pub mod ood;
pub mod plots;
