//! The URL sink: one `POST` of the event's JSON per event to `AUDIT_URL`.
//!
//! Plain `http://` only: the build carries no TLS stack (it would roughly double the
//! dependency tree for one optional sink), so an `https://` URL is refused when the
//! configuration is read rather than failing on every event. An audit collector reachable only
//! over TLS can be fed through a local forwarding proxy.
//!
//! Every request has a connect timeout and an overall timeout, so a receiver that never
//! answers holds this sink's thread for at most [`REQUEST_TIMEOUT`] per event. Only a 2xx
//! answer counts as delivered; redirects are not followed and no proxy from the environment is
//! used, so where events go is exactly what the configuration says.

use std::time::Duration;

use super::{Event, Sink, SinkError};

/// Longest wait for the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest time for one whole request, from resolving the host to reading the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a response body read (and discarded) so the connection can be reused.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// Checks an audit URL: `http://host[:port][/path]`.
pub fn validate_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https is not supported (this build has no TLS): use an http:// URL, e.g. a local forwarding proxy"
                    .into(),
            );
        }
        _ => return Err("expected an http:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// POSTs events to a URL.
pub struct UrlSink {
    url: String,
    agent: ureq::Agent,
}

impl UrlSink {
    /// A sink for `url` (checked by [`validate_url`]) with the default timeouts.
    pub fn new(url: &str) -> Self {
        Self::with_timeouts(url, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// A sink with other timeouts.
    pub fn with_timeouts(url: &str, connect: Duration, total: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
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
        }
    }
}

impl Sink for UrlSink {
    fn name(&self) -> &str {
        "url"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut response = self
            .agent
            .post(self.url.as_str())
            .header("Content-Type", "application/json")
            .send(event.json())
            .map_err(|e| SinkError(format!("POST {}: {e}", self.url)))?;
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
        assert!(
            validate_url("https://audit.example.com/hook")
                .unwrap_err()
                .contains("https")
        );
        assert!(validate_url("ftp://x").is_err());
        assert!(validate_url("http://").is_err());
        assert!(validate_url("not a url").is_err());
    }
}
