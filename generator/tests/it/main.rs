//! The generator's integration tests: one test binary (one link of the whole
//! dependency graph instead of one per file), one module per subject. Most run the
//! real `mk8s-gen` binary (`CARGO_BIN_EXE_mk8s-gen`) or the real tools that consume
//! its output. A new test belongs in the module of its subject; a new subject gets
//! a module here. `cargo test -p mk8s-gen --test it <module>::` runs one module.
//!
//! The slow tier (`#[ignore = "slow tier: ..."]`) runs only with
//! `-- --include-ignored`, as scripts/test does.

mod common;

mod auth;
mod budgets;
mod cli;
mod control_plane_script;
mod csr_alt_names;
mod day2_script;
mod failover;
mod fetch_script;
mod fleet;
mod golden;
mod hosts_script;
mod join_tokens_script;
mod launch_config;
mod merge;
mod misuse;
mod packer;
mod real_tools;
mod terraform;
mod units;
