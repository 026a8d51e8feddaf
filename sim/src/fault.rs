//! Connection-level faults: refusing or stalling connections, a listener that never speaks,
//! and a loopback URL where nothing listens.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
};

use anyhow::{Context, Result};
use axum_server::accept::Accept;
use tokio::{net::TcpStream, sync::watch};

/// How the sim treats new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimMode {
    /// Serve normally.
    #[default]
    Normal,
    /// Close each connection as soon as it is accepted.
    Refuse,
    /// Accept TCP and never complete the TLS handshake.
    Hang,
}

impl SimMode {
    fn to_u8(self) -> u8 {
        match self {
            SimMode::Normal => 0,
            SimMode::Refuse => 1,
            SimMode::Hang => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => SimMode::Refuse,
            2 => SimMode::Hang,
            _ => SimMode::Normal,
        }
    }
}

/// The shared mode switch read by the acceptor.
#[derive(Clone, Default)]
pub(crate) struct ModeSwitch(Arc<AtomicU8>);

impl ModeSwitch {
    /// Sets the mode for connections accepted from now on.
    pub fn set(&self, mode: SimMode) {
        self.0.store(mode.to_u8(), Ordering::SeqCst);
    }

    /// The current mode.
    pub fn get(&self) -> SimMode {
        SimMode::from_u8(self.0.load(Ordering::SeqCst))
    }
}

/// Whether the connection's first bytes are a plain HTTP request rather than a TLS record:
/// the test Go's HTTPS server makes on the first record header (`GET /`, `HEAD `, `POST `,
/// `PUT /`, `OPTIO`). Waits at most 10 s for the 5 bytes; a client that sends nothing is left
/// to the TLS handshake.
async fn looks_like_http(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 5];
    let read = async {
        loop {
            match stream.peek(&mut buf).await {
                Ok(n) if n >= 5 => return true,
                Ok(0) | Err(_) => return false,
                // Fewer than 5 bytes so far: peek again once more have come.
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(10), read).await,
        Ok(true)
    ) && [b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO"].contains(&&buf)
}

/// What Go's HTTPS server answers a plain HTTP request with, then closes the connection. The
/// request is left unread, so closing resets the connection (RST), as it does there.
async fn refuse_plain_http(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream
        .write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )
        .await;
    drop(stream);
}

/// Inner acceptor (runs before TLS) that applies the current [`SimMode`].
#[derive(Clone)]
pub(crate) struct FaultAcceptor {
    pub mode: ModeSwitch,
}

type Accepted<S> = Pin<Box<dyn Future<Output = io::Result<(TcpStream, S)>> + Send>>;

impl<S: Send + 'static> Accept<TcpStream, S> for FaultAcceptor {
    type Stream = TcpStream;
    type Service = S;
    type Future = Accepted<S>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        match self.mode.get() {
            SimMode::Normal => {
                let _ = stream.set_nodelay(true);
                Box::pin(async move {
                    if looks_like_http(&stream).await {
                        refuse_plain_http(stream).await;
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a plain HTTP request on the TLS port",
                        ));
                    }
                    Ok((stream, service))
                })
            }
            SimMode::Refuse => {
                drop(stream);
                Box::pin(std::future::ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "sim refuses connections",
                ))))
            }
            SimMode::Hang => Box::pin(async move {
                // Keep the socket open and silent until the server shuts down.
                let _held = stream;
                std::future::pending::<()>().await;
                Err(io::Error::other("unreachable"))
            }),
        }
    }
}

/// Accepts connections on `listener` until `stop` is set or dropped, handing each to `each`.
fn accept_until_stopped(
    listener: tokio::net::TcpListener,
    mut stopped: watch::Receiver<bool>,
    mut each: impl FnMut(tokio::net::TcpStream) + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => each(s),
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                },
            }
        }
    });
}

/// A TCP listener on 127.0.0.1 that accepts connections and never speaks (a TLS handshake
/// never completes). Dropping it closes the listener and every connection.
pub struct HangListener {
    host: String,
    port: u16,
    stop: watch::Sender<bool>,
}

impl HangListener {
    /// Binds an ephemeral loopback port and starts accepting.
    pub async fn bind() -> Result<Self> {
        Self::bind_on("127.0.0.1").await
    }

    /// Like [`HangListener::bind`], on another local address (e.g. a container network's
    /// gateway, so containers reach it).
    pub async fn bind_on(host: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind((host, 0))
            .await
            .with_context(|| format!("binding a port on {host} for the hanging listener"))?;
        let host = host.to_string();
        let port = listener.local_addr()?.port();
        let (stop, stopped) = watch::channel(false);
        // Held, never answered, until the listener is dropped.
        let mut held = Vec::new();
        accept_until_stopped(listener, stopped, move |s| held.push(s));
        Ok(HangListener { host, port, stop })
    }

    /// `https://<address>:<port>` of the listener.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

impl Drop for HangListener {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A TCP listener that accepts a connection, reads what the client sends first (a TLS
/// ClientHello), and resets it (RST): `connection reset by peer` to the client.
pub struct ResetListener {
    host: String,
    port: u16,
    stop: watch::Sender<bool>,
}

impl ResetListener {
    /// Binds an ephemeral port on `host` and starts accepting.
    pub async fn bind_on(host: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind((host, 0))
            .await
            .with_context(|| format!("binding a port on {host} for the resetting listener"))?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = watch::channel(false);
        accept_until_stopped(listener, stopped, |mut s| {
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 512];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await;
                // Linger 0: closing sends RST instead of FIN.
                let _ = socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO));
                drop(s);
            });
        });
        Ok(ResetListener {
            host: host.to_string(),
            port,
            stop,
        })
    }

    /// `https://<address>:<port>` of the listener.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

impl Drop for ResetListener {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A TCP forwarder: connections to its address are relayed, byte for byte, to `target` (so a
/// server reaches the sim at an address the sim's certificate does not name).
pub struct Forwarder {
    stop: watch::Sender<bool>,
    port: u16,
}

impl Forwarder {
    /// Listens on `at` and relays every connection to `target`.
    pub async fn start(at: (&str, u16), target: (&str, u16)) -> Result<Self> {
        // A forwarder of the same address just dropped (a previous trial's, on a shared API
        // server's port) closes its listener on its own task: wait for that, briefly.
        // One bound outside the retries, as every wait of the harness has.
        let bound = std::time::Duration::from_secs(2);
        let bind = async {
            loop {
                match tokio::net::TcpListener::bind(at).await {
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    other => return other,
                }
            }
        };
        let listener = match tokio::time::timeout(bound, bind).await {
            Ok(bound) => {
                bound.with_context(|| format!("binding {}:{} for the forwarder", at.0, at.1))?
            }
            Err(_) => anyhow::bail!(
                "binding {}:{} for the forwarder: the address was still in use after {} s",
                at.0,
                at.1,
                bound.as_secs()
            ),
        };
        let port = listener.local_addr()?.port();
        let target = format!("{}:{}", target.0, target.1);
        let (stop, stopped) = watch::channel(false);
        accept_until_stopped(listener, stopped, move |mut inbound| {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        });
        Ok(Forwarder { stop, port })
    }

    /// The port it listens on (the one asked for, or the one chosen for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A local port held bound but not listening: connections to it are refused, and nothing else
/// can take it while this lives (unlike a port found free and released).
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    url: String,
}

impl ClosedPort {
    /// Binds a port on `host` without listening on it.
    pub fn on(host: &str) -> Result<ClosedPort> {
        let ip: std::net::IpAddr = host
            .parse()
            .with_context(|| format!("`{host}` is not an IP address"))?;
        let socket = if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .context("creating a socket")?;
        socket
            .bind((ip, 0).into())
            .with_context(|| format!("reserving a port on {host}"))?;
        let port = socket.local_addr()?.port();
        let host = if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        Ok(ClosedPort {
            _socket: socket,
            url: format!("https://{host}:{port}"),
        })
    }

    /// `https://<host>:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_refuses_connections_and_stays_reserved() {
        let closed = ClosedPort::on("127.0.0.1").unwrap();
        let hostport = closed.url().trim_start_matches("https://").to_string();
        let err = tokio::net::TcpStream::connect(&hostport).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        assert!(
            std::net::TcpListener::bind(&hostport).is_err(),
            "nothing else can listen on {hostport} while it is held"
        );
    }
}
