"""Artifacts on shared storage: a hive's adapters, core versions and checkpoints published under a URL
(`--artifacts` / $APIARY_ARTIFACTS_URL; fsspec: a shared directory `file:///...`, an object store
`s3://bucket/prefix` with the s3 extra) so that every node on one store can read them.

The URL mirrors the hive's layout (`URL/adapters/WORKER/vN/`, `URL/cores/vN/`, `URL/checkpoints/WORKER/`), and
each document added to a worker is an artifact of its own (`URL/documents/WORKER/NAME/`, store.documents).
The hive directory stays each node's local cache: a node writes an artifact there as it always has
(atomically, artifacts.write_dir), then publishes it: every file is uploaded, then a MANIFEST.json with
each file's sha256, LAST. A reader trusts only a directory whose manifest exists and whose files match
it; a publish cut off midway (files, no manifest) is refused, saying so, and never half-read. A node
that lacks an artifact fetches it into its hive on first use, through a staging directory, verified.

Imported only when an artifact URL is given: a local hive imports neither this module nor fsspec.
An object store's endpoint and credentials come from its own conventions (for S3: AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, ~/.aws, ...)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.core import url_to_fs

from apiary.store.artifacts import MANIFEST, atomic_write_json, checksums, file_sha256, replace_dir, staging_dir
from apiary.store.names import inside

ARTIFACTS_ENV = "APIARY_ARTIFACTS_URL"
EXTRA_OF = {"s3": "s3", "s3a": "s3"}  # protocol -> the apiary extra that installs its fsspec driver
REPUBLISH = "`apiary check --repair` on the node that wrote it publishes it again"
FILE = "file"  # the one file of an artifact published from a single file (publish_file)


class ArtifactsUnwritable(ValueError):
    """The artifact URL cannot be used: an unknown protocol, a driver not installed, or no write access."""


class ArtifactUntrusted(ValueError):
    """A shared artifact is not whole: its manifest is missing (a publish cut off) or a file does not match it."""


class ArtifactMissing(FileNotFoundError):
    """A recorded artifact is neither in this hive nor under the artifact URL."""


@dataclass(frozen=True)
class SharedArtifacts:
    """The artifact URL, its fsspec filesystem and the root path on it."""
    url: str
    fs: fsspec.AbstractFileSystem
    root: str

    def where(self, key: str) -> str:
        """The remote path of `key` (a path relative to the hive, e.g. adapters/w/v1)."""
        return f"{self.root.rstrip('/')}/{key}" if key else self.root

    def shown(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    # -- publishing -------------------------------------------------------------------------
    def publish(self, local: Path, key: str) -> None:
        """Upload the directory `local` to `key`: the old manifest (if any) first removed, then every file,
        then the new manifest last, so that a reader never trusts a directory caught mid-upload."""
        digests = _own_files(local)
        manifest = self.where(f"{key}/{MANIFEST}")
        if self.fs.exists(manifest):  # an artifact published again (a worker's checkpoint): untrusted while it changes
            self.fs.rm_file(manifest)
        for name in digests:
            target = self.where(f"{key}/{name}")
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(local / name), target)
        self.fs.pipe_file(manifest, json.dumps({"sha256": digests}, indent=2).encode())

    # -- reading ----------------------------------------------------------------------------
    def manifest(self, key: str) -> dict[str, str] | None:
        """The sha256 of each file of the published `key`; None if no manifest is there (never published,
        or a publish cut off). An unreadable manifest is ArtifactUntrusted."""
        self.fs.invalidate_cache(self.where(key))  # another node may have published since this process looked
        try:
            raw = self.fs.cat_file(self.where(f"{key}/{MANIFEST}"))
        except FileNotFoundError:
            return None
        try:
            digests = json.loads(raw)["sha256"]
        except (ValueError, KeyError, TypeError):
            raise ArtifactUntrusted(f"the manifest of {self.shown(key)} is unreadable (a publish cut off while writing "
                                    f"it?), so it is not trusted: {REPUBLISH}") from None
        return {str(name): str(digest) for name, digest in digests.items()}

    def has_files(self, key: str) -> bool:
        return bool(self.fs.exists(self.where(key)) and self.fs.find(self.where(key)))

    def fetch(self, key: str, local: Path, keep_manifest: bool = True) -> None:
        """Download the published `key` into `local` (replaced whole, through a staging directory), each file
        checked against the manifest; ArtifactUntrusted, `local` untouched, if there is no manifest or a file
        does not match; ArtifactMissing if nothing was ever published there."""
        digests = self.manifest(key)
        if digests is None:
            if self.has_files(key):
                raise ArtifactUntrusted(
                    f"{self.shown(key)} has files but no {MANIFEST}: its publish was cut off before the manifest was "
                    f"written, so it is not trusted: {REPUBLISH}")
            raise ArtifactMissing(f"{key} is neither in this hive nor published at {self.shown(key)}: check that every "
                                  "node uses the same --artifacts URL")
        staging = staging_dir(local)
        try:
            for name, digest in digests.items():
                target = inside(staging, staging / name)  # a manifest naming ../ writes nothing outside
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(self.where(f"{key}/{name}"), str(target))
                if file_sha256(target) != digest:
                    raise ArtifactUntrusted(f"{self.shown(key)}/{name} does not match its manifest's sha256 (published "
                                            f"again while being read, or damaged): not trusted; try again, or {REPUBLISH}")
            if keep_manifest:
                atomic_write_json(staging / MANIFEST, {"sha256": digests})
            replace_dir(staging, local)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def refresh(self, key: str, local: Path) -> None:
        """Fetch `key` (a worker's checkpoint, rewritten as a run goes on) if its published manifest differs from
        the files in `local`; while none is published (or one is being published again) `local` is kept as it is."""
        digests = self.manifest(key)
        if digests is not None and digests != _own_files(local):
            self.fetch(key, local, keep_manifest=False)


    # -- single files (the documents added to a worker: one key each, so two nodes adding at once lose none) ------
    def publish_file(self, data: bytes, key: str, near: Path) -> None:
        """Publish `data` as the artifact `key` holding it alone (as FILE), its manifest last (staged beside
        `near`, the local file it will be: published first, then written there, so that a pull between the two
        never puts the older text back over the newer)."""
        staging = staging_dir(near)
        try:
            (staging / FILE).write_bytes(data)
            self.publish(staging, key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def refresh_file(self, key: str, local: Path) -> bool:
        """Replace the file `local` (atomically) by the one published as `key` if they differ; True if it did.
        While nothing whole is published there (never, or being published again) `local` is kept as it is;
        ArtifactUntrusted, `local` untouched, if the download does not match the manifest."""
        digest = (self.manifest(key) or {}).get(FILE)
        if digest is None or (local.is_file() and file_sha256(local) == digest):
            return False
        staging = staging_dir(local)
        try:
            self.fs.get_file(self.where(f"{key}/{FILE}"), str(staging / FILE))
            if file_sha256(staging / FILE) != digest:
                raise ArtifactUntrusted(f"{self.shown(key)}/{FILE} does not match its manifest's sha256 (published "
                                        "again while being read, or damaged): not trusted; try again")
            os.replace(staging / FILE, local)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def children(self, key: str) -> list[str]:
        """The names directly under `key` (none if nothing was published there)."""
        where = self.where(key)
        self.fs.invalidate_cache(where)
        try:
            entries = self.fs.ls(where, detail=False)
        except FileNotFoundError:
            return []
        return sorted({entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries})


def _own_files(local: Path) -> dict[str, str]:
    """The sha256 of the files of the artifact directory `local`, without the temporary files of a killed
    atomic write (`.NAME.*`, which `apiary check` reports as leftovers): these are never published."""
    found = checksums(local) if local.is_dir() else {}
    return {name: digest for name, digest in found.items() if not Path(name).name.startswith(".")}


def open_shared(url: str, probe: bool = True) -> SharedArtifacts:
    """The artifact URL, checked before anything is written: a known protocol, its driver installed, and
    (`probe`) write access, a probe file written and removed. Each failure is one ArtifactsUnwritable naming the fix."""
    fix = f"give --artifacts (or ${ARTIFACTS_ENV}) a directory or bucket this process can write"
    try:
        fs, root = url_to_fs(url)
    except ValueError as err:
        raise ArtifactsUnwritable(f"the artifact URL {url!r} is not one apiary can use ({err}): give a shared directory "
                                  "(file:///PATH) or an object store (s3://BUCKET/PREFIX)") from None
    except ImportError as err:  # fsspec knows the protocol, its driver is not installed
        protocol = url.split("://", 1)[0]
        fix = f"pip install 'apiary[{EXTRA_OF[protocol]}]'" if protocol in EXTRA_OF else str(err).strip()
        raise ArtifactsUnwritable(f"the artifact URL {url!r} needs fsspec's {protocol} driver: {fix}") from None
    if not probe:
        return SharedArtifacts(url=url, fs=fs, root=root)
    probe_file = f"{root.rstrip('/')}/.apiary-write-check-{uuid.uuid4().hex}"
    try:
        fs.makedirs(root, exist_ok=True)
        fs.pipe_file(probe_file, b"")
        fs.rm_file(probe_file)
    except Exception as err:  # noqa: BLE001  (each filesystem fails in its own way: all mean "cannot write here")
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ArtifactsUnwritable(f"cannot write to the artifact URL {url} ({type(err).__name__}: {first}): {fix}") from None
    return SharedArtifacts(url=url, fs=fs, root=root)
