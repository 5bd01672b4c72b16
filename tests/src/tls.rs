//! A small real-TLS HTTP/1.1 server on std threads, and TLS client helpers.
//! Used for traefik backends and, through `apiserver`, the simulated kube-apiserver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ServerConfig};

/// The crypto provider of every TLS client and server here: ring's.
///
/// Its key loader hides each key's public key from rustls, so that rustls does not
/// parse a client certificate of our own to compare the two (webpki's parser takes
/// X.509 v3 only). The programs modelled here are Go's, which take the v1
/// certificates MicroK8s 1.23-1.27 control planes sign for a worker join
/// (`openssl x509 -req` without `-extfile`); the peer still checks the certificate
/// in the handshake.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static KEYS: GoLikeKeys = GoLikeKeys;
    Arc::new(rustls::crypto::CryptoProvider { key_provider: &KEYS, ..rustls::crypto::ring::default_provider() })
}

#[derive(Debug)]
struct GoLikeKeys;

impl rustls::crypto::KeyProvider for GoLikeKeys {
    fn load_private_key(
        &self,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        struct Hidden(Arc<dyn rustls::sign::SigningKey>);
        impl std::fmt::Debug for Hidden {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
        impl rustls::sign::SigningKey for Hidden {
            fn choose_scheme(&self, offered: &[rustls::SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
                self.0.choose_scheme(offered)
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                self.0.algorithm()
            }
        }
        Ok(Arc::new(Hidden(rustls::crypto::ring::default_provider().key_provider.load_private_key(key)?)))
    }
}

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// DER of the client certificate, if one was presented (not yet verified).
    pub client_cert: Option<Vec<u8>>,
    /// The request body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// The client's address (Go's `r.RemoteAddr`).
    pub peer: Option<SocketAddr>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    /// Keep the connection open this long after the headers (a watch).
    pub hold: Option<Duration>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, body: body.into(), content_type: "text/plain", hold: None }
    }
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response { status, body: body.into(), content_type: "application/json", hold: None }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A TLS server that stops when dropped (or on `stop()`).
pub struct TlsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TlsServer {
    /// Listen on `addr` (port 0 picks one) and serve `handler` over TLS.
    pub fn start(addr: &str, config: Arc<ServerConfig>, handler: Handler) -> std::io::Result<TlsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (config, handler, stop3) = (config.clone(), handler.clone(), stop2.clone());
                        thread::spawn(move || {
                            let _ = serve_conn(sock, config, handler, stop3);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(TlsServer { addr, stop, thread: Some(thread) })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_conn(
    sock: TcpStream,
    config: Arc<ServerConfig>,
    handler: Handler,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_nodelay(true)?;
    let peer = sock.peer_addr().ok();
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    loop {
        let Some((method, path, headers, body)) = read_request(&mut BufReader::new(&mut tls))? else {
            return Ok(());
        };
        let client_cert = tls.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
        let close =
            headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let req = Request { method, path, headers, client_cert, body, peer };
        let resp = handler(&req);
        write_response(&mut tls, &resp, close)?;
        if let Some(hold) = resp.hold {
            let end = std::time::Instant::now() + hold;
            while std::time::Instant::now() < end && !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
        if close || stop.load(Ordering::SeqCst) {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            return Ok(());
        }
    }
}

/// A request's method, path, headers and body; `None` when the client closed.
type RawRequest = (String, String, Vec<(String, String)>, Vec<u8>);

fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<RawRequest>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Some((method, path, headers, body)))
}

fn write_response(out: &mut impl Write, resp: &Response, close: bool) -> std::io::Result<()> {
    let reason = match resp.status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        409 => "Conflict",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
        resp.status,
        resp.content_type,
        resp.body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    // One write: a head and a body in two TLS records and two segments would wait
    // for a delayed ACK (Nagle), 40 ms a request on a keep-alive connection.
    out.write_all(&[head.as_bytes(), resp.body.as_bytes()].concat())?;
    out.flush()
}

/// Signature checks shared by the test verifiers: real ones, by the provider.
fn tls12_signature(
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &rustls::DigitallySignedStruct,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(m, c, d, &provider().signature_verification_algorithms)
}

/// The TLS 1.3 handshake signature, checked against the certificate's public key as
/// Go does, whatever the certificate's X.509 version (rustls's own check parses the
/// certificate with webpki, which takes v3 only; MicroK8s 1.23-1.27 sign v1 worker
/// certificates).
fn tls13_signature(
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &rustls::DigitallySignedStruct,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(c.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(cert.public_key().raw);
    rustls::crypto::verify_tls13_signature_with_raw_key(m, &spki, d, &provider().signature_verification_algorithms)
}

fn verify_schemes() -> Vec<rustls::SignatureScheme> {
    provider().signature_verification_algorithms.supported_schemes()
}

/// Asks for a client certificate and accepts whatever is presented (proof of
/// possession is still checked by TLS); the application verifies the chain, as
/// kube-apiserver does (Go's `RequestClientCert` plus its x509 authenticator), so a
/// certificate from another CA gets a 401, not a failed handshake.
#[derive(Debug)]
struct RequestClientCert;

impl rustls::server::danger::ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        verify_schemes()
    }
}

/// Server config with this certificate; with `request_client_cert`, clients may
/// present a certificate, which the application must verify.
pub fn server_config(leaf: &crate::pki::Leaf, request_client_cert: bool) -> Arc<ServerConfig> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().expect("versions");
    let builder = if request_client_cert {
        builder.with_client_cert_verifier(Arc::new(RequestClientCert))
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_single_cert(leaf.rustls_chain(), leaf.rustls_key()).expect("server cert");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Accepts any server certificate and remembers it: to see *which* certificate a
/// proxy presents (e.g. traefik's default one).
#[derive(Debug)]
struct RecordAny;

impl rustls::client::danger::ServerCertVerifier for RecordAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        verify_schemes()
    }
}

/// The outcome of one HTTPS request.
#[derive(Debug)]
pub struct Fetched {
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
    pub status: u16,
    pub body: String,
}

/// GET `path` from `addr` (no SNI: like kubelet talking to 127.0.0.1). With `ca`,
/// the server must chain to it; without, any certificate is accepted and recorded.
pub fn https_get(
    addr: SocketAddr,
    path: &str,
    ca: Option<&crate::pki::Ca>,
    token: Option<&str>,
) -> std::io::Result<Fetched> {
    https_get_as(addr, path, ca, token, None)
}

/// As `https_get`, presenting a client certificate.
pub fn https_get_as(
    addr: SocketAddr,
    path: &str,
    ca: Option<&crate::pki::Ca>,
    token: Option<&str>,
    client: Option<&crate::pki::Leaf>,
) -> std::io::Result<Fetched> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().expect("versions");
    let builder = match ca {
        Some(ca) => builder.with_root_certificates(ca.rustls_root()),
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(RecordAny)),
    };
    let cfg = match client {
        Some(leaf) => builder.with_client_auth_cert(leaf.rustls_chain(), leaf.rustls_key()).expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(std::io::Error::other)?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")?;
    tls.flush()?;
    read_response(&mut tls)
}

/// Read a whole HTTP/1.1 response (the request said `Connection: close`): status,
/// body, and the server's leaf certificate.
fn read_response(tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> std::io::Result<Fetched> {
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // Servers that close without close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let peer_cert = tls.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok(Fetched { peer_cert, status, body })
}

/// Trust for [`https_call`]: verify the server against these roots, or accept
/// any certificate and record it.
pub enum Trust {
    Roots(rustls::RootCertStore),
    Any,
}

/// One HTTPS request with any method and body, as a Kubernetes client makes it:
/// `server_name` is what the certificate must match (an IP address for
/// `https://127.0.0.1:16443`), a bearer token and/or a client certificate chain
/// and key (DER) authenticate.
#[allow(clippy::too_many_arguments)]
pub fn https_call(
    addr: SocketAddr,
    server_name: ServerName<'static>,
    trust: Trust,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    client: Option<(Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>)>,
) -> std::io::Result<Fetched> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().expect("versions");
    let builder = match trust {
        Trust::Roots(roots) => builder.with_root_certificates(roots),
        Trust::Any => builder.dangerous().with_custom_certificate_verifier(Arc::new(RecordAny)),
    };
    let cfg = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(std::io::Error::other)?,
        None => builder.with_no_client_auth(),
    };
    let conn = rustls::ClientConnection::new(Arc::new(cfg), server_name).map_err(std::io::Error::other)?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    let ctype = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.flush()?;
    read_response(&mut tls)
}

/// Hold a GET open until the server ends it (a watch): returns the status and how
/// long the connection stayed open, or the error that ended it.
pub fn https_watch(
    addr: SocketAddr,
    path: &str,
    ca: &crate::pki::Ca,
    token: &str,
    max: Duration,
) -> (std::io::Result<u16>, Duration) {
    let start = std::time::Instant::now();
    let result = (|| {
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(ca.rustls_root())
            .with_no_client_auth();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::IpAddress(addr.ip().into()))
            .map_err(std::io::Error::other)?;
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        sock.set_read_timeout(Some(max))?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )?;
        tls.flush()?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e),
        }
        let text = String::from_utf8_lossy(&raw);
        Ok(text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0))
    })();
    (result, start.elapsed())
}

/// Common name of a DER certificate's subject (for messages and assertions).
pub fn subject_cn(der: &[u8]) -> String {
    // Find the last CN attribute (OID 2.5.4.3) in the subject; good enough for tests.
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let mut cn = String::new();
    let mut i = 0;
    while i + oid.len() + 2 < der.len() {
        if der[i..i + oid.len()] == oid {
            let len = der[i + oid.len() + 1] as usize;
            let start = i + oid.len() + 2;
            if start + len <= der.len() {
                cn = String::from_utf8_lossy(&der[start..start + len]).to_string();
            }
        }
        i += 1;
    }
    cn
}

/// A TCP connection to `addr` from the local address `from` (a node's own
/// loopback address in the tests, so the server sees the node's IP as the peer,
/// as a control plane sees a worker's), or from wherever the kernel picks.
pub fn connect_from(from: Option<std::net::IpAddr>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(ip) = from else {
        return TcpStream::connect_timeout(&addr, Duration::from_secs(5));
    };
    use rustix::net::{AddressFamily, SocketType};
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = rustix::net::socket(family, SocketType::STREAM, None)?;
    rustix::net::bind(&fd, &SocketAddr::new(ip, 0))?;
    rustix::net::connect(&fd, &addr)?;
    Ok(TcpStream::from(fd))
}

/// `POST path` with a JSON body over TLS from the local address `from`, accepting
/// any server certificate and returning the one presented (what Python's
/// `ssl._create_unverified_context()` and `requests.post(..., verify=False)` do).
pub fn https_post_unverified(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    path: &str,
    json: &str,
) -> std::io::Result<Fetched> {
    https_post_checked(from, addr, path, json, |_| true)?
        .ok_or_else(|| std::io::Error::other("unreachable: the check accepts every certificate"))
}

/// As [`https_post_unverified`], but `check` sees the server's leaf certificate
/// (DER) once the handshake is done and before anything is sent; `None` when it
/// refused (nothing was sent). MicroK8s's `join_request` checks its fingerprint
/// there (`1.30:scripts/wrappers/join.py:L84-100`).
pub fn https_post_checked(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    path: &str,
    json: &str,
    check: impl Fn(&[u8]) -> bool,
) -> std::io::Result<Option<Fetched>> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordAny))
        .with_no_client_auth();
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(std::io::Error::other)?;
    let sock = connect_from(from, addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let leaf = tls.conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    if !check(&leaf) {
        return Ok(None);
    }
    write!(
        tls,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )?;
    tls.flush()?;
    read_response(&mut tls).map(Some)
}
