//! SPDY/3.1 frames, as far as Kubernetes' streaming protocols use them: kubectl 1.32's
//! port-forward speaks SPDY inside a WebSocket (`SPDY/3.1+portforward.k8s.io`) or, as a
//! fallback, over a plain upgraded connection. Kubernetes gets SPDY from moby/spdystream;
//! this is the same wire format read and written from the draft-3 specification:
//! control frames (`SYN_STREAM`, `SYN_REPLY`, `RST_STREAM`, `SETTINGS`, `PING`, `GOAWAY`,
//! `HEADERS`, `WINDOW_UPDATE`) and data frames, with header blocks compressed by zlib over
//! the specification's dictionary, one compression context a direction for the session.
//!
//! The decoder reads untrusted bytes: every length is checked before it is used, a frame
//! is at most `MAX_FRAME` bytes and a header block inflates to at most `MAX_HEADERS`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::sync::OnceLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The largest frame read (a data frame's payload is at most 2^24 - 1 by the format; a
/// control frame this large is an attack, not a request).
pub const MAX_FRAME: usize = 1 << 24;
/// The most a header block may inflate to.
const MAX_HEADERS: usize = 256 << 10;
const VERSION: u16 = 3;

pub const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// `RST_STREAM` status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream { stream: u32, associated: u32, fin: bool, headers: Headers },
    SynReply { stream: u32, fin: bool, headers: Headers },
    RstStream { stream: u32, status: u32 },
    Settings,
    Ping { id: u32 },
    GoAway { last_good: u32, status: u32 },
    Headers { stream: u32, fin: bool, headers: Headers },
    WindowUpdate { stream: u32, delta: u32 },
    Data { stream: u32, fin: bool, data: Bytes },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("SPDY: unsupported version {0} (SPDY/3 only)")]
    Version(u16),
    #[error("SPDY: a {what} frame of {length} bytes is malformed")]
    Malformed { what: &'static str, length: usize },
    #[error("SPDY: a frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("SPDY: the header block cannot be inflated: {0}")]
    Compression(String),
}

/// The header-compression dictionary of SPDY/3 (draft 3, section 2.6.10.1): each of
/// these words prefixed by its length as four bytes, then `TAIL`.
const WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized\
403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,\
text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut out = Vec::new();
        for word in WORDS {
            out.extend_from_slice(&u32::try_from(word.len()).unwrap_or_default().to_be_bytes());
            out.extend_from_slice(word.as_bytes());
        }
        out.extend_from_slice(TAIL.as_bytes());
        out
    })
}

/// Reads frames from the bytes of a session, inflating header blocks with the session's
/// one decompression context.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { inflate: Decompress::new(true) }
    }
}

fn u31(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7fff_ffff
}

impl Decoder {
    /// The next whole frame in `buffer` (taken out of it), or `None` until more bytes come.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buffer.len() < 8 {
            return Ok(None);
        }
        let length = (usize::from(buffer[5]) << 16) | (usize::from(buffer[6]) << 8) | usize::from(buffer[7]);
        if length + 8 > MAX_FRAME {
            return Err(SpdyError::TooLarge(length));
        }
        if buffer.len() < 8 + length {
            buffer.reserve(8 + length - buffer.len());
            return Ok(None);
        }
        let head = buffer.split_to(8);
        let body = buffer.split_to(length).freeze();
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data { stream: u31(&head[..4]), fin, data: body }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let malformed = |what| SpdyError::Malformed { what, length };
        let frame = match kind {
            SYN_STREAM => {
                if body.len() < 10 {
                    return Err(malformed("SYN_STREAM"));
                }
                let headers = self.headers(&body[10..])?;
                Frame::SynStream { stream: u31(&body[..4]), associated: u31(&body[4..8]), fin, headers }
            }
            SYN_REPLY | HEADERS => {
                if body.len() < 4 {
                    return Err(malformed(if kind == SYN_REPLY { "SYN_REPLY" } else { "HEADERS" }));
                }
                let headers = self.headers(&body[4..])?;
                let stream = u31(&body[..4]);
                if kind == SYN_REPLY {
                    Frame::SynReply { stream, fin, headers }
                } else {
                    Frame::Headers { stream, fin, headers }
                }
            }
            RST_STREAM if body.len() == 8 => Frame::RstStream {
                stream: u31(&body[..4]),
                status: u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
            },
            RST_STREAM => return Err(malformed("RST_STREAM")),
            SETTINGS => Frame::Settings,
            PING if body.len() == 4 => Frame::Ping { id: u32::from_be_bytes([body[0], body[1], body[2], body[3]]) },
            PING => return Err(malformed("PING")),
            GOAWAY if body.len() >= 8 => Frame::GoAway {
                last_good: u31(&body[..4]),
                status: u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
            },
            GOAWAY => return Err(malformed("GOAWAY")),
            WINDOW_UPDATE if body.len() == 8 => {
                Frame::WindowUpdate { stream: u31(&body[..4]), delta: u31(&body[4..8]) }
            }
            WINDOW_UPDATE => return Err(malformed("WINDOW_UPDATE")),
            // Unknown control frames are ignored, as the specification asks.
            _ => Frame::Settings,
        };
        Ok(Some(frame))
    }

    /// Inflates a header block (continuing the session's zlib stream) and reads its pairs.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let block = self.inflate(compressed)?;
        parse_block(&block)
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADERS {
                    return Err(SpdyError::Compression("the header block inflates past 256 KiB".into()));
                }
                out.reserve(out.len().max(256));
            }
            let before_in = self.inflate.total_in();
            let before_out = out.len();
            let result = self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync);
            let consumed = usize::try_from(self.inflate.total_in() - before_in).unwrap_or(input.len());
            input = &input[consumed.min(input.len())..];
            match result {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) if input.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(_) if consumed == 0 && out.len() == before_out && out.len() < out.capacity() => {
                    return Err(SpdyError::Compression("the header block is truncated".into()));
                }
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(dictionary()).map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(error) => return Err(SpdyError::Compression(error.to_string())),
            }
        }
    }
}

/// A header block's name/value pairs (several values of one name are NUL-separated,
/// and kept so).
fn parse_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |why: &str| SpdyError::Compression(format!("the header block is malformed: {why}"));
    let take = |block: &mut &[u8]| -> Result<String, SpdyError> {
        if block.len() < 4 {
            return Err(bad("a length is cut off"));
        }
        let length = usize::try_from(block.get_u32()).unwrap_or(usize::MAX);
        if block.len() < length {
            return Err(bad("a name or value is cut off"));
        }
        let text = String::from_utf8_lossy(&block[..length]).into_owned();
        block.advance(length);
        Ok(text)
    };
    if block.len() < 4 {
        return Err(bad("no pair count"));
    }
    let count = block.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take(&mut block)?;
        let value = take(&mut block)?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// Writes frames, compressing header blocks with the session's one compression context.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Before any input, as SPDY's compressors start; the reader checks its Adler-32.
        let _ = deflate.set_dictionary(dictionary());
        Encoder { deflate }
    }
}

impl Encoder {
    pub fn encode(&mut self, frame: &Frame) -> Bytes {
        let mut out = BytesMut::new();
        let control = |out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]| {
            out.put_u16(0x8000 | VERSION);
            out.put_u16(kind);
            let length = u32::try_from(body.len()).unwrap_or(0).min(0x00ff_ffff);
            out.put_u32((u32::from(flags) << 24) | length);
            out.put_slice(body);
        };
        let flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data { stream, fin, data } => {
                out.put_u32(stream & 0x7fff_ffff);
                let length = u32::try_from(data.len()).unwrap_or(0).min(0x00ff_ffff);
                out.put_u32((u32::from(flag(*fin)) << 24) | length);
                out.put_slice(data);
            }
            Frame::SynStream { stream, associated, fin, headers } => {
                let mut body = BytesMut::new();
                body.put_u32(*stream);
                body.put_u32(*associated);
                body.put_u16(0);
                body.put_slice(&self.block(headers));
                control(&mut out, SYN_STREAM, flag(*fin), &body);
            }
            Frame::SynReply { stream, fin, headers } | Frame::Headers { stream, fin, headers } => {
                let mut body = BytesMut::new();
                body.put_u32(*stream);
                body.put_slice(&self.block(headers));
                let kind = if matches!(frame, Frame::SynReply { .. }) { SYN_REPLY } else { HEADERS };
                control(&mut out, kind, flag(*fin), &body);
            }
            Frame::RstStream { stream, status } => {
                control(&mut out, RST_STREAM, 0, &[stream.to_be_bytes(), status.to_be_bytes()].concat());
            }
            Frame::Settings => control(&mut out, SETTINGS, 0, &0u32.to_be_bytes()),
            Frame::Ping { id } => control(&mut out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                control(&mut out, GOAWAY, 0, &[last_good.to_be_bytes(), status.to_be_bytes()].concat());
            }
            Frame::WindowUpdate { stream, delta } => {
                control(&mut out, WINDOW_UPDATE, 0, &[stream.to_be_bytes(), delta.to_be_bytes()].concat());
            }
        }
        out.freeze()
    }

    /// A header block, compressed and flushed so the reader can inflate it whole.
    fn block(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = BytesMut::new();
        raw.put_u32(u32::try_from(headers.len()).unwrap_or(0));
        for (name, value) in headers {
            raw.put_u32(u32::try_from(name.len()).unwrap_or(0));
            raw.put_slice(name.as_bytes());
            raw.put_u32(u32::try_from(value.len()).unwrap_or(0));
            raw.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input: &[u8] = &raw;
        loop {
            out.reserve(raw.len() + 64);
            let before = self.deflate.total_in();
            let _ = self.deflate.compress_vec(input, &mut out, FlushCompress::Sync);
            let consumed = usize::try_from(self.deflate.total_in() - before).unwrap_or(input.len());
            input = &input[consumed.min(input.len())..];
            // Flushed when all input is in and the output did not fill its room.
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// The SPDY upgrade's stream protocol, `X-Stream-Protocol-Version` (repeated or
/// comma-separated), when the client offers the one served; otherwise the 403 the API
/// server answers with.
pub(super) fn negotiate(headers: &axum::http::HeaderMap, served: &str) -> Result<(), super::status::ApiError> {
    let offered: Vec<&str> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if offered.contains(&served) {
        return Ok(());
    }
    Err(super::status::ApiError::new(
        403,
        "Forbidden",
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{served}\"]"
        ),
    ))
}

/// A connection's bytes as channels: what arrives, and what to send (written in order,
/// the connection shut when every sender is gone).
pub fn byte_streams<T>(io: T) -> (mpsc::Receiver<Bytes>, mpsc::Sender<Bytes>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut read, mut write) = tokio::io::split(io);
    let (incoming_tx, incoming) = mpsc::channel::<Bytes>(64);
    let (outgoing, mut outgoing_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 << 10];
        while let Ok(n) = read.read(&mut buffer).await {
            if n == 0 || incoming_tx.send(Bytes::copy_from_slice(&buffer[..n])).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(bytes) = outgoing_rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    (incoming, outgoing)
}

/// A session's one writer, which owns its compression context: frames in, bytes out,
/// until a GOAWAY is written or every sender is dropped.
pub fn writer(outgoing: mpsc::Sender<Bytes>) -> (mpsc::UnboundedSender<Frame>, tokio::task::JoinHandle<()>) {
    let (frames, mut frames_rx) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        let mut encoder = Encoder::default();
        while let Some(frame) = frames_rx.recv().await {
            let last = matches!(frame, Frame::GoAway { .. });
            if outgoing.send(encoder.encode(&frame)).await.is_err() || last {
                break;
            }
        }
    });
    (frames, writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_dictionary_is_the_specifications() {
        let dictionary = dictionary();
        assert_eq!(&dictionary[..11], b"\0\0\0\x07options");
        assert!(dictionary.ends_with(b",*,enq=0."));
        assert_eq!(dictionary.len(), 1423);
    }

    #[test]
    fn frames_written_are_read_back_with_one_compression_context_a_direction() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::default();
        let frames = [
            Frame::SynStream {
                stream: 1,
                associated: 0,
                fin: false,
                headers: headers(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynStream {
                stream: 3,
                associated: 0,
                fin: false,
                headers: headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply { stream: 3, fin: false, headers: Vec::new() },
            Frame::Data { stream: 3, fin: true, data: Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n") },
            Frame::Ping { id: 7 },
            Frame::RstStream { stream: 1, status: 3 },
            Frame::WindowUpdate { stream: 3, delta: 65536 },
            Frame::GoAway { last_good: 3, status: 0 },
        ];
        let mut wire = BytesMut::new();
        for frame in &frames {
            wire.extend_from_slice(&encoder.encode(frame));
        }
        // Read back a byte at a time: frames split anywhere come out whole.
        let mut buffer = BytesMut::new();
        let mut read = Vec::new();
        for byte in wire {
            buffer.put_u8(byte);
            while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
                read.push(frame);
            }
        }
        assert_eq!(read, frames);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let mut decoder = Decoder::default();
        let mut version2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(decoder.decode(&mut version2), Err(SpdyError::Version(2)));
        let mut short_ping = BytesMut::from(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 0][..]);
        assert!(matches!(decoder.decode(&mut short_ping), Err(SpdyError::Malformed { .. })));
        let mut garbage_headers = BytesMut::from(&[0x80, 0x03, 0x00, 0x02, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4][..]);
        assert!(matches!(decoder.decode(&mut garbage_headers), Err(SpdyError::Compression(_))));
        assert!(matches!(parse_block(&[0, 0, 0, 9, 0, 0, 0, 200, b'a']), Err(SpdyError::Compression(_))));
    }
}
