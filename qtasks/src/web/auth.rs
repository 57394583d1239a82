//! Who may do what: the token, read-only mode and cross-site refusal, as
//! one middleware in front of every route but the login page and assets.
//! (Form posts also check their CSRF field, in their handlers.)

use super::{Shared, pages};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The cookie the login page sets: the token, hex-encoded.
pub(super) const COOKIE: &str = "qtasks_dashboard";

pub(super) async fn guard(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    if let Some(token) = &state.options.token
        && !authorized(request.headers(), token)
    {
        return if api {
            let mut response = super::api::error(StatusCode::UNAUTHORIZED, "missing or wrong token").into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"qtasks\""));
            response
        } else {
            pages::login(&state, StatusCode::UNAUTHORIZED, None)
        };
    }
    if request.method() == Method::POST {
        if state.options.read_only {
            return refused(api, "the dashboard is read-only: actions are switched off");
        }
        if cross_site(request.headers()) {
            return refused(api, "refused: the request comes from another site");
        }
        // What a cross-site form cannot send: a JSON body.
        if api && !is_json(request.headers()) {
            return super::api::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "API actions take `Content-Type: application/json`",
            )
            .into_response();
        }
    }
    next.run(request).await
}

fn refused(api: bool, message: &str) -> Response {
    if api {
        super::api::error(StatusCode::FORBIDDEN, message).into_response()
    } else {
        pages::message(StatusCode::FORBIDDEN, "Refused", message)
    }
}

/// Whether the request carries the token: bearer, basic auth's password,
/// or the login cookie.
pub(super) fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let token = token.as_bytes();
    for value in headers.get_all(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else { continue };
        let value = value.trim();
        if let Some(bearer) = strip_scheme(value, "bearer")
            && eq(bearer.trim().as_bytes(), token)
        {
            return true;
        }
        if let Some(basic) = strip_scheme(value, "basic")
            && let Some(decoded) = base64_decode(basic.trim())
            && let Some(colon) = decoded.iter().position(|b| *b == b':')
            && eq(&decoded[colon + 1..], token)
        {
            return true;
        }
    }
    cookie(headers).is_some_and(|c| eq(&c, token))
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (head, rest) = value.split_once(' ')?;
    head.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// The token in the login cookie, if any.
fn cookie(headers: &HeaderMap) -> Option<Vec<u8>> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == COOKIE
            {
                return hex_decode(value);
            }
        }
    }
    None
}

/// The `Set-Cookie` value of the login cookie for `token`.
pub(super) fn login_cookie(token: &str, base: &str) -> String {
    let hex: String = token.bytes().map(|b| format!("{b:02x}")).collect();
    let path = if base.is_empty() { "/" } else { base };
    format!("{COOKIE}={hex}; Path={path}; HttpOnly; SameSite=Strict")
}

/// Whether a browser says the request comes from another site: an
/// `Origin` whose host is not the `Host`, or `Sec-Fetch-Site: cross-site`.
fn cross_site(headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    if origin == "null" {
        return true;
    }
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    !origin_host.eq_ignore_ascii_case(host)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Compares in time independent of where the inputs differ.
pub(super) fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Standard base64 (padding optional); `None` on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_decoded() {
        assert_eq!(base64_decode("dXNlcjpzM2NyZXQ=").unwrap(), b"user:s3cret");
        assert!(base64_decode("not base64!").is_none());
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpzM2NyZXQ="));
        assert!(authorized(&headers, "s3cret"));
        assert!(!authorized(&headers, "other"));
    }

    #[test]
    fn the_login_cookie_carries_the_token() {
        let set = login_cookie("tök", "");
        let value = set.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("a=b; {value}")).unwrap());
        assert!(authorized(&headers, "tök"));
        assert!(!authorized(&headers, "tok"));
    }

    #[test]
    fn other_origins_are_cross_site() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(cross_site(&headers));
    }
}
