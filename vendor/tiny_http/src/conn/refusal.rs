//! golectra: the bytes of a refusal the engine writes itself, before any handler saw the
//! request: one line of text, `Connection: close`, and — when the policy has a
//! [`RefusalSigner`] — its header over the body, so a server that signs its responses signs
//! these too.

use crate::common::StatusCode;
use crate::policy::RefusalSigner;

/// A refusal with `status` and the one-line `message`, extra headers (`Retry-After`, say) and
/// the signer's header.
pub(crate) fn refusal(
    status: u16,
    message: &str,
    extra: &[(&str, &str)],
    signer: Option<&RefusalSigner>,
) -> Vec<u8> {
    let body = format!("{message}\n");
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        status,
        StatusCode(status).default_reason_phrase(),
        body.len(),
    );
    if let Some(signer) = signer {
        let value = (signer.sign)(body.as_bytes());
        head.push_str(&format!("{}: {}\r\n", signer.name, value));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head.push_str(&body);
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_one_line_with_connection_close() {
        let bytes = refusal(408, "too slow", &[], None);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo slow\n"
        );
    }

    #[test]
    fn a_signer_signs_the_body_and_extra_headers_follow() {
        let signer = RefusalSigner::new("X-Sig", |body: &[u8]| format!("len{}", body.len()));
        let bytes = refusal(503, "busy", &[("Retry-After", "1")], Some(&signer));
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nX-Sig: len5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n"
        );
    }
}
