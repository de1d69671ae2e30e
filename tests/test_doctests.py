"""Every docstring example in the package runs (doctest), and the README's Python section runs as written."""
from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
WITH_EXAMPLES = sorted(".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
                       for p in (SRC / "ecglens").rglob("*.py") if ">>> " in p.read_text())


def test_some_modules_have_examples():
    assert "ecglens" in WITH_EXAMPLES and "ecglens.api" in WITH_EXAMPLES


@pytest.mark.slow
@pytest.mark.parametrize("module", WITH_EXAMPLES)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def readme_python_blocks() -> list[str]:
    """The ```python blocks of the README's "Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_readme_python_section_runs(tmp_path, monkeypatch):
    blocks = readme_python_blocks()
    assert blocks, "the README has a Python API section with python blocks"
    monkeypatch.chdir(tmp_path)  # anything the examples write lands here
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
