//! Tokens: bearer tokens are looked up by their SHA-256, so the store never holds a plaintext
//! and the comparison is of hashes (a timing difference reveals nothing about the token).
//! The admin middleware also writes the audit log for every write (non-GET) it lets through or
//! refuses.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::store::{AuditEntry, Role, TokenKind, TokenRecord};

/// Who made an admin request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {role:?} role; token {:?} has {:?}",
                self.name, self.role
            )))
        }
    }
}

/// What a write acted on, put in the response by handlers for the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub target: Option<String>,
    pub version: Option<u64>,
}

/// Lowercase hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A new random token (shown once; only its hash is stored).
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("mrd_{}", hex::encode(b))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}

/// Resolves the bearer token to its stored record.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<TokenRecord, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    state.store().token(token_hash(token)).await?.ok_or_else(|| ApiError::unauthorized("unknown token"))
}

/// Admin API middleware: authenticates, then audits writes.
pub async fn admin(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let principal = match resolve(&state, req.headers()).await {
        Ok(TokenRecord { name, kind: TokenKind::Admin { role }, .. }) => Ok(Principal { name, role }),
        Ok(_) => Err(ApiError::forbidden("a node token cannot use the admin API")),
        Err(e) => Err(e),
    };
    let (who, resp) = match principal {
        Ok(p) => {
            let who = p.name.clone();
            req.extensions_mut().insert(p);
            (who, next.run(req).await)
        }
        Err(e) => ("-".to_string(), e.into_response()),
    };
    if method != Method::GET {
        let note = resp.extensions().get::<AuditNote>().cloned().unwrap_or_default();
        let entry = AuditEntry {
            seq: 0,
            at_ms: state.now_ms(),
            who,
            method: method.to_string(),
            path,
            target: note.target,
            version: note.version,
            status: resp.status().as_u16(),
        };
        if let Err(e) = state.store().audit(entry).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
    resp
}

/// Attaches an audit note to a response.
pub fn noted(resp: impl IntoResponse, target: impl Into<String>, version: Option<u64>) -> Response {
    let mut r = resp.into_response();
    r.extensions_mut().insert(AuditNote { target: Some(target.into()), version });
    r
}
