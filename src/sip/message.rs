//! A zero-copy reader for the parts of a SIP request a stateless redirect server needs.
//!
//! Why not `rsipstack::sip` on the hot path (the codec the project otherwise uses for SIP): its parser
//! requires `\r\n\r\n` (LF-only messages fail), rejects a whole message whose method it does not
//! know (we must answer those with 405), and allocates a `String` for every header name and value.
//! The benchmark goal (≤ 0.67× Kamailio's CPU per call) leaves no room for an allocation storm per
//! datagram. This reader borrows slices of the datagram, understands compact forms (`v f t i l`),
//! folded headers and LF-only line ends, and never panics. rsipstack stays in `sip/`: `probe`
//! parses responses with it, and the unit tests use it as an oracle on well-formed requests.
//!
//! Reading is best-effort: [`parse`] fails only when nothing could be answered (not a request,
//! no start line). Anything else wrong is recorded as a [`Defect`] next to what was read, so
//! [`super::redirect::respond`] can still answer `400 Bad Request` when Via, From, To, Call-ID
//! and CSeq are there to address it.

/// Most Via header *lines* we keep (values inside one line are not counted). More is a defect.
pub(crate) const MAX_VIA_LINES: usize = 32;

/// A SIP method. Method names are case-sensitive (RFC 3261 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    Invite,
    Ack,
    Options,
    Bye,
    Cancel,
    Register,
    Message,
    Subscribe,
    Notify,
    Info,
    Refer,
    Other(&'a str),
}

impl<'a> Method<'a> {
    fn parse(text: &'a str) -> Method<'a> {
        match text {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "OPTIONS" => Method::Options,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "MESSAGE" => Method::Message,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            other => Method::Other(other),
        }
    }

    pub(crate) fn as_str(&self) -> &'a str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Options => "OPTIONS",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Message => "MESSAGE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Other(m) => m,
        }
    }
}

/// Why a message cannot be read at all (nothing can be answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// Empty, or only line ends.
    #[error("empty message")]
    Empty,
    /// The header section is not UTF-8.
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// A response (`SIP/2.0 ...`): a redirect server never expects one.
    #[error("a response, not a request")]
    Response,
    /// The first line is not `METHOD URI SIP/2.0`.
    #[error("malformed request line")]
    RequestLine,
}

/// Something wrong with a request that was otherwise read: answered with 400 when possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Defect {
    /// Version other than SIP/2.0.
    Version,
    /// A header line without a colon or with an empty name.
    HeaderLine,
    /// From, To, Call-ID, CSeq or Content-Length appears twice.
    Duplicate(&'static str),
    /// More than [`MAX_VIA_LINES`] Via lines.
    TooManyVias,
    /// A mandatory header is missing.
    Missing(&'static str),
    /// CSeq is not `<number> <method>`, or its method differs from the request's.
    CSeq,
    /// Max-Forwards is not a number.
    MaxForwards,
    /// The top Via is not `SIP/2.0/<transport> <host>[:port]`.
    Via,
    /// A header line holds a control character other than HT (a bare CR, NUL, ESC, DEL...):
    /// RFC 3261 §25.1 allows none in a header value, and echoing one could split a response
    /// line in a careless peer.
    ControlCharacter,
    /// Content-Length is not a number (negative, empty, too long).
    ContentLength,
    /// Content-Length says more than the message holds: over UDP the datagram ends before the
    /// body does (RFC 3261 §18.3: an error, answered with 400).
    BodyShort,
}

impl Defect {
    /// The text of the `Warning: 399` header of the 400 answer.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Defect::Version => "unsupported SIP version",
            Defect::HeaderLine => "malformed header line",
            Defect::Duplicate("From") => "duplicate From header",
            Defect::Duplicate("To") => "duplicate To header",
            Defect::Duplicate("Call-ID") => "duplicate Call-ID header",
            Defect::Duplicate("CSeq") => "duplicate CSeq header",
            Defect::Duplicate(_) => "duplicate header",
            Defect::TooManyVias => "too many Via headers",
            Defect::Missing("Via") => "missing Via header",
            Defect::Missing("From") => "missing From header",
            Defect::Missing("To") => "missing To header",
            Defect::Missing("Call-ID") => "missing Call-ID header",
            Defect::Missing("CSeq") => "missing CSeq header",
            Defect::Missing(_) => "missing mandatory header",
            Defect::CSeq => "malformed CSeq header",
            Defect::MaxForwards => "malformed Max-Forwards header",
            Defect::Via => "malformed Via header",
            Defect::ControlCharacter => "control character in a header",
            Defect::ContentLength => "malformed Content-Length header",
            Defect::BodyShort => "message body shorter than its Content-Length",
        }
    }
}

/// A request as read, borrowing from the message bytes. Header values are trimmed; a folded
/// value keeps its inner line breaks (write it with [`write_unfolded`]).
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub method: Method<'a>,
    /// The Request-URI text as sent.
    pub uri: &'a str,
    vias: [&'a str; MAX_VIA_LINES],
    via_lines: usize,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub call_id: Option<&'a str>,
    pub cseq: Option<&'a str>,
    pub max_forwards: Option<&'a str>,
    pub content_length: Option<&'a str>,
    /// Bytes after the header section and its empty line.
    body_len: usize,
    /// The first problem found, if any.
    pub defect: Option<Defect>,
}

impl<'a> Request<'a> {
    /// The Via header lines in order (each may hold several comma-separated values).
    pub(crate) fn via_lines(&self) -> &[&'a str] {
        &self.vias[..self.via_lines]
    }

    /// The first Via value: the first comma-separated element of the first Via line.
    pub(crate) fn top_via(&self) -> Option<&'a str> {
        let line = *self.via_lines().first()?;
        Some(split_first_value(line).0)
    }

    fn defect(&mut self, d: Defect) {
        if self.defect.is_none() {
            self.defect = Some(d);
        }
    }
}

/// Reads a request from one datagram or one framed stream message. Never panics.
///
/// About 90 lines on purpose: one forward pass over the bytes (start line, then each header line
/// with folding and compact forms), its position and the request being filled kept in locals;
/// split up, that state would be threaded through every helper, and the fuzz target
/// (`parse_respond`) exercises the pass as one.
pub(crate) fn parse(bytes: &[u8]) -> Result<Request<'_>, ParseError> {
    // Tolerate leading line ends (RFC 3261 §7.5: ignore empty lines before the start line).
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or(ParseError::Empty)?;
    let bytes = &bytes[start..];
    let head_len = header_end(bytes);
    let head = &bytes[..head_len];
    let blank_line = match &bytes[head_len..] {
        [b'\r', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        _ => 0,
    };
    let body_len = bytes.len() - head_len - blank_line;
    let text = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;

    let (first, rest) = match text.find('\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let first = first.strip_suffix('\r').unwrap_or(first);
    if first.starts_with("SIP/") {
        return Err(ParseError::Response);
    }
    let mut parts = first.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::RequestLine);
    };
    if !method.bytes().all(is_token_byte) {
        return Err(ParseError::RequestLine);
    }
    let mut req = Request {
        method: Method::parse(method),
        uri,
        vias: [""; MAX_VIA_LINES],
        via_lines: 0,
        from: None,
        to: None,
        call_id: None,
        cseq: None,
        max_forwards: None,
        content_length: None,
        body_len,
        defect: None,
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        req.defect(Defect::Version);
    }

    // Walk header lines; a line that starts with SP/HT continues the previous value, which stays
    // one slice of `rest` (so it contains the line break; writers unfold it).
    let mut current: Option<(&str, usize, usize)> = None; // (name, value start, value end)
    let mut offset = 0;
    let base = rest;
    for raw in base.split_inclusive('\n') {
        let line_start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            continue;
        }
        if line.bytes().any(is_control) {
            req.defect(Defect::ControlCharacter);
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, _, end)) = current.as_mut() {
                *end = line_start + line.len();
            }
            continue;
        }
        if let Some((name, s, e)) = current.take() {
            store(&mut req, name, base[s..e].trim());
        }
        match line.find(':') {
            Some(colon) if !line[..colon].trim().is_empty() => {
                let name = line[..colon].trim_end();
                let value_start = line_start + colon + 1;
                current = Some((name, value_start, line_start + line.len()));
            }
            _ => req.defect(Defect::HeaderLine),
        }
    }
    if let Some((name, s, e)) = current.take() {
        store(&mut req, name, base[s..e].trim());
    }
    check(&mut req);
    Ok(req)
}

/// Where the header section ends: before the first empty line (CRLF or LF-only), or the end.
fn header_end(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(nl) = memchr(b'\n', &bytes[i..]) {
        let at = i + nl;
        let next = &bytes[at + 1..];
        if next.first() == Some(&b'\n') || next.starts_with(b"\r\n") {
            return at + 1;
        }
        i = at + 1;
    }
    bytes.len()
}

/// A control character that may not appear in a header line (RFC 3261 §25.1: HT is the only
/// one allowed; CR and LF only as line ends). The line end itself is never part of `line`.
pub(crate) fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn store<'a>(req: &mut Request<'a>, name: &'a str, value: &'a str) {
    let is = |long: &str, short: &str| {
        name.eq_ignore_ascii_case(long) || (!short.is_empty() && name.eq_ignore_ascii_case(short))
    };
    let once = |slot: &mut Option<&'a str>, what: &'static str, defect: &mut Option<Defect>| {
        if slot.is_some() {
            if defect.is_none() {
                *defect = Some(Defect::Duplicate(what));
            }
        } else {
            *slot = Some(value);
        }
    };
    if is("Via", "v") {
        if req.via_lines < MAX_VIA_LINES {
            req.vias[req.via_lines] = value;
            req.via_lines += 1;
        } else {
            req.defect(Defect::TooManyVias);
        }
    } else if is("From", "f") {
        once(&mut req.from, "From", &mut req.defect);
    } else if is("To", "t") {
        once(&mut req.to, "To", &mut req.defect);
    } else if is("Call-ID", "i") {
        once(&mut req.call_id, "Call-ID", &mut req.defect);
    } else if is("CSeq", "") {
        once(&mut req.cseq, "CSeq", &mut req.defect);
    } else if is("Max-Forwards", "") {
        once(&mut req.max_forwards, "Max-Forwards", &mut req.defect);
    } else if is("Content-Length", "l") {
        once(&mut req.content_length, "Content-Length", &mut req.defect);
    }
}

/// Mandatory headers and the shape of the ones we interpret.
fn check(req: &mut Request<'_>) {
    if req.via_lines == 0 || req.top_via().is_some_and(str::is_empty) {
        req.defect(Defect::Missing("Via"));
    }
    for (present, name) in [
        (req.from.is_some_and(|v| !v.is_empty()), "From"),
        (req.to.is_some_and(|v| !v.is_empty()), "To"),
        (req.call_id.is_some_and(|v| !v.is_empty()), "Call-ID"),
        (req.cseq.is_some(), "CSeq"),
    ] {
        if !present {
            req.defect(Defect::Missing(name));
        }
    }
    if let Some(cseq) = req.cseq {
        let mut it = cseq.split_ascii_whitespace();
        let ok = match (it.next(), it.next(), it.next()) {
            (Some(n), Some(m), None) => {
                n.len() <= 10 && n.parse::<u32>().is_ok() && m == req.method.as_str()
            }
            _ => false,
        };
        if !ok {
            req.defect(Defect::CSeq);
        }
    }
    if let Some(mf) = req.max_forwards
        && (mf.is_empty() || mf.len() > 3 || !mf.bytes().all(|b| b.is_ascii_digit()))
    {
        req.defect(Defect::MaxForwards);
    }
    if let Some(top) = req.top_via()
        && !top.is_empty()
        && parse_via(top).is_none()
    {
        req.defect(Defect::Via);
    }
    if let Some(cl) = req.content_length {
        // Up to 9 digits, as the stream framer reads it; anything else (a sign, a blank, a
        // huge number) is not a length.
        match cl.parse::<usize>() {
            Ok(n) if cl.len() <= 9 && cl.bytes().all(|b| b.is_ascii_digit()) => {
                if n > req.body_len {
                    req.defect(Defect::BodyShort);
                }
            }
            _ => req.defect(Defect::ContentLength),
        }
    }
}

/// Splits `a, b, c` at the first comma outside quotes and angle brackets.
pub(crate) fn split_first_value(line: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    let mut angle = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => return (line[..i].trim(), Some(line[i + 1..].trim())),
            _ => {}
        }
    }
    (line.trim(), None)
}

/// One Via value: `SIP/2.0/UDP host[:port];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Via<'a> {
    pub transport: &'a str,
    /// Host as written; IPv6 keeps its brackets.
    pub host: &'a str,
    pub port: Option<u16>,
    /// `branch`, if present.
    pub branch: Option<&'a str>,
    /// `received`, if present.
    pub received: Option<&'a str>,
    /// `rport`: `None` absent, `Some(None)` present without value, `Some(Some(p))` with value.
    pub rport: Option<Option<&'a str>>,
    /// `maddr`, if present.
    pub maddr: Option<&'a str>,
    /// Byte range of the bare `rport` parameter in the value (to replace it with `rport=N`).
    pub bare_rport: Option<(usize, usize)>,
}

/// Reads one Via value; `None` when it is not `SIP/2.0/<transport> <sent-by>`.
pub(crate) fn parse_via(value: &str) -> Option<Via<'_>> {
    let value = value.trim();
    let slash = value.get(..8)?;
    if !slash.eq_ignore_ascii_case("SIP/2.0/") {
        return None;
    }
    let after = &value[8..];
    let ws = after.find(|c: char| c.is_ascii_whitespace())?;
    let transport = after[..ws].trim();
    if transport.is_empty() {
        return None;
    }
    let rest_start = 8 + ws;
    let rest = value[rest_start..].trim_start();
    let rest_offset = value.len() - rest.len();
    let (sent_by, params, params_offset) = match rest.find(';') {
        Some(i) => (rest[..i].trim(), &rest[i..], rest_offset + i),
        None => (rest.trim(), "", value.len()),
    };
    let (host, port) = split_host_port(sent_by)?;
    let mut via = Via {
        transport,
        host,
        port,
        branch: None,
        received: None,
        rport: None,
        maddr: None,
        bare_rport: None,
    };
    let mut pos = params_offset;
    for param in params.split(';') {
        let start = pos;
        pos += param.len() + 1;
        let p = param.trim();
        if p.is_empty() {
            continue;
        }
        let (name, val) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p, None),
        };
        if name.eq_ignore_ascii_case("branch") {
            via.branch = val;
        } else if name.eq_ignore_ascii_case("received") {
            via.received = val;
        } else if name.eq_ignore_ascii_case("maddr") {
            via.maddr = val;
        } else if name.eq_ignore_ascii_case("rport") {
            via.rport = Some(val);
            if val.is_none() {
                // `start` is where this parameter's text begins (just after its ';').
                let lead = param.len() - param.trim_start().len();
                let s = start + lead;
                via.bare_rport = Some((s, s + p.len()));
            }
        }
    }
    Some(via)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`. `None` when empty or the port is not a number.
pub(crate) fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.starts_with('[') {
        let close = text.find(']')?;
        let host = &text[..=close];
        let after = &text[close + 1..];
        if after.is_empty() {
            return Some((host, None));
        }
        let port = after.strip_prefix(':')?.parse::<u16>().ok()?;
        return Some((host, Some(port)));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            Some((host, Some(port.parse::<u16>().ok()?)))
        }
        Some(_) => None,
        None => Some((text, None)),
    }
}

/// The `tag` parameter of a From or To value, if any.
pub(crate) fn tag_param(value: &str) -> Option<&str> {
    // Parameters follow the URI: after `>` when the URI is bracketed, else after the first `;`.
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => match value.find(';') {
            Some(i) => &value[i..],
            None => "",
        },
    };
    params.split(';').find_map(|p| {
        let (name, val) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| val.trim())
            .filter(|v| !v.is_empty())
    })
}

/// A SIP or SIPS Request-URI's user and host (IPv6 with brackets), ignoring password, port,
/// parameters and headers. `user` is `None` for a URI without `user@` (the server itself).
/// `None` for other schemes (`tel:`) or a URI that cannot be read.
pub fn uri_user_host(uri: &str) -> Option<(Option<&str>, &str)> {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    // `get`, not indexing: byte 4 or 5 may fall inside a multi-byte character (found by the
    // parse_respond fuzz target).
    let scheme = |n: usize, name: &str| uri.get(..n).is_some_and(|s| s.eq_ignore_ascii_case(name));
    let rest = if uri.len() > 4 && scheme(4, "sip:") {
        &uri[4..]
    } else if uri.len() > 5 && scheme(5, "sips:") {
        &uri[5..]
    } else {
        return None;
    };
    let rest = rest.split('?').next().unwrap_or(rest);
    let (user, hostport) = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or(userinfo);
            (Some(user), &rest[at + 1..])
        }
        None => (None, rest),
    };
    let hostport = hostport.split(';').next().unwrap_or(hostport);
    let (host, _port) = split_host_port(hostport)?;
    if user.is_some_and(str::is_empty) {
        return None;
    }
    Some((user, host))
}

/// Appends `value` with any folded line breaks (CR/LF and the blanks after them) turned into
/// one space. Every other control character (a bare CR, NUL, ESC, DEL...) is turned into a space
/// the same way, so nothing copied from a request can end or split a response line, whatever
/// the peer's parser makes of such bytes. (The value is UTF-8: a non-UTF-8 header section is
/// never answered.)
pub(crate) fn write_unfolded(out: &mut Vec<u8>, value: &str) {
    if !value.bytes().any(is_control) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    let mut fold = false;
    for b in value.bytes() {
        match b {
            b if is_control(b) => fold = true,
            b' ' | b'\t' if fold => {}
            _ => {
                if fold {
                    out.push(b' ');
                    fold = false;
                }
                out.push(b);
            }
        }
    }
}
