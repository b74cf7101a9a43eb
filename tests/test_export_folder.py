"""An export never removes what it did not write (issue 29's data loss), and refuses folders it must not use."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from mdlm_dna import DiffusionLM
from mdlm_dna.artifacts.checkpoints import CheckpointError
from mdlm_dna.artifacts.export_folder import MANIFEST, ExportFolderError
from mdlm_dna.utils.resources import data_dir


@pytest.fixture(scope="module")
def ecoli():
    return DiffusionLM.from_pretrained("ecoli", device="cpu")


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_foreign_folder_with_a_config_json_is_refused_and_untouched(ecoli, tmp_path):
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "config.json").write_text('{"lr": 0.1}')
    (proj / "thesis.txt").write_text("chapter 1")
    (proj / "sub" / "data.csv").write_text("a,b\n")
    before = tree(proj)
    with pytest.raises(ExportFolderError, match="not an mdlm-dna export"):
        ecoli.save_pretrained(proj)
    assert tree(proj) == before and (proj / "config.json").read_text() == '{"lr": 0.1}'
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]  # no temporary folder left behind


def test_current_directory_and_its_parents_are_refused(ecoli, tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "config.json").write_text('{"format": "mdlm-dna"}')  # even one that claims to be ours
    (work / "notes.txt").write_text("x")
    (work / "src" / "main.py").write_text("print(1)")
    before = tree(work)
    monkeypatch.chdir(work / "src")
    for out in (".", "..", str(work)):
        with pytest.raises(ExportFolderError, match="the current directory"):
            ecoli.save_pretrained(out)
    assert tree(work) == before


def test_a_git_clone_of_an_export_keeps_its_own_files(ecoli, tmp_path):
    clone = ecoli.save_pretrained(tmp_path / "clone")
    (clone / ".git").mkdir()
    (clone / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (clone / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (clone / "NOTES.md").write_text("my notes")
    (clone / "model.safetensors").write_bytes(b"stale")
    ecoli.save_pretrained(clone)
    assert (clone / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (clone / ".gitattributes").exists() and (clone / "NOTES.md").read_text() == "my notes"
    assert (clone / "model.safetensors").stat().st_size > 1000  # replaced by the new export
    DiffusionLM.from_pretrained(clone)


def test_only_files_an_earlier_export_wrote_are_removed(ecoli, tmp_path):
    out = ecoli.save_pretrained(tmp_path / "e")
    manifest = json.loads((out / MANIFEST).read_text())
    (out / "old_weights.bin").write_text("written by an earlier export")
    (out / "mine.txt").write_text("written by the user")
    (out / MANIFEST).write_text(json.dumps({"files": [*manifest["files"], "old_weights.bin", "../escape.txt"]}))
    (tmp_path / "escape.txt").write_text("outside")
    ecoli.save_pretrained(out)
    assert not (out / "old_weights.bin").exists() and (out / "mine.txt").exists()
    assert (tmp_path / "escape.txt").exists()  # a manifest never reaches outside its folder


def test_legacy_export_without_manifest_is_updated_in_place(ecoli, tmp_path):
    legacy = tmp_path / "legacy"
    shutil.copytree(data_dir() / "models" / "ecoli", legacy)
    (legacy / "NOTES.md").write_text("keep")
    assert DiffusionLM.from_pretrained(legacy).loaded.kind == "export"  # old folders still load
    ecoli.save_pretrained(legacy)
    assert (legacy / "NOTES.md").read_text() == "keep" and (legacy / "modeling_mdlm_dna.py").exists()


def test_symlink_file_run_folder_and_overwrite_false_are_refused(ecoli, tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ExportFolderError, match="symbolic link"):
        ecoli.save_pretrained(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportFolderError, match="a file, not a folder"):
        ecoli.save_pretrained(tmp_path / "file")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ExportFolderError, match="a run folder"):
        ecoli.save_pretrained(run)
    done = ecoli.save_pretrained(tmp_path / "done")
    with pytest.raises(ExportFolderError, match="already holds an mdlm-dna export; pass overwrite=True"):
        ecoli.save_pretrained(done, overwrite=False)


def test_the_run_folder_the_model_came_from_is_refused(ecoli, tmp_path):
    from mdlm_dna.artifacts.checkpoints import LoadedFrom

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    m = DiffusionLM(ecoli.module, LoadedFrom("run", "run", run / "checkpoints" / "last.ckpt", ema=True), "cpu")
    with pytest.raises(ExportFolderError, match="run folder"):
        m.save_pretrained(run)
    with pytest.raises(ExportFolderError, match="run folder"):
        m.save_pretrained(run / "checkpoints")


def test_future_format_version_is_a_clear_error(ecoli, tmp_path):
    out = ecoli.save_pretrained(tmp_path / "e")
    meta = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99 is newer"):
        DiffusionLM.from_pretrained(out)


def run_cli(module: str, args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """A command line run in this process (no interpreter start-up): its exit status and stderr."""
    import importlib

    main = importlib.import_module(module).main
    monkeypatch.setattr(sys, "argv", [module, *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_export_cli_out_dot_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    code, err = run_cli("mdlm_dna.export", ["ckpt=ecoli", "out=.", "validation=false", "test=false"], monkeypatch,
                        capsys)
    assert code == 2 and err.strip().startswith("error: out=.: the current directory") and "Traceback" not in err
    assert not (tmp_path / "config.json").exists() and (tmp_path / "notes.txt").read_text() == "x"


def test_card_notes_go_into_the_card_and_survive_a_re_export(tmp_path, monkeypatch, capsys):
    from mdlm_dna.export import export

    notes = tmp_path / "notes.md"
    notes.write_text("Pretrained on corpus X (built by `make_corpus.py`).\n\n| task | MCC |\n|---|---|\n| a | 0.5 |\n")
    first = export({"ckpt": "ecoli", "out": str(tmp_path / "a"), "validation": False, "test": False,
                    "card_notes": str(notes)})
    card = (first / "README.md").read_text()
    assert "## Notes" in card and "built by `make_corpus.py`" in card and "| a | 0.5 |" in card
    assert card.index("## Notes") < card.index("## Usage")
    again = export({"ckpt": str(first), "out": str(tmp_path / "b"), "validation": False, "test": False})
    assert "built by `make_corpus.py`" in (again / "README.md").read_text()  # kept from config.json
    run_config = [json.loads((f / "config.json").read_text())["run_config"] for f in (first, again)]
    assert run_config[0] == run_config[1] and run_config[0]["ema"]["enabled"] is True  # the training run's record
    bare = shutil.copytree(first, tmp_path / "bare")  # a folder whose config.json holds no notes
    config = json.loads((bare / "config.json").read_text())
    del config["notes"]
    (bare / "config.json").write_text(json.dumps(config))
    plain = export({"ckpt": str(bare), "out": str(tmp_path / "c"), "validation": False, "test": False})
    assert "## Notes" not in (plain / "README.md").read_text()
    for bad, message in ((tmp_path / "missing.md", "no such file"), (tmp_path, "a folder, not a file")):
        code, err = run_cli("mdlm_dna.export", ["ckpt=ecoli", f"out={tmp_path / 'd'}", "validation=false",
                                                "test=false", f"card_notes={bad}"], monkeypatch, capsys)
        assert code == 2 and f"card_notes={bad}: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()
