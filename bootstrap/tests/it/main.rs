//! The bootstrap's integration tests: one test binary (one link of the whole
//! dependency graph instead of one per file), one module per subject. They run the
//! real `mk8s-bootstrap` binary (`CARGO_BIN_EXE_mk8s-bootstrap`) on the files of a
//! real `mk8s-gen` user-data, against the testkit's simulated cluster and its model
//! of a MicroK8s node (the `mk8s-node-model` binary, which `cargo test --workspace`
//! builds; with `-p mk8s-bootstrap`, build it first: see the README).
//!
//! Two modules need root and machine-wide resources: `real_apiserver` (the real
//! control plane's binaries, `MK8S_UPSTREAM_BIN`, addresses on a bridge) and
//! `real_boot` (systemd-nspawn, the static musl build). Without them:
//! `cargo test -p mk8s-bootstrap --test it -- --skip real_apiserver:: --skip real_boot::`.

mod common;

mod balance;
mod launch_config;
mod leave;
mod maintain;
mod native_join;
mod real_apiserver;
mod real_balance;
mod real_boot;
mod real_replace;
mod real_rotation;
mod real_upgrade;
mod scenarios;
mod store;
