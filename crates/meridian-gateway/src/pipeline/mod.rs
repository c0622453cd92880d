//! The policy pipeline: a route's policies compiled once per config version, run in fixed phases.
//!
//! A route lists policies by name; where each one runs is decided by its kind (its [`Phase`]),
//! never by the order of the list or by a number. Within one phase, policies run in the order
//! the route lists them. [`Chain::on_request`] and [`Chain::on_response`] are the only place the
//! order is written down.
//!
//! The request id needed by error bodies is passed to [`Chain::on_request`] as `&str` rather than
//! stored in [`RequestFacts`], so that facts stay `Default` and allocation-free.

mod cors;
mod headers;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, request};
use meridian_model::{ConfigError, Policy, Route};

use cors::Cors;
use headers::Headers;

/// The fixed phases, in order. Policies never carry numeric priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Cheap decisions made before anything else, e.g. answering CORS preflights.
    Admission,
    /// Who is calling (API keys, JWT).
    Authn,
    /// Whether the caller may do this.
    Authz,
    RateLimit,
    Cache,
    /// Changes to the request and response (headers policy).
    Transform,
}

/// What a request-phase hook decides.
#[derive(Debug)]
pub enum Flow {
    /// Go on to the next phase, then to the upstream.
    Continue,
    /// Answer with this response without proxying.
    Respond(Response<Bytes>),
}

/// Per-request facts the phases share: typed fields, cheap to create (`Default`, no allocation).
#[derive(Debug, Default, Clone)]
pub struct RequestFacts {
    /// The request's `Origin` when a CORS policy of the route allows it; the response then
    /// carries the CORS headers.
    pub origin: Option<HeaderValue>,
}

/// A route's compiled chain, built once per config version.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// Admission phase: at most one CORS policy per route.
    cors: Option<Cors>,
    /// Transform phase, in the route's order.
    headers: Vec<Headers>,
    /// A response phase reads the endpoint's fields (a rename), or adds to one of the gateway's
    /// own: they go into the `HeaderMap`.
    response_reads: bool,
    /// The endpoint's fields that the response phases replace or remove (dropped when the
    /// fields pass through as they came): for requests CORS lets through, and for the others.
    replaced_with_origin: Vec<HeaderName>,
    replaced: Vec<HeaderName>,
}

/// The phase a policy runs in, by its kind.
fn phase_of(p: &Policy) -> Option<Phase> {
    match (&p.cors, &p.headers) {
        (Some(_), None) => Some(Phase::Admission),
        (None, Some(_)) => Some(Phase::Transform),
        _ => None,
    }
}

impl Chain {
    /// Compiles the policies a route lists. Errors name `routes[i].policies[j]` for references
    /// and `policies[k].…` for the content of a policy.
    pub fn build(route_index: usize, route: &Route, policies: &[Policy]) -> Result<Chain, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let mut chain = Chain::default();
        for (j, name) in route.policies.iter().enumerate() {
            let at = || format!("routes[{route_index}].policies[{j}]");
            if route.policies[..j].contains(name) {
                errs.push(ConfigError::new(at(), format!("policy {name:?} is listed twice")));
                continue;
            }
            let Some((k, p)) = policies.iter().enumerate().find(|(_, p)| p.name == *name) else {
                errs.push(ConfigError::new(at(), format!("unknown policy {name:?}")));
                continue;
            };
            match (phase_of(p), &p.cors, &p.headers) {
                (Some(Phase::Admission), Some(c), _) => {
                    if chain.cors.is_some() {
                        errs.push(ConfigError::new(at(), "a route can have only one cors policy"));
                    }
                    chain.cors = Some(Cors::build(c, &format!("policies[{k}].cors"), &mut errs));
                }
                (Some(Phase::Transform), _, Some(h)) => {
                    chain.headers.push(Headers::build(h, &format!("policies[{k}].headers"), &mut errs));
                }
                _ => errs.push(ConfigError::new(
                    format!("policies[{k}]"),
                    "a policy sets exactly one kind (headers or cors)",
                )),
            }
        }
        for h in &chain.headers {
            match h.response.replaced() {
                Some(names) => chain.replaced.extend(names.cloned()),
                None => chain.response_reads = true,
            }
            // A value added to one of the gateway's own fields comes after the gateway's (or,
            // for the request id, is replaced by it): that order is the map's.
            if h.response.added().any(|n| crate::raw_head::OWN_NAMES.contains(n)) {
                chain.response_reads = true;
            }
        }
        chain.replaced_with_origin = chain.replaced.clone();
        if let Some(cors) = &chain.cors {
            chain.replaced_with_origin.extend(cors.replaced());
        }
        if errs.is_empty() { Ok(chain) } else { Err(errs) }
    }

    /// No policy does anything for this route.
    pub fn is_empty(&self) -> bool {
        self.cors.is_none() && self.headers.iter().all(|h| h.request.is_empty() && h.response.is_empty())
    }

    /// Request phases in order; `Respond` answers without proxying (e.g. a CORS preflight).
    /// `request_id` goes into the body of gateway-made error responses.
    pub fn on_request(&self, req: &mut request::Parts, facts: &mut RequestFacts, request_id: &str) -> Flow {
        // The order, and why:
        // 1. Admission (CORS) first: browsers send preflights without credentials, so they must be
        //    answered before authentication would refuse them, and nothing should spend work on them.
        // 2. Authn → Authz → RateLimit → Cache: no policy kinds yet; they slot in here, in this
        //    order (identity before permission; limits keyed by identity; the cache serves only
        //    permitted, counted requests).
        // 3. Transform last, so every earlier phase sees the request as the client sent it.
        if let Some(cors) = &self.cors
            && let Flow::Respond(r) = cors.on_request(req, facts, request_id)
        {
            return Flow::Respond(r);
        }
        for h in &self.headers {
            h.request.apply(&mut req.headers);
        }
        Flow::Continue
    }

    /// Whether the endpoint's response fields may pass through as they came (`raw_head`), and
    /// which of them to drop then: those the response phases replace or remove for this
    /// request. `None` when a phase reads them.
    pub fn pass_through(&self, facts: &RequestFacts) -> Option<&[HeaderName]> {
        let replaced = if facts.origin.is_some() { &self.replaced_with_origin } else { &self.replaced };
        (!self.response_reads).then_some(replaced.as_slice())
    }

    /// Response phases, the request order reversed (an onion): the headers policy's response
    /// changes first, then CORS, so the CORS headers a browser sees are always the policy's.
    pub fn on_response(&self, facts: &RequestFacts, resp: &mut HeaderMap) {
        for h in self.headers.iter().rev() {
            h.response.apply(resp);
        }
        if let Some(cors) = &self.cors {
            cors.on_response(facts, resp);
        }
    }
}
