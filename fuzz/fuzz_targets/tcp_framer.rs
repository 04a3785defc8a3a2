//! Any byte stream, delivered in arbitrary chunks, through the TCP/TLS framer: must never
//! panic, never return a frame larger than the cap, and frame the same way however the bytes
//! are split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pcsync::sip::codec::{Frame, SipCodec};
use tokio_util::codec::Decoder;

const MAX: usize = 4096;

fn frames(data: &[u8], chunk: usize) -> (Vec<Frame>, bool) {
    let mut codec = SipCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => {
                    if let Frame::Message(m) = &f {
                        assert!(m.len() <= MAX);
                    }
                    out.push(f);
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let whole = frames(rest, rest.len());
    let chunked = frames(rest, split as usize % 17 + 1);
    // Framing must not depend on how the stream was split (errors may come at a different
    // point, but the frames before them agree).
    if !whole.1 && !chunked.1 {
        assert_eq!(whole.0, chunked.0);
    }
});
