"""The documentation site builds strictly, its generated pages carry the YAML comments and the records,
and every command's --help is built from its YAML's comments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mdlm_dna.utils.config_docs import check_documented, command_names, read_config_doc
from mdlm_dna.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
pytest.importorskip("mkdocs_jupyter")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)], cwd=ROOT,
                       capture_output=True, text=True, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_build_generates_command_tutorial_and_api_pages(site):
    for name in command_names():  # every command module with a config, not a hard-coded list
        assert (site / "commands" / name / "index.html").is_file(), name
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert (site / "notebooks" / nb.stem / "index.html").is_file(), nb.name
    assert "DiffusionLM" in (site / "api" / "diffusionlm" / "index.html").read_text()
    assert "python -m mdlm_dna.pretrain" in (site / "index.html").read_text()  # the README is the home page


def test_command_page_lists_each_key_with_its_yaml_comment(site):
    html = (site / "commands" / "score" / "index.html").read_text()
    for k in read_config_doc(ROOT / "configs" / "score.yaml").keys:
        assert f"<code>{k.path}</code>" in html
    assert "noise draws per window (diffusion objectives)" in html  # the comment of t_samples in score.yaml
    pretrain = (site / "commands" / "pretrain" / "index.html").read_text()
    assert "caduceus_ps" in pretrain and "A CPU-sized DiT for the default run and tests." in pretrain  # group options


def test_benchmark_pages_hold_rows_of_their_records(site):
    sampling = (ROOT / "benchmarks" / "bench_samplers_L1024.md").read_text()
    row = next(line for line in sampling.splitlines() if "1024 | cached" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    html = (site / "benchmarks" / "index.html").read_text()
    assert all(f"<td>{c}</td>" in html for c in cells if c), row
    first = (ROOT / "benchmarks" / "quality_vs_steps.csv").read_text().splitlines()[1]
    bits = float(first.split('",')[1].split(",")[1])
    assert f"<td>{bits:.4f}</td>" in (site / "benchmarks" / "sample-quality" / "index.html").read_text()
    for record, page in [("finetune_memory.md", "benchmarks/cpu"), ("gue_table.md", "guide/finetuning")]:
        row = next(line for line in (ROOT / "benchmarks" / record).read_text().splitlines() if "| caduceus_ps" in line
                   or "| cnn " in line)
        html = (site / page / "index.html").read_text()
        assert all(f">{c.strip()}</td>" in html for c in row.strip("|").split("|") if c.strip()), (record, row)


def test_summary_tables_are_computed_from_their_run_records(site):
    import csv
    import statistics

    with (ROOT / "benchmarks" / "paper_claims_runs.csv").open() as f:  # independent: the mean over seeds by hand
        bpb = [float(r["bpb"]) for r in csv.DictReader(f)
               if (r["genome"], r["objective"], r["overrides"], r["steps"]) == ("ecoli", "ar", "", "600")]
    assert len(bpb) >= 2
    html = (site / "benchmarks" / "paper-claims" / "index.html").read_text()
    assert f">{statistics.fmean(bpb):.4f}</td>" in html  # a right-aligned cell
    assert ">2.0001</td>" not in html  # only what the records hold


def test_a_key_without_a_comment_fails_the_build(tmp_path):
    from mkdocs.exceptions import PluginError

    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks
    finally:
        sys.path.remove(str(ROOT / "docs"))
    (tmp_path / "demo.yaml").write_text("# python -m mdlm_dna.demo\nalpha: 1   # documented\nbeta:\n  gamma: 2\n")
    with pytest.raises(ConfigError, match=r"demo.yaml: key 'beta.gamma' has no comment"):
        check_documented(read_config_doc(tmp_path / "demo.yaml"))
    with pytest.raises(PluginError, match=r"beta.gamma"):
        hooks.command_page("demo", tmp_path)
    documented_above = "# python -m mdlm_dna.demo\nalpha: 1   # documented\nbeta:\n  # above\n  gamma: 2\n"
    (tmp_path / "demo.yaml").write_text(documented_above)
    assert "| `beta.gamma` | `2` | above |" in hooks.command_page("demo", tmp_path)


def test_group_option_descriptions_keep_command_lines_as_code():
    from mdlm_dna.utils.config_docs import _prose

    lines = ["Any FASTA:", "python -m x a=1 \\", "b=2", "Then more."]
    assert _prose(lines) == "Any FASTA: `python -m x a=1 b=2` Then more."


def test_every_command_config_is_documented():
    for name in command_names():
        check_documented(read_config_doc(ROOT / "configs" / f"{name}.yaml"))


@pytest.mark.parametrize("name", ["score", "sample"])
def test_help_is_the_commands_own(name, monkeypatch, capsys):
    module = __import__(f"mdlm_dna.{name}", fromlist=["main"])
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as e:
        module.main()
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: python -m mdlm_dna.{name} ckpt=SOURCE")
    assert "t_samples" in out or "num_samples" in out
    assert "cache_dir" in out and "$MDLM_DNA_CACHE" in out  # Hydra's $-template escaped correctly
    assert "Example: python -m mdlm_dna." in out
    assert "Powered by Hydra" not in out  # not Hydra's generic help
