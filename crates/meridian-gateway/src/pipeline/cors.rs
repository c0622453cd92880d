//! The CORS policy (admission phase): answers preflights itself and adds the CORS response
//! headers to actual requests whose `Origin` is allowed. Every header value is built once per
//! config version.
//!
//! Decisions: a preflight from an allowed origin is answered 204 with the configured methods
//! and headers whatever it asks for (the browser compares; Fetch standard), a preflight from any
//! other origin gets 403 `AccessDenied`. Actual requests are never refused here: a disallowed
//! origin just gets no CORS headers and the browser withholds the response. `Vary: Origin` is
//! added to every response of the route, since the CORS headers depend on `Origin`.

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, request};
use meridian_core::ErrorCode;
use meridian_model::{ConfigError, CorsPolicy};

use super::{Flow, RequestFacts};

const ANY: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

/// A compiled CORS policy.
#[derive(Debug, Clone)]
pub(super) struct Cors {
    /// `allow_origins` contains `*`.
    any_origin: bool,
    /// Allowed origins, compared ASCII case-insensitively.
    origins: Vec<Box<str>>,
    credentials: bool,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

impl Cors {
    /// `path`: where the policy is, e.g. `policies[2].cors`.
    pub(super) fn build(p: &CorsPolicy, path: &str, errs: &mut Vec<ConfigError>) -> Cors {
        let any_origin = p.allow_origins.iter().any(|o| o == "*");
        if any_origin && p.allow_credentials {
            errs.push(ConfigError::new(
                format!("{path}.allow_credentials"),
                "credentials cannot be allowed together with origin \"*\"",
            ));
        }
        if p.allow_origins.is_empty() {
            errs.push(ConfigError::new(
                format!("{path}.allow_origins"),
                "at least one origin (or \"*\") is required",
            ));
        }
        for (k, o) in p.allow_origins.iter().enumerate() {
            if o != "*" && HeaderValue::from_str(o).is_err() {
                errs.push(ConfigError::new(
                    format!("{path}.allow_origins[{k}]"),
                    format!("invalid origin {o:?}"),
                ));
            }
        }
        for (k, m) in p.allow_methods.iter().enumerate() {
            if Method::from_bytes(m.as_bytes()).is_err() {
                errs.push(ConfigError::new(
                    format!("{path}.allow_methods[{k}]"),
                    format!("invalid method {m:?}"),
                ));
            }
        }
        let list = |items: &[String], field: &str, errs: &mut Vec<ConfigError>| -> Option<HeaderValue> {
            if items.is_empty() {
                return None;
            }
            HeaderValue::from_str(&items.join(", "))
                .map_err(|_| errs.push(ConfigError::new(format!("{path}.{field}"), "invalid header list")))
                .ok()
        };
        let allow_methods =
            list(&p.allow_methods, "allow_methods", errs).unwrap_or(HeaderValue::from_static(""));
        Cors {
            any_origin,
            origins: p.allow_origins.iter().filter(|o| *o != "*").map(|o| o.as_str().into()).collect(),
            credentials: p.allow_credentials,
            allow_methods,
            allow_headers: list(&p.allow_headers, "allow_headers", errs),
            expose_headers: list(&p.expose_headers, "expose_headers", errs),
            max_age: HeaderValue::from(p.max_age.get().as_secs()),
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }

    /// The `Access-Control-Allow-Origin` value for an allowed origin.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials { ANY } else { origin.clone() }
    }

    pub(super) fn on_request(
        &self,
        req: &request::Parts,
        facts: &mut RequestFacts,
        request_id: &str,
    ) -> Flow {
        let Some(origin) = req.headers.get(ORIGIN) else { return Flow::Continue };
        let allowed = self.allows(origin);
        let preflight =
            req.method == Method::OPTIONS && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if !preflight {
            if allowed {
                facts.origin = Some(origin.clone());
            }
            return Flow::Continue;
        }
        if !allowed {
            let code = ErrorCode::AccessDenied;
            let mut resp = Response::new(Bytes::from(code.body("CORS origin not allowed", request_id)));
            *resp.status_mut() = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::FORBIDDEN);
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp.headers_mut().insert(VARY, VARY_ORIGIN);
            return Flow::Respond(resp);
        }
        let mut resp = Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        self.common(h, origin);
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        if let Some(v) = &self.allow_headers {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        h.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        Flow::Respond(resp)
    }

    pub(super) fn on_response(&self, facts: &RequestFacts, h: &mut HeaderMap) {
        match &facts.origin {
            Some(origin) => {
                self.common(h, origin);
                if let Some(v) = &self.expose_headers {
                    h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
                }
            }
            None => {
                h.append(VARY, VARY_ORIGIN);
            }
        }
    }

    /// The response fields the actual-response phase sets or removes, whatever an upstream
    /// sent, for a request whose origin it allows (otherwise it only appends `Vary`).
    pub(super) fn replaced(&self) -> impl Iterator<Item = HeaderName> {
        [ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_ALLOW_CREDENTIALS]
            .into_iter()
            .chain(self.expose_headers.is_some().then_some(ACCESS_CONTROL_EXPOSE_HEADERS))
    }

    /// Headers of both preflight and actual responses. They replace any an upstream sent, so the
    /// gateway's policy is the only one a browser sees.
    fn common(&self, h: &mut HeaderMap, origin: &HeaderValue) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(origin));
        if self.credentials {
            h.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        } else {
            h.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
        }
        h.append(VARY, VARY_ORIGIN);
    }
}
