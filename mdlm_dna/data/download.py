"""Resumable HTTP downloads with checksum verification (stdlib ``urllib`` only).

A file is written to ``NAME.part`` and renamed to ``NAME`` only after its checksum matches, so
a final file is never partial or corrupt. An interrupted transfer (dropped connection, killed
process) continues from the ``.part`` file with an HTTP ``Range`` request; a server that
ignores ``Range`` makes the download start over. A host that cannot be reached at all is an
:class:`OfflineError` at once (no retries), so that ``prepare`` can say which files to fetch
elsewhere.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mdlm_dna.utils.errors import UserError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
USER_AGENT = "mdlm-dna-prepare/0.1 (+python urllib)"


class DownloadError(UserError, RuntimeError):
    """A file could not be downloaded; the message names the URL and the file."""


class ChecksumError(DownloadError):
    """The bytes do not match the published checksum."""


class OfflineError(DownloadError):
    """The host cannot be reached at all (no network, DNS failure, connection refused)."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: where from, its name in the target folder, and the checksum its source publishes."""

    url: str
    name: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None  # bytes, when known: checked before hashing (cheap) and shown in messages
    what: str = ""  # one line for messages, e.g. "hg38 FASTA (UCSC)"

    def checksum_text(self) -> str:
        parts = [f"md5 {self.md5}" if self.md5 else "", f"sha256 {self.sha256}" if self.sha256 else ""]
        return ", ".join(p for p in parts if p) or "no published checksum"


def file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK * 8):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, f: RemoteFile) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has ``f``'s size and checksums."""
    if f.size is not None and (got := path.stat().st_size) != f.size:
        raise ChecksumError(f"{path}: size {got:,} bytes, expected {f.size:,} (from {f.url})")
    for algo in ("md5", "sha256"):
        want = getattr(f, algo)
        if want and (got := file_digest(path, algo)) != want.lower():
            raise ChecksumError(f"{path}: {algo} {got} does not match the published {want} (from {f.url})")


def _is_unreachable(e: BaseException) -> bool:
    """True for errors that mean "no route to this host at all", as opposed to a transfer that broke.

    Only asked before a first connection succeeded, so a timeout here is a firewall dropping packets.
    """
    reason = getattr(e, "reason", e)
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError, TimeoutError)):
        return True
    return isinstance(reason, OSError) and reason.errno in (101, 113)  # ENETUNREACH, EHOSTUNREACH


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"bytes (\d+)-", value or "")
    return int(m.group(1)) if m else None


def download(
    f: RemoteFile,
    dest_dir: str | os.PathLike,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 2.0,
    progress: bool = True,
) -> Path:
    """Fetch ``f`` into ``dest_dir / f.name`` (resuming a ``.part`` file) and verify it; return the path.

    A final file that is already there is verified and kept; one that fails verification is an
    error (it was put there by hand or by another tool, so we do not delete it).
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / f.name
    if final.exists():
        try:
            verify(final, f)
        except ChecksumError as e:
            raise ChecksumError(f"{e}; this file was already there: delete it to download it again") from None
        log.info("%s: present and verified", final)
        return final
    part = final.with_name(final.name + ".part")
    attempt, connected_once, restarted_on_416 = 0, False, False
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(f.url, headers=headers), timeout=timeout) as resp:
                connected_once = True
                status = resp.status
                if have and status == 206 and _content_range_start(resp.headers.get("Content-Range")) != have:
                    log.warning("%s: server resumed at the wrong offset; starting over", f.url)
                    part.unlink(missing_ok=True)
                    continue
                if have and status == 200:
                    log.info("%s: server ignored the Range request; starting over", f.url)
                    have = 0
                length = resp.headers.get("Content-Length")
                expected_end = have + int(length) if length is not None else None
                _copy(resp, part, append=have > 0, label=f.name if progress else None, total=f.size)
            got = part.stat().st_size
            if expected_end is not None and got < expected_end:
                raise http.client.IncompleteRead(b"", expected_end - got)
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and have and not restarted_on_416:
                # nothing left to send: the .part file is complete (verified below) or longer than the file
                if f.size is None or have == f.size:
                    break
                restarted_on_416 = True
                part.unlink(missing_ok=True)
                continue
            if e.code in (408, 429) or e.code >= 500:
                err: BaseException = e
            else:
                raise DownloadError(f"{f.url}: HTTP {e.code} {e.reason} (wanted for {final})") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if not connected_once and _is_unreachable(e):
                raise OfflineError(f"{f.url}: host unreachable ({getattr(e, 'reason', e)})") from None
            err = e
        attempt += 1
        if attempt > retries:
            raise DownloadError(
                f"{f.url}: gave up after {retries} retries ({err}); the partial file {part} is kept, "
                "run again to resume"
            ) from None
        wait = backoff * 2 ** (attempt - 1)
        log.warning(
            "%s: transfer interrupted (%s); resuming in %.1f s (retry %d/%d)", f.url, err, wait, attempt, retries
        )
        time.sleep(wait)
    try:
        verify(part, f)
    except ChecksumError as e:
        part.unlink(missing_ok=True)  # resuming from corrupt bytes would stay corrupt
        raise ChecksumError(f"{e}; the download was deleted, run again to fetch it anew") from None
    os.replace(part, final)
    return final


def _copy(resp, part: Path, append: bool, label: str | None, total: int | None) -> None:
    """Stream ``resp`` into ``part``: a progress bar on a terminal, else a log line every 10 s."""
    last = time.monotonic()
    start = part.stat().st_size if append and part.exists() else 0
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=label, leave=False,
               disable=None if label else True)
    with bar, open(part, "ab" if append else "wb") as out:
        while block := resp.read(_CHUNK):
            out.write(block)
            bar.update(len(block))
            if label and bar.disable and time.monotonic() - last > 10:
                last = time.monotonic()
                done = out.tell()
                pct = f" ({100 * done / total:.1f} %)" if total else ""
                log.info("%s: %.1f MB%s", label, done / 1e6, pct)
        out.flush()
        os.fsync(out.fileno())
