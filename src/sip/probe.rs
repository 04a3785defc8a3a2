//! The client side of `pcsync probe`: send one request, wait for its final response, and report
//! the status line and Contact. Responses are read with `rsipstack::sip` (a client reads
//! whatever a server sends, so the full codec is the right tool here; the server's hot path has
//! its own reader, see [`super::message`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::{HasHeaders, Header, SipMessage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;

/// Transport of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeTransport {
    Udp,
    Tcp,
    Tls,
}

/// How a TLS probe verifies the server: the trusted roots and the name its certificate must
/// carry (a DNS name or an IP address).
#[derive(Debug, Clone)]
pub(crate) struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// Trusts the CA certificates in `ca_file` (PEM), or the system's roots without one, and
    /// expects `server_name` in the server's certificate.
    pub(crate) fn new(ca_file: Option<&Path>, server_name: &str) -> Result<TlsClient, ProbeError> {
        let tls = |reason: String| ProbeError::Tls(reason);
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| tls(format!("cannot read --ca-file {}: {e}", path.display())))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        tls(format!(
                            "--ca-file {} is not valid PEM: {e}",
                            path.display()
                        ))
                    })?;
                if certs.is_empty() {
                    return Err(tls(format!(
                        "--ca-file {} holds no certificate",
                        path.display()
                    )));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| {
                        tls(format!(
                            "--ca-file {}: unusable certificate: {e}",
                            path.display()
                        ))
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let _ = roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(tls(
                        "no trusted CA certificates found on this system; give --ca-file".into(),
                    ));
                }
            }
        }
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| tls(format!("{server_name:?} is not a valid server name")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
            name,
        })
    }
}

/// The host part of `HOST:PORT` (`[v6]:port` gives `v6`), the default name a TLS probe checks.
pub(crate) fn host_part(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match server.rsplit_once(':') {
        Some((host, _)) => host,
        None => server,
    }
}

/// Why a probe got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// The target is not a SIP URI.
    #[error("{0:?} is not a sip: or sips: URI")]
    Target(String),
    /// A socket operation failed.
    #[error("{op} {server}: {source}")]
    Io {
        op: &'static str,
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up or the handshake failed (certificate, name, protocol).
    #[error("TLS: {0}")]
    Tls(String),
    /// No final response in time.
    #[error("no final response from {server} within {secs}s")]
    Timeout { server: SocketAddr, secs: u64 },
    /// The server sent something that is not a SIP response.
    #[error("unreadable answer from {server}: {reason}")]
    Garbage { server: SocketAddr, reason: String },
}

/// The answer to a probe.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ProbeAnswer {
    pub code: u16,
    /// `SIP/2.0 302 Moved Temporarily`.
    pub status_line: String,
    /// The first Contact value, if any.
    pub contact: Option<String>,
    /// Any other headers worth showing (Server, the mapping version).
    pub server: Option<String>,
    pub mapping: Option<String>,
    /// The response's To (with the server's tag), for the ACK.
    #[serde(skip)]
    to: Option<String>,
}

/// The ACK a UAC sends for a non-2xx final response to an INVITE (RFC 3261 §17.1.1.3): same
/// branch, Call-ID and From as the INVITE, the response's To, CSeq method ACK.
fn ack_text(
    target: &str,
    local: SocketAddr,
    transport: ProbeTransport,
    call_id: &str,
    to: &str,
) -> String {
    let invite = request_text("INVITE", target, local, transport, call_id);
    let mut out = format!("ACK {target} SIP/2.0\r\n");
    for line in invite.split("\r\n").skip(1) {
        if line.starts_with("Via:")
            || line.starts_with("From:")
            || line.starts_with("Call-ID:")
            || line.starts_with("Max-Forwards:")
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "To: {to}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ));
    out
}

/// Builds the request text (also used by tests).
pub(crate) fn request_text(
    method: &str,
    target: &str,
    local: SocketAddr,
    transport: ProbeTransport,
    call_id: &str,
) -> String {
    let t = match transport {
        ProbeTransport::Udp => "UDP",
        ProbeTransport::Tcp => "TCP",
        ProbeTransport::Tls => "TLS",
    };
    let host = match local {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/{t} {host}:{port};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:pcsync-probe@{host}>;tag={call_id}\r\n\
         To: <{target}>\r\n\
         Call-ID: {call_id}@pcsync-probe\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:pcsync-probe@{host}:{port}>\r\n\
         User-Agent: pcsync-probe/{version}\r\n\
         Content-Length: 0\r\n\r\n",
        port = local.port(),
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// Sends `method` for `target` to `server` and waits up to `timeout` for a final response.
pub(crate) async fn probe(
    target: &str,
    server: SocketAddr,
    transport: ProbeTransport,
    method: &str,
    timeout: Duration,
    call_id: &str,
    tls: Option<&TlsClient>,
) -> Result<ProbeAnswer, ProbeError> {
    if super::message::uri_user_host(target).is_none() {
        return Err(ProbeError::Target(target.to_string()));
    }
    let io = |op| move |source| ProbeError::Io { op, server, source };
    let work = async {
        match transport {
            ProbeTransport::Udp => {
                let bind: SocketAddr = if server.is_ipv6() {
                    "[::]:0"
                        .parse()
                        .map_err(|_| ProbeError::Target(target.into()))?
                } else {
                    "0.0.0.0:0"
                        .parse()
                        .map_err(|_| ProbeError::Target(target.into()))?
                };
                let socket = UdpSocket::bind(bind).await.map_err(io("bind for"))?;
                socket.connect(server).await.map_err(io("connect to"))?;
                let local = socket.local_addr().map_err(io("bind for"))?;
                let text = request_text(method, target, local, transport, call_id);
                socket.send(text.as_bytes()).await.map_err(io("send to"))?;
                let mut buf = vec![0u8; 65_535];
                loop {
                    let n = socket.recv(&mut buf).await.map_err(io("receive from"))?;
                    if let Some(answer) = read_answer(&buf[..n], server)? {
                        if method == "INVITE" && answer.code >= 300 {
                            let to = answer.to.as_deref().unwrap_or(target);
                            let ack = ack_text(target, local, transport, call_id, to);
                            let _ = socket.send(ack.as_bytes()).await;
                        }
                        return Ok(answer);
                    }
                }
            }
            ProbeTransport::Tcp | ProbeTransport::Tls => {
                let stream = TcpStream::connect(server).await.map_err(io("connect to"))?;
                let local = stream.local_addr().map_err(io("connect to"))?;
                let _ = stream.set_nodelay(true);
                if transport == ProbeTransport::Tcp {
                    return exchange(stream, server, local, target, transport, method, call_id)
                        .await;
                }
                let Some(tls) = tls else {
                    return Err(ProbeError::Tls("no TLS client configuration".into()));
                };
                let connector = TlsConnector::from(Arc::clone(&tls.config));
                let stream = connector
                    .connect(tls.name.clone(), stream)
                    .await
                    .map_err(|e| {
                        ProbeError::Tls(format!(
                            "handshake with {server} (expecting {:?}) failed: {e}",
                            tls.name.to_str()
                        ))
                    })?;
                exchange(stream, server, local, target, transport, method, call_id).await
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProbeError::Timeout {
            server,
            secs: timeout.as_secs(),
        })?
}

/// Sends the request on a stream and reads responses until a final one (ACKing a failed INVITE).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    server: SocketAddr,
    local: SocketAddr,
    target: &str,
    transport: ProbeTransport,
    method: &str,
    call_id: &str,
) -> Result<ProbeAnswer, ProbeError> {
    let io = |op| move |source| ProbeError::Io { op, server, source };
    let text = request_text(method, target, local, transport, call_id);
    stream
        .write_all(text.as_bytes())
        .await
        .map_err(io("send to"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io("receive from"))?;
        if n == 0 {
            return Err(ProbeError::Garbage {
                server,
                reason: "connection closed before a final response".into(),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        // Responses from pcsync have no body; take each complete header section.
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let message: Vec<u8> = buf.drain(..end + 4).collect();
            if let Some(answer) = read_answer(&message, server)? {
                if method == "INVITE" && answer.code >= 300 {
                    let to = answer.to.as_deref().unwrap_or(target);
                    let ack = ack_text(target, local, transport, call_id, to);
                    let _ = stream.write_all(ack.as_bytes()).await;
                    let _ = stream.flush().await;
                }
                let _ = stream.shutdown().await;
                return Ok(answer);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A final response, or `None` for a provisional one.
fn read_answer(bytes: &[u8], server: SocketAddr) -> Result<Option<ProbeAnswer>, ProbeError> {
    let garbage = |reason: String| ProbeError::Garbage { server, reason };
    let message = SipMessage::try_from(bytes).map_err(|e| garbage(e.to_string()))?;
    let SipMessage::Response(response) = message else {
        return Err(garbage("a request, not a response".into()));
    };
    let code = response.status_code().code();
    if code < 200 {
        return Ok(None);
    }
    let first_line = String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut answer = ProbeAnswer {
        code,
        status_line: first_line,
        contact: None,
        server: None,
        mapping: None,
        to: None,
    };
    for header in response.headers().iter() {
        match header {
            Header::Contact(_) if answer.contact.is_none() => {
                answer.contact = Some(header.value().trim().to_string());
            }
            Header::Server(_) => answer.server = Some(header.value().trim().to_string()),
            Header::To(_) => answer.to = Some(header.value().trim().to_string()),
            Header::Other(name, value)
                if name.eq_ignore_ascii_case(super::redirect::MAPPING_HEADER) =>
            {
                answer.mapping = Some(value.clone());
            }
            _ => {}
        }
    }
    Ok(Some(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ack_reuses_the_invite_branch_and_takes_the_response_to() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let invite = request_text("INVITE", "sip:a@b", local, ProbeTransport::Udp, "x1");
        let ack = ack_text(
            "sip:a@b",
            local,
            ProbeTransport::Udp,
            "x1",
            "<sip:a@b>;tag=99",
        );
        let via = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("Via:"))
                .map(str::to_string)
        };
        assert_eq!(via(&invite), via(&ack));
        assert!(ack.starts_with("ACK sip:a@b SIP/2.0\r\n"));
        assert!(ack.contains("\r\nTo: <sip:a@b>;tag=99\r\nCSeq: 1 ACK\r\n"));
        // pcsync reads it as an ACK and absorbs it.
        let req = crate::sip::message::parse(ack.as_bytes()).unwrap();
        assert_eq!(req.method, crate::sip::message::Method::Ack);
        assert!(req.defect.is_none(), "{:?}", req.defect);
    }

    #[test]
    fn the_default_tls_name_is_the_host_part_of_the_server() {
        assert_eq!(host_part("sip.contoso.com:5061"), "sip.contoso.com");
        assert_eq!(host_part("127.0.0.1:5061"), "127.0.0.1");
        assert_eq!(host_part("[::1]:5061"), "::1");
        assert_eq!(host_part("sip.contoso.com"), "sip.contoso.com");
    }

    #[test]
    fn a_tls_request_names_tls_in_its_via() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let text = request_text("OPTIONS", "sip:a@b", local, ProbeTransport::Tls, "x1");
        assert!(
            text.contains("\r\nVia: SIP/2.0/TLS 127.0.0.1:40000;"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_one_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = TlsClient::new(Some(&empty), "localhost")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty.pem holds no certificate"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = TlsClient::new(Some(&missing), "localhost")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("TLS: cannot read --ca-file"), "{e}");
    }
}
