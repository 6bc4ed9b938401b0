"""OCI image layouts in a tar, as build/image-index writes them, for the push tests:
a small one made here (two platforms, a few bytes each), and a copy of a real one
whose images set one more environment variable (a release a client can tell apart).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pathlib
import tarfile

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def read(path: pathlib.Path) -> dict[str, bytes]:
    """Every file of the layout tar, by name."""
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def top(files: dict[str, bytes]) -> dict:
    """The descriptor index.json names: the image index, with its ref.name."""
    return json.loads(files["index.json"])["manifests"][0]


def blob(files: dict[str, bytes], descriptor: dict) -> bytes:
    return files["blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")]


def _put(files: dict[str, bytes], data: bytes, media_type: str, **extra) -> dict:
    files["blobs/sha256/" + digest(data).removeprefix("sha256:")] = data
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def _write(path: pathlib.Path, files: dict[str, bytes], index: bytes, version: str) -> str:
    descriptor = _put(files, index, INDEX, annotations={REF_NAME: version})
    files["oci-layout"] = canonical({"imageLayoutVersion": "1.0.0"})
    files["index.json"] = canonical({"schemaVersion": 2, "mediaType": INDEX, "manifests": [descriptor]})
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            member = tarfile.TarInfo(name)
            member.size, member.mode = len(data), 0o644
            tar.addfile(member, io.BytesIO(data))
    return descriptor["digest"]


def small(path: pathlib.Path, version: str = "9.9.9") -> str:
    """A layout of one index, linux/amd64 and linux/arm64, each image one file of a
    few bytes; returns the index digest."""
    files: dict[str, bytes] = {}
    manifests = []
    for arch in ("amd64", "arm64"):
        plain = io.BytesIO()
        with tarfile.open(fileobj=plain, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            member = tarfile.TarInfo("hello")
            member.size = len(arch)
            tar.addfile(member, io.BytesIO(arch.encode()))
        config = canonical({"architecture": arch, "os": "linux", "config": {},
                            "rootfs": {"type": "layers", "diff_ids": [digest(plain.getvalue())]}})
        manifest = canonical({"schemaVersion": 2, "mediaType": MANIFEST,
                              "config": _put(files, config, CONFIG),
                              "layers": [_put(files, gzip.compress(plain.getvalue(), mtime=0), LAYER)]})
        manifests.append(_put(files, manifest, MANIFEST, platform={"architecture": arch, "os": "linux"}))
    index = canonical({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests})
    return _write(path, files, index, version)


def with_env(source: pathlib.Path, target: pathlib.Path, line: str) -> str:
    """A copy of the layout at source whose every image also sets `line` (NAME=value)
    in its config's Env: same layers, new configs, manifests and index. Returns the
    new index digest."""
    files = read(source)
    old = top(files)
    index = json.loads(blob(files, old))
    for entry in index["manifests"]:
        manifest = json.loads(blob(files, entry))
        config = json.loads(blob(files, manifest["config"]))
        config["config"]["Env"] = [*config["config"].get("Env", []), line]
        manifest["config"] = _put(files, canonical(config), manifest["config"]["mediaType"])
        entry.update(_put(files, canonical(manifest), entry["mediaType"]))
    return _write(target, files, canonical(index), old["annotations"][REF_NAME])
