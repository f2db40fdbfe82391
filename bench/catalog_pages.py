"""Reads a registry's whole catalog, page by page as its Link headers lead, on one connection;
fails unless it saw the number of repositories given."""

import http.client
import json
import sys

host, want = sys.argv[1], int(sys.argv[2])
h, p = host.split(":")
k = http.client.HTTPConnection(h, int(p), timeout=60)
path, seen = "/v2/_catalog", 0
while path:
    k.request("GET", path)
    r = k.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"{path}: {r.status}")
    seen += len(json.loads(body)["repositories"])
    link = r.getheader("Link")
    path = link[link.index("<") + 1:link.index(">")] if link else None
    if path and "://" in path:
        path = path[path.index("/", path.index("://") + 3):]
if seen < want:
    sys.exit(f"saw {seen} repositories, wanted {want}")
