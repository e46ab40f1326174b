#!/usr/bin/env python3
"""Writes an OCI image from a JSON spec, for the OCI tests (no container tool needed).

    mkimage.py SPEC.json OUT          OUT becomes an OCI image layout (tag from the spec)
    mkimage.py SPEC.json OUT.tar oci-archive | docker-archive

SPEC: {"tag": "v1", "gzip": true, "config": {"Env": [...], "Cmd": [...], ...},
       "layers": [[ENTRY, ...], ...]} where ENTRY is
  {"path": "a/b", "type": "file|dir|symlink|link|fifo", "data": "text" (or "src": FILE), "mode": 420,
   "uid": 0, "gid": 0, "target": "x", "xattrs": {"user.k": "v"}}
Whiteouts are plain empty files named .wh.NAME / .wh..wh..opq.
"""
import gzip, hashlib, io, json, os, sys, tarfile

def layer_tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["path"])
            kind = e.get("type", "file")
            ti.mode = e.get("mode", 0o755 if kind == "dir" else 0o644)
            ti.uid, ti.gid = e.get("uid", 0), e.get("gid", 0)
            ti.mtime = 1700000000
            data = None
            if kind == "file":
                data = open(e["src"], "rb").read() if "src" in e else e.get("data", "").encode()
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, e["target"]
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, e["target"]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            for k, v in e.get("xattrs", {}).items():
                ti.pax_headers["SCHILY.xattr." + k] = v
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()

def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

def main():
    spec = json.load(open(sys.argv[1]))
    out, kind = sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else "layout")
    blobs, layers, diff_ids, raws = {}, [], [], []
    for entries in spec["layers"]:
        raw = layer_tar(entries)
        raws.append(raw)
        diff_ids.append(digest(raw))
        blob = gzip.compress(raw, mtime=0) if spec.get("gzip", True) else raw
        blobs[digest(blob)] = blob
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if spec.get("gzip", True) else ""),
                       "digest": digest(blob), "size": len(blob)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": spec.get("config", {}),
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    blobs[digest(config)] = config
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digest(config), "size": len(config)},
                           "layers": layers}).encode()
    blobs[digest(manifest)] = manifest
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": spec.get("tag", "latest")}}]}).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for d, b in blobs.items():
        files["blobs/sha256/" + d[7:]] = b
    if kind == "docker-archive":
        # docker save: uncompressed layers at ID/layer.tar, the config at HEX.json.
        files = {digest(config)[7:] + ".json": config}
        for i, raw in enumerate(raws):
            files["%064x/layer.tar" % (i + 1)] = raw
        files["manifest.json"] = json.dumps([{"Config": digest(config)[7:] + ".json",
                                              "RepoTags": ["test/img:" + spec.get("tag", "latest")],
                                              "Layers": ["%064x/layer.tar" % (i + 1) for i in range(len(raws))]}]).encode()
    if kind == "layout":
        for name, b in files.items():
            p = os.path.join(out, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "wb").write(b)
    else:
        with tarfile.open(out, "w") as t:
            for name, b in files.items():
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime = len(b), 1700000000
                t.addfile(ti, io.BytesIO(b))

main()
