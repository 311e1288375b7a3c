//! Emulated ECS and ALB behaviour that moto lacks: task lifecycle with real timing, target
//! registration and health checks, staged stops and draining task sets ([`model`]), driven
//! against moto by [`simulator`], and answered at the front server by [`front`].

pub mod front;
pub mod model;
pub mod simulator;

pub use model::{Behaviour, Timing};
pub use simulator::Simulator;
