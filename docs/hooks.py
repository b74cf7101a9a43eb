"""MkDocs hook: the generated pages of the docs site (``hooks: [docs/hooks.py]`` in mkdocs.yml).

- ``index.md``: the README, its links pointed at the site's pages.
- ``commands/<name>.md`` for every ``configs/<name>.yaml`` with a command module ``mdlm_dna/<name>.py``
  (``mdlm_dna.utils.config_docs``): usage, description, config groups, every key with its default and its
  YAML comment. A key without a comment stops the build with the file and the key.
- ``notebooks/<name>.ipynb`` (the Tutorials) for every notebook in ``notebooks/`` (rendered by mkdocs-jupyter, not run).
- ``benchmarks/<name>.png``: the figures the benchmark scripts write beside their records, so a page under
  ``docs/benchmarks/`` shows one as ``![...](<name>.png)`` (the record stays the one file, not a copy in docs/).
- ``<!-- record: PATH [columns] -->`` in a page becomes the record's table: a Markdown record is included as it
  is, a CSV record rendered as a table (optionally ``col:label:format`` columns, ``;``-separated).
  ``<!-- include: PATH -->`` includes any other file of the repository the same way (``data/SOURCE.md``).
- ``<!-- summary: NAME -->``: a summary table a benchmark script computes from its run record (``SUMMARIES``).
- Sphinx roles in docstrings (``:class:`~x.Y```) render as code (``Y``).
- The nav entries ``commands/`` and ``tutorials/`` expand to those generated pages.
"""

from __future__ import annotations

import ast
import csv
import re
import sys
from pathlib import Path
from types import SimpleNamespace

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's mdlm_dna, also when the package is not installed

from mdlm_dna.utils.config_docs import (  # noqa: E402
    check_documented,
    command_names,
    group_options,
    read_config_doc,
)
from mdlm_dna.utils.errors import ConfigError  # noqa: E402

SOURCE_URL = "https://github.com/mdlm-dna/mdlm-dna/blob/main/"
RECORD = re.compile(r"^(?P<indent>[ \t]*)<!-- (?P<kind>record|include): (?P<path>\S+)(?: (?P<columns>.+?))? -->$", re.M)


def _text(text: str) -> str:
    """A YAML comment as Markdown: ``<input stem>`` is text, not an HTML tag (code spans are left alone)."""
    parts = text.split("`")
    parts[::2] = [p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for p in parts[::2]]
    return "`".join(parts)


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|").replace("\n", " ")


def command_page(name: str, configs: Path) -> str:
    """The Markdown page of one command, from its YAML's comments."""
    doc = read_config_doc(configs / f"{name}.yaml")
    try:
        check_documented(doc)
    except ConfigError as e:
        raise PluginError(str(e)) from None
    out = [f"# {name}", "", "```bash", doc.usage, "```", ""]
    if doc.description:
        out += [_text(doc.description), ""]
    out += [f"`python -m mdlm_dna.{name} --help` prints the same from the same file, "
            f"[`configs/{name}.yaml`]({SOURCE_URL}configs/{name}.yaml).", ""]
    if doc.groups:
        out += ["## Config groups", "", "Choose one with `GROUP=OPTION` (each option is `configs/GROUP/OPTION.yaml`).",
                ""]
        for group, default, comment in doc.groups:
            if group == "_self_" or not (configs / group).is_dir():
                continue
            out += [f"### `{group}` (default `{default}`)", ""] + ([_text(comment), ""] if comment else [])
            out += ["| option | what it is |", "| --- | --- |"]
            out += [f"| `{o}` | {_cell(c)} |" for o, c in group_options(group, configs)] + [""]
    out += ["## Keys", "", "Set any key on the command line as `KEY=VALUE`.", "",
            "| key | default | what it does |", "| --- | --- | --- |"]
    for k in doc.keys:
        if k.section:
            out.append(f"| **`{k.path}`** | | {_cell(k.comment)} |")
        else:
            out.append(f"| `{k.path}` | `{k.default}` | {_cell(k.comment)} |")
    return "\n".join(out) + "\n"


def commands_index(names: list[str], configs: Path) -> str:
    out = ["# Commands", "", "Every command is `python -m mdlm_dna.NAME key=value ...`, a thin Hydra shell over the "
           "Python API; each page is generated from the comments of `configs/NAME.yaml`.", "",
           "| command | usage |", "| --- | --- |"]
    for name in names:
        out.append(f"| [{name}]({name}.md) | `{read_config_doc(configs / f'{name}.yaml').usage}` |")
    return "\n".join(out) + "\n"


def render_csv(path: Path, columns: str | None) -> str:
    """A CSV record as a Markdown table; ``columns`` picks ``col:label:format`` entries separated by ``;``."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    specs = []
    for part in (columns.split(";") if columns else list(rows[0]) if rows else []):
        name, label, fmt = (part.strip().split(":") + ["", ""])[:3]
        specs.append((name, label or name, fmt))

    def fmt_value(value: str, fmt: str) -> str:
        if not fmt or value in ("", None):
            return value or ""
        try:
            return format(float(value), fmt)
        except ValueError:
            return value

    out = ["| " + " | ".join(label for _, label, _ in specs) + " |", "|" + " --- |" * len(specs)]
    out += ["| " + " | ".join(_cell(fmt_value(r.get(n, ""), f)) for n, _, f in specs) + " |" for r in rows]
    return "\n".join(out)


def record(path: str, columns: str | None, page: str, kind: str = "record") -> str:
    file = ROOT / path
    if not file.is_file():
        raise PluginError(f"{page}: record {path} not found")
    body = render_csv(file, columns) if file.suffix == ".csv" else file.read_text().strip()
    if file.suffix == ".md":
        body = re.sub(r"^(#{1,5}) ", r"#\1 ", body, flags=re.M)  # the record's headings sit under the page's
    what = "the record " if kind == "record" else ""
    return f"{body}\n\n*Generated from {what}[`{path}`]({SOURCE_URL}{path}).*"


def home_page() -> str:
    """The site's home page is the README (one front page): its links rewritten from the repository to the site."""
    text = (ROOT / "README.md").read_text()
    text = text.replace("](docs/api/)", "](api/diffusionlm.md)").replace("](docs/", "](")
    text = text.replace("| Commands (generated) |", "| [Commands](commands/index.md) (generated) |")
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if notebooks:
        text = text.replace("| Tutorials (generated) |", f"| [Tutorials](notebooks/{notebooks[0].name}) (generated) |")
    return re.sub(r"\]\((LICENSE|CHANGELOG\.md|DEVELOPERS\.md)\)", lambda m: f"]({SOURCE_URL}{m[1]})", text)


def _benchmark(name: str) -> SimpleNamespace:
    """A script of benchmarks/ without its heavy imports: its functions, its UPPER_CASE constants and its
    standard-library / ``common`` / ``seed_stats`` imports, so that a table function runs without importing torch
    (the build stays fast). A statement that needs anything else is left out; a table function that used it would
    fail."""
    path = ROOT / "benchmarks" / f"{name}.py"
    light = set(sys.stdlib_module_names) | {"common", "seed_stats", "__future__"}
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    ns: dict = {"__name__": f"docs_{name}", "__file__": str(path)}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if not all(m.split(".")[0] in light for m in mods):
                continue
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if not all(isinstance(t, ast.Name) and t.id.isupper() for t in targets):
                continue
        elif not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        try:
            exec(compile(ast.Module([node], type_ignores=[]), str(path), "exec"), ns)
        except (NameError, ImportError):  # a constant built from a heavy import: not needed by the tables
            pass
    return SimpleNamespace(**ns)


def _paper_claims_rows(csv_name: str) -> list[dict]:
    pc = _benchmark("paper_claims")
    return [r for r in pc.read_rows(ROOT / "benchmarks" / csv_name) if int(r["steps"]) == 600]


def _claims() -> str:
    base = [r for r in _paper_claims_rows("paper_claims_runs.csv") if not r["overrides"]]
    return _benchmark("paper_claims").table(base)


def _ablations() -> str:
    base = [r for r in _paper_claims_rows("paper_claims_runs.csv") if not r["overrides"]]
    return _benchmark("paper_claims").ablation_table(base, _paper_claims_rows("paper_ablations_runs.csv"))


def _genomic_benchmarks() -> str:
    gb = _benchmark("genomic_benchmarks_table")
    runs = gb.read_runs(ROOT / "benchmarks" / "genomic_benchmarks_runs.csv")
    return gb.table([r for r in runs if r["data"] == "tables"])


# Summary tables the benchmark scripts compute from their run records, by the script's own table function (the
# page shows what `--table-only` prints): name -> (record, function)
SUMMARIES = {
    "paper_claims": ("benchmarks/paper_claims_runs.csv", _claims),
    "paper_ablations": ("benchmarks/paper_ablations_runs.csv", _ablations),
    "genomic_benchmarks": ("benchmarks/genomic_benchmarks_runs.csv", _genomic_benchmarks),
}
SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):<code>~?([^<]*)</code>")
SUMMARY = re.compile(r"^(?P<indent>[ \t]*)<!-- summary: (?P<name>\w+) -->$", re.M)


def summary(name: str, page: str) -> str:
    if name not in SUMMARIES:
        raise PluginError(f"{page}: no summary table {name!r} (known: {', '.join(SUMMARIES)})")
    path, make = SUMMARIES[name]
    return f"{make()}\n\n*Computed from the record [`{path}`]({SOURCE_URL}{path}) by the script's own table function.*"


def on_config(config):
    configs = ROOT / "configs"
    names = command_names(configs, ROOT / "mdlm_dna")
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))

    def expand(items):
        out = []
        for item in items:
            if item == "commands/":
                out += ["commands/index.md"] + [f"commands/{n}.md" for n in names]
            elif item == "tutorials/":
                out += [f"notebooks/{p.name}" for p in notebooks]
            elif isinstance(item, dict):
                out.append({k: expand(v) if isinstance(v, list) else v for k, v in item.items()})
            else:
                out.append(item)
        return out

    config["nav"] = expand(config["nav"])
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, so that it renders the generated notebook files
def on_files(files: Files, config) -> Files:
    configs = ROOT / "configs"
    names = command_names(configs, ROOT / "mdlm_dna")
    files.append(File.generated(config, "index.md", content=home_page()))
    files.append(File.generated(config, "commands/index.md", content=commands_index(names, configs)))
    for name in names:
        files.append(File.generated(config, f"commands/{name}.md", content=command_page(name, configs)))
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        # a real File under the repository root (not File.generated): mkdocs-jupyter reads abs_src_path,
        # which a generated file's wrapper does not carry
        files.append(File(f"notebooks/{nb.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    for png in sorted((ROOT / "benchmarks").glob("*.png")):  # the scripts' figures, at benchmarks/<name>.png
        files.append(File(f"benchmarks/{png.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    def expand(m: re.Match) -> str:  # indented inside a list item: indent the whole record the same
        body = record(m["path"], m["columns"], page.file.src_uri, m["kind"])
        return "\n".join(m["indent"] + line if line else line for line in body.splitlines())

    def expand_summary(m: re.Match) -> str:
        body = summary(m["name"], page.file.src_uri)
        return "\n".join(m["indent"] + line if line else line for line in body.splitlines())

    return SUMMARY.sub(expand_summary, RECORD.sub(expand, markdown))


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings written for Sphinx: ``:class:`~a.b.C``` shows as ``C`` in code, not as the raw role."""
    return SPHINX_ROLE.sub(lambda m: f"<code>{m[1].rsplit('.', 1)[-1] if m[0].count('~') else m[1]}</code>", html)
