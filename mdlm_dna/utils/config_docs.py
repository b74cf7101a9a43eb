"""A command's documentation, read from the comments of its ``configs/<name>.yaml``.

The YAML comments are the documentation: the header comment says what the command does (its first
line is the usage), and every key carries a comment (on its line, or on the comment lines just above
it). ``--help`` (through Hydra's help template, see :func:`help_text`) and the docs site's command
pages (``docs/hooks.py``) are both built from :func:`read_config_doc`, so they cannot disagree.

Example::

    >>> doc = read_config_doc(config_dir() / "score.yaml")
    >>> doc.usage
    'python -m mdlm_dna.score ckpt=SOURCE input=seqs.fa [out=scores.tsv]'
    >>> [k.path for k in doc.keys][:2]
    ['ckpt', 'input']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mdlm_dna.utils.errors import ConfigError
from mdlm_dna.utils.resources import config_dir

_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.\-]*)\s*:(?:\s+(?P<rest>.*))?$")
_SKIPPED = ("hydra", "defaults")  # Hydra's own settings; the defaults list is documented as config groups


@dataclass
class KeyDoc:
    """One key of a command config: dotted path, default as written in the YAML, and its comment."""

    path: str
    default: str
    comment: str
    section: bool = False  # a mapping whose keys follow (its comment is optional)


@dataclass
class ConfigDoc:
    """A config file's header comment, its keys and its defaults list (the config groups it composes)."""

    file: Path
    header: list[str]
    keys: list[KeyDoc] = field(default_factory=list)
    groups: list[tuple[str, str, str]] = field(default_factory=list)  # (group, default option, comment)

    @property
    def usage(self) -> str:
        """The header's first line (by convention the command line)."""
        return self.header[0] if self.header else ""

    @property
    def description(self) -> str:
        """The header after the usage line, blank comment lines kept as paragraph breaks."""
        return "\n".join(self.header[1:]).strip()


def _split_comment(text: str) -> tuple[str, str]:
    """``'64   # draws'`` -> ``('64', 'draws')``; a ``#`` inside quotes is part of the value."""
    quote = None
    for i, ch in enumerate(text):
        if ch in "'\"":
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), ""


def read_config_doc(path: str | Path) -> ConfigDoc:
    """Parse a config's comments line by line (PyYAML drops them).

    A key's comment is the text after ``#`` on its line, continued on the following comment-only lines
    indented deeper than the key, or else the comment lines directly above it at its own indentation.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    doc = ConfigDoc(file=path, header=[])
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        doc.header.append(lines[i].lstrip()[1:].strip())
        i += 1
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing sections
    pending: list[str] = []
    pending_indent = -1
    last: KeyDoc | None = None
    last_indent = -1
    last_inline = False
    for n in range(i, len(lines)):
        raw = lines[n]
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if not stripped:
            pending, last = [], None
            continue
        if stripped.startswith("#"):
            text = stripped[1:].strip()
            if last is not None and last_inline and indent > last_indent and not pending:
                last.comment = f"{last.comment} {text}".strip()
            else:
                last = None
                if indent != pending_indent:
                    pending = []
                pending.append(text)
                pending_indent = indent
            continue
        if stripped.startswith("- "):  # an item of a block list: part of the key above
            value, comment = _split_comment(stripped[2:])
            if stack and stack[-1][1] == "defaults" and ":" in value:
                group, option = (s.strip() for s in value.split(":", 1))
                doc.groups.append((group.removeprefix("override "), option, comment))
            elif last is not None:
                last.default = (last.default[:-1] + ", " if last.default.endswith("]") else "[") + value + "]"
                last.section = False
            pending = []
            continue
        m = _KEY.match(raw)
        if m is None:
            pending, last = [], None
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = m["key"]
        value, comment = _split_comment(m["rest"] or "")
        last_inline = bool(comment) and bool(value)
        if not comment and pending and pending_indent == indent:
            comment = " ".join(pending)
        pending = []
        full = ".".join([k for _, k in stack] + [key])
        if not value:
            stack.append((indent, key))
        if full.split(".")[0] in _SKIPPED:
            last = None
            continue
        last = KeyDoc(path=full, default=value, comment=comment, section=not value)
        last_indent = indent
        doc.keys.append(last)
    for k in doc.keys:  # a "section" with no keys under it was an empty value (`key:`), i.e. null
        if k.section and not any(o.path.startswith(k.path + ".") for o in doc.keys):
            k.section, k.default = False, k.default or "null"
    return doc


def undocumented_keys(doc: ConfigDoc) -> list[str]:
    """Keys without a comment (sections excepted: their keys carry the documentation)."""
    return [k.path for k in doc.keys if not k.section and not k.comment]


def check_documented(doc: ConfigDoc) -> None:
    """Raise a one-line :class:`ConfigError` naming the file and the first key without a comment."""
    missing = undocumented_keys(doc)
    if missing:
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise ConfigError(f"{doc.file}: key {missing[0]!r} has no comment; document it in the YAML{more}")


def command_names(configs: Path | None = None, package: Path | None = None) -> list[str]:
    """Every ``configs/<name>.yaml`` with a command module ``mdlm_dna/<name>.py``, sorted.

    >>> "score" in command_names()
    True
    """
    configs = configs or config_dir()
    package = package or Path(__file__).resolve().parents[1]  # the mdlm_dna package: one module per command
    return sorted(p.stem for p in configs.glob("*.yaml") if (package / f"{p.stem}.py").is_file())


def _prose(lines: list[str]) -> str:
    """Header lines as one paragraph; a command line (``python ...``, continued after a trailing ``\\``) as code."""
    parts: list[str] = []
    code = False
    for line in lines:
        if code:  # the continuation of a command line
            parts[-1] = parts[-1][:-1].rstrip(" \\") + " " + line + "`"
        elif line.startswith("python "):
            parts.append(f"`{line}`")
        else:
            parts.append(line)
        code = parts[-1].endswith("`") and line.endswith("\\")
    return " ".join(parts)


def group_options(group: str, configs: Path | None = None) -> list[tuple[str, str]]:
    """``(option, first paragraph of its header comment)`` for every ``configs/<group>/<option>.yaml``."""
    folder = (configs or config_dir()) / group
    out = []
    for p in sorted(folder.glob("*.yaml")):
        header = read_config_doc(p).header
        while header and not header[0]:
            header = header[1:]
        paragraph = header[: header.index("")] if "" in header else header
        out.append((p.stem, _prose(paragraph)))
    return out


def help_text(name: str, configs: Path | None = None) -> str:
    """The ``python -m mdlm_dna.<name> --help`` text: usage, purpose, every key with default and comment.

    Registered as the OmegaConf resolver ``${command_help:NAME}`` (see
    :func:`mdlm_dna.utils.resources.register_resolvers`) and used by each command YAML as
    ``hydra.help.template``; ``$`` is doubled because Hydra formats the template with ``string.Template``.
    """
    configs = configs or config_dir()
    doc = read_config_doc(configs / f"{name}.yaml")
    out = [f"{name}: {doc.usage}", ""]
    if doc.description:
        out += [doc.description, ""]
    if doc.groups:
        out.append("Config groups (choose with GROUP=OPTION):")
        for group, default, comment in doc.groups:
            if group == "_self_" or not (configs / group).is_dir():
                continue
            opts = ", ".join(o for o, _ in group_options(group, configs))
            out.append(f"  {group} (default {default}): {opts}" + (f"  # {comment}" if comment else ""))
        out.append("")
    out.append("Keys (KEY=VALUE on the command line; default, then what it does):")
    width = max((len(k.path) for k in doc.keys), default=0)
    for k in doc.keys:
        if k.section:
            out.append(f"  {k.path}:" + (f"  # {k.comment}" if k.comment else ""))
        else:
            out.append(f"  {k.path.ljust(width)}  {k.default:<10}  {k.comment}")
    out += ["", f"Example: {doc.usage}", "Docs: the command's page of the documentation site (docs/commands/)."]
    out += ["Hydra's own flags: --cfg job (print the composed config), --hydra-help, --info."]
    return "\n".join(out).replace("$", "$$") + "\n"
