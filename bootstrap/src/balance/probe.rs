//! Active checks. A probe is a TCP dial, a TLS handshake whose server certificate
//! must chain to the cluster CA (`--ca`), then an anonymous `GET /readyz` with
//! `Connection: close`; the backend is healthy iff the status is 200 or 401.
//!
//! Why 401 counts: MicroK8s runs kube-apiserver with `--authorization-mode=AlwaysAllow`
//! by default, and under AlwaysAllow kube-apiserver turns anonymous authentication
//! off, so an anonymous request is 401 on every path, `/readyz` included. A 401
//! over TLS from a certificate of the cluster CA still proves an apiserver of this
//! cluster that serves HTTP. Under `RBAC,Node` anonymous `/readyz` is readable
//! (`system:public-info-viewer`) and a ready apiserver answers 200, an unready one
//! 500/503. Anything else (another status, a timeout, a refused dial, a TLS or
//! chain failure) is unhealthy. No credential is sent: the balancer runs as a
//! dynamic user that holds none, and a probe needs none to prove the above.
//!
//! The name in the certificate is not checked: the provider file's addresses need
//! not be among its SANs (a control plane reached through another address), and
//! the clients behind the balancer check the name themselves end to end. The chain
//! and the serverAuth usage are checked.
//!
//! Probes run only to re-admit a benched backend after its back-off, to confirm a
//! suspect, and as a sweep every `healthCheck.interval` (jittered around it). A
//! failed probe benches the backend and closes its connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::state::{rand_u64, sweep_jitter, Backend};
use super::{log, Balancer};

/// Verifies that the server's certificate chains to one of the CA certificates,
/// valid now and for serverAuth, whatever names it holds.
#[derive(Debug)]
struct ChainOnly {
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bad = |e: webpki::Error| rustls::Error::General(format!("the certificate does not chain to the CA: {e}"));
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(bad)?;
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(bad)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The probes' TLS client: trusts the CA certificates of `ca_pem` and nothing else.
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(ca_pem.as_bytes()).filter_map(Result::ok).collect();
    let anchors: Vec<_> =
        certs.iter().filter_map(|c| webpki::anchor_from_trusted_cert(c).ok().map(|a| a.to_owned())).collect();
    if anchors.is_empty() {
        return Err("holds no CA certificate in PEM".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(ChainOnly { anchors, provider: provider.clone() });
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Healthy answers to an anonymous `GET /readyz` (see the module's doc).
pub fn healthy(status: u16) -> bool {
    matches!(status, 200 | 401)
}

/// One probe of `addr` within `timeout`: the status of `GET /readyz`.
pub fn probe(tls: &Arc<rustls::ClientConfig>, addr: SocketAddr, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("dial: {e}"))?;
    let _ = sock.set_nodelay(true);
    let mut conn = rustls::ClientConnection::new(tls.clone(), ServerName::IpAddress(addr.ip().into()))
        .map_err(|e| format!("TLS: {e}"))?;
    let request = format!(
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: mk8s-bootstrap-balance\r\nConnection: close\r\n\r\n"
    );
    let _ = conn.writer().write_all(request.as_bytes());
    let mut head = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no answer in {timeout:?}"));
        }
        let _ = sock.set_read_timeout(Some(left));
        let _ = sock.set_write_timeout(Some(left));
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) if !conn.wants_write() => return Err("closed before answering".into()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("no answer in {timeout:?}"))
            }
            Err(e) => return Err(format!("TLS: {e}")),
        }
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = conn.reader().read(&mut buf) {
            head.extend_from_slice(&buf[..n]);
        }
        if let Some(line) = head.split(|&c| c == b'\n').next().filter(|_| head.contains(&b'\n')) {
            return status_of(line).ok_or_else(|| "not an HTTP answer".into());
        }
        if head.len() > 4096 {
            return Err("not an HTTP answer".into());
        }
    }
}

/// The status of an HTTP/1.x status line.
fn status_of(line: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

/// The prober: every 100 ms, start a probe of each backend that is due, and once a
/// second look for stalled connections.
pub fn run(b: Arc<Balancer>) {
    let mut next_scan = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let list = b.backends();
        let s = b.settings();
        if now >= next_scan {
            next_scan = now + Duration::from_secs(1);
            let now_ms = b.now_ms();
            for be in list.iter().filter(|be| be.any_stalled(now_ms, s.stall)) {
                be.suspect(now, s.suspect_gap);
            }
        }
        for be in list.into_iter().filter(|be| be.take_due(now)) {
            let (b2, be2) = (b.clone(), be.clone());
            let started = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || check(&b2, &be2));
            if let Err(e) = started {
                log(format_args!("cannot start a probe of {}: {e}; retrying in 1s", be.addr));
                be.probed(now, Duration::from_secs(1));
            }
        }
    }
}

/// Probe one backend and act on the answer.
fn check(b: &Balancer, be: &Arc<Backend>) {
    let s = b.settings();
    let result = match probe(&b.tls, be.addr, s.check_timeout) {
        Ok(code) if healthy(code) => Ok(code),
        Ok(code) => Err(format!("GET /readyz answered {code}")),
        Err(e) => Err(e),
    };
    let now = Instant::now();
    match result {
        Ok(code) => be.admit(&format!("check answered {code}")),
        Err(why) => {
            be.bench(&format!("check: {why}"), now, rand_u64(), s.backoff_base, s.backoff_cap);
            let n = be.close_all();
            if n > 0 {
                log(format_args!("{}: closed {n} connection(s) after a failed check", be.addr));
            }
        }
    }
    be.probed(now, sweep_jitter(s.check_interval, rand_u64()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use mk8s_testkit::apiserver::{Authz, SimApiserver};
    use mk8s_testkit::pki::Ca;
    use mk8s_testkit::tls::{server_config, Handler, Response, TlsServer};

    const T: Duration = Duration::from_secs(2);

    fn ok_server(leaf: &mk8s_testkit::pki::Leaf) -> TlsServer {
        let handler: Handler = Arc::new(|_| Response::text(200, "ok"));
        TlsServer::start("127.0.0.1:0", server_config(leaf, false), handler).unwrap()
    }

    #[test]
    fn statuses_that_prove_an_apiserver() {
        assert!(healthy(200) && healthy(401));
        assert!(!healthy(403) && !healthy(500) && !healthy(503) && !healthy(0));
        assert_eq!(status_of(b"HTTP/1.1 401 Unauthorized\r"), Some(401));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH"), None);
    }

    #[test]
    fn anonymous_readyz_of_a_simulated_apiserver() {
        let ca = Arc::new(Ca::new("cluster-ca"));
        let tls = client_config(&ca.cert_pem).unwrap();
        let sim = SimApiserver::start(ca.clone(), "127.0.0.1", "");
        assert_eq!(probe(&tls, sim.addr, T), Ok(401), "AlwaysAllow: anonymous is refused, the apiserver proven");
        sim.set_authz(Authz::RbacNode);
        assert_eq!(probe(&tls, sim.addr, T), Ok(200));
        sim.set_ready(false);
        assert_eq!(probe(&tls, sim.addr, T), Ok(503));
        let log = sim.requests();
        assert!(log.iter().all(|(m, p, who, _)| (m.as_str(), p.as_str(), who.as_str()) == ("GET", "/readyz", "-")));
        let other = client_config(&Ca::new("cluster-ca").cert_pem).unwrap();
        let e = probe(&other, sim.addr, T).unwrap_err();
        assert!(e.contains("does not chain to the CA"), "{e}");
    }

    #[test]
    fn the_chain_and_usage_are_checked_not_the_name() {
        let ca = Ca::new("cluster-ca");
        let tls = client_config(&ca.cert_pem).unwrap();
        let elsewhere = ok_server(&ca.server(&["10.9.9.9", "kubernetes"]));
        assert_eq!(probe(&tls, elsewhere.addr, T), Ok(200), "127.0.0.1 is not in its SANs");
        let client_only = ok_server(&ca.client("kube-apiserver", &[]));
        let e = probe(&tls, client_only.addr, T).unwrap_err();
        assert!(e.contains("Eku"), "a clientAuth-only certificate is no server: {e}");
        assert!(client_config("not PEM").is_err() && client_config(&ca.server(&["x"]).key_pem).is_err());
    }

    #[test]
    fn refused_hung_and_silent_backends_fail_in_time() {
        let ca = Ca::new("cluster-ca");
        let tls = client_config(&ca.cert_pem).unwrap();
        // Hung: connects, never answers. The connection is accepted and held (one
        // left in the kernel's accept queue was now and then reset under load).
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = hung.local_addr().unwrap().port();
        let holder = std::thread::spawn(move || hung.accept().map(|(held, _)| held));
        let start = Instant::now();
        let e = probe(&tls, SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(300)).unwrap_err();
        assert!(e.starts_with("no answer in"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(holder.join().unwrap());
        let e = probe(&tls, SocketAddr::from(([127, 0, 0, 1], port)), T).unwrap_err();
        assert!(e.starts_with("dial:"), "{e}");
    }
}
