//! What a handler returns: a status, a content type and a body. Handlers never touch the
//! socket; [`Reply::into_response`] applies gzip (when the client accepts it) and the
//! `HashSHA256` signature (over the uncompressed body) at the edge.

use std::fmt;

use golectra_common::{gzip, signature};
use tiny_http::{Header, Response};

/// Content type of plain-text replies (the text API, errors).
pub const TEXT: &str = "text/plain; charset=utf-8";
/// Content type of JSON replies; gzipped when the client accepts it.
pub const JSON: &str = "application/json";
/// Content type of the HTML dashboard; gzipped when the client accepts it.
pub const HTML: &str = "text/html; charset=utf-8";
/// Content type of `/metrics`: the Prometheus text format 0.0.4; gzipped when accepted.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response before it is encoded for the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` value; one of the constants of this module.
    pub content_type: &'static str,
    /// The uncompressed body; the signature is computed over these bytes.
    pub body: Vec<u8>,
    /// Extra headers (`Allow`, `Cache-Control`, …).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    /// A plain-text reply ([`TEXT`]) with the given status.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: TEXT,
            body: body.into().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// A `200 OK` JSON reply ([`JSON`]) with an already serialized body.
    pub fn json(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type: JSON,
            body,
            headers: Vec::new(),
        }
    }

    /// A `200 OK` HTML reply ([`HTML`]).
    pub fn html(body: String) -> Self {
        Self {
            status: 200,
            content_type: HTML,
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// Adds an extra header, sent after `Content-Type` and the signature.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Whether the content type is one the original gzips. There is deliberately no size
    /// threshold: the original gzips every such reply when the client accepts it, and its
    /// clients' test suite checks `Content-Encoding: gzip` on ~40-byte replies (docs/http-api.md).
    fn compressible(&self) -> bool {
        self.content_type == JSON || self.content_type == HTML || self.content_type == PROMETHEUS
    }

    /// Encodes the reply: signs the uncompressed body when a key is set, then gzips it when the
    /// client accepts gzip and the content type is one that docs/http-api.md lists as compressed.
    pub fn into_response(
        self,
        accept_gzip: bool,
        key: Option<&[u8]>,
    ) -> Response<std::io::Cursor<Vec<u8>>> {
        let mut headers = Vec::with_capacity(self.headers.len() + 3);
        headers.push(header("Content-Type", self.content_type));
        if let Some(key) = key.filter(|_| !self.body.is_empty()) {
            headers.push(header(signature::HEADER, &sign_response(&self.body, key)));
        }
        for (name, value) in &self.headers {
            headers.push(header(name, value));
        }
        let body = if accept_gzip && self.compressible() {
            headers.push(header("Content-Encoding", "gzip"));
            headers.push(header("Vary", "Accept-Encoding"));
            gzip::compress(&self.body)
        } else {
            self.body
        };
        let mut response = Response::from_data(body).with_status_code(self.status);
        for h in headers {
            response.add_header(h);
        }
        response
    }
}

/// The `HashSHA256` value of a response body under `key`: how every response is signed.
pub fn sign_response(body: &[u8], key: &[u8]) -> String {
    signature::sign(body, key)
}

/// With a key, the engine signs the refusals it writes itself (`400`, `408`, `431`, `503`…
/// before any handler saw the request) exactly as [`Reply::into_response`] signs a reply.
pub fn refusal_signer(key: Option<&[u8]>) -> Option<tiny_http::RefusalSigner> {
    let key = key?.to_vec();
    Some(tiny_http::RefusalSigner::new(
        signature::HEADER,
        move |body: &[u8]| sign_response(body, &key),
    ))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("header names and values are ASCII without newlines")
}

/// A request that cannot be served, with the status and the one-line reason sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status code (4xx or 5xx).
    pub status: u16,
    /// The reason sent as the plain-text body; control characters become spaces.
    pub message: String,
    /// For 405: the methods the path accepts.
    pub allow: Option<&'static str>,
    /// For 401: the `WWW-Authenticate` challenge.
    pub challenge: Option<&'static str>,
}

impl ApiError {
    /// An error with any status and message.
    pub fn new(status: u16, message: impl fmt::Display) -> Self {
        Self {
            status,
            message: message.to_string(),
            allow: None,
            challenge: None,
        }
    }
    /// A `400 Bad Request` with the reason.
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Self::new(400, message)
    }
    /// A `404 Not Found` with the reason.
    pub fn not_found(message: impl fmt::Display) -> Self {
        Self::new(404, message)
    }
    /// A `413 Payload Too Large` with the reason.
    pub fn too_large(message: impl fmt::Display) -> Self {
        Self::new(413, message)
    }
    /// A `405 Method Not Allowed` naming `method`; `allow` goes into the `Allow` header.
    pub fn method_not_allowed(method: &str, allow: &'static str) -> Self {
        Self {
            status: 405,
            message: format!("method {method} is not allowed here: use {allow}"),
            allow: Some(allow),
            challenge: None,
        }
    }

    /// A `401 Unauthorized` with the reason and the `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(message: impl fmt::Display) -> Self {
        Self {
            challenge: Some("Bearer realm=\"golectra\""),
            ..Self::new(401, message)
        }
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        // One line, always: a message must never be able to forge a second line.
        let mut message: String = e
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        message.push('\n');
        let mut reply = Reply::text(e.status, message);
        if let Some(allow) = e.allow {
            reply = reply.with_header("Allow", allow);
        }
        if let Some(challenge) = e.challenge {
            reply = reply.with_header("WWW-Authenticate", challenge);
        }
        reply
    }
}

impl From<golectra_common::metric::InvalidMetric> for ApiError {
    fn from(e: golectra_common::metric::InvalidMetric) -> Self {
        Self::bad_request(e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Overflow { .. } => Self::bad_request(e),
            crate::store::StoreError::Unavailable(_) => Self::new(503, e),
            crate::store::StoreError::KeyReused { .. } => Self::new(422, e),
            // A definite refusal (4xx), not 507: an agent retries a 5xx with the same key for
            // ever, and this write cannot succeed until an operator raises MAX_METRICS.
            crate::store::StoreError::Full { .. } => Self::new(409, e),
        }
    }
}

/// Whether an `Accept-Encoding` value allows gzip (`gzip`, `x-gzip` or `*`, with q > 0).
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let rejected = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !rejected
            && (coding.eq_ignore_ascii_case("gzip")
                || coding.eq_ignore_ascii_case("x-gzip")
                || coding == "*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip(""));
    }

    #[test]
    fn error_bodies_are_one_line() {
        let reply: Reply = ApiError::bad_request("bad\nthing").into();
        assert_eq!(reply.body, b"bad thing\n");
        assert_eq!(reply.content_type, TEXT);
    }
}
