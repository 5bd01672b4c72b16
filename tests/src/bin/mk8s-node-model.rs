//! The model of a MicroK8s node (`mk8s_testkit::node_model`): the `snap`,
//! `systemctl` and `snapctl` a model node's wrappers run, and its daemons.

fn main() {
    std::process::exit(mk8s_testkit::node_model::cli_main());
}
