//! The data path: TLS passthrough, two threads per connection.
//!
//! The client's first TLS record (its ClientHello) is read and kept, so that a
//! backend that refuses the dial, closes, resets or says nothing within the
//! first-byte timeout can be benched and the record replayed to the next backend:
//! nothing has reached the client yet, and Kubernetes clients send no early data.
//! Once a backend has answered, bytes are copied both ways until one side ends.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::state::{dial_order, rand_u64, Backend, Conn};
use super::{log, Balancer};

/// The stack of a connection's threads: copying needs little.
const STACK: usize = 64 * 1024;
/// How long a client may take to send its first record.
const HELLO_WAIT: Duration = Duration::from_secs(10);
/// How long the answer may take after the client half-closed.
const HALF_CLOSE_WAIT: Duration = Duration::from_secs(30);
/// The largest TLS plaintext record (2^14) and its 5-byte header.
const MAX_RECORD: usize = 16 * 1024;

/// Accept clients forever, one thread each, at most `max_conns` at a time (beyond
/// that new clients are closed; one log line when the limit is reached).
pub fn accept_loop(b: Arc<Balancer>, listener: TcpListener) -> ! {
    let (mut full, mut failing) = (false, false);
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                if !failing {
                    log(format_args!("accept: {e}; retrying"));
                }
                failing = true;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        failing = false;
        let max = b.settings().max_conns;
        if b.open.load(Relaxed) >= max {
            if !full {
                log(format_args!("{max} connections open: closing new clients until some end"));
            }
            full = true;
            continue;
        }
        if full {
            log(format_args!("fewer than {max} connections open: accepting clients again"));
            full = false;
        }
        let guard = Open::new(&b.open);
        let b2 = b.clone();
        let _ = std::thread::Builder::new().stack_size(STACK).spawn(move || {
            let _guard = guard;
            serve(&b2, client);
        });
    }
}

/// One open client connection, counted until dropped.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Relaxed);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The client's first bytes, and whether they may be replayed: a whole TLS
/// handshake record, or (not TLS) the first 5 bytes, forwarded to one backend only.
fn first_record(mut client: &TcpStream) -> Option<(Vec<u8>, bool)> {
    let _ = client.set_read_timeout(Some(HELLO_WAIT));
    let mut record = vec![0u8; 5];
    client.read_exact(&mut record).ok()?;
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    let tls = record[0] == 0x16 && record[1] == 3 && len <= MAX_RECORD;
    if tls {
        record.resize(5 + len, 0);
        client.read_exact(&mut record[5..]).ok()?;
    }
    let _ = client.set_read_timeout(None);
    Some((record, tls))
}

/// Why an attempt failed, and whether the client's bytes had been sent.
struct Failed {
    why: String,
    sent: bool,
}

fn failed(why: String, sent: bool) -> Failed {
    Failed { why, sent }
}

/// Dial `be`, send the first record, wait `patience` for the first answer.
fn attempt(b: &Balancer, be: &Backend, first: &[u8], patience: Duration) -> Result<(TcpStream, Vec<u8>), Failed> {
    let mut server = TcpStream::connect_timeout(&be.addr, b.settings().dial_timeout)
        .map_err(|e| failed(format!("dial: {e}"), false))?;
    tune_backend_socket(&server);
    let _ = server.set_read_timeout(Some(patience));
    server.write_all(first).map_err(|e| failed(format!("send: {e}"), true))?;
    let mut reply = vec![0u8; 4096];
    let n = loop {
        match server.read(&mut reply) {
            Ok(0) => return Err(failed("closed before answering".into(), true)),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(failed(format!("no answer in {:.1}s", patience.as_secs_f64()), true))
            }
            Err(e) => return Err(failed(format!("first read: {e}"), true)),
        }
    };
    let _ = server.set_read_timeout(None);
    reply.truncate(n);
    Ok((server, reply))
}

/// `TCP_NODELAY`, keepalive (idle 15 s, every 5 s, 3 probes) and `TCP_USER_TIMEOUT`
/// 10 s: a powered-off control plane frees its connections in seconds.
fn tune_backend_socket(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let sock = socket2::SockRef::from(s);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(15))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(10)));
}

/// Serve one client: find a backend that answers its first record, then pipe.
fn serve(b: &Arc<Balancer>, mut client: TcpStream) {
    let _ = client.set_nodelay(true);
    let Some((first, replayable)) = first_record(&client) else { return };
    let order = dial_order(&b.backends());
    for (i, be) in order.iter().enumerate() {
        let s = b.settings();
        // The first-byte timeout while another backend in rotation remains; the last
        // hope gets longer (an overloaded but live control plane is slow, not dead).
        let patience = if order[i + 1..].iter().any(|o| o.is_up()) { s.first_byte } else { s.last_wait };
        match attempt(b, be, &first, patience) {
            Ok((server, reply)) => {
                be.admit("answered a client");
                if client.write_all(&reply).is_ok() {
                    pipe(b, be, client, server);
                }
                return;
            }
            Err(f) => {
                be.bench(&f.why, Instant::now(), rand_u64(), s.backoff_base, s.backoff_cap);
                if f.sent && !replayable {
                    return;
                }
            }
        }
    }
}

/// How a copy ended.
#[derive(PartialEq, Eq)]
enum End {
    /// The source ended (EOF) or failed.
    Source,
    /// Writing to the other side failed.
    Sink,
}

/// Copy until the source ends: a 1 KiB stack buffer while traffic is small (idle
/// watches stay cheap), 16 KiB on the heap once a read fills it. `stamp` runs after
/// every write.
fn copy(mut from: &TcpStream, mut to: &TcpStream, stamp: impl Fn()) -> End {
    let mut small = [0u8; 1024];
    let mut big: Vec<u8> = Vec::new();
    loop {
        let buf: &mut [u8] = if big.is_empty() { &mut small } else { &mut big };
        let n = match from.read(buf) {
            Ok(0) => return End::Source,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return End::Source,
        };
        let filled = n == buf.len();
        if to.write_all(&buf[..n]).is_err() {
            return End::Sink;
        }
        stamp();
        if filled && big.is_empty() {
            big = vec![0u8; MAX_RECORD];
        }
    }
}

/// Copy both ways until one side ends. A client EOF is passed on as a half-close
/// and the answer gets [`HALF_CLOSE_WAIT`]; an end from the backend closes both
/// sides and makes the backend a suspect (re-probed soon).
fn pipe(b: &Arc<Balancer>, be: &Arc<Backend>, client: TcpStream, server: TcpStream) {
    let id = b.next_id();
    let conn = Arc::new(Conn { id, client, server, waiting_since: AtomicU64::new(0), closing: AtomicBool::new(false) });
    be.add_conn(conn.clone());
    let client_done = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (b2, be2, c2, cd2) = (b.clone(), be.clone(), conn.clone(), client_done.clone());
    let spawned = std::thread::Builder::new().stack_size(STACK).spawn(move || {
        let end = copy(&c2.server, &c2.client, || c2.waiting_since.store(0, Relaxed));
        if end == End::Source && !cd2.load(Relaxed) && !c2.closing.load(Relaxed) {
            be2.suspect(Instant::now(), b2.settings().suspect_gap);
        }
        let _ = c2.client.shutdown(Shutdown::Both);
        let _ = c2.server.shutdown(Shutdown::Both);
        let _ = done_tx.send(());
    });
    if spawned.is_ok() {
        let now_ms = || b.now_ms();
        copy(&conn.client, &conn.server, || {
            let _ = conn.waiting_since.compare_exchange(0, now_ms(), Relaxed, Relaxed);
        });
        client_done.store(true, Relaxed);
        let _ = conn.server.shutdown(Shutdown::Write);
        if done_rx.recv_timeout(HALF_CLOSE_WAIT).is_err() {
            let _ = conn.client.shutdown(Shutdown::Both);
            let _ = conn.server.shutdown(Shutdown::Both);
            let _ = done_rx.recv();
        }
    }
    be.remove_conn(id);
}
