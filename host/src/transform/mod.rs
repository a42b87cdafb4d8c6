//! Image transforms, before any backbone sees an image: the operations ([`ops`]), the random training views
//! drawn from them ([`augment`]), and the fixed camera conditions the test photos are measured under
//! ([`conditions`]). One implementation of each operation serves both.

pub mod augment;
pub mod conditions;
pub mod ops;

pub use augment::{AugmentPolicy, DEFAULT_POLICY};
pub use conditions::Condition;
