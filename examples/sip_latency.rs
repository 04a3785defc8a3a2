//! A small latency probe for `scripts/bench-redirect.sh`: sends INVITEs (each followed by its
//! ACK) at a fixed pace over UDP, one outstanding at a time, and prints the p50/p99/max response
//! time in microseconds. Bounded in count, and every wait has a timeout.
//!
//! Usage: sip_latency SERVER URI RATE COUNT
//! Output: one line `p50_us=.. p99_us=.. max_us=.. answered=.. lost=..`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: sip_latency SERVER URI RATE COUNT");
        std::process::exit(2);
    }
    let server: SocketAddr = match args[1].parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad server {}: {e}", args[1]);
            std::process::exit(2);
        }
    };
    let uri = &args[2];
    let rate: u64 = args[3].parse().unwrap_or(100).max(1);
    let count: usize = args[4].parse().unwrap_or(1000);
    let socket = match UdpSocket::bind("127.0.0.1:0") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bind: {e}");
            std::process::exit(1);
        }
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
    let local = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let interval = Duration::from_micros(1_000_000 / rate);
    let mut samples = Vec::with_capacity(count);
    let mut lost = 0usize;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    for i in 0..count {
        let slot = start + interval * i as u32;
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
        let invite = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKlat{i}\r\n\
             From: <sip:latency@127.0.0.1>;tag=lat{i}\r\nTo: <{uri}>\r\nCall-ID: lat-{i}@{local}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:latency@{local}>\r\nContent-Length: 0\r\n\r\n"
        );
        let sent = Instant::now();
        if socket.send_to(invite.as_bytes(), server).is_err() {
            lost += 1;
            continue;
        }
        let mut answered = false;
        while let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.contains(&format!("Call-ID: lat-{i}@")) && !text.starts_with("SIP/2.0 1") {
                samples.push(sent.elapsed().as_micros() as u64);
                answered = true;
                let to = text
                    .lines()
                    .find(|l| l.starts_with("To:"))
                    .unwrap_or("To: <x>")
                    .to_string();
                let ack = format!(
                    "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKlat{i}\r\n\
                     From: <sip:latency@127.0.0.1>;tag=lat{i}\r\n{to}\r\nCall-ID: lat-{i}@{local}\r\n\
                     CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = socket.send_to(ack.as_bytes(), server);
                break;
            }
        }
        if !answered {
            lost += 1;
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| -> u64 {
        if samples.is_empty() {
            return 0;
        }
        let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[idx.min(samples.len() - 1)]
    };
    println!(
        "p50_us={} p99_us={} max_us={} answered={} lost={}",
        pct(0.50),
        pct(0.99),
        samples.last().copied().unwrap_or(0),
        samples.len(),
        lost
    );
}
