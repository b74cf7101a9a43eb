"""Write an export folder without ever losing a file the package did not write.

Why: an export used to delete its output folder whenever it held a ``config.json``, so a project folder, the
current directory (``out=.``) or a git clone of a published model lost files the user wrote. Now the folder
records what the package wrote (``MANIFEST``, one relative path a line in JSON), and a new export

- refuses ``.`` (or any folder holding the current directory), a symlink, a run folder, a file, and a non-empty
  folder that is not an export of this package, each with one line (:class:`ExportFolderError`);
- into an export of ours replaces only the files it writes and removes only files an earlier export wrote
  (listed in its manifest); ``.git``, ``.gitattributes``, ``NOTES.md`` and anything else stay;
- into a new or empty folder writes everything and renames it into place (never half-written).

    check_export_folder(Path("export/ecoli"), overwrite=True)         # None, or ExportFolderError
    install_files(Path("/tmp/staged"), Path("export/ecoli"))           # staged files -> out, manifest updated
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mdlm_dna.utils.errors import UserError

MANIFEST = ".mdlm-dna-files.json"
# what exports wrote before the manifest existed (format_version 1): only these may be replaced or removed
LEGACY_FILES = ("config.json", "model.safetensors", "README.md", "tokenizer")
# a folder holding these is a fine-tune's run folder, never an export target
RUN_MARKERS = ("checkpoints", "metrics.csv", "classifier.safetensors", "label_mapping.json")


class ExportFolderError(UserError, FileExistsError):
    """The output folder cannot take an export without losing something: the message says why and what to do."""


def _is_our_export(folder: Path) -> bool:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") in ("mdlm-dna", "mdlm-dna-classifier")
    except (OSError, ValueError, AttributeError):
        return False


def written_files(folder: Path) -> list[str]:
    """Relative paths an earlier export wrote into ``folder`` (its manifest; older exports: the fixed set)."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text()).get("files", [])
        except (OSError, ValueError, AttributeError):
            files = []
        return [f for f in files if isinstance(f, str) and _inside(folder, folder / f)]
    return [f for f in LEGACY_FILES if (folder / f).exists()]


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return ".." not in Path(os.path.normpath(path)).relative_to(os.path.normpath(root)).parts


def check_export_folder(out: Path, overwrite: bool = True, protected: tuple[Path, ...] = ()) -> None:
    """Raise :class:`ExportFolderError` unless an export can be written to ``out`` without loss.

    ``protected``: folders that must never be an export's target (the run folder the model came from).
    """
    if out.is_symlink():
        raise ExportFolderError(f"out={out}: a symbolic link; pass the real folder (nothing was written)")
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ExportFolderError(f"out={out}: the current directory (or a folder holding it); pass a new folder "
                                "such as out=export/NAME (nothing was written)")
    for folder in protected:
        if resolved == folder.resolve():
            raise ExportFolderError(f"out={out}: the run folder the model comes from; pass a new folder such as "
                                    "out=export/NAME (nothing was written)")
    if out.exists() and not out.is_dir():
        raise ExportFolderError(f"out={out}: a file, not a folder (nothing was written)")
    existing = next(p for p in [resolved, *resolved.parents] if p.exists())
    if not os.access(existing, os.W_OK) or (out.is_dir() and not os.access(resolved.parent, os.W_OK)):
        raise ExportFolderError(f"out={out}: {existing} is not writable (nothing was written)")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if any((out / marker).exists() for marker in RUN_MARKERS):
        raise ExportFolderError(f"out={out}: a run folder; pass a new folder such as out=export/NAME "
                                "(nothing was written)")
    if not _is_our_export(out):
        raise ExportFolderError(f"out={out}: a non-empty folder that is not an mdlm-dna export; choose a new or "
                                "empty folder (nothing was written)")
    if not overwrite:
        raise ExportFolderError(f"out={out}: already holds an mdlm-dna export; pass overwrite=True to replace the "
                                "files it wrote (other files are kept) or choose another folder")


def _relative_files(root: Path) -> list[str]:
    """Top-level entries of a staged export (a folder such as ``tokenizer`` counts as one entry)."""
    return sorted(p.name for p in root.iterdir())


def install_files(staged: Path, out: Path) -> Path:
    """Move a staged export into ``out`` (checked by :func:`check_export_folder`), keeping foreign files.

    A missing or empty ``out`` is replaced by the staged folder in one rename; an earlier export of ours gets its
    files replaced one by one (config.json last) and loses only the files its manifest lists that this export
    does not write.
    """
    new = _relative_files(staged)
    (staged / MANIFEST).write_text(json.dumps({"files": new}, indent=1) + "\n")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if out.exists():
            out.rmdir()
        os.replace(staged, out)
        return out
    old = written_files(out)
    for name in sorted(new + [MANIFEST], key=lambda n: n == "config.json"):  # config.json last
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(staged / name, target)
    for name in old:
        if name not in new and name != MANIFEST:
            stale = out / name
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            elif stale.exists() or stale.is_symlink():
                stale.unlink()
    shutil.rmtree(staged, ignore_errors=True)
    return out


def usual_permissions(folder: Path) -> None:
    """Files and folders readable as the umask allows: ``mkdtemp`` makes the folder private, an export is shared."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
