//! golectra: message framing (RFC 9112 §6): how a request's body is delimited — by
//! `Content-Length`, by `Transfer-Encoding: chunked` or not at all — with a refusal for every
//! ambiguous or unsupported combination, so that no request's bytes can be read as two
//! (request smuggling); and the `Connection: close` that a response carries when the connection
//! ends after it (RFC 9112 §9.6).

use crate::common::{HTTPVersion, Header};

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body: neither framing header, or `Content-Length: 0`.
    Empty,
    Length(usize),
    Chunked,
}

/// A refusal of a request's framing: the status and its one-line reason. The connection closes
/// after it, since where the body ends is not known.
pub(crate) type Refusal = (u16, &'static str);

/// The framing of a request with these headers, or why it is refused:
///
/// - `Transfer-Encoding` in an HTTP/1.0 request → `400` (RFC 9112 §6.1: its framing is faulty);
/// - `Transfer-Encoding` and `Content-Length` together → `400` (§6.3 lets a server read such a
///   request as chunked; this server refuses it, since an intermediary may have used the length);
/// - `Transfer-Encoding` other than exactly one `chunked` → `501`. Several fields are combined
///   into one list in order, as RFC 9110 §5.3 defines; empty list elements are ignored, so
///   `chunked,` is `chunked`, while `gzip, chunked`, `chunked, chunked`, `identity` or an empty
///   value are refused;
/// - a `Content-Length` element that is not a decimal number (`+5`, `-1`, `0x10`, `5 5`, empty,
///   more than `usize`), or elements with different values → `400`. Repeated elements of the
///   same value (`5, 5`, or two fields `5`) are one length (RFC 9110 §8.6), leading zeros
///   included.
pub(crate) fn body_framing(
    headers: &[Header],
    version: &HTTPVersion,
) -> Result<BodyFraming, Refusal> {
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    };
    let mut codings = values("Transfer-Encoding").peekable();
    let mut lengths = values("Content-Length").peekable();
    if codings.peek().is_some() {
        if *version == HTTPVersion(1, 0) {
            return Err((
                400,
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            ));
        }
        if lengths.peek().is_some() {
            return Err((
                400,
                "Content-Length and Transfer-Encoding together are ambiguous framing",
            ));
        }
        let mut list = codings.flat_map(list_elements).filter(|c| !c.is_empty());
        return match (list.next(), list.next()) {
            (Some(coding), None) if coding.eq_ignore_ascii_case("chunked") => {
                Ok(BodyFraming::Chunked)
            }
            _ => Err((
                501,
                "unsupported Transfer-Encoding: only a single chunked coding is implemented",
            )),
        };
    }
    let mut length = None;
    for element in lengths.flat_map(list_elements) {
        let n = decimal(element).ok_or((400, "invalid Content-Length: not a decimal number"))?;
        if length.is_some_and(|l| l != n) {
            return Err((400, "conflicting Content-Length values"));
        }
        length = Some(n);
    }
    Ok(match length {
        None | Some(0) => BodyFraming::Empty,
        Some(n) => BodyFraming::Length(n),
    })
}

/// The elements of a comma-separated field value, without the optional whitespace around them.
fn list_elements(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(|e| e.trim_matches([' ', '\t']))
}

/// `1*DIGIT` as a `usize` (`str::parse` alone would also take a leading `+`).
fn decimal(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The encoded `response` with `Connection: close` in its head, any other `Connection` field
/// taken out: sent when the connection closes after this response. Bytes without a complete
/// head (a handler that wrote something else) are left as they are.
pub(crate) fn with_connection_close(response: Vec<u8>) -> Vec<u8> {
    let find = |bytes: &[u8], what: &[u8]| bytes.windows(what.len()).position(|w| w == what);
    let Some(head_end) = find(&response, b"\r\n\r\n") else {
        return response;
    };
    // Header lines, each with its CRLF, between the status line and the empty line.
    let Some(status_end) = find(&response[..head_end + 2], b"\r\n").map(|i| i + 2) else {
        return response;
    };
    let mut out = Vec::with_capacity(response.len() + 19);
    out.extend_from_slice(&response[..status_end]);
    out.extend_from_slice(b"Connection: close\r\n");
    for line in response[status_end..head_end + 2].split_inclusive(|&b| b == b'\n') {
        let connection = line.len() >= 11 && line[..11].eq_ignore_ascii_case(b"connection:");
        if !connection {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&response[head_end + 2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(version: HTTPVersion, fields: &[(&str, &str)]) -> Result<BodyFraming, Refusal> {
        let headers: Vec<Header> = fields
            .iter()
            .map(|(k, v)| Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap())
            .collect();
        body_framing(&headers, &version)
    }

    fn http11(fields: &[(&str, &str)]) -> Result<BodyFraming, Refusal> {
        framing(HTTPVersion(1, 1), fields)
    }

    #[test]
    fn one_length_or_one_chunked_coding_frames_a_body() {
        assert_eq!(http11(&[]), Ok(BodyFraming::Empty));
        assert_eq!(http11(&[("Content-Length", "0")]), Ok(BodyFraming::Empty));
        assert_eq!(
            http11(&[("content-length", "12")]),
            Ok(BodyFraming::Length(12))
        );
        assert_eq!(
            http11(&[("Content-Length", "007")]),
            Ok(BodyFraming::Length(7))
        );
        for te in ["chunked", "Chunked", "CHUNKED", "chunked,", " , chunked"] {
            assert_eq!(
                http11(&[("Transfer-Encoding", te)]),
                Ok(BodyFraming::Chunked),
                "{te}"
            );
        }
        let one_zero = framing(HTTPVersion(1, 0), &[("Content-Length", "3")]);
        assert_eq!(one_zero, Ok(BodyFraming::Length(3)));
    }

    #[test]
    fn repeated_lengths_of_one_value_are_one_length_and_different_ones_are_refused() {
        let same = [("Content-Length", "5"), ("Content-Length", "5")];
        assert_eq!(http11(&same), Ok(BodyFraming::Length(5)));
        assert_eq!(
            http11(&[("Content-Length", "5, 05")]),
            Ok(BodyFraming::Length(5))
        );
        for fields in [
            &[("Content-Length", "0"), ("Content-Length", "76")][..],
            &[("Content-Length", "5, 6")],
            &[("Content-Length", "5"), ("Content-Length", "5, 4")],
        ] {
            assert_eq!(
                http11(fields),
                Err((400, "conflicting Content-Length values")),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn a_length_that_is_not_a_decimal_number_is_refused() {
        for bad in [
            "+5",
            "-1",
            "0x10",
            "5 5",
            "",
            "5,",
            ",5",
            "1e1",
            "five",
            "18446744073709551616",
        ] {
            assert_eq!(
                http11(&[("Content-Length", bad)]),
                Err((400, "invalid Content-Length: not a decimal number")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn codings_other_than_one_chunked_get_501() {
        for te in [
            "gzip",
            "gzip, chunked",
            "chunked, gzip",
            "identity",
            "chunked, chunked",
            "chunked;q=1",
            "x-unknown",
            "",
            ",",
        ] {
            assert_eq!(
                http11(&[("Transfer-Encoding", te)]).map_err(|r| r.0),
                Err(501),
                "{te:?}"
            );
        }
        // Several fields are one list.
        let two = [
            ("Transfer-Encoding", "gzip"),
            ("Transfer-Encoding", "chunked"),
        ];
        assert_eq!(http11(&two).map_err(|r| r.0), Err(501));
        let twice = [
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "chunked"),
        ];
        assert_eq!(http11(&twice).map_err(|r| r.0), Err(501));
    }

    #[test]
    fn a_length_with_a_coding_or_a_coding_in_http_1_0_gets_400() {
        for fields in [
            &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")][..],
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
            &[("Transfer-Encoding", "gzip"), ("Content-Length", "0")],
        ] {
            assert_eq!(
                http11(fields),
                Err((
                    400,
                    "Content-Length and Transfer-Encoding together are ambiguous framing"
                ))
            );
        }
        assert_eq!(
            framing(HTTPVersion(1, 0), &[("Transfer-Encoding", "chunked")]),
            Err((
                400,
                "Transfer-Encoding is not allowed in an HTTP/1.0 request"
            ))
        );
    }

    #[test]
    fn a_closing_response_says_connection_close_once() {
        let plain = b"HTTP/1.1 413 Payload Too Large\r\nServer: x\r\nContent-Length: 2\r\n\r\nno";
        assert_eq!(
            with_connection_close(plain.to_vec()),
            b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nServer: x\r\nContent-Length: 2\r\n\r\nno"
        );
        let keep = b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nConnection: close\r\n\r\n";
        assert_eq!(
            with_connection_close(keep.to_vec()),
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        );
        let bare = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            with_connection_close(bare.to_vec()),
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        );
        // Not a response head: unchanged.
        assert_eq!(with_connection_close(b"raw bytes".to_vec()), b"raw bytes");
    }
}
