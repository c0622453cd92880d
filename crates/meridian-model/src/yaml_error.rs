//! Turns a YAML deserialization error into a [`ConfigError`] with the path of the offending
//! key or value.
//!
//! serde-saphyr reports a line and column but not the path, so the document is walked once
//! more with its event parser, recording the path of every node and key by position; the error's
//! position is then looked up. Only done on the error path, so the second parse costs nothing
//! for valid documents.

use serde_saphyr::granit_parser::{Event, Parser};

use crate::valid::ConfigError;

pub fn to_config_error(yaml: &str, err: &serde_saphyr::Error) -> ConfigError {
    let err = err.without_snippet();
    let mut message = err.to_string();
    let Some(loc) = err.location().filter(|l| l.line() > 0) else {
        return ConfigError::new("", message);
    };
    let (line, column) = (loc.line(), loc.column());
    // serde-saphyr appends " at line L, column C"; we put the position last in our own form.
    if let Some(m) = message.strip_suffix(&format!(" at line {line}, column {column}")) {
        message = m.to_string();
    }
    let message = format!("{message} (line {line}, column {column})");
    let missing_field = matches!(err, serde_saphyr::Error::SerdeMissingField { .. });
    let path = path_at(yaml, line as usize, column as usize, missing_field).unwrap_or_default();
    ConfigError::new(path, message)
}

#[derive(Debug, PartialEq)]
enum Role {
    /// A mapping key; its path names the field it introduces.
    Key,
    /// A node (scalar or collection); `map` when it is a mapping.
    Node { map: bool },
}

enum Frame {
    Seq {
        path: String,
        next: usize,
    },
    /// `key` is `None` while the next node is a key.
    Map {
        path: String,
        key: Option<String>,
    },
}

/// The path of the key or node at `line` (1-based) and `column` (1-based). A missing field is
/// reported at its mapping, so then the mapping wins over its first key at the same position.
fn path_at(yaml: &str, line: usize, column: usize, prefer_map: bool) -> Option<String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut found: Vec<(Role, String)> = Vec::new();
    for ev in Parser::new_from_str(yaml) {
        let Ok((event, span)) = ev else { break };
        let here = span.start.line() == line && span.start.col() + 1 == column;
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key: key @ None }) = stack.last_mut() {
                    let p = join(path, &value);
                    *key = Some(value.into_owned());
                    if here {
                        found.push((Role::Key, p));
                    }
                } else {
                    if here {
                        found.push((Role::Node { map: false }, child(&stack)));
                    }
                    advance(&mut stack);
                }
            }
            Event::Alias(_) => {
                if here {
                    found.push((Role::Node { map: false }, child(&stack)));
                }
                advance(&mut stack);
            }
            Event::SequenceStart(..) => {
                let path = child(&stack);
                if here {
                    found.push((Role::Node { map: false }, path.clone()));
                }
                stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingStart(..) => {
                let path = child(&stack);
                if here {
                    found.push((Role::Node { map: true }, path.clone()));
                }
                stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                advance(&mut stack);
            }
            _ => {}
        }
    }
    let pick = |want: &dyn Fn(&Role) -> bool| {
        found.iter().filter(|(r, _)| want(r)).max_by_key(|(_, p)| p.len()).map(|(_, p)| p.clone())
    };
    if prefer_map {
        // A block mapping starts at its first key; a flow mapping at `{`, one before it.
        if let Some(p) = pick(&|r| *r == Role::Node { map: true }) {
            return Some(p);
        }
        if let Some(key) = pick(&|r| *r == Role::Key) {
            return Some(key.rsplit_once('.').map(|(parent, _)| parent.to_string()).unwrap_or_default());
        }
    }
    pick(&|r| *r == Role::Key).or_else(|| pick(&|_| true))
}

/// The path of the next node in the innermost collection.
fn child(stack: &[Frame]) -> String {
    match stack.last() {
        None => String::new(),
        Some(Frame::Seq { path, next }) => format!("{path}[{next}]"),
        Some(Frame::Map { path, key }) => join(path, key.as_deref().unwrap_or("?")),
    }
}

/// Moves the innermost collection past a complete node.
fn advance(stack: &mut [Frame]) {
    match stack.last_mut() {
        None => {}
        Some(Frame::Seq { next, .. }) => *next += 1,
        // A complete node in key position is a complex key; otherwise it was the value.
        Some(Frame::Map { key, .. }) => *key = if key.is_none() { Some("?".into()) } else { None },
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}
