//! The redirect decision: a pure function from one request and one table snapshot to what the
//! server does. No I/O, no clock, no randomness: the same request always gets the
//! same bytes, which is what makes a stateless UAS (RFC 3261 §8.2.7) correct under UDP
//! retransmission. The To tag is a hash of Call-ID, From tag and top Via branch.
//!
//! | request | answer |
//! |---|---|
//! | INVITE, MESSAGE, SUBSCRIBE, INFO, NOTIFY, REFER to a mapped address | 302 with Contact |
//! | the same to any other address | 404 |
//! | OPTIONS to a mapped address or to the server itself (no user part) | 200 with Allow |
//! | ACK | nothing |
//! | CANCEL | 200 |
//! | REGISTER, BYE, others | 405 with Allow |
//! | Max-Forwards 0 (not OPTIONS) | 483 |
//! | a version other than SIP/2.0, when Via/From/To/Call-ID/CSeq are there | 505 with Warning |
//! | a defect (a Content-Length the message does not hold, among others), when Via/From/To/Call-ID/CSeq are there | 400 with Warning |
//! | anything else | dropped |

use std::net::{IpAddr, SocketAddr};

use super::message::{self, Defect, Method, Request, parse_via, tag_param, write_unfolded};
use crate::mapping::table::MappingTable;

/// The methods pcsync answers, for `Allow`.
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, INFO, REFER";

/// The header naming the mapping version a response was decided with.
pub(crate) const MAPPING_HEADER: &str = "X-Pcsync-Mapping";

/// What the redirector writes into its responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponderConfig {
    /// Port in the 302 Contact.
    pub contact_port: u16,
    /// `udp`, `tcp` or `tls`, in the 302 Contact.
    pub contact_transport: &'static str,
    /// The `Server` header value.
    pub server: String,
}

/// Where the request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub addr: SocketAddr,
    /// Datagram transport: responses go to the RFC 3261 §18.2.2 address; on a stream they go
    /// back on the connection.
    pub datagram: bool,
}

/// A response status pcsync sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStatus {
    Ok,
    MovedTemporarily,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    TooManyHops,
    VersionNotSupported,
}

impl ResponseStatus {
    pub(crate) fn code(self) -> u16 {
        match self {
            ResponseStatus::Ok => 200,
            ResponseStatus::MovedTemporarily => 302,
            ResponseStatus::BadRequest => 400,
            ResponseStatus::NotFound => 404,
            ResponseStatus::MethodNotAllowed => 405,
            ResponseStatus::TooManyHops => 483,
            ResponseStatus::VersionNotSupported => 505,
        }
    }

    pub(crate) fn reason(self) -> &'static str {
        match self {
            ResponseStatus::Ok => "OK",
            ResponseStatus::MovedTemporarily => "Moved Temporarily",
            ResponseStatus::BadRequest => "Bad Request",
            ResponseStatus::NotFound => "Not Found",
            ResponseStatus::MethodNotAllowed => "Method Not Allowed",
            ResponseStatus::TooManyHops => "Too Many Hops",
            ResponseStatus::VersionNotSupported => "Version Not Supported",
        }
    }

    /// Index into per-status counters.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) const ALL: [ResponseStatus; 7] = [
        ResponseStatus::Ok,
        ResponseStatus::MovedTemporarily,
        ResponseStatus::BadRequest,
        ResponseStatus::NotFound,
        ResponseStatus::MethodNotAllowed,
        ResponseStatus::TooManyHops,
        ResponseStatus::VersionNotSupported,
    ];
}

/// Why a message got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// An ACK: absorbed, by design.
    Ack,
    /// Nothing to address a response with (no usable Via, not a request, unreadable).
    Unanswerable,
}

/// The decision for one message.
// Not boxed on purpose: the response lives on the stack of the receive loop, so the hot path
// allocates nothing; moving ~800 bytes once per request is cheaper than a heap allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Decision<'a> {
    Reply(Response<'a>),
    Silent(Silence),
}

/// A response to be written: borrows the request it answers.
#[derive(Debug, Clone)]
pub struct Response<'a> {
    pub status: ResponseStatus,
    req: Request<'a>,
    /// To tag to add when the request's To has none.
    to_tag: Option<u64>,
    /// `(user, pool)` for the 302 Contact.
    contact: Option<(&'a str, &'a str)>,
    allow: bool,
    warning: Option<&'static str>,
    /// What to add to the top Via (RFC 3261 §18.2.1, RFC 3581).
    received: Option<IpAddr>,
    rport: Option<u16>,
    /// Where a datagram response goes (RFC 3261 §18.2.2). On a stream: where to open a new
    /// connection if the request's connection is gone (the source IP, i.e. `received`, and the
    /// sent-by port or 5060); the transport decides whether to use it.
    pub destination: Option<SocketAddr>,
    mapping_version: u64,
}

/// Reads `bytes` and decides. The one entry point transports call.
pub fn respond<'a>(
    bytes: &'a [u8],
    table: &'a MappingTable,
    source: Source,
) -> (Option<Method<'a>>, Decision<'a>) {
    match message::parse(bytes) {
        Ok(req) => (Some(req.method), decide(req, table, source)),
        Err(_) => (None, Decision::Silent(Silence::Unanswerable)),
    }
}

/// The decision for a request already read.
pub(crate) fn decide<'a>(
    req: Request<'a>,
    table: &'a MappingTable,
    source: Source,
) -> Decision<'a> {
    if req.method == Method::Ack {
        return Decision::Silent(Silence::Ack);
    }
    // Without a readable top Via there is nowhere to send anything (RFC 3261 §18.2.2).
    let Some(via) = req.top_via().and_then(parse_via) else {
        return Decision::Silent(Silence::Unanswerable);
    };
    let (received, rport, destination) = addressing(&via, source);
    let to_tag = match req.to.and_then(tag_param) {
        Some(_) => None,
        None => Some(to_tag(
            req.call_id,
            req.from.and_then(tag_param),
            via.branch,
        )),
    };
    let mut response = Response {
        status: ResponseStatus::BadRequest,
        req,
        to_tag,
        contact: None,
        allow: false,
        warning: None,
        received,
        rport,
        destination,
        mapping_version: table.version(),
    };
    // A usable Via is all a 400 needs to be addressed; it echoes whatever else is there, which
    // is what the client's transaction matching (branch + CSeq method) uses.
    if let Some(defect) = response.req.defect {
        response.warning = Some(defect.reason());
        if defect == Defect::Version {
            // RFC 3261 §8.2.1 and §21.5.7: the version, not the request, is what is refused.
            response.status = ResponseStatus::VersionNotSupported;
        }
        return Decision::Reply(response);
    }
    let req = &response.req;
    let target = message::uri_user_host(req.uri);
    if req.method != Method::Options && req.max_forwards.is_some_and(|mf| mf.trim() == "0") {
        response.status = ResponseStatus::TooManyHops;
        return Decision::Reply(response);
    }
    response.status = match req.method {
        Method::Invite
        | Method::Message
        | Method::Subscribe
        | Method::Info
        | Method::Notify
        | Method::Refer => match target.and_then(|(u, h)| table.lookup(u?, h)) {
            Some(entry) => {
                // The Contact carries the address as the directory holds it.
                response.contact = Some((entry.sip_uri.user(), entry.pool.as_str()));
                ResponseStatus::MovedTemporarily
            }
            None => ResponseStatus::NotFound,
        },
        Method::Options => match target {
            Some((None, _)) => ResponseStatus::Ok,
            Some((Some(user), host)) if table.lookup(user, host).is_some() => ResponseStatus::Ok,
            _ => ResponseStatus::NotFound,
        },
        Method::Cancel => ResponseStatus::Ok,
        _ => ResponseStatus::MethodNotAllowed,
    };
    response.allow = matches!(response.status, ResponseStatus::MethodNotAllowed)
        || (response.req.method == Method::Options && response.status == ResponseStatus::Ok);
    Decision::Reply(response)
}

/// RFC 3261 §18.2.1 (`received`), RFC 3581 (`rport`) and §18.2.2 (where a datagram response goes).
fn addressing(
    via: &message::Via<'_>,
    source: Source,
) -> (Option<IpAddr>, Option<u16>, Option<SocketAddr>) {
    let src_ip = source.addr.ip();
    let sent_by_is_source = via
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip == src_ip);
    let rport_requested = matches!(via.rport, Some(None));
    // A `received` the sender wrote itself is left alone rather than duplicated.
    let received =
        ((!sent_by_is_source || rport_requested) && via.received.is_none()).then_some(src_ip);
    let rport = rport_requested.then_some(source.addr.port());
    if !source.datagram {
        // §18.2.2 for a closed connection: `received` and the sent-by port. `rport` is not used:
        // on a stream it is the closed connection's ephemeral port, where nobody listens.
        return (
            received,
            rport,
            Some(SocketAddr::new(src_ip, via.port.unwrap_or(5060))),
        );
    }
    // maddr (multicast) is not honoured: pcsync only answers unicast; the response goes to the
    // source as below, which is what every client behind NAT needs anyway.
    let port = if rport_requested {
        source.addr.port()
    } else {
        via.port.unwrap_or(5060)
    };
    (received, rport, Some(SocketAddr::new(src_ip, port)))
}

/// FNV-1a over Call-ID, From tag and branch: deterministic across retransmissions and restarts.
fn to_tag(call_id: Option<&str>, from_tag: Option<&str>, branch: Option<&str>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [call_id, from_tag, branch] {
        for b in part.unwrap_or("").bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Response<'_> {
    /// Appends the response to `out` (which the caller reuses between requests).
    pub(crate) fn write(&self, out: &mut Vec<u8>, config: &ResponderConfig) {
        use std::io::Write;
        let req = &self.req;
        let _ = write!(
            out,
            "SIP/2.0 {} {}\r\n",
            self.status.code(),
            self.status.reason()
        );
        for (i, line) in req.via_lines().iter().enumerate() {
            out.extend_from_slice(b"Via: ");
            if i == 0 {
                let (top, rest) = message::split_first_value(line);
                self.write_top_via(out, top);
                if let Some(rest) = rest {
                    out.extend_from_slice(b", ");
                    write_unfolded(out, rest);
                }
            } else {
                write_unfolded(out, line);
            }
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in [("From", req.from), ("To", req.to)] {
            if let Some(value) = value {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                write_unfolded(out, value);
                if name == "To"
                    && let Some(tag) = self.to_tag
                {
                    let _ = write!(out, ";tag={tag:016x}");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        for (name, value) in [("Call-ID", req.call_id), ("CSeq", req.cseq)] {
            if let Some(value) = value {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                write_unfolded(out, value);
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some((user, pool)) = self.contact {
            let _ = write!(
                out,
                "Contact: <sip:{user}@{pool}:{};transport={}>\r\n",
                config.contact_port, config.contact_transport
            );
        }
        if self.allow {
            let _ = write!(out, "Allow: {ALLOW}\r\n");
        }
        if let Some(warning) = self.warning {
            let _ = write!(out, "Warning: 399 pcsync \"{warning}\"\r\n");
        }
        let _ = write!(
            out,
            "Server: {}\r\n{MAPPING_HEADER}: version={}\r\nContent-Length: 0\r\n\r\n",
            config.server, self.mapping_version
        );
    }

    fn write_top_via(&self, out: &mut Vec<u8>, top: &str) {
        use std::io::Write;
        let via = parse_via(top);
        match (self.rport, via.and_then(|v| v.bare_rport)) {
            (Some(port), Some((s, e)))
                if top
                    .get(s..e)
                    .is_some_and(|p| p.eq_ignore_ascii_case("rport")) =>
            {
                // parse_via worked on the trimmed value; `top` is already trimmed.
                write_unfolded(out, &top[..s]);
                let _ = write!(out, "rport={port}");
                write_unfolded(out, &top[e..]);
            }
            _ => write_unfolded(out, top),
        }
        if let Some(ip) = self.received {
            let _ = write!(out, ";received={ip}");
        }
    }

    /// The response as bytes (tests and probes; servers use [`Response::write`]).
    pub fn to_bytes(&self, config: &ResponderConfig) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write(&mut out, config);
        out
    }
}

#[cfg(test)]
mod tests;
