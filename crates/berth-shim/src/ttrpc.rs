//! ttrpc wire format, without the `ttrpc` crate's thread-pool server.
//!
//! A ttrpc frame is a 10-byte header (payload length u32 BE, stream id u32 BE, type u8,
//! flags u8) and a protobuf payload: `Request{service, method, payload, timeout_nano,
//! metadata}` from the client, `Response{status, payload}` from the server. Client streams
//! have odd ids. Requests on one connection may be answered in any order, which is what lets
//! the single-threaded shim park a `Wait` and keep serving.
//!
//! [`FrameBuf`] accumulates bytes read from a non-blocking socket and yields whole frames;
//! [`encode`] builds one. [`call`] is a blocking one-shot client (used by `start` and tests).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc::proto::{Code, Request, Response, Status};

/// Header length.
pub const HEADER_LEN: usize = 10;
/// Largest payload accepted (as Go's ttrpc).
pub const MAX_PAYLOAD: usize = 4 << 20;
/// Frame type of a request.
pub const TYPE_REQUEST: u8 = 1;
/// Frame type of a response.
pub const TYPE_RESPONSE: u8 = 2;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Stream id.
    pub stream: u32,
    /// Frame type.
    pub kind: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A peer announced a payload over [`MAX_PAYLOAD`].
    #[error("ttrpc frame of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
}

/// Bytes received on a connection that do not yet form a whole frame.
#[derive(Debug, Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Takes the next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(header) = self.buf.get(..HEADER_LEN) else { return Ok(None) };
        let word = |i: usize| header.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
        let (Some(len), Some(stream)) = (word(0), word(4)) else { return Ok(None) };
        let kind = header.get(8).copied().unwrap_or(0);
        let len = len as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        let Some(payload) = self.buf.get(HEADER_LEN..HEADER_LEN + len) else { return Ok(None) };
        let payload = payload.to_vec();
        self.buf.drain(..HEADER_LEN + len);
        if self.buf.is_empty() {
            // Keep idle connections small.
            self.buf = Vec::new();
        }
        Ok(Some(Frame { stream, kind, payload }))
    }
}

/// Encodes one frame.
pub fn encode(stream: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(payload);
    out
}

/// An RPC error: a gRPC status code and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// gRPC code (containerd maps NotFound, AlreadyExists, FailedPrecondition, ... to its
    /// errdefs classes).
    pub code: Code,
    /// Human-readable message.
    pub message: String,
}

impl RpcError {
    /// Error with `code`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into() }
    }
    /// InvalidArgument.
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Code::INVALID_ARGUMENT, m)
    }
    /// Unimplemented.
    pub fn unimplemented(m: impl Into<String>) -> Self {
        Self::new(Code::UNIMPLEMENTED, m)
    }
    /// Internal.
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(Code::INTERNAL, m)
    }
}

/// Encodes a response frame for `stream`.
pub fn response(stream: u32, result: Result<Vec<u8>, RpcError>) -> Vec<u8> {
    let mut resp = Response::new();
    match result {
        Ok(payload) => {
            let mut st = Status::new();
            st.code = Code::OK.into();
            resp.status = Some(st).into();
            resp.payload = payload;
        }
        Err(e) => {
            let mut st = Status::new();
            st.code = e.code.into();
            st.message = e.message;
            resp.status = Some(st).into();
        }
    }
    let bytes = resp.write_to_bytes().unwrap_or_default();
    encode(stream, TYPE_RESPONSE, &bytes)
}

/// Decodes a request payload.
pub fn parse_request(payload: &[u8]) -> Result<Request, RpcError> {
    Request::parse_from_bytes(payload).map_err(|e| RpcError::invalid(format!("undecodable ttrpc request: {e}")))
}

/// Decodes a response payload into its status and payload.
pub fn parse_response(payload: &[u8]) -> Result<Vec<u8>, RpcError> {
    let resp = Response::parse_from_bytes(payload)
        .map_err(|e| RpcError::internal(format!("undecodable ttrpc response: {e}")))?;
    if let Some(st) = resp.status.as_ref() {
        let code = st.code.enum_value_or(Code::UNKNOWN);
        if code != Code::OK {
            return Err(RpcError::new(code, st.message.clone()));
        }
    }
    Ok(resp.payload)
}

/// Encodes a request frame.
pub fn request(stream: u32, service: &str, method: &str, payload: Vec<u8>, metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut req = Request::new();
    req.service = service.to_string();
    req.method = method.to_string();
    req.payload = payload;
    for (k, v) in metadata {
        let mut kv = containerd_shim_protos::ttrpc::proto::KeyValue::new();
        kv.key = (*k).to_string();
        kv.value = (*v).to_string();
        req.metadata.push(kv);
    }
    let bytes = req.write_to_bytes().unwrap_or_default();
    encode(stream, TYPE_REQUEST, &bytes)
}

/// Path of a `unix://` (or bare) socket address.
pub fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// A blocking single call on a fresh connection (stream 1).
pub fn call(address: &str, service: &str, method: &str, payload: Vec<u8>, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut s = connect(address, timeout)?;
    call_on(&mut s, 1, service, method, payload)
}

/// A client connection to `address`, with `timeout` on every read and write.
pub fn connect(address: &str, timeout: Duration) -> io::Result<UnixStream> {
    let s = UnixStream::connect(socket_path(address))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// One call on an open connection, as stream `stream` (odd, and new on this connection).
pub fn call_on(s: &mut UnixStream, stream: u32, service: &str, method: &str, payload: Vec<u8>) -> io::Result<Vec<u8>> {
    s.write_all(&request(stream, service, method, payload, &[]))?;
    let mut fb = FrameBuf::default();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(f) = fb.next_frame().map_err(io::Error::other)? {
            if f.kind == TYPE_RESPONSE && f.stream == stream {
                return parse_response(&f.payload).map_err(io::Error::other);
            }
            continue;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "ttrpc: connection closed before the response"));
        }
        fb.extend(chunk.get(..n).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_reassemble() {
        let a = request(1, "svc", "M", b"xyz".to_vec(), &[("k", "v")]);
        let b = response(3, Ok(b"ok".to_vec()));
        let all: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        for cut in 0..all.len() {
            let mut fb = FrameBuf::default();
            fb.extend(&all[..cut]);
            let mut got = Vec::new();
            while let Some(f) = fb.next_frame().unwrap() {
                got.push(f);
            }
            fb.extend(&all[cut..]);
            while let Some(f) = fb.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            let r = parse_request(&got[0].payload).unwrap();
            assert_eq!((r.service.as_str(), r.method.as_str(), r.payload.as_slice()), ("svc", "M", &b"xyz"[..]));
            assert_eq!(r.metadata[0].key, "k");
            assert_eq!((got[1].stream, got[1].kind), (3, TYPE_RESPONSE));
            assert_eq!(parse_response(&got[1].payload).unwrap(), b"ok");
        }
    }

    #[test]
    fn error_status_round_trips_and_oversize_is_refused() {
        let f = response(5, Err(RpcError::new(Code::NOT_FOUND, "no such task c1")));
        let mut fb = FrameBuf::default();
        fb.extend(&f);
        let fr = fb.next_frame().unwrap().unwrap();
        let e = parse_response(&fr.payload).unwrap_err();
        assert_eq!(e, RpcError::new(Code::NOT_FOUND, "no such task c1"));

        let mut fb = FrameBuf::default();
        let mut hdr = ((MAX_PAYLOAD + 1) as u32).to_be_bytes().to_vec();
        hdr.extend_from_slice(&[0, 0, 0, 1, 1, 0]);
        fb.extend(&hdr);
        assert!(matches!(fb.next_frame(), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn garbage_payload_is_an_error_not_a_panic() {
        assert!(parse_request(&[0xff, 0xff, 0xff]).is_err());
        assert!(parse_response(&[0x0a, 0x80]).is_err());
    }
}
