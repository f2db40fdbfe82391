//! Request paths to routes: the distribution spec's endpoints, with repository names that hold
//! `/` read from the end of the path (as distribution does), and the registry's own endpoints
//! (token, health, metrics).

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(String),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(String, String),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(String, String),
    /// `/v2/<name>/blobs/uploads/`.
    UploadStart(String),
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload(String, String),
    /// `/v2/<name>/referrers/<digest>`.
    Referrers(String, String),
    /// `/token`: the built-in token endpoint.
    Token,
    /// `/health`.
    Health,
    /// `/metrics`.
    Metrics,
    /// Anything else.
    Unknown,
}

impl Route {
    /// The label metrics use for the route.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags(..) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::UploadStart(..) | Route::Upload(..) => "upload",
            Route::Referrers(..) => "referrers",
            Route::Token => "token",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Unknown => "unknown",
        }
    }

    /// The repository the route is in, if any.
    pub fn repo(&self) -> Option<&str> {
        match self {
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
            _ => None,
        }
    }
}

/// `name` and the last segment if `path` is `<name>/<word>/<last>` with no `/` in `last`.
fn split_tail<'a>(path: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let (head, last) = path.rsplit_once('/')?;
    let name = head.strip_suffix(word)?.strip_suffix('/')?;
    (!name.is_empty() && !last.is_empty()).then_some((name, last))
}

/// The route of a request path (without its query).
pub fn route(path: &str) -> Route {
    match path {
        "/token" => return Route::Token,
        "/health" | "/healthz" => return Route::Health,
        "/metrics" => return Route::Metrics,
        "/v2" | "/v2/" => return Route::Base,
        "/v2/_catalog" => return Route::Catalog,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Unknown;
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags(name.to_string());
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Route::UploadStart(name.to_string());
    }
    if let Some((name, id)) = split_tail(rest, "blobs/uploads") {
        return Route::Upload(name.to_string(), id.to_string());
    }
    if let Some((name, r)) = split_tail(rest, "manifests") {
        return Route::Manifest(name.to_string(), r.to_string());
    }
    if let Some((name, d)) = split_tail(rest, "blobs") {
        return Route::Blob(name.to_string(), d.to_string());
    }
    if let Some((name, d)) = split_tail(rest, "referrers") {
        return Route::Referrers(name.to_string(), d.to_string());
    }
    Route::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_slashes_and_keywords() {
        assert_eq!(route("/v2/"), Route::Base);
        assert_eq!(route("/v2/a/b/tags/list"), Route::Tags("a/b".into()));
        assert_eq!(
            route("/v2/a/manifests/latest"),
            Route::Manifest("a".into(), "latest".into())
        );
        assert_eq!(
            route("/v2/blobs/manifests/x/blobs/sha256:1"),
            Route::Blob("blobs/manifests/x".into(), "sha256:1".into())
        );
        assert_eq!(route("/v2/a/b/blobs/uploads/"), Route::UploadStart("a/b".into()));
        assert_eq!(
            route("/v2/a/b/blobs/uploads/1234"),
            Route::Upload("a/b".into(), "1234".into())
        );
        assert_eq!(
            route("/v2/a/referrers/sha256:1"),
            Route::Referrers("a".into(), "sha256:1".into())
        );
        assert_eq!(route("/v2/a/manifests/"), Route::Unknown);
        assert_eq!(route("/v2/manifests/x"), Route::Unknown);
        assert_eq!(route("/etc/passwd"), Route::Unknown);
    }
}
