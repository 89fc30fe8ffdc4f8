"""Claiming a run directory: one process per run, clean-up of only what this process made.

`vaelab train --name X` and `vaelab train --resume X` first *claim* `X`:

* the folder is created with `os.mkdir` (exclusive: of two processes creating it, one wins),
  and whoever creates it or finds it takes an advisory lock (`fcntl.flock`, non-blocking) on
  `X/.vaelab.lock`, held for the rest of the process's work on the run; a second process that
  finds the lock held is refused before it touches anything ("in use by process N");
* the files present at that moment are recorded, so a start that fails before training removes
  only the files this process wrote (and the folder, if this process made it and it is empty);
* a folder that holds a run with a checkpoint is refused for a new run (continue it with
  `--resume`); a folder left by a run that never saved a checkpoint (it crashed, diverged at once
  or was killed early) holds nothing to resume, so a new run (or `--resume`, which then starts
  from step 0 with the stored config) starts over there, replacing those leftovers (config.json,
  logs, TensorBoard events); a folder with any other file is refused.

The lock is per process and re-entrant: the engine (`vaelab.engine.fit`) claims the folder and
keeps it after training, so the workflow that called it (pictures, metrics) still holds it until
`release_run_dir`; a later claim of the same folder by this process reuses the lock and checks
the folder again. It is released by the kernel
when the process ends, however it ends (`kill -9` included), so a stale lock never blocks.
Locks are advisory and local: network file systems without `flock` get no protection.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vaelab.errors import VaelabError

__all__ = [
    "LOCK_NAME",
    "RunClaim",
    "RunDirBusy",
    "claim_run_dir",
    "clean_failed_start",
    "release_run_dir",
    "remove_stale_temporaries",
]

LOCK_NAME = ".vaelab.lock"
# What a run that never saved a checkpoint can leave behind (a new run there starts over).
LEFTOVERS = {"config.json", "train_log.csv", "valid_log.csv", "metrics_log.csv", "tb",
             "checkpoints", LOCK_NAME}


class RunDirBusy(VaelabError):
    """Another process holds the run directory's lock."""


@dataclass
class RunClaim:
    """This process's hold on a run directory (see the module docstring)."""

    path: Path
    created: bool  # this process made the folder
    before: set[str] = field(default_factory=set)  # relative paths present when claimed
    fd: int | None = None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


_CLAIMS: dict[Path, RunClaim] = {}


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _files(root: Path) -> set[str]:
    """Every file and folder under `root`, as paths relative to it."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for name in (*dirnames, *filenames):
            found.add(str(rel / name) if str(rel) != "." else name)
    return found


def _lock_owner(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        return "another process"
    return f"process {pid}" if pid.isdigit() else "another process"


def _take_lock(run_dir: Path) -> int:
    """An open descriptor of `run_dir/.vaelab.lock` holding its exclusive flock."""
    import fcntl

    lock = run_dir / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise RunDirBusy(
                f"{run_dir} is in use by {_lock_owner(lock)} (it holds {lock}); nothing was "
                f"changed. Wait for that run to finish, then continue it with `vaelab train "
                f"--resume {run_dir}`, or choose a new name with --name"
            ) from None
        raise
    pid = f"{os.getpid()}\n".encode()
    if os.pread(fd, 64, 0) != pid:  # the holder's pid, for the message of whoever is refused
        os.ftruncate(fd, 0)
        os.pwrite(fd, pid, 0)
    return fd


def has_checkpoint(run_dir: Path) -> bool:
    """Whether `run_dir/checkpoints` holds a checkpoint (last, periodic or best)."""
    return any((Path(run_dir) / "checkpoints").glob("*.ckpt"))


def claim_run_dir(run_dir: str | os.PathLike, resume: bool) -> RunClaim:
    """Claims `run_dir` for this process (see the module docstring).

    Args:
        run_dir: the run directory.
        resume: continue the run there (it must hold config.json); else start a new run there.

    Raises:
        RunDirBusy: another process holds the folder.
        FileExistsError: a new run, and the folder holds a run with a checkpoint or other files.
        FileNotFoundError: resuming a folder that is not a run.
        VaelabError: the folder cannot be created.
    """
    run_dir = Path(run_dir)
    key = _key(run_dir)
    if resume and not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"cannot resume {run_dir}: it has no config.json (it is not a "
                                "vaelab run directory; start a run with `vaelab train`)")
    claim = _CLAIMS.get(key)
    if claim is None or claim.fd is None:  # else this process holds it already (re-entrant)
        claim = _new_claim(run_dir, resume)
    try:
        for folder in (run_dir, run_dir / "checkpoints"):
            if folder.is_dir():
                check_writable(folder / "probe", "make it writable, or choose another --out "
                               "(or copy the run, cp -r, to a writable folder and resume the copy)")
        if not resume and not claim.created:
            _check_reusable(run_dir)
        remove_stale_temporaries(run_dir)
    except BaseException:
        _CLAIMS.pop(key, None)
        if claim.created:  # a folder made just now, holding only its lock: it goes
            _remove_empty_claimed(run_dir)
        claim.release()
        raise
    claim.before = _files(run_dir)
    _CLAIMS[key] = claim
    return claim


def _new_claim(run_dir: Path, resume: bool) -> RunClaim:
    """Creates the folder (new runs) and takes its lock."""
    for _ in range(20):  # a racing clean-up can remove the folder between mkdir and the lock
        created = False
        if not resume:
            try:
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(run_dir)  # exclusive: of two racing processes exactly one creates it
                created = True
            except FileExistsError:
                if not run_dir.is_dir():
                    raise VaelabError(f"cannot create the run directory {run_dir}: a file of "
                                      "that name exists; choose another --name or --out") from None
            except OSError as error:  # no permission, a read-only disk
                raise VaelabError(f"cannot create the run directory {run_dir}: "
                                  f"{error.strerror or error}; choose another --out") from None
        try:
            return RunClaim(path=run_dir, created=created, fd=_take_lock(run_dir))
        except FileNotFoundError:
            continue
        except PermissionError as error:
            raise VaelabError(f"cannot write in the run directory {run_dir}: "
                              f"{error.strerror or error}; make it writable or choose another "
                              "--out") from None
    raise VaelabError(f"could not claim {run_dir}: other processes keep creating and removing "
                      "it; try again")


def _check_reusable(run_dir: Path) -> None:
    """A new run in an existing folder: empty, or the leftovers of a run without a checkpoint
    (removed here: the new run starts over); anything else is refused, nothing changed."""
    entries = {p.name for p in run_dir.iterdir()} - {LOCK_NAME}
    entries = {e for e in entries if not _is_temporary(e)}
    if not entries:
        return
    if has_checkpoint(run_dir):
        raise FileExistsError(
            f"{run_dir} already exists and holds a trained run; nothing was changed. Continue "
            f"it with `vaelab train --resume {run_dir}`, or choose a new name with --name "
            "(or --out DIR)"
        )
    others = sorted(entries - LEFTOVERS)
    if others:
        raise FileExistsError(
            f"{run_dir} already exists and is not empty ({others[0]} is not part of a vaelab "
            "run); nothing was changed. Choose a new name with --name (or --out DIR)"
        )
    print(f"note: {run_dir} holds a run that never saved a checkpoint; starting it over",
          file=sys.stderr)
    for name in sorted(entries - {"config.json"}):  # config.json: rewritten once set up
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


# Files the training itself writes atomically in the run folder (checkpoints/ holds only its
# checkpoints): their temporaries are stale when the run next starts with its lock held.
TRAINING_FILES = ("config.json", "summary.json", "train_log.csv", "valid_log.csv",
                  "metrics_log.csv", "reconstructions.png", "samples.png", "losses.png",
                  "cluster_samples.png", "prior_traversals.png", "training.gif")


def remove_stale_temporaries(run_dir: str | os.PathLike) -> list[Path]:
    """Removes the `.NAME.XXXX.tmp` files an interrupted atomic write of the training left in
    `checkpoints/` and beside the files training writes (`TRAINING_FILES`). Called with the
    folder's lock held, so no training write is under way; the temporaries of other commands
    (`vaelab eval`'s metrics.json, encode, report), which take no lock, are left alone."""
    run_dir = Path(run_dir)
    removed = []
    for folder in (run_dir, run_dir / "checkpoints"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not (_is_temporary(path.name) and path.is_file()):
                continue
            if folder == run_dir and not any(path.name.startswith(f".{name}.")
                                             for name in TRAINING_FILES):
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _remove_empty_claimed(root: Path) -> None:
    """Removes `root` when it holds nothing but its lock file (called with the lock held)."""
    if root.is_dir() and set(os.listdir(root)) <= {LOCK_NAME}:
        (root / LOCK_NAME).unlink(missing_ok=True)
        try:
            root.rmdir()
        except OSError:
            pass  # another process put a file there meanwhile: it stays


def clean_failed_start(run_dir: str | os.PathLike) -> None:
    """After a start that failed before training: removes what this process wrote in the run
    folder since it claimed it (and the folder, if this process made it), then releases it.
    Files that were there before the claim are never touched."""
    key = _key(Path(run_dir))
    claim = _CLAIMS.get(key)
    if claim is None or claim.fd is None:
        return
    root = claim.path
    if root.is_dir():
        for rel in sorted(_files(root) - claim.before - {LOCK_NAME}, key=len, reverse=True):
            path = root / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
    if claim.created:
        _remove_empty_claimed(root)
    _CLAIMS.pop(key, None)
    claim.release()


def release_run_dir(run_dir: str | os.PathLike) -> None:
    """Ends this process's claim of `run_dir` (the lock file stays; it is harmless)."""
    key = _key(Path(run_dir))
    claim = _CLAIMS.get(key)
    if claim is None:
        return
    _CLAIMS.pop(key, None)
    claim.release()


def check_writable(path: str | os.PathLike, remedy: str, what: str = "") -> None:
    """Checks, before any work, that the file `path` can be written (atomically, beside itself):
    a probe file is created and removed in its folder, or in the nearest existing folder above
    it (which the write would create the rest under). `remedy` ends the message, e.g. "choose
    another --out"; `what` is put before the path ("the report to ").

    A probe, not `os.access`: it also catches read-only mounts and full quota, and is right
    for root, whom permission bits do not stop.

    Raises:
        VaelabError: naming the folder, the OS's reason and `remedy`.
    """
    import tempfile

    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise VaelabError(f"cannot write {what}{path}: {folder} is a file, not a folder; "
                          f"nothing was computed. {remedy[:1].upper()}{remedy[1:]}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".vaelab-probe.", suffix=".tmp")
    except OSError as error:
        raise VaelabError(f"cannot write {what}{path}: {folder} is not writable "
                          f"({error.strerror or error}); nothing was computed. "
                          f"{remedy[:1].upper()}{remedy[1:]}") from None
    os.close(fd)
    os.unlink(probe)


def checkpoint_choices(folder: str | os.PathLike, exclude: str | os.PathLike | None = None
                       ) -> str:
    """The other checkpoints in `folder`, for a message ("step-0000500.ckpt, best.ckpt" or
    "none")."""
    names = [p.name for p in sorted(Path(folder).glob("*.ckpt"))
             if exclude is None or p.resolve() != Path(exclude).resolve()]
    return ", ".join(names) if names else "none"


# ----------------------------------------------------------------------------------------------
# Versions: config.json and every checkpoint carry the vaelab release and the run format that
# wrote them. A newer format is refused with a message that says so; an older one (or none: runs
# from before versions were recorded) is read silently, as this release still reads it.

FORMAT_VERSION = 1  # the run layout (config.json keys, checkpoint contents) this release writes
VERSION_KEYS = ("vaelab_version", "format_version")


def version_stamp() -> dict[str, object]:
    """{"vaelab_version": "0.1.0", "format_version": 1}: added to config.json and checkpoints."""
    from vaelab._version import __version__

    return {"vaelab_version": __version__, "format_version": FORMAT_VERSION}


def stamped_config_json(config) -> str:
    """`config.json`'s text: the run config with the version stamp first."""
    import json

    return json.dumps({**version_stamp(), **config.to_dict()}, indent=2) + "\n"


def check_written_by(data: dict, what: str) -> dict:
    """`data` (a config dict or a checkpoint) without its version keys; refuses data written by a
    newer run format than this release reads.

    Raises:
        VaelabError: naming `what`, the release that wrote it and how to read it.
    """
    from vaelab._version import __version__

    written = data.get("format_version")
    if written is not None and (not isinstance(written, int) or isinstance(written, bool)
                                or written > FORMAT_VERSION):
        release = data.get("vaelab_version", "a newer release")
        raise VaelabError(
            f"{what} was written by vaelab {release} (run format {written}), newer than this "
            f"vaelab {__version__} reads (run format {FORMAT_VERSION} and older); upgrade with "
            "`python3 -m pip install -U vaelab`, or use the release that wrote it"
        )
    return {k: v for k, v in data.items() if k not in VERSION_KEYS}
