//! Bounded liveness probes over plain TCP (WASI sockets), run before the
//! checks through Spin's Postgres and Redis interfaces.
//!
//! Those interfaces are synchronous and Spin puts no timeout on them, so a
//! dependency that accepts connections but never answers (a frozen process)
//! would hang `/health`. Each probe here connects, sends a tiny request the
//! server answers at once, and waits at most [`PROBE_TIMEOUT`] for any byte.
//! Only a dependency that answered is then checked for real.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The most one probe may take to connect, and again to hear an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// Postgres' SSLRequest: the server answers one byte (`S` or `N`), and a
/// client that then hangs up is not logged as an error.
const POSTGRES_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Redis' inline PING: any reply (`+PONG`, or `-NOAUTH …`) shows it is alive.
const REDIS_PING: &[u8] = b"PING\r\n";

fn address(host_port: &str) -> Result<SocketAddr, String> {
    host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host_port} resolves to no address"))
}

fn answers(host_port: &str, request: &[u8]) -> Result<(), String> {
    let addr = address(host_port)?;
    let mut stream =
        TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| format!("socket: {e}"))?;
    stream
        .set_write_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| format!("socket: {e}"))?;
    stream
        .write_all(request)
        .map_err(|e| format!("send: {e}"))?;
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err("closed the connection without answering".into()),
        Err(e) => Err(format!(
            "no answer within {} ms: {e}",
            PROBE_TIMEOUT.as_millis()
        )),
    }
}

/// Whether the Postgres server at `host:port` answers.
pub fn postgres(host_port: &str) -> Result<(), String> {
    answers(host_port, &POSTGRES_SSL_REQUEST)
}

/// Whether the Redis server at `host:port` answers.
pub fn redis(host_port: &str) -> Result<(), String> {
    answers(host_port, REDIS_PING)
}
