//! Turning a raw tiny_http request into an [`Incoming`] that handlers can trust: the body is
//! read completely within the wire-size limit, inflated within the inflated-size limit when it
//! is gzip, and its `HashSHA256` checked — all before any handler sees it, so a rejected
//! request has no effect. The strict-mode `Golectra-Signature` is only collected here: whether a
//! request needs it depends on its endpoint, so the router checks it (docs/signing.md).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};

use golectra_common::{gzip, signature, signed_request};

use super::reply::{ApiError, accepts_gzip};
use crate::config::Limits;
use crate::store::idempotency;

/// The HTTP methods the API distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`, accepted wherever `GET` is.
    Head,
    /// `POST`.
    Post,
    /// `DELETE` (deletes of metrics).
    Delete,
    /// Any other method; every endpoint answers it with 405.
    Other,
}

/// A request whose body is complete, inflated and verified.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The method, as far as the API distinguishes it.
    pub method: Method,
    /// The method as sent, for messages.
    pub method_name: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    /// The query string without its `?`, still percent-encoded (the dashboard's filter and
    /// page); empty without one.
    pub query: String,
    /// Uncompressed body.
    pub body: Vec<u8>,
    /// Body bytes as received on the wire (before inflation).
    pub wire_bytes: usize,
    /// The `Golectra-Signature` header, if sent (checked by the router in strict mode); an
    /// empty string when it was sent more than once, which never verifies.
    pub request_signature: Option<String>,
    /// The socket peer.
    pub peer: IpAddr,
    /// `X-Real-IP`, if sent (trusted only from configured proxies).
    pub x_real_ip: Option<String>,
    /// `X-Forwarded-For`, if sent (trusted only from configured proxies).
    pub x_forwarded_for: Option<String>,
    /// The client accepts gzip responses.
    pub accept_gzip: bool,
    /// The `Idempotency-Key` header, checked (1–255 bytes, trimmed).
    pub idempotency_key: Option<String>,
    /// The `Authorization` header, if sent once (deletes check it against `ADMIN_TOKEN`); an
    /// empty string when it was sent more than once, which never matches.
    pub authorization: Option<String>,
}

impl Incoming {
    /// Where the request comes from, for the audit trail.
    pub fn origin(&self) -> crate::client_addr::Origin<'_> {
        crate::client_addr::Origin {
            peer: self.peer,
            x_real_ip: self.x_real_ip.as_deref(),
            x_forwarded_for: self.x_forwarded_for.as_deref(),
        }
    }
}

/// Reads and checks a request. Errors are answered as they are and nothing else happens.
pub fn intake(
    request: &mut tiny_http::Request,
    limits: &Limits,
    key: Option<&[u8]>,
) -> Result<Incoming, ApiError> {
    let method_name = request.method().as_str().to_owned();
    let method = match request.method() {
        tiny_http::Method::Get => Method::Get,
        tiny_http::Method::Head => Method::Head,
        tiny_http::Method::Post => Method::Post,
        tiny_http::Method::Delete => Method::Delete,
        _ => Method::Other,
    };
    let mut content_encoding = None;
    let mut x_real_ip = None;
    let mut x_forwarded_for = None;
    let mut signature = None;
    let mut request_signature: Option<String> = None;
    let mut accept_gzip = false;
    let mut idempotency_key: Option<Result<String, String>> = None;
    let mut authorization: Option<String> = None;
    for h in request.headers() {
        let field = &h.field;
        if field.equiv("Content-Encoding") {
            content_encoding = Some(h.value.as_str().trim().to_ascii_lowercase());
        } else if field.equiv("Accept-Encoding") {
            accept_gzip |= accepts_gzip(h.value.as_str());
        } else if field.equiv(signature::HEADER) {
            signature = Some(h.value.as_str().to_owned());
        } else if field.equiv(signed_request::HEADER) {
            request_signature = Some(match request_signature {
                None => h.value.as_str().to_owned(),
                Some(_) => String::new(),
            });
        } else if field.equiv("Authorization") {
            authorization = Some(match authorization {
                None => h.value.as_str().to_owned(),
                Some(_) => String::new(),
            });
        } else if field.equiv("X-Real-IP") {
            x_real_ip = Some(h.value.as_str().to_owned());
        } else if field.equiv("X-Forwarded-For") {
            x_forwarded_for = Some(h.value.as_str().to_owned());
        } else if field.equiv(idempotency::HEADER) {
            idempotency_key = Some(match idempotency_key {
                None => idempotency::check(h.value.as_str()).map(str::to_owned),
                Some(_) => Err(format!(
                    "more than one {} header: send one key per request",
                    idempotency::HEADER
                )),
            });
        }
    }
    let (path, query) = request.url().split_once('?').unwrap_or((request.url(), ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let peer = request
        .remote_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());

    let wire = read_limited(request, limits.max_body)?;
    let wire_bytes = wire.len();
    let body = match content_encoding.as_deref() {
        None | Some("") | Some("identity") => wire,
        Some("gzip") | Some("x-gzip") => {
            gzip::inflate(&wire, limits.max_inflated).map_err(|e| match e {
                gzip::InflateError::Corrupt(_) => ApiError::bad_request(e),
                gzip::InflateError::TooLarge { .. } => ApiError::too_large(e),
            })?
        }
        Some(other) => {
            return Err(ApiError::new(
                415,
                format!("unsupported Content-Encoding {other:?}: send gzip or nothing"),
            ));
        }
    };
    // Checked once the body is read, so that the connection stays usable.
    let idempotency_key = idempotency_key.transpose().map_err(ApiError::bad_request)?;
    if let (Some(key), Some(sig)) = (key, signature.as_deref())
        && !body.is_empty()
        && !signature::verify(&body, key, sig)
    {
        return Err(ApiError::bad_request(
            "HashSHA256 does not match the body and the server's key",
        ));
    }
    Ok(Incoming {
        method,
        method_name,
        path,
        query,
        body,
        wire_bytes,
        request_signature,
        peer,
        x_real_ip,
        x_forwarded_for,
        accept_gzip,
        idempotency_key,
        authorization,
    })
}

/// Reads the whole body, refusing more than `max` bytes on the wire.
fn read_limited(request: &mut tiny_http::Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let too_large =
        || ApiError::too_large(format!("request body exceeds the limit of {max} bytes"));
    let declared = request.body_length();
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    request
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    if body.len() > max {
        return Err(too_large());
    }
    Ok(body)
}
