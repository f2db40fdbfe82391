//! The distribution spec's conformance, section by section (pull, push, content discovery,
//! content management), as raw HTTP requests run against wharf's `wharf-registry` and, side by
//! side, Debian's `docker-registry` (distribution 2.8). Each check uses a repository of its
//! own. wharf must pass every check; distribution's results are listed and compared with what
//! it is known to lack (it predates the spec's v1.1: referrers, `OCI-Subject`, tag deletion;
//! and it ignores a chunk's `Content-Range`, answers a single POST with 202, lists tags unsorted,
//! takes upper-case names), so a check that the reference implementation fails for any other
//! reason shows up as a broken check, not as a wharf feature.

mod common;
mod oci;

use oci::*;
use serde_json::{json, Value};

type Check = fn(&str, &str) -> Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().take(300).collect()
}

// ------------------------------------------------------------------ pull

fn base_answers_with_the_api_version(host: &str, _repo: &str) -> Result<(), String> {
    let (st, h, _) = request(host, "GET", "/v2/", &[], b"");
    ensure!(st == 200, "GET /v2/: {st}");
    ensure!(
        hget(&h, "docker-distribution-api-version") == Some("registry/2.0"),
        "no API version header: {h:?}"
    );
    Ok(())
}

fn manifest_by_tag_and_digest_get_and_head(host: &str, repo: &str) -> Result<(), String> {
    let (d, m) = push_image(host, repo, "v1", &[b"layer one"]);
    for r in ["v1", d.as_str()] {
        let (st, h, b) = request(
            host,
            "GET",
            &format!("/v2/{repo}/manifests/{r}"),
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            b"",
        );
        ensure!(st == 200 && b == m, "GET {r}: {st} {}", text(&b));
        ensure!(
            hget(&h, "docker-content-digest") == Some(d.as_str()),
            "digest header {h:?}"
        );
        ensure!(
            hget(&h, "content-type") == Some("application/vnd.oci.image.manifest.v1+json"),
            "type {h:?}"
        );
        let (st, h, b) = request(
            host,
            "HEAD",
            &format!("/v2/{repo}/manifests/{r}"),
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            b"",
        );
        ensure!(st == 200 && b.is_empty(), "HEAD {r}: {st}");
        ensure!(
            hget(&h, "content-length") == Some(m.len().to_string().as_str()),
            "HEAD length {h:?}"
        );
        ensure!(
            hget(&h, "docker-content-digest") == Some(d.as_str()),
            "HEAD digest {h:?}"
        );
    }
    Ok(())
}

fn unknown_manifest_is_manifest_unknown(host: &str, repo: &str) -> Result<(), String> {
    push_image(host, repo, "v1", &[]);
    let (st, _, b) = request(host, "GET", &format!("/v2/{repo}/manifests/nope"), &[], b"");
    ensure!(st == 404 && error_code(&b) == "MANIFEST_UNKNOWN", "{st} {}", text(&b));
    Ok(())
}

fn blobs_get_head_and_ranges(host: &str, repo: &str) -> Result<(), String> {
    let d = push_blob(host, repo, b"0123456789");
    let (st, h, b) = request(host, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(st == 200 && b == b"0123456789", "GET {st}");
    ensure!(hget(&h, "docker-content-digest") == Some(d.as_str()), "digest {h:?}");
    let (st, h, b) = request(host, "HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(
        st == 200 && b.is_empty() && hget(&h, "content-length") == Some("10"),
        "HEAD {st} {h:?}"
    );
    let (st, h, b) = request(
        host,
        "GET",
        &format!("/v2/{repo}/blobs/{d}"),
        &[("Range", "bytes=2-5")],
        b"",
    );
    ensure!(st == 206 && b == b"2345", "range: {st} {}", text(&b));
    ensure!(hget(&h, "content-range") == Some("bytes 2-5/10"), "content-range {h:?}");
    let (st, _, _) = request(
        host,
        "GET",
        &format!("/v2/{repo}/blobs/{d}"),
        &[("Range", "bytes=20-30")],
        b"",
    );
    ensure!(st == 416, "unsatisfiable range: {st}");
    Ok(())
}

fn unknown_blob_is_blob_unknown(host: &str, repo: &str) -> Result<(), String> {
    push_blob(host, repo, b"x");
    let (st, _, b) = request(host, "GET", &format!("/v2/{repo}/blobs/{}", sha(b"absent")), &[], b"");
    ensure!(st == 404 && error_code(&b) == "BLOB_UNKNOWN", "{st} {}", text(&b));
    Ok(())
}

fn accept_leaves_out_a_type_the_client_cannot_read(host: &str, repo: &str) -> Result<(), String> {
    push_image(host, repo, "v1", &[b"l"]);
    let (st, _, b) = request(
        host,
        "GET",
        &format!("/v2/{repo}/manifests/v1"),
        &[("Accept", "application/vnd.docker.distribution.manifest.v2+json")],
        b"",
    );
    ensure!(
        st == 404 && error_code(&b) == "MANIFEST_UNKNOWN",
        "an OCI manifest to a schema2-only client: {st} {}",
        text(&b)
    );
    Ok(())
}

fn index_of_manifests(host: &str, repo: &str) -> Result<(), String> {
    let (d, m) = push_image(host, repo, "amd64", &[b"a"]);
    let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": m.len(),
        "platform": {"architecture": "amd64", "os": "linux"}}]})
    .to_string();
    let ct = [("Content-Type", "application/vnd.oci.image.index.v1+json")];
    let (st, _, b) = request(host, "PUT", &format!("/v2/{repo}/manifests/multi"), &ct, idx.as_bytes());
    ensure!(st == 201, "index PUT: {st} {}", text(&b));
    let (st, h, b) = request(
        host,
        "GET",
        &format!("/v2/{repo}/manifests/multi"),
        &[("Accept", "application/vnd.oci.image.index.v1+json")],
        b"",
    );
    ensure!(st == 200 && b == idx.as_bytes(), "index GET: {st}");
    ensure!(
        hget(&h, "content-type") == Some("application/vnd.oci.image.index.v1+json"),
        "{h:?}"
    );
    let bad = idx.replace(&d[7..], &sha(b"nothing")[7..]);
    let (st, _, b) = request(host, "PUT", &format!("/v2/{repo}/manifests/bad"), &ct, bad.as_bytes());
    ensure!(
        st == 400 && error_code(&b) == "MANIFEST_BLOB_UNKNOWN",
        "index naming an absent manifest: {st} {}",
        text(&b)
    );
    Ok(())
}

// ------------------------------------------------------------------ push

fn monolithic_post_then_put(host: &str, repo: &str) -> Result<(), String> {
    let (st, h, _) = request(host, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    ensure!(st == 202 && hget(&h, "location").is_some(), "POST: {st}");
    let d = sha(b"mono");
    let (st, h, b) = request(
        host,
        "PUT",
        &with_query(&location_path(&h), &format!("digest={d}")),
        &[("Content-Type", "application/octet-stream")],
        b"mono",
    );
    ensure!(st == 201, "PUT: {st} {}", text(&b));
    ensure!(hget(&h, "docker-content-digest") == Some(d.as_str()), "{h:?}");
    ensure!(location_path(&h) == format!("/v2/{repo}/blobs/{d}"), "location {h:?}");
    let (st, _, _) = request(host, "HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(st == 200, "HEAD after push: {st}");
    Ok(())
}

fn single_post_with_digest(host: &str, repo: &str) -> Result<(), String> {
    let d = sha(b"single");
    let (st, _, b) = request(
        host,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        b"single",
    );
    ensure!(st == 201, "POST with digest: {st} {}", text(&b));
    let (st, _, b) = request(host, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(st == 200 && b == b"single", "GET: {st}");
    Ok(())
}

fn chunked_in_order_with_status_and_out_of_order_416(host: &str, repo: &str) -> Result<(), String> {
    let (_, h, _) = request(host, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    let mut path = location_path(&h);
    let ct = ("Content-Type", "application/octet-stream");
    let (st, h, b) = request(host, "PATCH", &path, &[ct, ("Content-Range", "0-4")], b"hello");
    ensure!(st == 202, "first chunk: {st} {}", text(&b));
    ensure!(hget(&h, "range") == Some("0-4"), "range after the first chunk: {h:?}");
    path = location_path(&h);
    let (st, h, _) = request(host, "GET", &path, &[], b"");
    ensure!(st == 204 && hget(&h, "range") == Some("0-4"), "status: {st} {h:?}");
    let (st, _, _) = request(host, "PATCH", &path, &[ct, ("Content-Range", "9-13")], b"later");
    ensure!(st == 416, "out of order: {st}");
    let (st, h, b) = request(host, "PATCH", &path, &[ct, ("Content-Range", "5-10")], b" world");
    ensure!(st == 202, "second chunk: {st} {}", text(&b));
    let d = sha(b"hello world");
    let (st, _, b) = request(
        host,
        "PUT",
        &with_query(&location_path(&h), &format!("digest={d}")),
        &[ct],
        b"",
    );
    ensure!(st == 201, "close: {st} {}", text(&b));
    let (_, _, b) = request(host, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(b == b"hello world", "content {}", text(&b));
    Ok(())
}

fn cancel_then_unknown(host: &str, repo: &str) -> Result<(), String> {
    let (_, h, _) = request(host, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    let path = location_path(&h);
    let (st, _, _) = request(host, "DELETE", &path, &[], b"");
    ensure!(st == 204, "cancel: {st}");
    let (st, _, b) = request(host, "GET", &path, &[], b"");
    ensure!(
        st == 404 && error_code(&b) == "BLOB_UPLOAD_UNKNOWN",
        "after cancel: {st} {}",
        text(&b)
    );
    Ok(())
}

fn digest_mismatch_stores_nothing(host: &str, repo: &str) -> Result<(), String> {
    let (_, h, _) = request(host, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    let claimed = sha(b"claimed");
    let (st, _, b) = request(
        host,
        "PUT",
        &with_query(&location_path(&h), &format!("digest={claimed}")),
        &[("Content-Type", "application/octet-stream")],
        b"actual",
    );
    ensure!(
        st == 400 && error_code(&b) == "DIGEST_INVALID",
        "mismatch: {st} {}",
        text(&b)
    );
    for d in [claimed, sha(b"actual")] {
        let (st, _, _) = request(host, "HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
        ensure!(st == 404, "{d} after a mismatch: {st}");
    }
    Ok(())
}

fn bad_digest_strings(host: &str, repo: &str) -> Result<(), String> {
    for bad in [
        "sha256:nothex",
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
    ] {
        let (_, h, _) = request(host, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        let (st, _, b) = request(
            host,
            "PUT",
            &with_query(&location_path(&h), &format!("digest={bad}")),
            &[("Content-Type", "application/octet-stream")],
            b"x",
        );
        ensure!(
            st == 400 && error_code(&b) == "DIGEST_INVALID",
            "PUT digest={bad}: {st} {}",
            text(&b)
        );
    }
    Ok(())
}

fn cross_repository_mount(host: &str, repo: &str) -> Result<(), String> {
    let from = format!("{repo}-src");
    let d = push_blob(host, &from, b"shared layer");
    let (st, h, b) = request(
        host,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"),
        &[],
        b"",
    );
    ensure!(st == 201, "mount: {st} {}", text(&b));
    ensure!(hget(&h, "docker-content-digest") == Some(d.as_str()), "{h:?}");
    let (st, _, b) = request(host, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(st == 200 && b == b"shared layer", "mounted blob: {st}");
    Ok(())
}

fn mount_of_an_absent_blob_starts_an_upload(host: &str, repo: &str) -> Result<(), String> {
    let d = sha(b"nowhere");
    let (st, h, _) = request(
        host,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={repo}-none"),
        &[],
        b"",
    );
    ensure!(st == 202 && hget(&h, "location").is_some(), "absent mount source: {st}");
    Ok(())
}

fn manifest_naming_absent_blobs_is_refused(host: &str, repo: &str) -> Result<(), String> {
    let cd = push_blob(host, repo, b"{}");
    let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(b"absent"), "size": 6}]})
    .to_string();
    let (st, _, b) = request(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/v1"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        m.as_bytes(),
    );
    ensure!(
        st == 400 && error_code(&b) == "MANIFEST_BLOB_UNKNOWN",
        "{st} {}",
        text(&b)
    );
    let (st, _, _) = request(host, "GET", &format!("/v2/{repo}/manifests/v1"), &[], b"");
    ensure!(st == 404, "stored anyway: {st}");
    Ok(())
}

fn manifest_by_digest_must_hash_to_it(host: &str, repo: &str) -> Result<(), String> {
    let (d, m) = push_image(host, repo, "v1", &[b"x"]);
    let (st, h, _) = request(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/{d}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &m,
    );
    ensure!(
        st == 201 && hget(&h, "docker-content-digest") == Some(d.as_str()),
        "by its digest: {st}"
    );
    let other = sha(b"other");
    let (st, _, b) = request(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/{other}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &m,
    );
    ensure!(st == 400, "by another digest: {st} {}", text(&b));
    Ok(())
}

fn manifest_over_4_mib_is_refused(host: &str, repo: &str) -> Result<(), String> {
    let (_, m) = push_image(host, repo, "v1", &[]);
    let mut v: Value = serde_json::from_slice(&m).unwrap();
    v["annotations"] = json!({"pad": "x".repeat(4 << 20)});
    let big = v.to_string();
    let (st, _, b) = request(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/big"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        big.as_bytes(),
    );
    ensure!(
        (400..500).contains(&st),
        "a {} byte manifest: {st} {}",
        big.len(),
        text(&b)
    );
    let (st, _, _) = request(host, "GET", &format!("/v2/{repo}/manifests/big"), &[], b"");
    ensure!(st == 404, "stored anyway: {st}");
    Ok(())
}

fn sha512_blobs(host: &str, repo: &str) -> Result<(), String> {
    use sha2::Digest as _;
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(b"five twelve")));
    let (_, h, _) = request(host, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    let (st, _, b) = request(
        host,
        "PUT",
        &with_query(&location_path(&h), &format!("digest={d}")),
        &[("Content-Type", "application/octet-stream")],
        b"five twelve",
    );
    ensure!(st == 201, "sha512 PUT: {st} {}", text(&b));
    let (st, _, b) = request(host, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(st == 200 && b == b"five twelve", "sha512 GET: {st}");
    Ok(())
}

fn invalid_names_are_refused(host: &str, _repo: &str) -> Result<(), String> {
    let long = "a".repeat(256);
    for name in ["UPPER/case", "a/../b", long.as_str(), "a//b"] {
        let (st, _, _) = request(host, "POST", &format!("/v2/{name}/blobs/uploads/"), &[], b"");
        ensure!((400..500).contains(&st) && st != 401, "POST for {name}: {st}");
    }
    Ok(())
}

// ------------------------------------------------------------------ content discovery

fn tags_list_sorted_and_paged(host: &str, repo: &str) -> Result<(), String> {
    for t in ["c", "a", "b", "d"] {
        push_image(host, repo, t, &[]);
    }
    let (st, _, b) = request(host, "GET", &format!("/v2/{repo}/tags/list"), &[], b"");
    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    ensure!(
        st == 200 && v["tags"] == json!(["a", "b", "c", "d"]) && v["name"] == json!(repo),
        "{st} {v}"
    );
    let (_, h, b) = request(host, "GET", &format!("/v2/{repo}/tags/list?n=2"), &[], b"");
    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    ensure!(v["tags"] == json!(["a", "b"]), "page 1 {v}");
    let link = hget(&h, "link").ok_or("no Link header")?.to_string();
    ensure!(link.contains("rel=\"next\""), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap_or("").to_string();
    let (_, _, b) = request(host, "GET", &next, &[], b"");
    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    ensure!(v["tags"] == json!(["c", "d"]), "page 2 {v}");
    let (_, _, b) = request(host, "GET", &format!("/v2/{repo}/tags/list?last=b"), &[], b"");
    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    ensure!(v["tags"] == json!(["c", "d"]), "after b {v}");
    Ok(())
}

fn unknown_repository_tags_are_name_unknown(host: &str, repo: &str) -> Result<(), String> {
    let (st, _, b) = request(host, "GET", &format!("/v2/{repo}/tags/list"), &[], b"");
    ensure!(st == 404 && error_code(&b) == "NAME_UNKNOWN", "{st} {}", text(&b));
    Ok(())
}

fn catalog_lists_and_pages(host: &str, repo: &str) -> Result<(), String> {
    for r in ["x", "y", "z"] {
        push_image(host, &format!("{repo}/{r}"), "v1", &[]);
    }
    let (st, _, b) = request(host, "GET", "/v2/_catalog", &[], b"");
    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    let all: Vec<String> = v["repositories"]
        .as_array()
        .ok_or("no list")?
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    ensure!(st == 200, "{st}");
    for r in ["x", "y", "z"] {
        ensure!(all.contains(&format!("{repo}/{r}")), "{repo}/{r} missing from {all:?}");
    }
    let mut sorted = all.clone();
    sorted.sort();
    ensure!(sorted == all, "unsorted {all:?}");
    let (_, h, b) = request(host, "GET", &format!("/v2/_catalog?n=1&last={repo}/x"), &[], b"");
    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    ensure!(v["repositories"] == json!([format!("{repo}/y")]), "page after x: {v}");
    ensure!(
        hget(&h, "link").is_some_and(|l| l.contains("rel=\"next\"")),
        "no Link {h:?}"
    );
    Ok(())
}

fn referrers_with_subject_and_filter(host: &str, repo: &str) -> Result<(), String> {
    let (subject, sm) = push_image(host, repo, "v1", &[b"base"]);
    let empty = push_blob(host, repo, b"{}");
    let art = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": sm.len()},
        "annotations": {"org.example": "yes"}})
    .to_string();
    let ad = sha(art.as_bytes());
    let (st, h, b) = request(
        host,
        "PUT",
        &format!("/v2/{repo}/manifests/{ad}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        art.as_bytes(),
    );
    ensure!(st == 201, "artifact PUT: {st} {}", text(&b));
    ensure!(
        hget(&h, "oci-subject") == Some(subject.as_str()),
        "no OCI-Subject: {h:?}"
    );
    let (st, h, b) = request(host, "GET", &format!("/v2/{repo}/referrers/{subject}"), &[], b"");
    ensure!(st == 200, "referrers: {st} {}", text(&b));
    ensure!(
        hget(&h, "content-type") == Some("application/vnd.oci.image.index.v1+json"),
        "{h:?}"
    );
    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    let m = &v["manifests"];
    ensure!(
        m.as_array().map(Vec::len) == Some(1) && m[0]["digest"] == json!(ad),
        "{v}"
    );
    ensure!(
        m[0]["artifactType"] == json!("application/vnd.example.sbom")
            && m[0]["annotations"]["org.example"] == json!("yes"),
        "{v}"
    );
    let (_, h, b) = request(
        host,
        "GET",
        &format!("/v2/{repo}/referrers/{subject}?artifactType=application/vnd.other"),
        &[],
        b"",
    );
    let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
    ensure!(v["manifests"] == json!([]), "filtered: {v}");
    ensure!(hget(&h, "oci-filters-applied") == Some("artifactType"), "{h:?}");
    Ok(())
}

// ------------------------------------------------------------------ content management

fn delete_manifest_by_digest(host: &str, repo: &str) -> Result<(), String> {
    let (d, _) = push_image(host, repo, "v1", &[b"gone"]);
    let (st, _, b) = request(host, "DELETE", &format!("/v2/{repo}/manifests/{d}"), &[], b"");
    ensure!(st == 202, "DELETE: {st} {}", text(&b));
    for r in [d.as_str(), "v1"] {
        let (st, _, _) = request(host, "GET", &format!("/v2/{repo}/manifests/{r}"), &[], b"");
        ensure!(st == 404, "GET {r} after delete: {st}");
    }
    Ok(())
}

fn delete_tag(host: &str, repo: &str) -> Result<(), String> {
    let (d, _) = push_image(host, repo, "v1", &[]);
    let (st, _, b) = request(host, "DELETE", &format!("/v2/{repo}/manifests/v1"), &[], b"");
    ensure!(st == 202, "DELETE tag: {st} {}", text(&b));
    let (st, _, _) = request(host, "GET", &format!("/v2/{repo}/manifests/v1"), &[], b"");
    ensure!(st == 404, "tag after delete: {st}");
    let (st, _, _) = request(host, "GET", &format!("/v2/{repo}/manifests/{d}"), &[], b"");
    ensure!(st == 200, "the manifest goes with its tag: {st}");
    Ok(())
}

fn delete_blob(host: &str, repo: &str) -> Result<(), String> {
    let d = push_blob(host, repo, b"to delete");
    let (st, _, b) = request(host, "DELETE", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(st == 202, "DELETE blob: {st} {}", text(&b));
    let (st, _, _) = request(host, "GET", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
    ensure!(st == 404, "blob after delete: {st}");
    Ok(())
}

const CHECKS: &[(&str, &str, Check)] = &[
    (
        "pull",
        "base answers with the API version",
        base_answers_with_the_api_version,
    ),
    (
        "pull",
        "manifest by tag and digest, GET and HEAD",
        manifest_by_tag_and_digest_get_and_head,
    ),
    (
        "pull",
        "unknown manifest is MANIFEST_UNKNOWN",
        unknown_manifest_is_manifest_unknown,
    ),
    ("pull", "blobs GET, HEAD and Range", blobs_get_head_and_ranges),
    ("pull", "unknown blob is BLOB_UNKNOWN", unknown_blob_is_blob_unknown),
    (
        "pull",
        "Accept leaves out a type the client cannot read",
        accept_leaves_out_a_type_the_client_cannot_read,
    ),
    ("pull", "an index of manifests", index_of_manifests),
    ("push", "monolithic POST then PUT", monolithic_post_then_put),
    ("push", "a single POST with digest=", single_post_with_digest),
    (
        "push",
        "chunks in order, status, 416 out of order",
        chunked_in_order_with_status_and_out_of_order_416,
    ),
    ("push", "cancel, then BLOB_UPLOAD_UNKNOWN", cancel_then_unknown),
    (
        "push",
        "a digest mismatch stores nothing",
        digest_mismatch_stores_nothing,
    ),
    ("push", "bad digest strings are DIGEST_INVALID", bad_digest_strings),
    ("push", "cross-repository mount", cross_repository_mount),
    (
        "push",
        "a mount of an absent blob starts an upload",
        mount_of_an_absent_blob_starts_an_upload,
    ),
    (
        "push",
        "a manifest naming absent blobs is refused",
        manifest_naming_absent_blobs_is_refused,
    ),
    (
        "push",
        "a manifest by digest must hash to it",
        manifest_by_digest_must_hash_to_it,
    ),
    (
        "push",
        "a manifest over 4 MiB is refused",
        manifest_over_4_mib_is_refused,
    ),
    ("push", "sha512 blobs", sha512_blobs),
    (
        "push",
        "invalid repository names are refused",
        invalid_names_are_refused,
    ),
    ("discovery", "tags list sorted and paged", tags_list_sorted_and_paged),
    (
        "discovery",
        "an unknown repository is NAME_UNKNOWN",
        unknown_repository_tags_are_name_unknown,
    ),
    ("discovery", "catalog lists and pages", catalog_lists_and_pages),
    (
        "discovery",
        "referrers with subject and artifactType filter",
        referrers_with_subject_and_filter,
    ),
    ("management", "delete a manifest by digest", delete_manifest_by_digest),
    ("management", "delete a tag", delete_tag),
    ("management", "delete a blob", delete_blob),
];

/// What distribution 2.8 is known to fail, and why.
const DISTRIBUTION_LACKS: &[(&str, &str)] = &[
    (
        "referrers with subject and artifactType filter",
        "the referrers API is OCI distribution v1.1",
    ),
    ("delete a tag", "2.8 deletes manifests by digest only"),
    (
        "a single POST with digest=",
        "2.8 answers 202 and expects the PUT (the spec lets it)",
    ),
    (
        "chunks in order, status, 416 out of order",
        "2.8 ignores a PATCH's Content-Range",
    ),
    (
        "invalid repository names are refused",
        "2.8 starts uploads for upper-case names",
    ),
    (
        "tags list sorted and paged",
        "2.8 lists tags in storage order unless paged",
    ),
];

fn run_all(reg: &Registry, engine: &str) -> Vec<(String, Result<(), String>)> {
    CHECKS
        .iter()
        .enumerate()
        .map(|(i, (section, name, check))| {
            let repo = format!("conformance/c{i}");
            let r = check(&reg.host, &repo);
            println!(
                "{engine:<13} {section:<11} {:<5} {name}{}",
                if r.is_ok() { "pass" } else { "FAIL" },
                r.as_ref().err().map(|e| format!(": {e}")).unwrap_or_default()
            );
            (name.to_string(), r)
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(root_tier),
    ignore = "root tier: runs registries on loopback from built binaries"
)]
fn conformance_side_by_side_with_distribution() {
    let wharf = Registry::start_engine(Engine::Wharf, "127.0.0.1", None, false, &[]);
    let dist = Registry::start_engine(Engine::Distribution, "127.0.0.1", None, false, &[]);
    let w = run_all(&wharf, "wharf-registry");
    let d = run_all(&dist, "distribution");
    let wfail: Vec<_> = w.iter().filter(|(_, r)| r.is_err()).collect();
    let passed = |v: &[(String, Result<(), String>)]| v.iter().filter(|(_, r)| r.is_ok()).count();
    println!(
        "wharf-registry passes {}/{}, distribution 2.8 {}/{}",
        passed(&w),
        w.len(),
        passed(&d),
        d.len()
    );
    assert!(wfail.is_empty(), "wharf-registry fails: {wfail:?}");
    let dfail: Vec<&str> = d.iter().filter(|(_, r)| r.is_err()).map(|(n, _)| n.as_str()).collect();
    let mut expected: Vec<&str> = DISTRIBUTION_LACKS.iter().map(|(n, _)| *n).collect();
    let mut got = dfail.clone();
    expected.sort();
    got.sort();
    assert_eq!(
        got, expected,
        "distribution fails other checks than known (a check may be wrong): {d:?}"
    );
}
