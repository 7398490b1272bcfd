//! Hand-built HTTP/2 (h2c, prior knowledge) frames for requests no HTTP/2 library will send:
//! connection-specific fields, upper-case names, a `content-length` that disagrees with the
//! DATA frames. Header blocks use HPACK literals without indexing (RFC 7541 6.2.2), so every
//! field goes on the wire exactly as given. Of the answer only what is needed is read: which
//! frames came for the stream, the `:status` of its first HEADERS frame, and its DATA.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    // Not Huffman-coded; 7-bit prefixed length (RFC 7541 5.1).
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128 + 128) as u8);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(s);
}

/// An HPACK block of literal fields without indexing, new names, in the given order.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_string(&mut out, name.as_bytes());
        hpack_string(&mut out, value.as_bytes());
    }
    out
}

/// What came back for stream 1.
#[derive(Debug, Default)]
pub struct H2Outcome {
    /// `:status` of the first HEADERS frame, when it could be read (static-table index or a
    /// literal, Huffman-coded or not).
    pub status: Option<u16>,
    pub headers_seen: bool,
    pub data: Vec<u8>,
    /// RST_STREAM error code for stream 1.
    pub reset: Option<u32>,
    /// GOAWAY error code.
    pub goaway: Option<u32>,
    /// The connection closed.
    pub closed: bool,
    /// Every byte received.
    pub raw: Vec<u8>,
}

/// The `:status` of a response header block whose first field is `:status` (as hyper's h2
/// sends it): indexed from the static table, or a literal with the static name 8.
fn status_of(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    if first & 0x80 != 0 {
        return match first & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    // Literal with an indexed name: 01xxxxxx (incremental), 0000xxxx or 0001xxxx.
    let name_index = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if name_index != 8 {
        return None;
    }
    let len_byte = *block.get(1)?;
    let huffman = len_byte & 0x80 != 0;
    let len = usize::from(len_byte & 0x7f);
    let value = block.get(2..2 + len)?;
    let text = if huffman {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Decodes a Huffman-coded string of decimal digits (RFC 7541 Appendix B).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    const CODES: [(u32, u8, char); 10] = [
        (0b00000, 5, '0'),
        (0b00001, 5, '1'),
        (0b00010, 5, '2'),
        (0b011001, 6, '3'),
        (0b011010, 6, '4'),
        (0b011011, 6, '5'),
        (0b011100, 6, '6'),
        (0b011101, 6, '7'),
        (0b011110, 6, '8'),
        (0b011111, 6, '9'),
    ];
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut pos = 0;
    'outer: while pos < bits.len() {
        for (code, len, c) in CODES {
            let len = usize::from(len);
            if pos + len > bits.len() {
                continue;
            }
            let v = bits[pos..pos + len]
                .iter()
                .fold(0u32, |acc, b| (acc << 1) | u32::from(*b));
            if v == code {
                out.push(c);
                pos += len;
                continue 'outer;
            }
        }
        // Padding: the rest must be all ones (the start of EOS).
        return bits[pos..].iter().all(|b| *b == 1).then_some(out);
    }
    Some(out)
}

/// Opens an h2c connection, sends one request on stream 1 (a HEADERS frame with `fields`,
/// then `data` as one DATA frame when given) and reads what comes back for it, for at most
/// `within`.
pub async fn request(
    addr: SocketAddr,
    fields: &[(&str, &str)],
    data: Option<&[u8]>,
    within: Duration,
) -> H2Outcome {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS, defaults
    let headers_flags = END_HEADERS | if data.is_none() { END_STREAM } else { 0 };
    out.extend(frame(HEADERS, headers_flags, 1, &header_block(fields)));
    if let Some(d) = data {
        out.extend(frame(DATA, END_STREAM, 1, d));
    }
    // The server may refuse before reading everything; that is an answer too.
    let _ = stream.write_all(&out).await;

    let mut outcome = H2Outcome::default();
    let mut buf: Vec<u8> = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // Parse complete frames.
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let flags = buf[4];
            let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match (kind, id) {
                (HEADERS, 1) => {
                    if !outcome.headers_seen {
                        outcome.headers_seen = true;
                        // Skip padding and priority fields if flagged.
                        let mut block: &[u8] = &payload;
                        if flags & 0x8 != 0 {
                            let pad = usize::from(block[0]);
                            block = &block[1..block.len() - pad];
                        }
                        if flags & 0x20 != 0 {
                            block = &block[5..];
                        }
                        outcome.status = status_of(block);
                    }
                    if flags & END_STREAM != 0 {
                        return outcome;
                    }
                }
                (DATA, 1) => {
                    outcome.data.extend_from_slice(&payload);
                    if flags & END_STREAM != 0 {
                        return outcome;
                    }
                }
                (RST_STREAM, 1) => {
                    outcome.reset = payload
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    return outcome;
                }
                (GOAWAY, _) => {
                    outcome.goaway = payload
                        .get(4..8)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
                _ => {}
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return outcome,
            Ok(Ok(0)) | Ok(Err(_)) => {
                outcome.closed = true;
                return outcome;
            }
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                outcome.raw.extend_from_slice(&chunk[..n]);
            }
        }
    }
}
