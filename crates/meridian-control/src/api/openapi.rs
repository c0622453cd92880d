//! The OpenAPI document, written by hand in `openapi.json` and kept in sync with [`super::ROUTES`]
//! by a test (a hand-written document keeps the build free of a schema-generation stack).

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3.1 document of the admin API.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let mut in_doc = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert!(op["responses"].is_object(), "{method} {path}: no responses");
                in_doc.insert((method.clone(), path.clone()));
            }
        }
        let routes: BTreeSet<_> =
            super::super::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        assert_eq!(in_doc, routes);
    }
}
