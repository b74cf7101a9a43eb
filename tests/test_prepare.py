"""Downloads against a local HTTP server on 127.0.0.1 serving small real files; prepare end to end."""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.server
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from mdlm_dna.data import download as dl
from mdlm_dna.data.datamodule import GenomeDataModule
from mdlm_dna.data.download import ChecksumError, OfflineError, RemoteFile, download
from mdlm_dna.data.prepare import genome_config, items_from_config
from mdlm_dna.prepare import main
from mdlm_dna.utils.resources import data_dir

MT = data_dir() / "genome_samples" / "MT-human.fa"  # real human mitochondrial genome, 16,569 bp
BORZOI_BED = Path("/work/shared/data/intervals/borzoi_hg38_folds/sequences_human.bed.gz")  # development machines


def _mt_bytes() -> bytes:
    return MT.read_bytes()


class _Server:
    """Serves ``files`` (path -> bytes) with Range support; ``cut`` paths drop the first transfer half-way."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and self.path not in server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if self.path in server.cut:
                    server.cut.discard(self.path)  # only the first transfer breaks
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_verifies_md5(server, tmp_path):
    body = _mt_bytes()
    server.files["/mt.fa"] = body
    f = RemoteFile(url=server.url("/mt.fa"), name="mt.fa", md5=hashlib.md5(body).hexdigest())
    path = download(f, tmp_path)
    assert path.read_bytes() == body
    assert not (tmp_path / "mt.fa.part").exists()


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    body = _mt_bytes()
    server.files["/mt.fa"] = body
    server.cut.add("/mt.fa")
    f = RemoteFile(url=server.url("/mt.fa"), name="mt.fa", sha256=hashlib.sha256(body).hexdigest())
    path = download(f, tmp_path, retries=2)
    assert path.read_bytes() == body
    assert server.requests == [("/mt.fa", None), ("/mt.fa", f"bytes={len(body) // 2}-")]


def test_part_file_from_a_killed_run_is_continued(server, tmp_path):
    body = _mt_bytes()
    server.files["/mt.fa"] = body
    (tmp_path / "mt.fa.part").write_bytes(body[:5000])
    path = download(RemoteFile(url=server.url("/mt.fa"), name="mt.fa", md5=hashlib.md5(body).hexdigest()), tmp_path)
    assert path.read_bytes() == body and server.requests == [("/mt.fa", "bytes=5000-")]


def test_server_ignoring_range_starts_over(server, tmp_path):
    body = _mt_bytes()
    server.files["/mt.fa"] = body
    server.ignore_range.add("/mt.fa")
    (tmp_path / "mt.fa.part").write_bytes(body[:5000])
    path = download(RemoteFile(url=server.url("/mt.fa"), name="mt.fa", md5=hashlib.md5(body).hexdigest()), tmp_path)
    assert path.read_bytes() == body  # not body[:5000] + body


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    body = _mt_bytes()
    server.files["/mt.fa"] = body
    wrong = hashlib.md5(body + b"x").hexdigest()
    with pytest.raises(ChecksumError, match=rf"mt\.fa.*md5 {hashlib.md5(body).hexdigest()}.*published {wrong}"):
        download(RemoteFile(url=server.url("/mt.fa"), name="mt.fa", md5=wrong), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_present_file_with_wrong_checksum_is_an_error_not_replaced(server, tmp_path):
    (tmp_path / "mt.fa").write_bytes(b">x\nACGT\n")
    with pytest.raises(ChecksumError, match=r"mt\.fa: size 8 bytes, expected 16,.*delete it to download it again"):
        download(RemoteFile(url=server.url("/mt.fa"), name="mt.fa", size=16_000), tmp_path)
    assert server.requests == [] and (tmp_path / "mt.fa").read_bytes() == b">x\nACGT\n"


def test_http_404_names_url(server, tmp_path):
    with pytest.raises(dl.DownloadError, match=r"/missing\.fa: HTTP 404"):
        download(RemoteFile(url=server.url("/missing.fa"), name="m.fa"), tmp_path)


def test_offline_fails_at_once(tmp_path):
    f = RemoteFile(url=f"http://127.0.0.1:{_closed_port()}/hg38.fa.gz", name="hg38.fa.gz")
    t0 = time.monotonic()
    with pytest.raises(OfflineError, match="unreachable"):
        download(f, tmp_path, retries=5)
    assert time.monotonic() - t0 < 5


def test_silent_host_counts_as_offline_after_one_timeout(tmp_path):
    with socket.socket() as s:  # accepts connections (backlog) but never answers, like a firewalled proxy
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        f = RemoteFile(url=f"http://127.0.0.1:{s.getsockname()[1]}/hg38.fa.gz", name="hg38.fa.gz")
        t0 = time.monotonic()
        with pytest.raises(OfflineError, match="timed out"):
            download(f, tmp_path, retries=5, timeout=0.5)
        assert time.monotonic() - t0 < 3


def test_prepare_offline_message_names_files_urls_and_folder(tmp_path, capsys):
    port = _closed_port()
    out = tmp_path / "g"
    rc = main(["fasta", f"http://127.0.0.1:{port}/MT.fa.gz", "--md5", "0" * 32, "--bed", f"http://127.0.0.1:{port}/i.bed",
               "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{out}/MT.fa.gz" in err and f"http://127.0.0.1:{port}/MT.fa.gz" in err and "md5 " + "0" * 32 in err
    assert f"{out}/i.bed" in err and "run `python -m mdlm_dna.prepare fasta" in err


def test_hg38_spec_is_complete():
    cfg = genome_config("hg38", Path("/data/hg38"))
    assert cfg["path"] == "/data/hg38/hg38.fa" and cfg["bed"] == "/data/hg38/sequences_human.bed.gz"
    items = {it.remote.name: it for it in items_from_config(cfg)}
    fa, bed = items["hg38.fa.gz"], items["sequences_human.bed.gz"]
    assert fa.remote.url == "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/bigZips/hg38.fa.gz"
    assert re.fullmatch(r"[0-9a-f]{32}", fa.remote.md5) and fa.unpack == "hg38.fa"
    if BORZOI_BED.exists():  # the pinned checksum is that of the real file
        assert hashlib.sha256(BORZOI_BED.read_bytes()).hexdigest() == bed.remote.sha256
        assert BORZOI_BED.stat().st_size == bed.remote.size


def test_prepare_fasta_with_bed_end_to_end(server, tmp_path, capsys):
    """Real mitochondrial genome (gzipped on the server) and a BED; a second run uses no network."""
    body = _mt_bytes()
    gz = gzip.compress(body)
    bed = b"# MT intervals\nMT_human\t0\t9000\ttrain\nMT_human\t9000\t13000\tvalid\nMT_human\t13000\t16569\ttest\n"
    server.files |= {"/MT.fa.gz": gz, "/mt.bed": bed}
    out, cache = tmp_path / "g", tmp_path / "cache"
    argv = ["fasta", server.url("/MT.fa.gz"), "--md5", hashlib.md5(gz).hexdigest(), "--bed", server.url("/mt.bed"),
            "--bed-sha256", hashlib.sha256(bed).hexdigest(), "--out", str(out), "--cache-dir", str(cache)]  # fmt: skip
    assert main(argv) == 0
    assert (out / "MT.fa").read_bytes() == body and (out / "mt.bed").read_bytes() == bed
    assert "ready: python -m mdlm_dna.pretrain genome=bed" in capsys.readouterr().out
    n_requests = len(server.requests)
    assert main(argv) == 0 and len(server.requests) == n_requests  # all verified locally

    cfg = genome_config("bed", out) | {"path": str(out / "MT.fa"), "bed": str(out / "mt.bed")}
    dm = GenomeDataModule(cfg, {"seq_len": 1000, "batch_size": 4, "train_samples_per_epoch": 8, "rc_prob": 0.0}, 0,
                          str(cache))  # fmt: skip
    dm.setup()
    assert [(iv.start, iv.end) for iv in dm.splits["validation"]] == [(9000, 13000)]
    seq = "".join(body.decode().split("\n", 1)[1].split())
    batch = next(iter(dm.val_dataloader()))["input_ids"]
    assert batch.shape == (4, 1000)
    for k in range(4):  # the validation interval tiled, read back exactly from the FASTA text
        assert "".join("ACGTN"[i] for i in batch[k].tolist()) == seq[9000 + 1000 * k : 10000 + 1000 * k].upper()


def test_prepare_rerun_into_a_read_only_folder_writes_nothing(server, tmp_path, monkeypatch, capsys):
    """Everything is there already: a second run verifies it and writes nothing (the folder may be read-only)."""
    body = _mt_bytes()
    gz = gzip.compress(body)
    server.files |= {"/MT.fa.gz": gz}
    out, cache = tmp_path / "g", tmp_path / "cache"
    argv = ["fasta", server.url("/MT.fa.gz"), "--md5", hashlib.md5(gz).hexdigest(), "--out", str(out),
            "--cache-dir", str(cache)]  # fmt: skip
    assert main(argv) == 0
    real_write = Path.write_text

    def read_only(self, *a, **k):  # as root, chmod cannot make a folder read-only: refuse writes into it here
        if self.parent == out:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_write(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", read_only)
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != out)
    assert main(argv) == 0
    (out / "prepared.json").unlink()  # now something must be written: refused before any work, in one line
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {out} is not writable and prepared.json must be written there; use another --out")  # noqa: E501
