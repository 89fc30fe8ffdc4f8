"""The example blocks of the documentation work: README.md, CONTRIBUTING.md and docs/**/*.md.

- ```toml blocks parse; a run config (a [model], [objective], [data] or [train] table) loads
  through `vaelab.build_run_config`, a sweep file ([axes], seeds, [[variants]]) through
  `vaelab.sweep.parse_sweep`.
- ```ini blocks parse with configparser; one in the configurable-conv seed's format (an
  [architecture] section) loads through `vaelab.ini` and `vaelab.build_run_config`.
- ```python blocks compile and run, in a temporary folder, unless tagged ```python title="sketch"
  (compiled only). The convention is documented in CONTRIBUTING.md ("Documentation").

Also: every page under docs/ is in mkdocs.yml's nav (the strict site build needs it too).
"""

from __future__ import annotations

import configparser
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md",
             *sorted((ROOT / "docs").rglob("*.md"))]
CHECKED = ("toml", "ini", "python")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
RUN_CONFIG_TABLES = {"model", "objective", "data", "train"}
SWEEP_KEYS = {"axes", "seeds", "variants", "search"}
SKETCH = re.compile(r'title\s*=\s*"sketch\b')


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language and info string, its text."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    info: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang == "python" and not SKETCH.search(self.info)


def fenced_blocks(text: str, path: Path) -> list[Block]:
    """Every fenced block of a Markdown text (CommonMark fences; indented ones dedented)."""
    blocks: list[Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = lines[j].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        else:
            raise AssertionError(f"{path}:{i + 1}: a code fence is never closed")
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(path, i + 1, lang, info, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def checked_blocks() -> list[Block]:
    return [block for path in DOC_FILES
            for block in fenced_blocks(path.read_text(encoding="utf-8"), path)
            if block.lang in CHECKED]


def check_toml(block: Block) -> None:
    data = tomllib.loads(block.text)
    if SWEEP_KEYS & data.keys():
        from vaelab.sweep import parse_sweep

        parse_sweep(data, name="docs", source=block.where)
    elif RUN_CONFIG_TABLES & data.keys():
        import vaelab

        vaelab.build_run_config(config=data)


def check_ini(block: Block) -> None:
    parser = configparser.ConfigParser()
    parser.read_string(block.text, source=block.where)
    if parser.has_section("architecture"):
        import vaelab
        from vaelab.ini import run_config_dict_from_ini_text

        data = run_config_dict_from_ini_text(block.text, source=block.where)
        vaelab.build_run_config(config=data, name="docs")


def check_python(block: Block) -> None:
    code = compile(block.text, block.where, "exec")
    if block.runs:
        exec(code, {"__name__": "__docs__"})


CHECKS = {"toml": check_toml, "ini": check_ini, "python": check_python}
BLOCKS = checked_blocks()


def test_the_docs_have_example_blocks_of_each_kind():
    """A parser that found no block would pass every check below: it must find them."""
    found = {block.lang for block in BLOCKS}
    assert found == set(CHECKED), found
    assert any(block.runs for block in BLOCKS)
    assert any(block.path.name == "README.md" and block.runs for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: f"{block.where}:{block.lang}")
def test_example_block(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs written by the examples land here
    CHECKS[block.lang](block)


# Planted bugs: each broken block must fail its check (a check that cannot fail tests nothing).
BROKEN = [
    ("toml", "", 'name = "x"\n[model\nname = "burgess"\n'),  # bad TOML syntax
    ("toml", "", '[model]\nname = "burgess"\nlatent_dimm = 4\n'),  # unknown run-config key
    ("toml", "", '[objective]\nname = "beta_tcvae"\nbeta = "high"\n'),  # wrong type
    ("toml", "", 'preset = "default"\nseeds = [1]\n[axes]\n"objective.bta" = [1.0]\n'),  # sweep
    ("ini", "", "[architecture]\nz_dimension = 2\n[architecture]\n"),  # duplicate section
    ("ini", "", "[configuration]\ndataset = MNIST\n[architecture]\nconv_layers = 1\n"
                "conv_channels = [8]\nconv_kernel_sizes = [(3, 3)]\nconv_strides = [(1, 1)]\n"
                "conv_paddings = [(1, 1)]\nz_dimension = two\n"),  # not a number
    ("python", "", "def f(:\n    pass\n"),  # does not compile
    ("python", "", "import vaelab\nvaelab.list_names('modells')\n"),  # fails when run
]


@pytest.mark.parametrize("lang, info, text", BROKEN, ids=[f"{lang}{i}" for i, (lang, _, _)
                                                         in enumerate(BROKEN)])
def test_a_broken_block_fails_its_check(lang, info, text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = Block(ROOT / "docs" / "planted.md", 1, lang, f"{lang} {info}".strip(), text)
    with pytest.raises(Exception):  # noqa: B017 (any error is the check failing)
        CHECKS[lang](block)


def test_a_sketch_compiles_but_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sketch = Block(ROOT / "docs" / "planted.md", 1, "python", 'python title="sketch"',
                   "raise RuntimeError('a sketch never runs')\n")
    check_python(sketch)
    with pytest.raises(SyntaxError):
        check_python(Block(sketch.path, 1, "python", sketch.info, "x = (\n"))


def test_fences_are_read_as_commonmark_does():
    text = ("intro\n```toml\na = 1\n```\n\n- item\n\n    ```python title=\"sketch\"\n    x = 1\n"
            "    ```\n````ini\n```\n[s]\n````\n")
    blocks = fenced_blocks(text, ROOT / "x.md")
    assert [(b.lang, b.line, b.text) for b in blocks] == [
        ("toml", 2, "a = 1\n"), ("python", 8, "x = 1\n"), ("ini", 11, "```\n[s]\n")]
    assert not blocks[1].runs


def nav_pages() -> set[str]:
    """The .md paths named in mkdocs.yml (its nav), read without a YAML library."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:"):]
    return set(re.findall(r"([\w./-]+\.md)\s*$", nav, flags=re.M))


def test_every_docs_page_is_in_the_nav():
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    missing = sorted(pages - nav_pages())
    assert not missing, f"add these pages to nav in mkdocs.yml: {missing}"
    assert not sorted(nav_pages() - pages), "mkdocs.yml's nav names pages that do not exist"
