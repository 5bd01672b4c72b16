//! The one way this tool reaches a cluster: a kube-rs client from `--kubeconfig`
//! or, without it, kube-rs's `Config::infer` (`$KUBECONFIG`, then
//! `~/.kube/config`, then the in-cluster service account).

use std::path::Path;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client for the cluster the kubeconfig names.
pub async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    client(config(kubeconfig).await?)
}

/// The same, without kube-rs's own retries of 429, 503 and 504 (up to 15, each
/// as long as the server's `Retry-After`): for a caller whose retries are its
/// own, such as evictions a disruption budget holds back until `--timeout`.
pub async fn connect_without_retries(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let mut config = config(kubeconfig).await?;
    config.default_retry = false;
    client(config)
}

/// A client with the kubeconfig's credentials at another server: one control
/// plane's own endpoint (`https://IP:PORT`), not the address the kubeconfig names
/// (a balancer answers for one apiserver only). Its certificate is verified
/// against the kubeconfig's CA, its name against the URL's address.
pub async fn connect_to(kubeconfig: Option<&Path>, url: &str) -> anyhow::Result<Client> {
    let mut config = config(kubeconfig).await?;
    config.cluster_url = url.parse().with_context(|| format!("{url} is not a URL"))?;
    config.tls_server_name = None;
    client(config)
}

async fn config(kubeconfig: Option<&Path>) -> anyhow::Result<Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kc =
                Kubeconfig::read_from(path).with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => Config::infer()
            .await
            .context("no kubeconfig: give --kubeconfig, set KUBECONFIG, or write ~/.kube/config")?,
    })
}

fn client(config: Config) -> anyhow::Result<Client> {
    Client::try_from(config).context("cannot make a Kubernetes client from the kubeconfig")
}

/// Page size of the Nodes LIST: the apiserver's own default maximum is 500 per
/// page for kubectl; a fleet of thousands takes a few pages.
pub const PAGE: u32 = 500;

/// Every Node, in one paged LIST (one consistent snapshot: later pages are read
/// at the first page's resourceVersion through the continue token).
pub async fn list_nodes(client: &Client) -> anyhow::Result<Vec<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut nodes = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await.context("cannot list Nodes")?;
        nodes.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(nodes),
        }
    }
}
