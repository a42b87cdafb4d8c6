//! Stage 3, the head: its maths ([`net`]: layers, pooling, logits → scores), the run directory that holds a
//! trained one ([`run`]), training it on cached features ([`train`]), and the rejection of images that are
//! none of its classes, fitted beside it ([`unknown`]).

pub mod net;
pub mod run;
pub mod train;
pub mod unknown;
