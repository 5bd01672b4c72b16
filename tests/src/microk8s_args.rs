//! MicroK8s's own default arguments for kube-apiserver, kube-controller-manager, kubelet and kube-proxy,
//! one row per MicroK8s track under test, for starting the real upstream binaries the way MicroK8s would.
//!
//! How it was made: each table holds, verbatim and in order, every non-empty line not starting with `#` of
//! `microk8s-resources/default-args/<component>` in the public repository canonical/microk8s, read with
//! `git show <commit>:microk8s-resources/default-args/<component>` from a mirror of that repository. The
//! commit of each row is the head of the branch of the same name at the time of reading:
//!
//! | row  | branch | commit                                     |
//! |------|--------|--------------------------------------------|
//! | 1.20 | `1.20` | `ef4bc21494a4eea9f0c186a9b7c4c41d8ef4a91a` |
//! | 1.22 | `1.22` | `f7da6e061979da68eb8051a28d15541312021110` |
//! | 1.26 | `1.26` | `91ceb1b843864aa84442ae0cb0707ada6cfbffa4` |
//! | 1.28 | `1.28` | `f6fda651e6d54d295a3f6cae173a3b9db8eba9f4` |
//! | 1.30 | `1.30` | `59abcc22508c58d718e37bfd3f93ea4efd6df710` |
//! | 1.34 | `1.34` | `b8f8180a1398d67ed3bb4587f54564dc20b6404a` |
//!
//! Nothing is expanded or unquoted: `${SNAP_DATA}`, `${SNAP_COMMON}` and quotes such as
//! `--service-account-issuer='https://kubernetes.default.svc'` are kept as written. MicroK8s itself reads
//! these files with `declare -a args="($(cat $SNAP_DATA/args/$app))"` (for example
//! `microk8s-resources/wrappers/run-apiserver-with-args` on 1.20, `run-kubelite-with-args` on 1.34), i.e.
//! with shell expansion and quote removal, so a caller must do the same before passing them to a binary.
//!
//! `--token-auth-file` is in kube-apiserver's defaults up to and including branch 1.27 and gone from 1.28 on,
//! the release that also added `--kubelet-certificate-authority`, `--kubelet-preferred-address-types`,
//! `--tls-cipher-suites`, the EventRateLimit admission plugin and the dedicated
//! `apiserver-kubelet-client.{crt,key}` kubelet client certificate.
//!
//! [`DROPPED_BY_KUBE_1_34`] and [`DROPPED_KUBELET_PROXY_BY_KUBE_1_34`] list what the upstream v1.34.4
//! binaries reject, checked against the flag definitions in the Go module cache
//! (`k8s.io/kubernetes@v1.34.4` `cmd/kube-apiserver/app/options`, `pkg/kubeapiserver/options`,
//! `pkg/controlplane/apiserver/options`, `cmd/kube-controller-manager/app/options`, `cmd/kubelet/app/options`,
//! `cmd/kube-proxy/app`; `k8s.io/apiserver@v0.34.4` `pkg/server/options`; `k8s.io/component-base@v0.34.4`;
//! `k8s.io/controller-manager@v0.34.4`; `k8s.io/cloud-provider@v0.34.4`). Every other flag in these tables is
//! still defined in v1.34.4. Two things the lists do not cover: the 1.20 and 1.22 kube-apiserver rows have no
//! `--etcd-servers` (their storage was dqlite inside MicroK8s's patched apiserver), so upstream v1.34.4 also
//! stops with `--etcd-servers must be specified`; and kubelet's `--containerd` is still accepted in v1.34.4,
//! as a deprecated cadvisor flag (`cmd/kubelet/app/options/globalflags_linux.go`).

/// MicroK8s's default arguments for one track, as in the branch's `microk8s-resources/default-args/`.
#[derive(Debug)]
pub struct DefaultArgs {
    /// The Kubernetes minor version (the `20` of `1.20`).
    pub minor: u32,
    /// The canonical/microk8s branch the lines come from.
    pub branch: &'static str,
    /// The commit of that branch the lines were read at.
    pub commit: &'static str,
    /// `microk8s-resources/default-args/kube-apiserver`.
    pub kube_apiserver: &'static [&'static str],
    /// `microk8s-resources/default-args/kube-controller-manager`.
    pub kube_controller_manager: &'static [&'static str],
    /// `microk8s-resources/default-args/kubelet`.
    pub kubelet: &'static [&'static str],
    /// `microk8s-resources/default-args/kube-proxy`.
    pub kube_proxy: &'static [&'static str],
}

/// `1.20:microk8s-resources/default-args/kube-apiserver` (25 lines).
pub const KUBE_APISERVER_1_20: &[&str] = &[
    "--cert-dir=${SNAP_DATA}/certs",
    "--service-cluster-ip-range=10.152.183.0/24",
    "--authorization-mode=AlwaysAllow",
    "--service-account-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--tls-cert-file=${SNAP_DATA}/certs/server.crt",
    "--tls-private-key-file=${SNAP_DATA}/certs/server.key",
    "--kubelet-client-certificate=${SNAP_DATA}/certs/server.crt",
    "--kubelet-client-key=${SNAP_DATA}/certs/server.key",
    "--secure-port=16443",
    "--token-auth-file=${SNAP_DATA}/credentials/known_tokens.csv",
    "--insecure-port=0",
    "--storage-backend=dqlite",
    "--storage-dir=${SNAP_DATA}/var/kubernetes/backend/",
    "--allow-privileged=true",
    "--service-account-issuer='https://kubernetes.default.svc'",
    "--service-account-signing-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--feature-gates=RemoveSelfLink=false",
    "--requestheader-client-ca-file=${SNAP_DATA}/certs/front-proxy-ca.crt",
    "--requestheader-allowed-names=front-proxy-client",
    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    "--requestheader-group-headers=X-Remote-Group",
    "--requestheader-username-headers=X-Remote-User",
    "--proxy-client-cert-file=${SNAP_DATA}/certs/front-proxy-client.crt",
    "--proxy-client-key-file=${SNAP_DATA}/certs/front-proxy-client.key",
];

/// `1.20:microk8s-resources/default-args/kube-controller-manager` (7 lines).
pub const KUBE_CONTROLLER_MANAGER_1_20: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/controller.config",
    "--service-account-private-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--root-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-cert-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-key-file=${SNAP_DATA}/certs/ca.key",
    "--address=127.0.0.1",
    "--use-service-account-credentials",
];

/// `1.20:microk8s-resources/default-args/kubelet` (16 lines).
pub const KUBELET_1_20: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config",
    "--cert-dir=${SNAP_DATA}/certs",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--anonymous-auth=false",
    "--network-plugin=cni",
    "--root-dir=${SNAP_COMMON}/var/lib/kubelet",
    "--fail-swap-on=false",
    "--cni-conf-dir=${SNAP_DATA}/args/cni-network/",
    "--cni-bin-dir=${SNAP_DATA}/opt/cni/bin/",
    "--feature-gates=DevicePlugins=true",
    r#"--eviction-hard="memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi""#,
    "--container-runtime=remote",
    "--container-runtime-endpoint=${SNAP_COMMON}/run/containerd.sock",
    "--containerd=${SNAP_COMMON}/run/containerd.sock",
    r#"--node-labels="microk8s.io/cluster=true""#,
    "--authentication-token-webhook=true",
];

/// `1.20:microk8s-resources/default-args/kube-proxy` (3 lines).
pub const KUBE_PROXY_1_20: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/proxy.config",
    "--cluster-cidr=10.1.0.0/16",
    "--healthz-bind-address=127.0.0.1",
];

/// `1.22:microk8s-resources/default-args/kube-apiserver` (25 lines).
pub const KUBE_APISERVER_1_22: &[&str] = &[
    "--cert-dir=${SNAP_DATA}/certs",
    "--service-cluster-ip-range=10.152.183.0/24",
    "--authorization-mode=AlwaysAllow",
    "--service-account-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--tls-cert-file=${SNAP_DATA}/certs/server.crt",
    "--tls-private-key-file=${SNAP_DATA}/certs/server.key",
    "--kubelet-client-certificate=${SNAP_DATA}/certs/server.crt",
    "--kubelet-client-key=${SNAP_DATA}/certs/server.key",
    "--secure-port=16443",
    "--token-auth-file=${SNAP_DATA}/credentials/known_tokens.csv",
    "--insecure-port=0",
    "--storage-backend=dqlite",
    "--storage-dir=${SNAP_DATA}/var/kubernetes/backend/",
    "--allow-privileged=true",
    "--service-account-issuer='https://kubernetes.default.svc'",
    "--service-account-signing-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--feature-gates=RemoveSelfLink=false",
    "--requestheader-client-ca-file=${SNAP_DATA}/certs/front-proxy-ca.crt",
    "--requestheader-allowed-names=front-proxy-client",
    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    "--requestheader-group-headers=X-Remote-Group",
    "--requestheader-username-headers=X-Remote-User",
    "--proxy-client-cert-file=${SNAP_DATA}/certs/front-proxy-client.crt",
    "--proxy-client-key-file=${SNAP_DATA}/certs/front-proxy-client.key",
];

/// `1.22:microk8s-resources/default-args/kube-controller-manager` (9 lines).
pub const KUBE_CONTROLLER_MANAGER_1_22: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/controller.config",
    "--service-account-private-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--root-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-cert-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-key-file=${SNAP_DATA}/certs/ca.key",
    "--address=127.0.0.1",
    "--use-service-account-credentials",
    "--leader-elect-lease-duration=60s",
    "--leader-elect-renew-deadline=30s",
];

/// `1.22:microk8s-resources/default-args/kubelet` (16 lines).
pub const KUBELET_1_22: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config",
    "--cert-dir=${SNAP_DATA}/certs",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--anonymous-auth=false",
    "--network-plugin=cni",
    "--root-dir=${SNAP_COMMON}/var/lib/kubelet",
    "--fail-swap-on=false",
    "--cni-conf-dir=${SNAP_DATA}/args/cni-network/",
    "--cni-bin-dir=${SNAP_DATA}/opt/cni/bin/",
    "--feature-gates=DevicePlugins=true",
    r#"--eviction-hard="memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi""#,
    "--container-runtime=remote",
    "--container-runtime-endpoint=${SNAP_COMMON}/run/containerd.sock",
    "--containerd=${SNAP_COMMON}/run/containerd.sock",
    r#"--node-labels="microk8s.io/cluster=true""#,
    "--authentication-token-webhook=true",
];

/// `1.22:microk8s-resources/default-args/kube-proxy` (3 lines).
pub const KUBE_PROXY_1_22: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/proxy.config",
    "--cluster-cidr=10.1.0.0/16",
    "--healthz-bind-address=127.0.0.1",
];

/// `1.26:microk8s-resources/default-args/kube-apiserver` (24 lines).
pub const KUBE_APISERVER_1_26: &[&str] = &[
    "--cert-dir=${SNAP_DATA}/certs",
    "--service-cluster-ip-range=10.152.183.0/24",
    "--authorization-mode=AlwaysAllow",
    "--service-account-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--tls-cert-file=${SNAP_DATA}/certs/server.crt",
    "--tls-private-key-file=${SNAP_DATA}/certs/server.key",
    "--kubelet-client-certificate=${SNAP_DATA}/certs/server.crt",
    "--kubelet-client-key=${SNAP_DATA}/certs/server.key",
    "--secure-port=16443",
    "--token-auth-file=${SNAP_DATA}/credentials/known_tokens.csv",
    r#"--etcd-servers="unix://${SNAP_DATA}/var/kubernetes/backend/kine.sock:12379""#,
    "--allow-privileged=true",
    "--service-account-issuer='https://kubernetes.default.svc'",
    "--service-account-signing-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--event-ttl=5m",
    "--profiling=false",
    "--requestheader-client-ca-file=${SNAP_DATA}/certs/front-proxy-ca.crt",
    "--requestheader-allowed-names=front-proxy-client",
    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    "--requestheader-group-headers=X-Remote-Group",
    "--requestheader-username-headers=X-Remote-User",
    "--proxy-client-cert-file=${SNAP_DATA}/certs/front-proxy-client.crt",
    "--proxy-client-key-file=${SNAP_DATA}/certs/front-proxy-client.key",
];

/// `1.26:microk8s-resources/default-args/kube-controller-manager` (9 lines).
pub const KUBE_CONTROLLER_MANAGER_1_26: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/controller.config",
    "--service-account-private-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--root-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-cert-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-key-file=${SNAP_DATA}/certs/ca.key",
    "--use-service-account-credentials",
    "--leader-elect-lease-duration=60s",
    "--leader-elect-renew-deadline=30s",
    "--profiling=false",
];

/// `1.26:microk8s-resources/default-args/kubelet` (14 lines).
pub const KUBELET_1_26: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config",
    "--cert-dir=${SNAP_DATA}/certs",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--anonymous-auth=false",
    "--root-dir=${SNAP_COMMON}/var/lib/kubelet",
    "--fail-swap-on=false",
    "--feature-gates=DevicePlugins=true",
    r#"--eviction-hard="memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi""#,
    "--container-runtime=remote",
    "--container-runtime-endpoint=${SNAP_COMMON}/run/containerd.sock",
    "--containerd=${SNAP_COMMON}/run/containerd.sock",
    r#"--node-labels="microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane""#,
    "--authentication-token-webhook=true",
    "--read-only-port=0",
];

/// `1.26:microk8s-resources/default-args/kube-proxy` (4 lines).
pub const KUBE_PROXY_1_26: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/proxy.config",
    "--cluster-cidr=10.1.0.0/16",
    "--healthz-bind-address=127.0.0.1",
    "--profiling=false",
];

/// `1.28:microk8s-resources/default-args/kube-apiserver` (28 lines).
pub const KUBE_APISERVER_1_28: &[&str] = &[
    "--cert-dir=${SNAP_DATA}/certs",
    "--service-cluster-ip-range=10.152.183.0/24",
    "--authorization-mode=AlwaysAllow",
    "--service-account-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--tls-cert-file=${SNAP_DATA}/certs/server.crt",
    "--tls-private-key-file=${SNAP_DATA}/certs/server.key",
    "--tls-cipher-suites=TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,TLS_RSA_WITH_3DES_EDE_CBC_SHA,TLS_RSA_WITH_AES_128_CBC_SHA,TLS_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_256_CBC_SHA,TLS_RSA_WITH_AES_256_GCM_SHA384",
    "--kubelet-client-certificate=${SNAP_DATA}/certs/apiserver-kubelet-client.crt",
    "--kubelet-client-key=${SNAP_DATA}/certs/apiserver-kubelet-client.key",
    "--secure-port=16443",
    r#"--etcd-servers="unix://${SNAP_DATA}/var/kubernetes/backend/kine.sock:12379""#,
    "--allow-privileged=true",
    "--service-account-issuer='https://kubernetes.default.svc'",
    "--service-account-signing-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--event-ttl=5m",
    "--profiling=false",
    "--requestheader-client-ca-file=${SNAP_DATA}/certs/front-proxy-ca.crt",
    "--requestheader-allowed-names=front-proxy-client",
    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    "--requestheader-group-headers=X-Remote-Group",
    "--requestheader-username-headers=X-Remote-User",
    "--proxy-client-cert-file=${SNAP_DATA}/certs/front-proxy-client.crt",
    "--proxy-client-key-file=${SNAP_DATA}/certs/front-proxy-client.key",
    "--enable-admission-plugins=EventRateLimit",
    "--admission-control-config-file=${SNAP_DATA}/args/admission-control-config-file.yaml",
    "--kubelet-certificate-authority=${SNAP_DATA}/certs/ca.crt",
    "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
];

/// `1.28:microk8s-resources/default-args/kube-controller-manager` (9 lines).
pub const KUBE_CONTROLLER_MANAGER_1_28: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/controller.config",
    "--service-account-private-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--root-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-cert-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-key-file=${SNAP_DATA}/certs/ca.key",
    "--use-service-account-credentials",
    "--leader-elect-lease-duration=60s",
    "--leader-elect-renew-deadline=30s",
    "--profiling=false",
];

/// `1.28:microk8s-resources/default-args/kubelet` (14 lines).
pub const KUBELET_1_28: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config",
    "--cert-dir=${SNAP_DATA}/certs",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--anonymous-auth=false",
    "--root-dir=${SNAP_COMMON}/var/lib/kubelet",
    "--fail-swap-on=false",
    r#"--eviction-hard="memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi""#,
    "--container-runtime-endpoint=${SNAP_COMMON}/run/containerd.sock",
    "--containerd=${SNAP_COMMON}/run/containerd.sock",
    r#"--node-labels="microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane""#,
    "--authentication-token-webhook=true",
    "--read-only-port=0",
    "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_128_GCM_SHA256",
    "--serialize-image-pulls=false",
];

/// `1.28:microk8s-resources/default-args/kube-proxy` (4 lines).
pub const KUBE_PROXY_1_28: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/proxy.config",
    "--cluster-cidr=10.1.0.0/16",
    "--healthz-bind-address=127.0.0.1",
    "--profiling=false",
];

/// `1.34:microk8s-resources/default-args/kube-apiserver` (29 lines).
pub const KUBE_APISERVER_1_34: &[&str] = &[
    "--cert-dir=${SNAP_DATA}/certs",
    "--service-cluster-ip-range=10.152.183.0/24",
    "--authorization-mode=AlwaysAllow",
    "--service-account-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--tls-cert-file=${SNAP_DATA}/certs/server.crt",
    "--tls-private-key-file=${SNAP_DATA}/certs/server.key",
    "--tls-cipher-suites=TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,TLS_RSA_WITH_3DES_EDE_CBC_SHA,TLS_RSA_WITH_AES_128_CBC_SHA,TLS_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_256_CBC_SHA,TLS_RSA_WITH_AES_256_GCM_SHA384",
    "--kubelet-client-certificate=${SNAP_DATA}/certs/apiserver-kubelet-client.crt",
    "--kubelet-client-key=${SNAP_DATA}/certs/apiserver-kubelet-client.key",
    "--secure-port=16443",
    r#"--etcd-servers="unix://${SNAP_DATA}/var/kubernetes/backend/kine.sock:12379""#,
    "--allow-privileged=true",
    "--service-account-issuer='https://kubernetes.default.svc'",
    "--service-account-signing-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--event-ttl=5m",
    "--profiling=false",
    "--feature-gates=ListFromCacheSnapshot=false,SizeBasedListCostEstimate=false,DetectCacheInconsistency=false",
    "--requestheader-client-ca-file=${SNAP_DATA}/certs/front-proxy-ca.crt",
    "--requestheader-allowed-names=front-proxy-client",
    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
    "--requestheader-group-headers=X-Remote-Group",
    "--requestheader-username-headers=X-Remote-User",
    "--proxy-client-cert-file=${SNAP_DATA}/certs/front-proxy-client.crt",
    "--proxy-client-key-file=${SNAP_DATA}/certs/front-proxy-client.key",
    "--enable-admission-plugins=EventRateLimit",
    "--admission-control-config-file=${SNAP_DATA}/args/admission-control-config-file.yaml",
    "--kubelet-certificate-authority=${SNAP_DATA}/certs/ca.crt",
    "--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
];

/// `1.34:microk8s-resources/default-args/kube-controller-manager` (9 lines).
pub const KUBE_CONTROLLER_MANAGER_1_34: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/controller.config",
    "--service-account-private-key-file=${SNAP_DATA}/certs/serviceaccount.key",
    "--root-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-cert-file=${SNAP_DATA}/certs/ca.crt",
    "--cluster-signing-key-file=${SNAP_DATA}/certs/ca.key",
    "--use-service-account-credentials",
    "--leader-elect-lease-duration=60s",
    "--leader-elect-renew-deadline=30s",
    "--profiling=false",
];

/// `1.34:microk8s-resources/default-args/kubelet` (14 lines).
pub const KUBELET_1_34: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config",
    "--cert-dir=${SNAP_DATA}/certs",
    "--client-ca-file=${SNAP_DATA}/certs/ca.crt",
    "--anonymous-auth=false",
    "--root-dir=${SNAP_COMMON}/var/lib/kubelet",
    "--fail-swap-on=false",
    r#"--eviction-hard="memory.available<100Mi,nodefs.available<1Gi,imagefs.available<1Gi""#,
    "--container-runtime-endpoint=${SNAP_COMMON}/run/containerd.sock",
    "--containerd=${SNAP_COMMON}/run/containerd.sock",
    r#"--node-labels="microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane""#,
    "--authentication-token-webhook=true",
    "--read-only-port=0",
    "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_128_GCM_SHA256",
    "--serialize-image-pulls=false",
];

/// `1.34:microk8s-resources/default-args/kube-proxy` (4 lines).
pub const KUBE_PROXY_1_34: &[&str] = &[
    "--kubeconfig=${SNAP_DATA}/credentials/proxy.config",
    "--cluster-cidr=10.1.0.0/16",
    "--healthz-bind-address=127.0.0.1",
    "--profiling=false",
];

/// One row per MicroK8s track under test, in ascending `minor` order.
pub const TABLE: &[DefaultArgs] = &[
    DefaultArgs {
        minor: 20,
        branch: "1.20",
        commit: "ef4bc21494a4eea9f0c186a9b7c4c41d8ef4a91a",
        kube_apiserver: KUBE_APISERVER_1_20,
        kube_controller_manager: KUBE_CONTROLLER_MANAGER_1_20,
        kubelet: KUBELET_1_20,
        kube_proxy: KUBE_PROXY_1_20,
    },
    DefaultArgs {
        minor: 22,
        branch: "1.22",
        commit: "f7da6e061979da68eb8051a28d15541312021110",
        kube_apiserver: KUBE_APISERVER_1_22,
        kube_controller_manager: KUBE_CONTROLLER_MANAGER_1_22,
        kubelet: KUBELET_1_22,
        kube_proxy: KUBE_PROXY_1_22,
    },
    DefaultArgs {
        minor: 26,
        branch: "1.26",
        commit: "91ceb1b843864aa84442ae0cb0707ada6cfbffa4",
        kube_apiserver: KUBE_APISERVER_1_26,
        kube_controller_manager: KUBE_CONTROLLER_MANAGER_1_26,
        kubelet: KUBELET_1_26,
        kube_proxy: KUBE_PROXY_1_26,
    },
    DefaultArgs {
        minor: 28,
        branch: "1.28",
        commit: "f6fda651e6d54d295a3f6cae173a3b9db8eba9f4",
        kube_apiserver: KUBE_APISERVER_1_28,
        kube_controller_manager: KUBE_CONTROLLER_MANAGER_1_28,
        kubelet: KUBELET_1_28,
        kube_proxy: KUBE_PROXY_1_28,
    },
    DefaultArgs {
        minor: 30,
        branch: "1.30",
        commit: "59abcc22508c58d718e37bfd3f93ea4efd6df710",
        // The four 1.30 files hold the same argument lines as 1.28's, in the same order.
        kube_apiserver: KUBE_APISERVER_1_28,
        kube_controller_manager: KUBE_CONTROLLER_MANAGER_1_28,
        kubelet: KUBELET_1_28,
        kube_proxy: KUBE_PROXY_1_28,
    },
    DefaultArgs {
        minor: 34,
        branch: "1.34",
        commit: "b8f8180a1398d67ed3bb4587f54564dc20b6404a",
        kube_apiserver: KUBE_APISERVER_1_34,
        kube_controller_manager: KUBE_CONTROLLER_MANAGER_1_34,
        kubelet: KUBELET_1_34,
        kube_proxy: KUBE_PROXY_1_34,
    },
];

/// The row for a Kubernetes minor version: the one with the greatest `minor` not above `minor`
/// (1.19 and below get the 1.20 row, the oldest one here).
pub fn for_minor(minor: u32) -> &'static DefaultArgs {
    TABLE.iter().rev().find(|row| row.minor <= minor).unwrap_or(&TABLE[0])
}

/// Lines of the kube-apiserver and kube-controller-manager tables that upstream v1.34.4 rejects, with why.
///
/// A key without `=` is a flag v1.34.4 no longer defines (any value); a key with `=` is a whole line whose flag
/// still exists but whose value v1.34.4 refuses. [`dropped_by_kube_1_34`] matches lines against both lists.
pub const DROPPED_BY_KUBE_1_34: &[(&str, &str)] = &[
    (
        "--insecure-port",
        "kube-apiserver (1.20, 1.22): inert since 1.20, removed in 1.24 with --address, --insecure-bind-address \
         and --port (kubernetes#106859, CHANGELOG-1.24)",
    ),
    (
        "--storage-backend=dqlite",
        "kube-apiserver (1.20, 1.22): never upstream; the value came from MicroK8s's dqlite patch \
         (build-scripts/patches/dqlite.patch on 1.20, 0000-Dqlite-integration.patch on 1.22); v1.34.4 allows \
         only etcd3 (k8s.io/apiserver pkg/server/options/etcd.go: \"--storage-backend invalid\")",
    ),
    (
        "--storage-dir",
        "kube-apiserver (1.20, 1.22): never an upstream flag; added by MicroK8s's dqlite patch for the embedded \
         dqlite data directory; not defined anywhere in v1.34.4",
    ),
    (
        "--feature-gates=RemoveSelfLink=false",
        "kube-apiserver (1.20, 1.22): RemoveSelfLink went GA (locked to true) in 1.24, so false is refused from \
         1.24, and the gate was removed after 1.29; v1.34.4 says \"unrecognized feature gate: RemoveSelfLink\"",
    ),
    (
        "--address",
        "kube-controller-manager (1.20, 1.22): insecure serving disabled in 1.20 (kubernetes#96216, flag \
         inert), flag removed in 1.24 with --port (kubernetes#106860)",
    ),
];

/// Lines of the kubelet and kube-proxy tables that upstream v1.34.4 rejects, with why (same key rules as
/// [`DROPPED_BY_KUBE_1_34`]). kube-proxy: none; every kube-proxy flag here is still defined in v1.34.4.
pub const DROPPED_KUBELET_PROXY_BY_KUBE_1_34: &[(&str, &str)] = &[
    (
        "--network-plugin",
        "kubelet (1.20, 1.22): dockershim flag, removed in 1.24 with dockershim (kubernetes#106907, CHANGELOG-1.24)",
    ),
    (
        "--cni-conf-dir",
        "kubelet (1.20, 1.22): dockershim flag, removed in 1.24 with dockershim (kubernetes#106907, CHANGELOG-1.24)",
    ),
    (
        "--cni-bin-dir",
        "kubelet (1.20, 1.22): dockershim flag, removed in 1.24 with dockershim (kubernetes#106907, CHANGELOG-1.24)",
    ),
    (
        "--container-runtime",
        "kubelet (1.20, 1.22, 1.26): deprecated in 1.24 (only `remote` left after dockershim), removed in 1.27; \
         --container-runtime-endpoint is unaffected",
    ),
    (
        "--feature-gates=DevicePlugins=true",
        "kubelet (1.20, 1.22, 1.26): DevicePlugins went GA in 1.26 and the gate was removed after 1.27; v1.34.4 \
         says \"unrecognized feature gate: DevicePlugins\"",
    ),
];

/// The flag of a table line: everything before the first `=` (the whole line for a bare flag).
/// An args-file line `--name=value` (or a bare `--name`) as (name, value), with
/// the wrapper's shell quote removal applied to the value.
pub fn split_arg(line: &str) -> (String, Option<String>) {
    let line = line.trim();
    match line.split_once('=') {
        Some((k, v)) => {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            (k.to_string(), Some(v.to_string()))
        }
        None => (line.to_string(), None),
    }
}

pub fn flag_name(line: &str) -> &str {
    line.split_once('=').map_or(line, |(flag, _)| flag)
}

/// Why upstream v1.34.4 (any component) would reject this table line, if it would.
pub fn dropped_by_kube_1_34(line: &str) -> Option<&'static str> {
    DROPPED_BY_KUBE_1_34.iter().chain(DROPPED_KUBELET_PROXY_BY_KUBE_1_34).find_map(|&(key, why)| {
        let hit = if key.contains('=') { line == key } else { flag_name(line) == key };
        hit.then_some(why)
    })
}

/// A control-plane node's `args/kubelet` unless its operator changed it: the
/// branch's `default-args/kubelet` verbatim, plus the two lines the dns addon adds
/// (`microk8s enable dns`, in MicroK8s's default launch configuration). What its
/// cluster-agent sends a joining worker as `kubelet_args`.
pub fn control_plane_kubelet_args(minor: u32) -> String {
    for_minor(minor)
        .kubelet
        .iter()
        .map(|l| format!("{l}\n"))
        .chain(["--cluster-domain=cluster.local\n".into(), "--cluster-dns=10.152.183.10\n".into()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_flag(lines: &[&str], flag: &str) -> bool {
        lines.iter().any(|line| flag_name(line) == flag)
    }

    #[test]
    fn rows_are_ordered_and_cited() {
        assert_eq!(TABLE.iter().map(|row| row.minor).collect::<Vec<_>>(), [20, 22, 26, 28, 30, 34]);
        for row in TABLE {
            assert_eq!(row.branch, format!("1.{}", row.minor));
            assert_eq!(row.commit.len(), 40, "{}", row.branch);
            assert!(row.commit.bytes().all(|b| b.is_ascii_hexdigit()), "{}", row.branch);
        }
    }

    #[test]
    fn lines_are_flags_without_blanks_or_comments() {
        for row in TABLE {
            for table in [row.kube_apiserver, row.kube_controller_manager, row.kubelet, row.kube_proxy] {
                for line in table {
                    assert!(line.starts_with("--"), "{}: {line:?}", row.branch);
                    assert_eq!(*line, line.trim(), "{}", row.branch);
                }
            }
        }
    }

    #[test]
    fn every_apiserver_allows_everything() {
        for row in TABLE {
            assert!(row.kube_apiserver.contains(&"--authorization-mode=AlwaysAllow"), "{}", row.branch);
            assert!(has_flag(row.kube_apiserver, "--secure-port"), "{}", row.branch);
        }
    }

    #[test]
    fn token_auth_file_up_to_1_26_only() {
        for row in TABLE {
            assert_eq!(has_flag(row.kube_apiserver, "--token-auth-file"), row.minor <= 26, "{}", row.branch);
        }
    }

    #[test]
    fn kubelet_ca_and_address_types_from_1_28() {
        for row in TABLE {
            for flag in ["--kubelet-certificate-authority", "--kubelet-preferred-address-types"] {
                assert_eq!(has_flag(row.kube_apiserver, flag), row.minor >= 28, "{} {flag}", row.branch);
            }
        }
    }

    #[test]
    fn for_minor_picks_the_greatest_row_not_above() {
        for (minor, want) in [(0, 20), (19, 20), (20, 20), (21, 20), (22, 22), (25, 22), (26, 26), (27, 26)] {
            assert_eq!(for_minor(minor).minor, want, "1.{minor}");
        }
        for (minor, want) in [(28, 28), (29, 28), (30, 30), (33, 30), (34, 34), (35, 34), (99, 34)] {
            assert_eq!(for_minor(minor).minor, want, "1.{minor}");
        }
    }

    #[test]
    fn dropped_entries_occur_in_their_tables() {
        let occurs = |key: &str, pick: fn(&DefaultArgs) -> [&[&str]; 2]| {
            TABLE.iter().flat_map(pick).flatten().any(|line| *line == key || flag_name(line) == key)
        };
        for &(key, _) in DROPPED_BY_KUBE_1_34 {
            assert!(occurs(key, |row| [row.kube_apiserver, row.kube_controller_manager]), "{key}");
        }
        for &(key, _) in DROPPED_KUBELET_PROXY_BY_KUBE_1_34 {
            assert!(occurs(key, |row| [row.kubelet, row.kube_proxy]), "{key}");
        }
    }

    #[test]
    fn newest_row_is_accepted_by_1_34() {
        let row = for_minor(34);
        for table in [row.kube_apiserver, row.kube_controller_manager, row.kubelet, row.kube_proxy] {
            for line in table {
                assert_eq!(dropped_by_kube_1_34(line), None, "{line}");
            }
        }
        assert!(dropped_by_kube_1_34("--container-runtime=remote").is_some());
        assert!(dropped_by_kube_1_34("--feature-gates=ListFromCacheSnapshot=false").is_none());
        assert!(dropped_by_kube_1_34("--storage-backend=etcd3").is_none());
    }
}
