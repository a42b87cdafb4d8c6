//! Stage 5, reports: metrics on a split ([`evaluate`]), a bundle run over the test split as the Pi runs it ([`evaluate_bundle`]), the PNG plots ([`plots`]) and what a model file holds
//! ([`inspect`]).

pub mod evaluate;
pub mod evaluate_bundle;
pub mod inspect;
pub mod plots;
