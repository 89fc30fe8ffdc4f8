"""Fetching and verifying dataset files: official URL first, then mirrors, checksums always.

A `Resource` names one file, the URLs it can come from (official first), and its checksum.
`fetch` downloads it into a folder (streamed to a temporary file, progress on stderr), verifies
the checksum, and moves it into place atomically. A file already present and verified is never
downloaded again: after the first full check a small `<name>.verified` stamp records its size,
mtime and digest, so later loads skip re-hashing gigabytes.

A present file with the wrong checksum is moved aside to `<name>.corrupt` (never silently
deleted) and reported. When every URL fails (or `offline=True`, or `VAELAB_OFFLINE=1`), the
`DataError` lists each expected file with its checksum and URLs, the folder to put it in, and the
`vaelab data NAME --from PATH` command that imports files the user already has.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vaelab.data.base import DataError

__all__ = [
    "Resource",
    "fetch",
    "fetch_all",
    "file_digest",
    "import_resources",
    "is_offline",
    "missing_message",
    "verify",
]

CHUNK = 1 << 20  # bytes per read while streaming and hashing
TIMEOUT = 30.0  # seconds without data before a connection is given up
USER_AGENT = "vaelab-data/0.1 (+https://github.com/vaelab)"


@dataclass(frozen=True)
class Resource:
    """One downloadable file.

    Attributes:
        filename: name of the file in the dataset folder.
        urls: where to get it, the official source first, then mirrors.
        sha256: hex SHA-256 of the file; "" only where no SHA-256 is published (then `md5`).
        size: size in bytes, when known (checked before hashing: a cheap first test).
        md5: hex MD5, for files whose only published checksum is an MD5 (CelebA, Stanford Cars).
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str
    size: int | None = None
    md5: str = ""

    def __post_init__(self) -> None:
        if not self.filename or "/" in self.filename or self.filename.startswith("."):
            raise ValueError(f"filename must be a plain file name, got {self.filename!r}")
        if not isinstance(self.urls, tuple):
            raise TypeError(f"urls must be a tuple of strings, got {type(self.urls).__name__}")
        for name, value, length in (("sha256", self.sha256, 64), ("md5", self.md5, 32)):
            if value and (len(value) != length or any(c not in "0123456789abcdef" for c in value)):
                raise ValueError(f"{name} of {self.filename} must be {length} lower-case hex digits")

    @property
    def checksum(self) -> tuple[str, str]:
        """(algorithm, hex digest) used to verify the file; ("", "") if none is known."""
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        return "", ""

    def describe(self) -> str:
        """One block of text: name, size, checksum and URLs, for error messages."""
        algorithm, digest = self.checksum
        size = f", {self.size:,} bytes" if self.size else ""
        check = f"{algorithm} {digest}" if algorithm else "no published checksum"
        urls = "".join(f"\n      {url}" for url in self.urls) or "\n      (no public URL)"
        return f"  {self.filename}{size}, {check}; from:{urls}"


def is_offline(offline: bool = False) -> bool:
    """True when `offline` is set or the environment variable VAELAB_OFFLINE is 1/true/yes."""
    return offline or os.environ.get("VAELAB_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _write_stamp(path: Path, digest: str) -> None:
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "digest": digest}
    _stamp_path(path).write_text(json.dumps(record))


def _stamp_matches(path: Path, digest: str) -> bool:
    try:
        record = json.loads(_stamp_path(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return record == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "digest": digest}


def verify(resource: Resource, path: Path, stamp: bool = True) -> str | None:
    """Checks a file against the resource's size and checksum.

    `stamp=False` writes no `.verified` stamp beside it (for files outside vaelab's data folder:
    an import never writes into the folder it reads from).

    Returns:
        None when the file matches, otherwise the reason it does not (for messages).
    """
    size = path.stat().st_size
    if resource.size is not None and size != resource.size:
        return f"size {size:,} bytes, expected {resource.size:,}"
    algorithm, expected = resource.checksum
    if not algorithm or _stamp_matches(path, expected):
        return None
    actual = file_digest(path, algorithm)
    if actual != expected:
        return f"{algorithm} {actual}, expected {expected}"
    if stamp:
        _write_stamp(path, expected)
    return None


def _move_aside(path: Path, reason: str) -> Path:
    corrupt = path.with_name(path.name + ".corrupt")
    os.replace(path, corrupt)
    _stamp_path(path).unlink(missing_ok=True)
    print(f"vaelab: {path} is corrupt ({reason}); moved it to {corrupt}", file=sys.stderr)
    return corrupt


def _download(url: str, resource: Resource, target: Path, timeout: float) -> None:
    """Streams `url` to a temporary file beside `target`, verifies it, renames it into place."""
    from tqdm.auto import tqdm

    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            total = response.headers.get("Content-Length")
            with tqdm(
                total=int(total) if total else resource.size,
                unit="B",
                unit_scale=True,
                desc=resource.filename,
                file=sys.stderr,
                disable=None,  # no bar when stderr is not a terminal
                leave=False,
            ) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        problem = verify(resource, tmp)
        if problem:
            raise DataError(f"checksum mismatch ({problem})")
        os.replace(tmp, target)
        algorithm, digest = resource.checksum
        if algorithm:
            _write_stamp(target, digest)
    finally:
        tmp.unlink(missing_ok=True)


def missing_message(
    dataset: str, folder: Path, resources: Sequence[Resource], failures: Iterable[str] = ()
) -> str:
    """The text of the error raised when files cannot be found or fetched."""
    lines = [f"{dataset or 'dataset'}: the files below are missing and could not be downloaded."]
    failures = list(failures)
    if failures:
        lines.append("Attempts:")
        lines += [f"  {failure}" for failure in failures]
    lines.append("Expected files:")
    lines += [resource.describe() for resource in resources]
    lines.append(f"Put them in {folder}")
    command = f"vaelab data {dataset} --from PATH" if dataset else "vaelab data NAME --from PATH"
    lines.append(f"or run `{command}` (PATH: a downloaded file or a folder holding them).")
    return "\n".join(lines)


def _try_fetch(
    resource: Resource, folder: Path, offline: bool, timeout: float
) -> tuple[Path | None, list[str]]:
    """(path, []) on success, else (None, what went wrong for each attempt)."""
    target = folder / resource.filename
    failures: list[str] = []
    if target.is_file():
        problem = verify(resource, target)
        if problem is None:
            return target, []
        corrupt = _move_aside(target, problem)
        failures.append(f"{target} was corrupt ({problem}); moved to {corrupt}")
    if is_offline(offline):
        failures.append(f"{resource.filename}: offline (VAELAB_OFFLINE=1 or offline=True)")
        return None, failures
    folder.mkdir(parents=True, exist_ok=True)
    for url in resource.urls:
        try:
            _download(url, resource, target, timeout)
            return target, []
        except urllib.error.HTTPError as error:
            failures.append(f"{url}: HTTP {error.code} {error.reason}")
        except (urllib.error.URLError, OSError, DataError, ValueError) as error:
            failures.append(f"{url}: {getattr(error, 'reason', None) or error}")
    return None, failures


def fetch(
    resource: Resource,
    folder: str | os.PathLike,
    offline: bool = False,
    dataset: str = "",
    timeout: float = TIMEOUT,
) -> Path:
    """Returns the path of a verified copy of `resource` in `folder`, downloading it if needed.

    Args:
        resource: the file to get.
        folder: where it lives (created if needed).
        offline: never touch the network (also when VAELAB_OFFLINE=1).
        dataset: registry name, for the error message.
        timeout: seconds without data before a URL is given up.

    Raises:
        DataError: the file is absent (or corrupt) and no URL delivered a verified copy; the
            message says which file, its checksum, the URLs and where to put it.
    """
    return fetch_all([resource], folder, offline=offline, dataset=dataset, timeout=timeout)[0]


def fetch_all(
    resources: Sequence[Resource],
    folder: str | os.PathLike,
    offline: bool = False,
    dataset: str = "",
    timeout: float = TIMEOUT,
) -> list[Path]:
    """`fetch` for several files; one `DataError` names every file that could not be had."""
    folder = Path(folder)
    paths: list[Path] = []
    missing: list[Resource] = []
    failures: list[str] = []
    for resource in resources:
        path, problems = _try_fetch(resource, folder, offline, timeout)
        failures += problems
        if path is None:
            missing.append(resource)
        else:
            paths.append(path)
    if missing:
        raise DataError(missing_message(dataset, folder, missing, failures))
    return paths


def import_resources(
    resources: Sequence[Resource], from_path: str | os.PathLike, folder: str | os.PathLike,
    dataset: str = "",
) -> list[Path]:
    """Copies the given files from `from_path` (a file or a folder searched recursively) into
    `folder`, verifying each; files already present and verified are kept.

    Raises:
        FileNotFoundError: `from_path` does not exist.
        DataError: a file is not found under `from_path`, or its checksum is wrong.
    """
    source = Path(from_path).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"--from {source}: no such file or folder")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for resource in resources:
        target = folder / resource.filename
        if target.is_file() and verify(resource, target) is None:
            paths.append(target)
            continue
        if source.is_file():
            candidates = [source] if source.name == resource.filename else []
        else:
            candidates = sorted(source.rglob(resource.filename))
        if not candidates:
            raise DataError(
                f"{dataset}: {resource.filename} not found under {source}\n"
                + missing_message(dataset, folder, [resource])
            )
        problem = verify(resource, candidates[0], stamp=False)
        if problem:
            raise DataError(f"{dataset}: {candidates[0]} does not match: {problem}")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        shutil.copyfile(candidates[0], tmp)
        os.replace(tmp, target)
        algorithm, digest = resource.checksum
        if algorithm:
            _write_stamp(target, digest)
        paths.append(target)
    return paths
