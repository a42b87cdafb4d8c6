//! Stage 3, the head: its maths ([`net`]: layers, pooling, logits → scores), the run directory that holds a
//! trained one ([`run`]), and training it on cached features ([`train`]).

pub mod net;
pub mod run;
pub mod train;
