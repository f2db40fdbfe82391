//! Content discovery: `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, sorted, paged with
//! `n` and `last` (a `Link: <...>; rel="next"` header when more remain; `n` above the configured
//! maximum is lowered to it), and `GET /v2/<name>/referrers/<digest>`: an OCI index of the
//! manifests whose `subject` is the digest, filtered by `artifactType` when asked.

use super::{answer, full, percent_encode, Ctx, Registry, Resp};
use crate::error::{RegistryError, Result};
use crate::manifest::{parse, OCI_INDEX};
use crate::storage::read_blob;
use wharf_reference::oci::OciDigest;

/// One page of `all` (sorted): the entries and the `Link` header's value if more remain.
fn page(reg: &Registry, ctx: &Ctx, all: Vec<String>, path: &str) -> Result<(Vec<String>, Option<String>)> {
    let max = reg.cfg.max_list_entries;
    let n = match ctx.param("n") {
        None | Some("") => max,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| RegistryError::PaginationInvalid(format!("n={v:?}")))?
            .min(max),
    };
    let rest: Vec<String> = match ctx.param("last") {
        Some(last) if !last.is_empty() => all.into_iter().filter(|x| x.as_str() > last).collect(),
        _ => all,
    };
    let more = rest.len() > n;
    let page: Vec<String> = rest.into_iter().take(n).collect();
    let link = match (more, page.last()) {
        (true, Some(last)) => Some(format!("<{path}?last={}&n={n}>; rel=\"next\"", percent_encode(last))),
        _ => None,
    };
    Ok((page, link))
}

fn json_answer(v: serde_json::Value, link: Option<String>, content_type: &str) -> Resp {
    let body = serde_json::to_vec(&v).unwrap_or_default();
    let mut headers = vec![
        ("content-type", content_type.to_string()),
        ("content-length", body.len().to_string()),
    ];
    if let Some(l) = link {
        headers.push(("link", l));
    }
    answer(200, &headers, full(body))
}

/// `GET /v2/<name>/tags/list`.
pub async fn tags(reg: &Registry, ctx: &Ctx, repo: &str) -> Result<Resp> {
    if !reg.storage.repo_exists(repo)? {
        return Err(RegistryError::NameUnknown(repo.to_string()));
    }
    let all = reg.storage.tags(repo)?;
    let (tags, link) = page(reg, ctx, all, &format!("/v2/{repo}/tags/list"))?;
    Ok(json_answer(
        serde_json::json!({"name": repo, "tags": tags}),
        link,
        "application/json",
    ))
}

/// `GET /v2/_catalog`.
pub async fn catalog(reg: &Registry, ctx: &Ctx) -> Result<Resp> {
    let s = reg.storage.clone();
    let all = tokio::task::spawn_blocking(move || s.repositories())
        .await
        .map_err(|e| RegistryError::Storage(std::io::Error::other(e)))??;
    let (repos, link) = page(reg, ctx, all, "/v2/_catalog")?;
    Ok(json_answer(
        serde_json::json!({"repositories": repos}),
        link,
        "application/json",
    ))
}

/// `GET /v2/<name>/referrers/<digest>`.
pub async fn referrers(reg: &Registry, ctx: &Ctx, repo: &str, digest: &str) -> Result<Resp> {
    let subject = OciDigest::parse(digest)?;
    let want = ctx.param("artifactType").filter(|v| !v.is_empty());
    let mut manifests = Vec::new();
    for d in reg.storage.referrers(repo, &subject)? {
        let Some(mt) = reg.storage.manifest_link(repo, &d)? else {
            continue;
        };
        let Some(body) = read_blob(&*reg.storage, &d, reg.cfg.max_manifest_bytes as u64)? else {
            continue;
        };
        let Ok(p) = parse(&body, &mt) else {
            continue;
        };
        if want.is_some_and(|w| p.artifact_type.as_deref() != Some(w)) {
            continue;
        }
        let mut desc = serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": body.len()});
        if let Some(a) = &p.artifact_type {
            desc["artifactType"] = a.clone().into();
        }
        if let Some(a) = p.annotations {
            desc["annotations"] = a.into();
        }
        manifests.push(desc);
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut resp = json_answer(index, None, OCI_INDEX);
    if want.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            hyper::header::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
