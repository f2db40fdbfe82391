//! The plugin endpoints. wharf runs no managed (v2) plugins: its drivers are built in. Clients
//! still list plugins as part of their setup (`docker plugin ls`, docker-py, Compose) and stop
//! at a 404, so the list answers as a dockerd with no plugin installed does: empty, with its
//! filters checked; a named plugin is not found; installing one is refused, saying why.

use hyper::StatusCode;
use wharf_reference::ErrorKind;

use crate::error::ApiError;
use crate::query::Query;
use crate::routes::{json_response, Res};

/// `/plugins...`: everything under it.
/// What an engine without plugins says to installing one.
pub(crate) fn not_supported() -> Res {
    Err(ApiError::new(
        ErrorKind::NotImplemented,
        "plugins are not supported: wharf's volume, network and log drivers are built in",
    ))
}

/// `/plugins/{name}/json`, `DELETE /plugins/{name}`, `/plugins/{name}/{enable,...}`: `rest`
/// is the path after `/plugins/`.
pub(crate) fn unknown(rest: &str) -> Res {
    let name = rest
        .strip_suffix("/json")
        .or_else(|| rest.rsplit_once('/').map(|(n, _)| n))
        .unwrap_or(rest);
    if name.is_empty() {
        return Err(ApiError::not_found("page not found"));
    }
    Err(ApiError::not_found(format!("plugin \"{name}\" not found")))
}

/// `GET /plugins`: none, after the filters are checked as dockerd checks them.
pub(crate) fn list(q: &Query) -> Res {
    for (k, vals) in q.filters()? {
        match k.as_str() {
            "capability" => {}
            "enabled" => {
                if vals.iter().any(|v| v != "true" && v != "false") {
                    return Err(ApiError::invalid(format!(
                        "Invalid filter 'enabled=[{}]'",
                        vals.join(" ")
                    )));
                }
            }
            other => return Err(ApiError::invalid(format!("invalid filter '{other}'"))),
        }
    }
    json_response(StatusCode::OK, &Vec::<serde_json::Value>::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the table routes `method path` to, answered as the handler for that pattern.
    fn status(method: hyper::Method, path: &str, query: Option<&str>) -> (u16, String) {
        let (route, params) = crate::routes::table::find(&method, path).expect("a route");
        let q = Query::parse(query);
        let r = match route.pattern {
            "/plugins" => list(&q),
            "/plugins/privileges" | "/plugins/pull" | "/plugins/create" => not_supported(),
            "/plugins/{rest*}" => unknown(&params[0]),
            other => panic!("{path} went to {other}"),
        };
        match r {
            Ok(r) => (r.status().as_u16(), String::new()),
            Err(e) => (crate::error::status_of(e.kind).as_u16(), e.message),
        }
    }

    #[test]
    fn answers_as_a_dockerd_with_no_plugins() {
        assert_eq!(status(hyper::Method::GET, "/plugins", None).0, 200);
        let f = r#"filters={"enabled":["true"],"capability":["volumedriver"]}"#;
        assert_eq!(status(hyper::Method::GET, "/plugins", Some(f)).0, 200);
        assert_eq!(
            status(hyper::Method::GET, "/plugins", Some(r#"filters={"nope":["x"]}"#)),
            (400, "invalid filter 'nope'".into())
        );
        assert_eq!(
            status(hyper::Method::GET, "/plugins", Some(r#"filters={"enabled":["maybe"]}"#)),
            (400, "Invalid filter 'enabled=[maybe]'".into())
        );
        assert_eq!(
            status(hyper::Method::GET, "/plugins/vieux/sshfs:latest/json", None),
            (404, "plugin \"vieux/sshfs:latest\" not found".into())
        );
        assert_eq!(status(hyper::Method::DELETE, "/plugins/x", None).0, 404);
        assert_eq!(status(hyper::Method::POST, "/plugins/x/enable", None).0, 404);
        assert_eq!(status(hyper::Method::POST, "/plugins/pull", None).0, 501);
    }
}
