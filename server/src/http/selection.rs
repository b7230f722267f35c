//! Selecting metrics by tag in the read APIs (docs/http-api.md, "Selecting by tag"): the
//! `match` query parameter, and the history of a selection.
//!
//! A query string is read as a form is (`application/x-www-form-urlencoded`, as the dashboard
//! and Prometheus' own API read theirs): pairs split at `&`, name from value at the first `=`,
//! `+` is a space and percent-escapes are decoded. So `match=host=web1` and
//! `match=host%3Dweb1` are the same term; each `match` adds a term, and every term must hold.
//! Other parameters are ignored, as every endpoint of this server ignores what it does not
//! read; a `match` that is not a valid term is a `400` that names it.

use std::borrow::Cow;

use golectra_common::metric::MetricKind;
use golectra_common::tags::{Matcher, TaggedName};
use percent_encoding::percent_decode_str;

use super::reply::{ApiError, Reply};
use crate::app::App;
use crate::store::Value;

/// The query parameter that carries one term.
pub const PARAM: &str = "match";

/// The matcher of a raw query string (still percent-encoded): `None` without a `match`
/// parameter, else all its terms. A term the [`Matcher`] rejects, or one that is not UTF-8
/// after decoding, is a client error with a one-line reason.
pub fn matcher(query: &str) -> Result<Option<Matcher>, ApiError> {
    let mut matcher: Option<Matcher> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(name).as_deref() != Some(PARAM) {
            continue;
        }
        let term = decoded_value(PARAM, value)?;
        matcher
            .get_or_insert_with(Matcher::default)
            .add(&term)
            .map_err(ApiError::bad_request)?;
    }
    Ok(matcher)
}

/// The value of query parameter `name`, form-decoded; a client error when it is not UTF-8.
pub(super) fn decoded_value<'a>(name: &str, value: &'a str) -> Result<Cow<'a, str>, ApiError> {
    decode(value).ok_or_else(|| {
        ApiError::bad_request(format!(
            "query parameter {name:?} is not valid UTF-8 after percent-decoding"
        ))
    })
}

/// A form-encoded query component, decoded; `None` when it is not UTF-8.
fn decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains(['+', '%']) {
        return Some(Cow::Borrowed(text));
    }
    let spaced = text.replace('+', " ");
    let decoded = percent_decode_str(&spaced).decode_utf8().ok()?;
    Some(Cow::Owned(decoded.into_owned()))
}

/// `GET /api/v1/history/{type}/{base}?match=…`: the history of every stored metric of `kind`
/// whose base name is `base` and that `matcher` selects, by name; none selected is an empty
/// list. `base` is a name as the path gave it (validated); a tagged one is a client error.
pub fn history(
    app: &App,
    kind: MetricKind,
    base: &str,
    matcher: &Matcher,
) -> Result<Reply, ApiError> {
    if TaggedName::parse(base).is_some() {
        return Err(ApiError::bad_request(format!(
            "with {PARAM}, the path names a base name without tags, not {base:?}: put its tags in {PARAM} terms"
        )));
    }
    let selected = |name: &str| {
        TaggedName::parse(name).map_or(name, |t| t.base) == base && matcher.matches(name)
    };
    let snap = app.store.read_all()?;
    let current: Vec<(&str, Value)> = match kind {
        MetricKind::Gauge => snap
            .gauges
            .iter()
            .filter(|(name, ..)| selected(name))
            .map(|(name, value, _)| (name.as_str(), Value::Gauge(*value)))
            .collect(),
        MetricKind::Counter => snap
            .counters
            .iter()
            .filter(|(name, ..)| selected(name))
            .map(|(name, value, _)| (name.as_str(), Value::Counter(*value)))
            .collect(),
    };
    #[derive(serde::Serialize)]
    struct Series<'a> {
        id: &'a str,
        value: Value,
        changed_at_ms: Option<i64>,
        points: Vec<(i64, Value)>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        base: &'a str,
        interval_seconds: f64,
        capacity: usize,
        series: Vec<Series<'a>>,
    }
    let series = current
        .into_iter()
        .map(|(id, value)| {
            let (points, changed_at_ms) = app.history.series(kind, id).unwrap_or_default();
            Series {
                id,
                value,
                changed_at_ms,
                points,
            }
        })
        .collect();
    let options = app.history.options();
    let body = Body {
        kind: kind.as_str(),
        base,
        interval_seconds: options.interval.as_secs_f64(),
        capacity: options.points,
        series,
    };
    Ok(Reply::json(
        serde_json::to_vec(&body).expect("numbers and strings always serialize"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(query: &str) -> Option<String> {
        matcher(query).unwrap().map(|m| m.to_string())
    }

    #[test]
    fn match_terms_raw_or_encoded_and_anded() {
        assert_eq!(terms(""), None);
        assert_eq!(terms("q=x&page=2"), None, "other parameters are ignored");
        assert_eq!(terms("match=host=web1").as_deref(), Some("host=web1"));
        assert_eq!(terms("match=host%3Dweb1").as_deref(), Some("host=web1"));
        assert_eq!(terms("m%61tch=host%3dweb1").as_deref(), Some("host=web1"));
        assert_eq!(
            terms("match=host=web1&x=1&match=__name__%3DAlloc").as_deref(),
            Some("host=web1&__name__=Alloc")
        );
        // A value may hold '=' and, encoded, '&'; '+' is a space.
        assert_eq!(terms("match=q=a=b%26c").as_deref(), Some("q=a=b&c"));
        assert_eq!(terms("match=dc=eu+west").as_deref(), Some("dc=eu west"));
        assert_eq!(terms("match=v=1%2B2").as_deref(), Some("v=1+2"));
    }

    #[test]
    fn a_bad_term_is_400_with_the_matchers_reason() {
        for (query, message) in [
            (
                "match=host",
                r#"match term "host" is not key=value (e.g. match=host=web1)"#,
            ),
            (
                "match",
                r#"match term "" is not key=value (e.g. match=host=web1)"#,
            ),
            (
                "match=host=web1&match=ho-st=a",
                r#"match key "ho-st" must be a tag key ([A-Za-z_][A-Za-z0-9_]*) or __name__"#,
            ),
            ("match=host=", r#"match term "host=" has an empty value"#),
            (
                "match=host=%FF",
                r#"query parameter "match" is not valid UTF-8 after percent-decoding"#,
            ),
        ] {
            let e = matcher(query).unwrap_err();
            assert_eq!((e.status, e.message.as_str()), (400, message), "{query}");
        }
    }
}
