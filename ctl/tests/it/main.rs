//! mk8s-ctl's integration tests: one test binary, one module per subject. They
//! run the real `mk8s-ctl` binary (`CARGO_BIN_EXE_mk8s-ctl`) against the real
//! kube-apiserver (`mk8s_testkit::upstream`, MicroK8s's default args, built by
//! `scripts/build-upstream`, `MK8S_UPSTREAM_BIN`), on MicroK8s's default
//! `AlwaysAllow` and on `RBAC,Node`, and the real kube-controller-manager where a
//! certificate must be issued. They need root (the apiserver's mount namespace).

mod common;

mod approve;
mod cli;
mod policy;
mod retire;
mod status;
