//! Readiness for systemd's `Type=notify`: one `READY=1` datagram to
//! `$NOTIFY_SOCKET` once the listener is bound, so that units ordered after the
//! balancer start when its port accepts. A path, or an abstract name written with
//! a leading `@`. No dependency: std's Unix datagram socket.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where `$NOTIFY_SOCKET` points.
pub fn address(var: &OsStr) -> std::io::Result<SocketAddr> {
    match var.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(var),
    }
}

/// Send `READY=1`: Ok(false) when not run by systemd (no `$NOTIFY_SOCKET`).
pub fn ready() -> Result<bool, String> {
    let Some(var) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(false) };
    let fail = |e: std::io::Error| format!("cannot tell systemd we are ready ({}): {e}", var.to_string_lossy());
    let addr = address(&var).map_err(fail)?;
    let sock = UnixDatagram::unbound().map_err(fail)?;
    sock.send_to_addr(b"READY=1", &addr).map_err(fail)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_abstract_names() {
        let a = address(OsStr::new("@/org/freedesktop/systemd1/notify/123")).unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"/org/freedesktop/systemd1/notify/123"[..]));
        let p = address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(p.as_pathname(), Some(std::path::Path::new("/run/systemd/notify")));
    }

    #[test]
    fn ready_reaches_a_bound_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let sock = UnixDatagram::unbound().unwrap();
        sock.send_to_addr(b"READY=1", &address(path.as_os_str()).unwrap()).unwrap();
        let mut buf = [0u8; 32];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
