//! Checkers' reports are authenticated with a shared bearer token (as Consul's gossip key or
//! Envoy's static secrets): a report that changes health can pull a region out of every
//! answer, so only holders of the token may send one.
//!
//! The token file (`--report-token-file`, on directors and checkers) holds one token per line;
//! blank lines and `#` comments are ignored. A director accepts every token of its file, so a
//! token is rotated without downtime: add the new one to every director's file and restart
//! them, switch the checkers (they send the first token of their file), remove the old one.
//!
//! The check is the authentication phase of `POST /v1/observations`: it runs before the body
//! is looked at. Refusals are counted (`meridian_director_reports_refused_total`) and logged at
//! most once per [`LOG_EVERY`], with how many were not logged, so a flood of forged reports
//! cannot flood the log.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

/// At most one log line about refused reports per this long.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The tokens of a report token file; the first is the one a checker sends.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportTokens {
    tokens: Vec<String>,
}

/// The tokens never appear in logs or debug output.
impl std::fmt::Debug for ReportTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReportTokens({} token(s), redacted)", self.tokens.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportTokenError {
    /// Not a `source`: the message already says it, and error chains would say it twice.
    #[error("cannot read the report token file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error(
        "the report token file {path} holds no token (one per line; blank lines and # comments are ignored)"
    )]
    Empty { path: PathBuf },
    #[error("the report token file {path}, line {line}: a token is printable ASCII without spaces")]
    Invalid { path: PathBuf, line: usize },
}

impl ReportTokens {
    /// Reads a token file: an unreadable file, one without a token, or a line that cannot be
    /// a token is an error naming the file.
    pub fn load(path: &Path) -> Result<ReportTokens, ReportTokenError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ReportTokenError::Read { path: path.into(), error })?;
        match Self::parse(&text) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(ReportTokenError::Empty { path: path.into() }),
            Err(line) => Err(ReportTokenError::Invalid { path: path.into(), line }),
        }
    }

    /// The tokens of a file's text, None without any; `Err(line)` (1-based) for a line that is
    /// not a token (it must fit in an HTTP header as sent: printable ASCII, no spaces).
    pub fn parse(text: &str) -> Result<Option<ReportTokens>, usize> {
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(i + 1);
            }
            tokens.push(t.to_string());
        }
        Ok((!tokens.is_empty()).then_some(ReportTokens { tokens }))
    }

    /// The token a checker sends: the file's first.
    pub fn first(&self) -> &str {
        &self.tokens[0]
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Never true: a `ReportTokens` holds at least one token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether `presented` is one of the tokens. Every token is compared, each in constant
    /// time, so the time taken says nothing about which token or how much of it matched.
    pub fn accepts(&self, presented: &str) -> bool {
        self.tokens.iter().fold(false, |ok, t| ok | constant_time_eq(t.as_bytes(), presented.as_bytes()))
    }
}

/// Compares without stopping at the first difference: the time depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    // Keeps the optimiser from turning the loop into an early exit.
    std::hint::black_box(diff) == 0
}

/// Why a report was refused; the message of the 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token none of the director's tokens matches.
    Wrong,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Missing => {
                "a report needs `Authorization: Bearer <token>` (the checker's --report-token-file)"
            }
            Refusal::Wrong => "the report's bearer token is not one of this director's report tokens",
        })
    }
}

/// The director's side: its tokens (None: reports are not authenticated) and the refusals.
pub(crate) struct ReportAuth {
    tokens: Option<ReportTokens>,
    refused: AtomicU64,
    /// Refusals since the last log line, and when that was.
    log: Mutex<(u64, Option<Instant>)>,
}

impl ReportAuth {
    pub(crate) fn new(tokens: Option<ReportTokens>) -> ReportAuth {
        ReportAuth { tokens, refused: AtomicU64::new(0), log: Mutex::new((0, None)) }
    }

    /// Lets a report in, or refuses it (counted and, rate-limited, logged).
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(tokens) = &self.tokens else { return Ok(()) };
        let refusal = match bearer(headers) {
            None => Refusal::Missing,
            Some(t) if tokens.accepts(t) => return Ok(()),
            Some(_) => Refusal::Wrong,
        };
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.note(refusal, Instant::now());
        Err(refusal)
    }

    /// Reports refused for want of a valid token since start.
    pub(crate) fn refused_unauthorized(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn note(&self, refusal: Refusal, now: Instant) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let (unlogged, last) = &mut *log;
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            *unlogged += 1;
            return;
        }
        let not_logged = std::mem::take(unlogged);
        *last = Some(now);
        drop(log);
        let reason = match refusal {
            Refusal::Missing => "no bearer token",
            Refusal::Wrong => "wrong bearer token",
        };
        tracing::warn!(
            reason,
            refused_total = self.refused_unauthorized(),
            not_logged,
            "checker report refused: unauthorized (at most one such line per {LOG_EVERY:?})"
        );
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_hold_tokens_one_per_line_without_blanks_or_comments() {
        let t =
            ReportTokens::parse("# rotated 2026-11\n\n  new-token  \nold-token\n# end\n").unwrap().unwrap();
        assert_eq!(t.first(), "new-token");
        assert_eq!(t.len(), 2);
        assert!(t.accepts("new-token") && t.accepts("old-token"));
        assert!(!t.accepts("new-toke") && !t.accepts("new-tokenx") && !t.accepts("") && !t.accepts("# end"));
        assert_eq!(ReportTokens::parse("\n# only a comment\n   \n"), Ok(None));
        assert_eq!(ReportTokens::parse("good\nhas space\n"), Err(2));
        assert_eq!(format!("{t:?}"), "ReportTokens(2 token(s), redacted)");
    }

    #[test]
    fn token_files_that_cannot_be_used_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.token");
        std::fs::write(&empty, "# nothing yet\n").unwrap();
        let e = ReportTokens::load(&empty).unwrap_err().to_string();
        assert!(e.starts_with(&format!("the report token file {} holds no token", empty.display())), "{e}");
        let missing = dir.path().join("missing.token");
        let e = ReportTokens::load(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot read the report token file {}", missing.display())), "{e}");
    }

    #[test]
    fn constant_time_compare_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"), "padding never makes a shorter token match");
    }

    #[test]
    fn only_a_listed_bearer_token_gets_in_and_refusals_are_counted() {
        let auth = ReportAuth::new(ReportTokens::parse("one\ntwo\n").unwrap());
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert_eq!(auth.check(&HeaderMap::new()), Err(Refusal::Missing));
        assert_eq!(auth.check(&with("Bearer three")), Err(Refusal::Wrong));
        assert_eq!(auth.check(&with("Basic dHdvOnR3bw==")), Err(Refusal::Missing));
        assert_eq!(auth.check(&with("Bearer two")), Ok(()));
        assert_eq!(auth.check(&with("bearer one")), Ok(()));
        assert_eq!(auth.refused_unauthorized(), 3);
        // Without tokens every report gets in, as before tokens existed.
        let open = ReportAuth::new(None);
        assert_eq!(open.check(&HeaderMap::new()), Ok(()));
        assert_eq!(open.refused_unauthorized(), 0);
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_period() {
        let auth = ReportAuth::new(ReportTokens::parse("one\n").unwrap());
        let t0 = Instant::now();
        auth.note(Refusal::Wrong, t0);
        auth.note(Refusal::Wrong, t0 + Duration::from_secs(1));
        auth.note(Refusal::Missing, t0 + Duration::from_secs(2));
        assert_eq!(*auth.log.lock().unwrap(), (2, Some(t0)), "two kept back, counted for the next line");
        auth.note(Refusal::Wrong, t0 + LOG_EVERY);
        assert_eq!(*auth.log.lock().unwrap(), (0, Some(t0 + LOG_EVERY)));
    }
}
