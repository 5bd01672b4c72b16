//! mk8s-bootstrap: the first-boot agent of a worker-only MicroK8s node.
//!
//! The library owns the [`plan::JoinPlan`] type (the contract with `mk8s-gen`) and
//! the join itself: the [`phases`] of a join and the [`run::Runner`] that walks
//! them, so tests drive the same code as the binary. [`balance`] is the node-local
//! apiserver balancer the same binary runs as `mk8s-bootstrap balance`, and
//! [`maintain`] the day-2 check and repair it runs as `mk8s-bootstrap maintain`.

pub mod annotations;
pub mod api;
pub mod balance;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod csr;
pub mod fs;
pub mod leave;
pub mod maintain;
pub mod node;
pub mod phases;
pub mod plan;
pub mod retry;
pub mod run;
pub mod status;
pub mod store;
pub mod system;
pub mod text;
pub mod undo;

/// The old name of [`certs`], which holds more than the pin; the tests use it.
pub use certs as pin;
