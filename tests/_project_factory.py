"""Build throwaway brainattr projects (params.yml + tiny notebooks) in a temporary folder."""
from __future__ import annotations

from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def write_notebook(path: Path, parameters: str, body: str = "", title: str | None = None,
                   tag: bool = True) -> Path:
    """A notebook with a markdown title, a parameters cell and one code cell of ``body``."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = new_code_cell(parameters)
    if tag:
        cell.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell(f"# {title or path.stem}"), cell]
    if body:
        nb.cells.append(new_code_cell(body))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


FIRST = '''from typing import Optional
context = 80  # words of preceding context
model = "smollm2-135m"  # language model
subjects = ["sub-01", "sub-02"]  # simulated subjects
max_words: Optional[int] = None  # keep only the first words (None: all)
'''
SECOND = '''from typing import Optional, Union
context = 80  # words of preceding context
alpha = 1.5  # a float
layers: Union[list, str] = "all"  # layers to fit
n_trs: Optional[int] = 8  # held-out TRs
'''


def make_project(root: Path, params: dict | None = None, first_body: str = "", second_body: str = "") -> Path:
    """Two notebooks (``01_first``, ``02_second``) and a params.yml; returns the params.yml path."""
    write_notebook(root / "notebooks" / "01_first.ipynb", FIRST,
                   first_body or "print('first', context, model, subjects, max_words)")
    write_notebook(root / "notebooks" / "02_second.ipynb", SECOND,
                   second_body or "print('second', context, alpha, layers, n_trs)")
    params = params or {
        "default_profile": "quick",
        "global": {"context": 80, "model": "smollm2-135m"},
        "notebooks": {
            "01_first": {"title": "First", "params": {"subjects": ["sub-01"]}},
            "02_second": {"title": "Second", "params": {"alpha": 2.0}},
        },
        "profiles": {
            "quick": {},
            "paper": {"global": {"context": 640}, "notebooks": {"02_second": {"n_trs": None}}},
            "tiny": {"global": {"context": 8, "model": "tiny-random", "max_words": 600},
                     "notebooks": {"02_second": {"layers": [1, 2], "alpha": 3}}},
        },
    }
    path = root / "params.yml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
