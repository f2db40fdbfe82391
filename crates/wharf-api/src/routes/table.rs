//! The Engine API's routes as one table: `(method, pattern) -> handler`, first match wins.
//! A pattern's segments are literals, `{x}` (one segment) or `{x*}` (one or more, for image
//! names, which hold `/`; the literals after it match the path's end). `None` as the method
//! takes every method (the endpoints that answer the same whatever is asked).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use hyper::{Method, Request};

use super::*;
use crate::body::ReqBody;
use crate::query::Query;
use crate::server::Daemon;
use crate::{containers as c, networks, plugins, volumes};

/// What a handler gets: the daemon, the request, its query and the pattern's captures.
pub(crate) struct Ctx {
    pub d: Arc<Daemon>,
    pub req: Request<ReqBody>,
    pub q: Query,
    pub method: Method,
    params: Vec<String>,
}

impl Ctx {
    /// The `i`th capture of the pattern.
    fn p(&self, i: usize) -> &str {
        &self.params[i]
    }
}

type Fut = Pin<Box<dyn Future<Output = Res> + Send>>;
type Handler = fn(Ctx) -> Fut;

/// One route.
pub(crate) struct Route {
    pub method: Option<Method>,
    pub pattern: &'static str,
    handler: Handler,
}

macro_rules! route {
    ($m:expr, $pat:literal, |$x:ident| $body:expr) => {
        Route {
            method: $m,
            pattern: $pat,
            handler: |$x: Ctx| -> Fut { Box::pin(async move { $body }) },
        }
    };
}

const GET: Option<Method> = Some(Method::GET);
const HEAD: Option<Method> = Some(Method::HEAD);
const POST: Option<Method> = Some(Method::POST);
const PUT: Option<Method> = Some(Method::PUT);
const DELETE: Option<Method> = Some(Method::DELETE);
const ANY: Option<Method> = None;

/// Every route of the API, in the order they are tried.
pub(crate) fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut all = system_routes();
        all.extend(image_routes());
        all.extend(container_routes());
        all.extend(object_routes());
        all
    })
}

/// The daemon's own: ping, version, info, events, df, auth, commit, build cache.
fn system_routes() -> Vec<Route> {
    vec![
        route!(GET, "/_ping", |x| ping(&x.method)),
        route!(HEAD, "/_ping", |x| ping(&x.method)),
        route!(GET, "/version", |x| version(&x.d)),
        route!(GET, "/info", |x| info(&x.d, ApiVersion::of(&x.req)).await),
        route!(GET, "/events", |x| events(x.d, &x.q)),
        route!(GET, "/system/df", |x| system_df(x.d).await),
        route!(POST, "/auth", |x| crate::distribution::auth(x.d, x.req).await),
        route!(POST, "/commit", |x| c::commit(x.d, x.req, &x.q).await),
        route!(POST, "/build", |x| crate::build::build(x.d, x.req, &x.q).await),
        route!(POST, "/build/prune", |x| crate::build::prune(x.d, &x.q).await),
        route!(POST, "/build/cancel", |x| crate::build::cancel(x.d, &x.q)),
        route!(POST, "/build/context/missing", |x| crate::build::missing(x.d, x.req)
            .await),
        route!(POST, "/build/context/upload", |x| crate::build::upload(x.d, x.req)
            .await),
    ]
}

/// Images, and the registry's view of one.
fn image_routes() -> Vec<Route> {
    vec![
        // Images.
        route!(GET, "/images/json", |x| images_list(&x.d, &x.q).await),
        route!(POST, "/images/create", |x| images_create(x.d, x.req, &x.q).await),
        route!(POST, "/images/load", |x| images_load(x.d, x.req, &x.q).await),
        route!(GET, "/images/get", |x| {
            images_save(x.d, x.q.all("names"), crate::platform::requested(&x.q)?).await
        }),
        route!(POST, "/images/prune", |x| images_prune(x.d, &x.q).await),
        route!(GET, "/images/search", |x| crate::distribution::search(x.d, x.req, &x.q)
            .await),
        route!(GET, "/images/{name*}/json", |x| {
            image_inspect(&x.d, &decode_path(x.p(0)), ApiVersion::of(&x.req), &x.q).await
        }),
        route!(GET, "/images/{name*}/history", |x| image_history(
            &x.d,
            &decode_path(x.p(0))
        )
        .await),
        route!(GET, "/images/{name*}/get", |x| {
            images_save(
                x.d.clone(),
                vec![decode_path(x.p(0))],
                crate::platform::requested(&x.q)?,
            )
            .await
        }),
        route!(POST, "/images/{name*}/tag", |x| image_tag(
            &x.d,
            &decode_path(x.p(0)),
            &x.q
        )
        .await),
        route!(POST, "/images/{name*}/push", |x| {
            let name = decode_path(x.p(0));
            crate::distribution::push(x.d, x.req, &name, &x.q).await
        }),
        route!(DELETE, "/images/{name*}", |x| image_delete(
            &x.d,
            &decode_path(x.p(0)),
            &x.q
        )
        .await),
        route!(GET, "/distribution/{name*}/json", |x| {
            let name = decode_path(x.p(0));
            crate::distribution::inspect(x.d, x.req, &name).await
        }),
    ]
}

/// Containers and execs.
fn container_routes() -> Vec<Route> {
    vec![
        // Containers.
        route!(GET, "/containers/json", |x| c::list(&x.d, &x.q)),
        route!(POST, "/containers/create", |x| c::create(x.d, x.req, &x.q).await),
        route!(POST, "/containers/prune", |x| c::prune(&x.d, &x.q).await),
        route!(GET, "/containers/{id}/json", |x| {
            c::inspect(&x.d, x.p(0), &x.q, ApiVersion::of(&x.req))
        }),
        route!(POST, "/containers/{id}/start", |x| c::start(x.d.clone(), x.p(0)).await),
        route!(POST, "/containers/{id}/stop", |x| c::stop(
            x.d.clone(),
            x.p(0),
            &x.q,
            false
        )
        .await),
        route!(POST, "/containers/{id}/restart", |x| c::stop(
            x.d.clone(),
            x.p(0),
            &x.q,
            true
        )
        .await),
        route!(POST, "/containers/{id}/kill", |x| c::kill(x.d.clone(), x.p(0), &x.q)
            .await),
        route!(POST, "/containers/{id}/pause", |x| c::pause(x.d.clone(), x.p(0), true)
            .await),
        route!(POST, "/containers/{id}/unpause", |x| c::pause(
            x.d.clone(),
            x.p(0),
            false
        )
        .await),
        route!(POST, "/containers/{id}/rename", |x| c::rename(
            x.d.clone(),
            x.p(0),
            &x.q
        )
        .await),
        route!(POST, "/containers/{id}/resize", |x| c::resize(
            x.d.clone(),
            x.p(0),
            &x.q
        )
        .await),
        route!(POST, "/containers/{id}/wait", |x| c::wait(&x.d, x.p(0), &x.q)),
        route!(POST, "/containers/{id}/attach", |x| {
            let id = x.p(0).to_string();
            c::attach(x.d, x.req, &id, &x.q).await
        }),
        route!(POST, "/containers/{id}/exec", |x| {
            let id = x.p(0).to_string();
            c::exec_create(&x.d, x.req, &id).await
        }),
        route!(POST, "/containers/{id}/update", |x| {
            let id = x.p(0).to_string();
            c::update(&x.d, x.req, &id).await
        }),
        route!(GET, "/containers/{id}/logs", |x| c::logs(&x.d, x.p(0), &x.q)),
        route!(GET, "/containers/{id}/stats", |x| c::stats(x.d.clone(), x.p(0), &x.q)
            .await),
        route!(GET, "/containers/{id}/changes", |x| c::changes(&x.d, x.p(0))),
        route!(GET, "/containers/{id}/export", |x| c::export(&x.d, x.p(0)).await),
        route!(HEAD, "/containers/{id}/archive", |x| c::archive_head(
            &x.d,
            x.p(0),
            &x.q
        )
        .await),
        route!(GET, "/containers/{id}/archive", |x| c::archive_get(&x.d, x.p(0), &x.q)
            .await),
        route!(PUT, "/containers/{id}/archive", |x| {
            let id = x.p(0).to_string();
            c::archive_put(&x.d, x.req, &id, &x.q).await
        }),
        route!(GET, "/containers/{id}/top", |x| c::top(&x.d, x.p(0), &x.q).await),
        route!(DELETE, "/containers/{rest*}", |x| c::delete(x.d.clone(), x.p(0), &x.q)
            .await),
        route!(POST, "/exec/{id}/start", |x| {
            let id = x.p(0).to_string();
            c::exec_start(x.d, x.req, &id).await
        }),
        route!(POST, "/exec/{id}/resize", |x| c::exec_resize(x.d.clone(), x.p(0), &x.q)
            .await),
        route!(GET, "/exec/{id}/json", |x| c::exec_inspect(&x.d, x.p(0))),
    ]
}

/// Networks, volumes, plugins, and the catch-all.
fn object_routes() -> Vec<Route> {
    vec![
        // Networks.
        route!(GET, "/networks", |x| networks::list(x.d, &x.q).await),
        route!(POST, "/networks/create", |x| networks::create(x.d, x.req).await),
        route!(POST, "/networks/prune", |x| networks::prune(x.d, &x.q).await),
        route!(GET, "/networks/{id}", |x| networks::inspect(x.d.clone(), x.p(0)).await),
        route!(DELETE, "/networks/{id}", |x| networks::remove(x.d.clone(), x.p(0))
            .await),
        route!(POST, "/networks/{id}/connect", |x| {
            let id = x.p(0).to_string();
            networks::connect(x.d, x.req, &id, true).await
        }),
        route!(POST, "/networks/{id}/disconnect", |x| {
            let id = x.p(0).to_string();
            networks::connect(x.d, x.req, &id, false).await
        }),
        // Volumes.
        route!(GET, "/volumes", |x| volumes::list(&x.d, &x.q)),
        route!(POST, "/volumes/create", |x| volumes::create(x.d, x.req).await),
        route!(POST, "/volumes/prune", |x| volumes::prune(&x.d, &x.req, &x.q)),
        route!(GET, "/volumes/{name}", |x| volumes::inspect(&x.d, x.p(0))),
        route!(DELETE, "/volumes/{name}", |x| volumes::remove(&x.d, x.p(0), &x.q)),
        // An engine with no plugins.
        route!(GET, "/plugins", |x| plugins::list(&x.q)),
        route!(GET, "/plugins/privileges", |_x| plugins::not_supported()),
        route!(POST, "/plugins/pull", |_x| plugins::not_supported()),
        route!(POST, "/plugins/create", |_x| plugins::not_supported()),
        route!(ANY, "/plugins/{rest*}", |x| plugins::unknown(x.p(0))),
        // A single-host engine, never part of a swarm; anything else is not found.
        route!(ANY, "/{kind}", |x| Err(not_found_or_swarm(
            &x.method,
            &format!("/{}", x.p(0))
        ))),
        route!(ANY, "/{kind}/{rest*}", |x| {
            Err(not_found_or_swarm(&x.method, &format!("/{}/{}", x.p(0), x.p(1))))
        }),
    ]
}

/// The swarm endpoints' answer (503, as dockerd's outside a swarm), or "page not found".
fn not_found_or_swarm(method: &Method, path: &str) -> ApiError {
    swarm_error(method, path).unwrap_or_else(|| ApiError::not_found("page not found"))
}

/// The captures of `pattern` in `path`, if it matches.
pub(crate) fn captures(pattern: &str, path: &str) -> Option<Vec<String>> {
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    let star = pat.iter().position(|p| p.ends_with("*}"));
    let mut out = Vec::new();
    let one = |p: &str, s: &str, out: &mut Vec<String>| -> bool {
        if p.starts_with('{') {
            out.push(s.to_string());
            !s.is_empty()
        } else {
            p == s
        }
    };
    match star {
        None => {
            if pat.len() != segs.len() {
                return None;
            }
            for (p, s) in pat.iter().zip(&segs) {
                if !one(p, s, &mut out) {
                    return None;
                }
            }
        }
        Some(i) => {
            let tail = pat.len() - i - 1;
            if segs.len() < i + 1 + tail {
                return None;
            }
            for (p, s) in pat[..i].iter().zip(&segs[..i]) {
                if !one(p, s, &mut out) {
                    return None;
                }
            }
            let taken = segs[i..segs.len() - tail].join("/");
            if taken.is_empty() {
                return None;
            }
            out.push(taken);
            for (p, s) in pat[i + 1..].iter().zip(&segs[segs.len() - tail..]) {
                if !one(p, s, &mut out) {
                    return None;
                }
            }
        }
    }
    Some(out)
}

/// The first route for `method` and `path` (trailing slashes aside), and its captures.
pub(crate) fn find(method: &Method, path: &str) -> Option<(&'static Route, Vec<String>)> {
    let path = path.trim_end_matches('/');
    routes().iter().find_map(|r| {
        if r.method.as_ref().is_some_and(|m| m != method) {
            return None;
        }
        captures(r.pattern, path).map(|c| (r, c))
    })
}

/// Dispatch a request through the table.
pub(crate) async fn dispatch(d: Arc<Daemon>, req: Request<ReqBody>, path: &str) -> Res {
    let method = req.method().clone();
    let Some((route, params)) = find(&method, path) else {
        return Err(ApiError::not_found("page not found"));
    };
    let q = Query::parse(req.uri().query());
    (route.handler)(Ctx {
        d,
        req,
        q,
        method,
        params,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, expect: Option<(&str, &[&str])>) {
        let got = find(&method, path).map(|(r, c)| (r.pattern, c));
        let want = expect.map(|(p, c)| (p, c.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
        assert_eq!(got, want, "{method} {path}");
    }

    #[test]
    fn paths_find_their_routes() {
        check(Method::GET, "/_ping", Some(("/_ping", &[])));
        check(Method::HEAD, "/_ping/", Some(("/_ping", &[])));
        check(Method::GET, "/containers/json", Some(("/containers/json", &[])));
        check(
            Method::GET,
            "/containers/abc/json",
            Some(("/containers/{id}/json", &["abc"])),
        );
        check(
            Method::POST,
            "/containers/abc/start",
            Some(("/containers/{id}/start", &["abc"])),
        );
        // What no route serves reaches the catch-all: "page not found" (or a swarm's 503).
        check(
            Method::GET,
            "/containers/abc",
            Some(("/{kind}/{rest*}", &["containers", "abc"])),
        );
        check(
            Method::DELETE,
            "/containers/abc",
            Some(("/containers/{rest*}", &["abc"])),
        );
        check(
            Method::DELETE,
            "/containers//web/db",
            Some(("/containers/{rest*}", &["/web/db"])),
        );
        // Image names hold slashes and colons: the operation is matched from the end.
        check(
            Method::GET,
            "/images/localhost:5000/team/app:1.0/json",
            Some(("/images/{name*}/json", &["localhost:5000/team/app:1.0"])),
        );
        check(Method::GET, "/images/json", Some(("/images/json", &[])));
        check(Method::DELETE, "/images/a/b", Some(("/images/{name*}", &["a/b"])));
        check(
            Method::POST,
            "/images/a/b/push",
            Some(("/images/{name*}/push", &["a/b"])),
        );
        check(Method::GET, "/networks/n1", Some(("/networks/{id}", &["n1"])));
        check(
            Method::POST,
            "/networks/n1/connect",
            Some(("/networks/{id}/connect", &["n1"])),
        );
        check(
            Method::PATCH,
            "/plugins/x/enable",
            Some(("/plugins/{rest*}", &["x/enable"])),
        );
        check(Method::GET, "/nodes", Some(("/{kind}", &["nodes"])));
        check(
            Method::GET,
            "/nosuch/thing",
            Some(("/{kind}/{rest*}", &["nosuch", "thing"])),
        );
        check(
            Method::PUT,
            "/containers/abc/start",
            Some(("/{kind}/{rest*}", &["containers", "abc/start"])),
        );
        check(Method::GET, "/", None);
    }

    #[test]
    fn no_route_hides_another() {
        // Each route is the first match for a path made from its own pattern.
        for r in routes() {
            let path = r
                .pattern
                .replace("{rest*}", "x/y")
                .replace("{name*}", "a/b")
                .replace("{id}", "i");
            let path = path.replace("{name}", "n").replace("{kind}", "swarmish");
            let method = r.method.clone().unwrap_or(Method::OPTIONS);
            let (found, _) = find(&method, &path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(
                found.pattern, r.pattern,
                "{method} {path} is taken by {}",
                found.pattern
            );
        }
    }
}
