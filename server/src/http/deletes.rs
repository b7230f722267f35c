//! Deletes (docs/http-api.md, "Deletes"): `DELETE /value/{type}/{name}` removes one metric,
//! `DELETE /api/v1/series?match=…` every metric a tag matcher selects (or `?name=` one name of
//! either type); both answer `200` with the number removed, and each is an audit event
//! (`"action":"delete"`).
//!
//! Who may delete: with `ADMIN_TOKEN` set, a request carrying `Authorization: Bearer <token>`
//! (compared in constant time, over digests so the length does not leak either), from
//! anywhere; without it, only a request from a loopback peer that no proxy forwarded (a
//! request with `X-Forwarded-For` or `X-Real-IP` came from elsewhere, whatever its socket
//! peer). A refused delete changes nothing: `401` (token missing or wrong) or `403` (not
//! loopback).

use golectra_common::metric::MetricKind;
use golectra_common::tags::Matcher;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::reply::{ApiError, Reply};
use super::request::Incoming;
use crate::app::App;
use crate::store::{Removed, Selection, Written};

/// Refuses a delete the request is not authorised for.
pub fn authorize(app: &App, req: &Incoming) -> Result<(), ApiError> {
    match &app.admin_token {
        Some(token) => {
            let Some(sent) = req.authorization.as_deref() else {
                return Err(ApiError::unauthorized(
                    "deletes need Authorization: Bearer <ADMIN_TOKEN>",
                ));
            };
            let bearer = sent
                .trim()
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
            match bearer {
                Some(t) if same_token(t, token) => Ok(()),
                Some(_) => Err(ApiError::unauthorized(
                    "the bearer token is not ADMIN_TOKEN",
                )),
                None => Err(ApiError::unauthorized(
                    "the Authorization header is not Bearer <ADMIN_TOKEN>",
                )),
            }
        }
        None => {
            let forwarded = req.x_forwarded_for.is_some() || req.x_real_ip.is_some();
            if req.peer.is_loopback() && !forwarded {
                Ok(())
            } else {
                Err(ApiError::new(
                    403,
                    "deletes are accepted only from loopback peers, not forwarded, unless ADMIN_TOKEN is set",
                ))
            }
        }
    }
}

/// Whether `sent` is `token`, in time independent of where they differ and of their lengths.
fn same_token(sent: &str, token: &str) -> bool {
    let (a, b) = (
        Sha256::digest(sent.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// `DELETE /value/{type}/{name}`: the number removed (`0` or `1`) as text.
pub fn delete_value(
    app: &App,
    req: &Incoming,
    kind: MetricKind,
    name: String,
) -> Result<Written<Reply>, ApiError> {
    authorize(app, req)?;
    let written = app.store.delete(&Selection::One(kind, name))?;
    audit(app, req, &written.value);
    Ok(written.map(|removed| Reply::text(200, removed.len().to_string())))
}

/// `DELETE /api/v1/series?match=…&name=…&type=…`: `{"removed":N}`.
pub fn delete_series(app: &App, req: &Incoming) -> Result<Written<Reply>, ApiError> {
    let selection = series_selection(&req.query)?;
    authorize(app, req)?;
    let written = app.store.delete(&selection)?;
    audit(app, req, &written.value);
    Ok(written
        .map(|removed| Reply::json(format!("{{\"removed\":{}}}", removed.len()).into_bytes())))
}

fn audit(app: &App, req: &Incoming, removed: &Removed) {
    if removed.is_empty() {
        return;
    }
    app.audit.record_delete(|| removed.names(), req.origin());
}

/// Parses the query of `DELETE /api/v1/series`: `match=key=value` terms (ANDed; `__name__=`
/// for a base name), or `name=` one full name; `type=gauge|counter` narrows either. It never
/// selects everything: one of `match` or `name` is required.
pub fn series_selection(query: &str) -> Result<Selection, ApiError> {
    let mut matcher = Matcher::default();
    let mut name: Option<String> = None;
    let mut kind: Option<MetricKind> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = super::selection::decoded_value(key, value)?;
        match key {
            "match" => matcher.add(&value).map_err(ApiError::bad_request)?,
            "name" if name.is_none() => {
                name = Some(golectra_common::metric::validate_name(&value)?.into_owned());
            }
            "type" if kind.is_none() => kind = Some(MetricKind::parse(&value)?),
            "name" | "type" => {
                return Err(ApiError::bad_request(format!(
                    "{key} is given more than once"
                )));
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {key:?}: use match=key=value, name=… and type=gauge|counter"
                )));
            }
        }
    }
    match (name, matcher.is_empty()) {
        (Some(_), false) => Err(ApiError::bad_request("give match=… or name=…, not both")),
        (Some(name), true) => Ok(match kind {
            Some(kind) => Selection::One(kind, name),
            None => Selection::Name(name),
        }),
        (None, false) => Ok(Selection::Matching { matcher, kind }),
        (None, true) => Err(ApiError::bad_request(
            "DELETE /api/v1/series needs match=key=value or name=…: it never deletes everything",
        )),
    }
}
