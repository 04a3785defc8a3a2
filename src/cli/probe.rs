//! `pcsync probe`: one SIP request to a redirect server, and the answer it would follow.
//!
//! The administrator's one-line check: prints the status line and the Contact (for a 302),
//! exits 0 for a 2xx or 3xx answer and 1 for anything else (4xx-6xx, no answer, network error).
//! Needs no configuration file.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::cli::{Cli, Format, report_error};
use crate::exit;
use crate::sip::probe::{ProbeTransport, TlsClient, host_part, probe};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Transport {
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub(super) enum ProbeMethod {
    Invite,
    Options,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The SIP address to ask about, e.g. sip:ocschat@contoso.com.
    target: String,
    // The help is an attribute, not a doc comment: rustdoc would read `[::1]` as a link.
    #[arg(
        long,
        help = "The redirect server: HOST:PORT, or HOST alone for SIP's default port (5060 for udp and tcp, 5061 for tls). An IPv6 address with a port takes brackets: [::1]:5062"
    )]
    server: String,
    /// udp, tcp, or tls (Lync's default, port 5061; the certificate is verified).
    #[arg(long, value_enum, default_value_t = Transport::Udp)]
    transport: Transport,
    /// With --transport tls: trust the CA certificates in this PEM file instead of the
    /// system's roots (e.g. a private enterprise CA).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// With --transport tls: the name the server's certificate must carry (default: the host
    /// part of --server).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    #[arg(long, value_enum, default_value_t = ProbeMethod::Invite)]
    method: ProbeMethod,
    /// How long to wait for the final response.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration_within(text, Duration::from_millis(10)..=Duration::from_secs(300))
}

/// `--server` with the transport's default port added when it has none, as SIP clients do
/// (RFC 3261 section 19.1.2): 5060 for UDP and TCP, 5061 for TLS. A bare IPv6 address (`::1`)
/// is a host without a port; with a port it needs brackets (`[::1]:5062`).
fn server_with_port(server: &str, transport: Transport) -> String {
    let port = match transport {
        Transport::Udp | Transport::Tcp => 5060,
        Transport::Tls => 5061,
    };
    let server = server.trim();
    if server.starts_with('[') {
        if server.ends_with(']') {
            format!("{server}:{port}")
        } else {
            server.to_string()
        }
    } else if server.parse::<Ipv6Addr>().is_ok() {
        format!("[{server}]:{port}")
    } else if server.contains(':') {
        server.to_string()
    } else {
        format!("{server}:{port}")
    }
}

pub(super) async fn run(_cli: &Cli, args: &Args) -> u8 {
    let server_text = server_with_port(&args.server, args.transport);
    let server: SocketAddr = match tokio::net::lookup_host(&server_text).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => a,
            None => return report_error(&format!("--server {server_text}: no address")),
        },
        Err(e) => {
            return report_error(&format!(
                "--server {server_text}: {e} (expected HOST or HOST:PORT, e.g. 127.0.0.1:5060)"
            ));
        }
    };
    let transport = match args.transport {
        Transport::Udp => ProbeTransport::Udp,
        Transport::Tcp => ProbeTransport::Tcp,
        Transport::Tls => ProbeTransport::Tls,
    };
    if transport != ProbeTransport::Tls && (args.ca_file.is_some() || args.server_name.is_some()) {
        return report_error(&"--ca-file and --server-name need --transport tls");
    }
    let tls = if transport == ProbeTransport::Tls {
        let name = args
            .server_name
            .as_deref()
            .unwrap_or_else(|| host_part(&server_text));
        match TlsClient::new(args.ca_file.as_deref(), name) {
            Ok(client) => Some(client),
            Err(e) => return report_error(&e),
        }
    } else {
        None
    };
    let method = match args.method {
        ProbeMethod::Invite => "INVITE",
        ProbeMethod::Options => "OPTIONS",
    };
    // Unique enough for one probe: process id and the clock.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let call_id = format!("{:x}{:x}", std::process::id(), nanos);
    match probe(
        &args.target,
        server,
        transport,
        method,
        args.timeout,
        &call_id,
        tls.as_ref(),
    )
    .await
    {
        Ok(answer) => {
            if args.format == Format::Json {
                match serde_json::to_string(&answer) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return report_error(&e),
                }
            } else {
                println!("{}", answer.status_line);
                if let Some(contact) = &answer.contact {
                    println!("Contact: {contact}");
                }
            }
            if (200..400).contains(&answer.code) {
                exit::OK
            } else {
                exit::ERROR
            }
        }
        Err(e) => report_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // See: #19.
    #[test]
    fn a_server_without_a_port_gets_sips_default_for_the_transport() {
        for (server, transport, expected) in [
            ("127.0.0.1", Transport::Udp, "127.0.0.1:5060"),
            ("127.0.0.1", Transport::Tcp, "127.0.0.1:5060"),
            ("127.0.0.1", Transport::Tls, "127.0.0.1:5061"),
            ("sip.contoso.com", Transport::Tls, "sip.contoso.com:5061"),
            ("::1", Transport::Udp, "[::1]:5060"),
            ("[::1]", Transport::Tls, "[::1]:5061"),
            ("127.0.0.1:5080", Transport::Tls, "127.0.0.1:5080"),
            ("[::1]:5062", Transport::Udp, "[::1]:5062"),
            (
                "sip.contoso.com:5070",
                Transport::Udp,
                "sip.contoso.com:5070",
            ),
        ] {
            assert_eq!(server_with_port(server, transport), expected, "{server}");
        }
    }
}
