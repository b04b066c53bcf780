//! Answers for requests no route takes: `405 method_not_allowed` with an `Allow`
//! header when the path exists under other methods, else `404 not_found`. The
//! route table is the served OpenAPI document's paths (`{param}` matches one
//! non-empty segment), so what is declared and what is answered cannot drift.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, HeaderValue};
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use utoipa::openapi::OpenApi;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// Path templates and the methods each declares.
#[derive(Debug, Clone, Default)]
pub struct RouteTable(Vec<(Vec<Segment>, Vec<&'static str>)>);

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.trim_matches('/').split('/')
}

impl RouteTable {
    /// The table of a served OpenAPI document.
    pub fn from_openapi(doc: &OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let parsed = segments(template)
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(s.to_owned())
                        }
                    })
                    .collect();
                let declared = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ];
                (parsed, declared.into_iter().filter(|(_, on)| *on).map(|(m, _)| m).collect())
            })
            .collect();
        RouteTable(routes)
    }

    /// The methods declared for `path` (empty when no template matches it). A
    /// concrete path wins over a templated one (OpenAPI 3.1 "Path Templating
    /// Matching"): `/v1/invoices/import` is not `/v1/invoices/{id}`.
    pub fn allowed(&self, path: &str) -> Vec<&'static str> {
        let parts: Vec<&str> = segments(path).collect();
        let matching: Vec<(usize, &Vec<&'static str>)> = self
            .0
            .iter()
            .filter(|(template, _)| {
                template.len() == parts.len()
                    && template.iter().zip(&parts).all(|(t, p)| match t {
                        Segment::Param => !p.is_empty(),
                        Segment::Literal(l) => l == p,
                    })
            })
            .map(|(template, declared)| (template.iter().filter(|s| **s != Segment::Param).count(), declared))
            .collect();
        let most_specific = matching.iter().map(|(literals, _)| *literals).max().unwrap_or(0);
        let mut methods: Vec<&'static str> = Vec::new();
        for (_, declared) in matching.iter().filter(|(literals, _)| *literals == most_specific) {
            methods.extend(declared.iter().filter(|m| !methods.contains(m)).collect::<Vec<_>>());
        }
        methods
    }
}

/// The default service: 405 for a known path under another method, else 404.
pub async fn fallback(req: HttpRequest, table: Data<RouteTable>) -> HttpResponse {
    let allowed = table.allowed(req.path());
    if allowed.is_empty() {
        return ApiError::not_found("no such route").error_response();
    }
    let allow = allowed.join(", ");
    let detail = format!("{} is not allowed here; allowed: {allow}", req.method());
    let mut res = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", detail).error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(ALLOW, value);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        let doc = <crate::openapi::ApiDoc as utoipa::OpenApi>::openapi();
        let table = RouteTable::from_openapi(&doc);
        assert_eq!(table.allowed("/v1/customers"), vec!["GET", "POST"]);
        assert_eq!(table.allowed("/v1/payments/abc"), vec!["GET"]);
        assert_eq!(table.allowed("/v1/payments/abc/pay"), vec!["POST"]);
        assert!(table.allowed("/v1/payments/abc/nope").is_empty());
        assert!(table.allowed("/v1/nope").is_empty());
        assert_eq!(table.allowed("/v1/invoices/import"), vec!["POST"], "the concrete path wins");
        assert_eq!(table.allowed("/v1/invoices/abc"), vec!["GET"]);
    }
}
