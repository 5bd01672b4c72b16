//! The old home of the node seam and its helpers, now in [`crate::node`],
//! [`crate::fs`] and [`crate::text`]. These paths stay because `mk8s-gen` and the
//! tests use them (`system::write_atomic`, `system::redact_url`).

pub use crate::fs::{write_atomic, STALE_TEMP_AGE};
pub use crate::node::{CommandOutput, Node};
pub use crate::text::{merge_args, redact_url};
