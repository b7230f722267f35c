//! The URL sink: one `POST` of the event's JSON per event to `AUDIT_URL`.
//!
//! `http://` or `https://`. An `https://` receiver is verified against the system trust store,
//! or only against the CAs of `AUDIT_CA_FILE`, and is shown a client certificate when
//! `AUDIT_TLS_CLIENT_CERT_FILE` / `AUDIT_TLS_CLIENT_KEY_FILE` are set — all read once at start
//! ([`ClientTls`]). A TLS failure (the receiver's certificate does not verify, the receiver
//! refuses the client's) fails the event like any other delivery error, with its cause and the
//! setting to look at in the warning. An `http://` receiver is reached without any TLS
//! configuration.
//!
//! Every request has a connect timeout and an overall timeout, so a receiver that never
//! answers holds this sink's thread for at most [`REQUEST_TIMEOUT`] per event. Only a 2xx
//! answer counts as delivered; redirects are not followed and no proxy from the environment is
//! used, so where events go is exactly what the configuration says.

use std::time::Duration;

use golectra_common::tls_client::ClientTls;

use super::{Event, Sink, SinkError};

/// Longest wait for the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest time for one whole request, from resolving the host to reading the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a response body read (and discarded) so the connection can be reused.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// Checks an audit URL: `http[s]://host[:port][/path]`.
pub fn validate_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("expected an http:// or https:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// Whether an audit URL (checked by [`validate_url`]) is `https://`, in any letter case: such a
/// URL must get a [`ClientTls`] (ureq has no roots of its own in this build).
pub fn is_https(url: &str) -> bool {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|uri| uri.scheme_str().map(|s| s.eq_ignore_ascii_case("https")))
        .unwrap_or(false)
}

/// POSTs events to a URL.
pub struct UrlSink {
    url: String,
    agent: ureq::Agent,
    tls: Option<ClientTls>,
}

impl UrlSink {
    /// A sink for `url` (checked by [`validate_url`]) with the default timeouts; `tls` is
    /// `Some` exactly for an `https://` URL.
    pub fn new(url: &str, tls: Option<&ClientTls>) -> Self {
        Self::with_timeouts(url, tls, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// A sink with other timeouts.
    pub fn with_timeouts(
        url: &str,
        tls: Option<&ClientTls>,
        connect: Duration,
        total: Duration,
    ) -> Self {
        let mut config = ureq::Agent::config_builder();
        if let Some(tls) = tls {
            config = config.tls_config(tls.ureq_config());
        }
        let agent = config
            .timeout_connect(Some(connect))
            .timeout_global(Some(total))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("golectra-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            url: url.to_owned(),
            agent,
            tls: tls.cloned(),
        }
    }
}

impl Sink for UrlSink {
    fn name(&self) -> &str {
        "url"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        if self.tls.is_none() && is_https(&self.url) {
            // Only a caller that bypassed the configuration gets here; ureq would panic.
            return Err(SinkError(format!(
                "POST {}: an https:// URL needs a TLS configuration (AUDIT_CA_FILE or the system trust store)",
                self.url
            )));
        }
        let mut response = self
            .agent
            .post(self.url.as_str())
            .header("Content-Type", "application/json")
            .send(event.json())
            .map_err(
                |e| match self.tls.as_ref().and_then(|tls| tls.explain(&e)) {
                    Some(cause) => {
                        SinkError(format!("POST {}: TLS handshake failed: {cause}", self.url))
                    }
                    None => SinkError(format!("POST {}: {e}", self.url)),
                },
            )?;
        let status = response.status();
        let _ = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BODY)
            .read_to_vec();
        if status.is_success() {
            Ok(())
        } else {
            Err(SinkError(format!("POST {}: answered {status}", self.url)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(validate_url("http://127.0.0.1:9000/audit").is_ok());
        assert!(validate_url("http://audit.example.com").is_ok());
        assert!(validate_url("https://audit.example.com/hook").is_ok());
        assert!(validate_url("https://[::1]:8443/hook").is_ok());
        assert!(validate_url("ftp://x").unwrap_err().contains("https://"));
        assert!(validate_url("https://").is_err());
        assert!(validate_url("http://").is_err());
        assert!(validate_url("not a url").is_err());
        assert!(is_https("https://a/b") && is_https("HTTPS://a/b"));
        assert!(!is_https("http://a/b") && !is_https("not a url"));
    }
}
