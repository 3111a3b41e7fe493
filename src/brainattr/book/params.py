"""The parameters file (``params.yml``): load it, resolve a profile, validate against the notebooks.

``params.yml`` is the one place where run parameters live (the NCAR/CUPiD pattern). Its schema::

    kernel: python3                 # Jupyter kernel that executes the notebooks
    notebooks_dir: notebooks        # where the source notebooks are
    build_dir: build                # executed copies go to <build_dir>/notebooks/
    default_profile: quick          # used when no --profile is given
    global:                         # passed to every notebook that declares the name
      context: 80
      ...
    notebooks:                      # ordered: this is the run order and the book's chapter order
      02_brain_alignment:
        title: Brain alignment      # chapter title in the book
        params: {layers: all}       # for this notebook only
    profiles:                       # named overrides, applied on top of the above
      paper:
        global: {context: 640}
        notebooks:
          02_brain_alignment: {models: [...]}

Precedence, lowest first: the notebook's own parameters cell, ``global``, ``notebooks.<nb>.params``,
``profiles.<p>.global``, ``profiles.<p>.notebooks.<nb>``, command-line ``-p name value``.

Validation uses each notebook's ACTUAL parameters cell (:func:`notebook_parameters`, built on
:func:`papermill.inspect_notebook`): a name the notebook does not declare is an error (with a
"did you mean" suggestion); a value whose type clashes with the declared type is an error; a global
name declared by no notebook is an error. All problems are reported at once in one
:class:`ParamsError`.

The declared type of a parameter is its annotation (``n_trs: Optional[int] = 8``) if it has one,
else the type of its default value (``context = 80`` means int). ``None`` defaults accept anything;
an int is accepted where a float is declared. To accept several types, annotate:
``layers: Union[list, str] = "all"``. The comment after a parameter (``context = 80  # words of
context``) is its meaning in the book's parameter reference.
"""
from __future__ import annotations

import ast
import copy
import difflib
import io as _io
import json
import os
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: File name of the parameters file, at the repository root.
PARAMS_FILE = "params.yml"
#: Keys allowed at the top level of params.yml.
TOP_KEYS = {"kernel", "notebooks_dir", "build_dir", "default_profile", "global", "notebooks", "profiles"}
NOTEBOOK_KEYS = {"title", "params"}
PROFILE_KEYS = {"description", "global", "notebooks"}

_NO_LITERAL = object()  # default value that is not a Python literal (e.g. np.arange(3))


class ParamsError(ValueError):
    """A problem with params.yml, a profile, or parameters given on the command line."""


# --------------------------------------------------------------------------- loading


@dataclass
class NotebookSpec:
    """One notebook listed in params.yml."""

    name: str
    title: str
    params: dict
    path: Path

    @property
    def exists(self) -> bool:
        return self.path.is_file()


@dataclass
class Config:
    """The parsed parameters file."""

    path: Path
    root: Path
    kernel: str
    notebooks_dir: Path
    build_dir: Path
    default_profile: str
    global_params: dict
    notebooks: list[NotebookSpec]
    profiles: dict

    def notebook(self, name: str) -> NotebookSpec:
        """The notebook called ``name``: ``02``, ``02_brain_alignment``, ``brain_alignment`` or a path."""
        return find_notebook(self, name)

    @property
    def names(self) -> list[str]:
        return [nb.name for nb in self.notebooks]


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the first folder holding params.yml, from ``start`` upwards.

    Parameters
    ----------
    start : path, optional
        Where to start looking (default: the current folder). Falls back to the checkout this
        package was installed from (editable installs).

    Returns
    -------
    Path

    Raises
    ------
    ParamsError
        If no params.yml is found.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    source_root = Path(__file__).resolve().parents[3]
    if (source_root / PARAMS_FILE).is_file():
        return source_root
    raise ParamsError(f"No {PARAMS_FILE} found in {here} or its parents; run from the brainattr checkout "
                      f"or pass --params-file.")


def _check_keys(where: str, got, allowed: set) -> list[str]:
    if not isinstance(got, dict):
        return [f"{where} must be a mapping, got {type(got).__name__}."]
    errors = []
    for key in got:
        if key not in allowed:
            hint = _suggest(str(key), allowed)
            errors.append(f"{where}: unknown key {key!r}{hint}; allowed keys: {', '.join(sorted(allowed))}.")
    return errors


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read params.yml and check its structure (keys, mappings, profiles, the default profile).

    Parameters
    ----------
    path : path, optional
        The parameters file (default: ``params.yml`` at :func:`find_root`).

    Returns
    -------
    Config
        Paths in it are absolute, relative to the file's folder.

    Raises
    ------
    ParamsError
        Listing every structural problem (unknown keys with a suggestion, wrong types, no notebooks,
        an unknown default profile). Values are checked later, by :func:`resolve`.
    """
    path = Path(path) if path is not None else find_root() / PARAMS_FILE
    if not path.is_file():
        raise ParamsError(f"Parameters file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    errors = _check_keys(str(path.name), raw, TOP_KEYS)
    if not isinstance(raw, dict):
        raise ParamsError("\n".join(errors))
    root = path.resolve().parent
    nb_dir = root / raw.get("notebooks_dir", "notebooks")
    notebooks = []
    if not isinstance(raw.get("notebooks") or {}, dict):
        raise ParamsError(f"{path}: 'notebooks' must be a mapping of notebook name -> {{title, params}}.")
    if not isinstance(raw.get("profiles") or {}, dict):
        raise ParamsError(f"{path}: 'profiles' must be a mapping of profile name -> {{global, notebooks}}.")
    for name, entry in (raw.get("notebooks") or {}).items():
        entry = entry or {}
        errors += _check_keys(f"notebooks.{name}", entry, NOTEBOOK_KEYS)
        params = entry.get("params") or {} if isinstance(entry, dict) else {}
        if not isinstance(params, dict):
            errors.append(f"notebooks.{name}.params must be a mapping.")
            params = {}
        title = entry.get("title", name) if isinstance(entry, dict) else name
        notebooks.append(NotebookSpec(str(name), str(title), params, nb_dir / f"{name}.ipynb"))
    if not notebooks:
        errors.append(f"{path.name} lists no notebooks.")
    profiles = raw.get("profiles") or {}
    for pname, prof in profiles.items():
        prof = prof if prof is not None else {}
        profiles[pname] = prof
        errors += _check_keys(f"profiles.{pname}", prof, PROFILE_KEYS)
        if isinstance(prof, dict):
            for nb in prof.get("notebooks") or {}:
                if nb not in [n.name for n in notebooks]:
                    errors.append(f"profiles.{pname}.notebooks: {nb!r} is not a notebook listed under "
                                  f"'notebooks'{_suggest(nb, [n.name for n in notebooks])}.")
    global_params = raw.get("global") or {}
    if not isinstance(global_params, dict):
        errors.append("'global' must be a mapping.")
    default_profile = raw.get("default_profile", "quick")
    if profiles and default_profile not in profiles:
        errors.append(f"default_profile {default_profile!r} is not one of the profiles: {', '.join(profiles)}.")
    if errors:
        raise ParamsError(f"{path}:\n  " + "\n  ".join(errors))
    return Config(path=path.resolve(), root=root, kernel=str(raw.get("kernel", "python3")), notebooks_dir=nb_dir,
                  build_dir=root / raw.get("build_dir", "build"), default_profile=default_profile,
                  global_params=global_params, notebooks=notebooks, profiles=profiles)


def find_notebook(config: Config, name: str) -> NotebookSpec:
    """Look a notebook up by any of its names.

    Parameters
    ----------
    config : Config
    name : str
        ``02``, ``02_brain_alignment``, ``brain_alignment`` or ``notebooks/02_brain_alignment.ipynb``.

    Returns
    -------
    NotebookSpec

    Raises
    ------
    ParamsError
        If no notebook of params.yml has that name (with a suggestion and the list of notebooks).
    """
    key = Path(str(name)).name
    key = key[:-6] if key.endswith(".ipynb") else key
    names = config.names
    for nb in config.notebooks:
        number, _, rest = nb.name.partition("_")
        if key in (nb.name, number, rest):
            return nb
    raise ParamsError(f"No notebook {name!r} in {config.path.name}{_suggest(key, names)}; "
                      f"notebooks: {', '.join(names)}.")


# --------------------------------------------------------------------------- inspecting notebooks


@dataclass
class Parameter:
    """One parameter declared in a notebook's parameters cell."""

    name: str
    default_source: str
    default: Any = _NO_LITERAL
    annotation: str | None = None
    help: str = ""
    types: tuple | None = None  # accepted Python types; None = anything

    @property
    def type_name(self) -> str:
        if self.annotation:
            return self.annotation
        if self.default is _NO_LITERAL:
            return "any"
        if self.default is None:
            return "any (default None)"
        return type(self.default).__name__


def parameters_cell(nb) -> tuple[int, Any]:
    """The cell tagged ``parameters``.

    Parameters
    ----------
    nb : nbformat.NotebookNode

    Returns
    -------
    index : int
    cell : nbformat.NotebookNode

    Raises
    ------
    ParamsError
        If not exactly one cell is tagged ``parameters``.
    """
    tagged = [(i, c) for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ParamsError(f"expected exactly one cell tagged 'parameters', found {len(tagged)}.")
    return tagged[0]


def notebook_problems(path: str | os.PathLike) -> list[str]:
    """Hygiene problems of a SOURCE notebook.

    A source notebook is stored without outputs or execution counts, and its first code cell, and
    only that cell, is tagged ``parameters``.

    Parameters
    ----------
    path : path
        The notebook.

    Returns
    -------
    list of str
        One sentence per problem; empty if the notebook is clean.
    """
    import nbformat

    nb = nbformat.read(Path(path), as_version=4)
    problems = []
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    for i, c in code:
        if c.get("outputs"):
            problems.append(f"cell {i} has outputs (clear them before committing)")
        if c.get("execution_count") is not None:
            problems.append(f"cell {i} has an execution count ({c.execution_count})")
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"expected exactly one cell tagged 'parameters', found {len(tagged)}")
    elif not code or tagged[0] != code[0][0]:
        problems.append("the cell tagged 'parameters' is not the first code cell")
    return problems


_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "List": list, "tuple": tuple,
               "Tuple": tuple, "dict": dict, "Dict": dict, "None": type(None), "NoneType": type(None)}


def _annotation_types(annotation: str | None) -> tuple | None:
    """Accepted types for an annotation such as ``int``, ``Optional[int]``, ``Union[list, str]``, ``list | str``."""
    if not annotation or annotation == "None":
        return None
    try:
        node = ast.parse(annotation, mode="eval").body
    except SyntaxError:
        return None

    def walk(n):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr):
            return walk(n.left) + walk(n.right)
        if isinstance(n, ast.Subscript):
            base = ast.unparse(n.value).split(".")[-1]
            inner = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
            if base == "Optional":
                return walk(inner[0]) + (type(None),)
            if base == "Union":
                return tuple(t for i in inner for t in walk(i))
            return walk(n.value)  # list[str] -> list
        if isinstance(n, ast.Constant) and n.value is None:
            return (type(None),)
        name = ast.unparse(n).split(".")[-1]
        if name in ("Any", "object"):
            raise LookupError
        if name not in _TYPE_NAMES:
            raise LookupError
        return (_TYPE_NAMES[name],)

    try:
        types = walk(node)
    except LookupError:
        return None
    if float in types and int not in types:
        types += (int,)
    if list in types and tuple not in types:
        types += (tuple,)
    return types


def _default_types(default) -> tuple | None:
    if default is _NO_LITERAL or default is None:
        return None
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (float, int)
    if isinstance(default, (list, tuple)):
        return (list, tuple)
    return (type(default),)


def _comments_by_line(source: str) -> dict[int, str]:
    out = {}
    try:
        for tok in tokenize.generate_tokens(_io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def _parse_cell(source: str) -> dict[str, Parameter]:
    """Top-level assignments of a parameters cell, with annotations and trailing comments."""
    tree = ast.parse(source)
    comments = _comments_by_line(source)
    params = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, annotation = node.targets[0].id, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, annotation = node.target.id, ast.unparse(node.annotation)
        else:
            continue
        value_src = ast.get_source_segment(source, node.value) or ast.unparse(node.value)
        try:
            default = ast.literal_eval(node.value)
        except (ValueError, SyntaxError, TypeError):
            default = _NO_LITERAL
        help_text = comments.get(node.end_lineno) or comments.get(node.lineno, "")
        if help_text.startswith("type:"):  # papermill's "# type: int  meaning" comment form
            words = help_text[5:].split(None, 1)
            annotation = annotation or (words[0] if words else None)
            help_text = words[1] if len(words) > 1 else ""
        params[target] = Parameter(target, value_src, default, annotation, help_text)
    return params


def notebook_parameters(path: str | os.PathLike) -> dict[str, Parameter]:
    """The parameters a notebook declares in its ``parameters`` cell.

    Uses :func:`papermill.inspect_notebook`, and also parses the cell with :mod:`ast` to catch what
    papermill's one-line regex misses (multi-line values, ``X | Y`` annotations).

    Parameters
    ----------
    path : path
        The notebook.

    Returns
    -------
    dict of str to Parameter
        In the cell's order: name, default (its source and, for a literal, its value), annotation,
        meaning (the comment after it) and the accepted types.

    Raises
    ------
    ParamsError
        If the notebook has not exactly one ``parameters`` cell or the cell is not valid Python.
    """
    import nbformat
    import papermill

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    try:
        _, cell = parameters_cell(nb)
    except ParamsError as exc:
        raise ParamsError(f"{path.name}: {exc}") from None
    try:
        parsed = _parse_cell(cell.source)
    except SyntaxError as exc:
        raise ParamsError(f"{path.name}: the parameters cell is not valid Python: {exc}") from None
    nb.metadata.setdefault("kernelspec", {"name": "python3", "language": "python", "display_name": "Python 3"})
    nb.metadata["kernelspec"].setdefault("language", "python")
    import tempfile

    import logging

    pm_logger = logging.getLogger("papermill")
    level = pm_logger.level
    pm_logger.setLevel(logging.ERROR)  # its "Unable to parse line" warnings are covered by the ast parse
    try:
        with tempfile.TemporaryDirectory() as tmp:  # inspect_notebook wants a path and a kernelspec
            tmp_nb = Path(tmp) / path.name
            nbformat.write(nb, tmp_nb)
            inspected = papermill.inspect_notebook(str(tmp_nb))
    finally:
        pm_logger.setLevel(level)
    names = list(parsed) + [n for n in inspected if n not in parsed]
    result = {}
    for name in names:
        p = parsed.get(name)
        info = inspected.get(name, {})
        if p is None:  # papermill saw it but ast did not (should not happen); keep papermill's view
            default_src = str(info.get("default", ""))
            try:
                default = ast.literal_eval(default_src)
            except (ValueError, SyntaxError):
                default = _NO_LITERAL
            ann = info.get("inferred_type_name")
            p = Parameter(name, default_src, default, None if ann in (None, "None") else ann, info.get("help", ""))
        elif not p.help and info.get("help"):
            p.help = info["help"]
        p.types = _annotation_types(p.annotation) if p.annotation else _default_types(p.default)
        result[name] = p
    return result


# --------------------------------------------------------------------------- resolving


def _suggest(name: str, candidates) -> str:
    match = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _describe(value) -> str:
    return f"{json.dumps(value, default=str)} ({type(value).__name__})"


def check_type(param: Parameter, value) -> str | None:
    """Check a value against a parameter's declared type.

    Parameters
    ----------
    param : Parameter
    value : object
        A value from params.yml or the command line.

    Returns
    -------
    str or None
        None if ``value`` fits (``param.types`` None accepts anything; an int fits a float, a list a
        tuple, but a bool fits only a bool), else a sentence saying why not and how to widen the type.
    """
    if param.types is None:
        return None
    if isinstance(value, bool) and bool not in param.types:
        ok = False
    else:
        ok = isinstance(value, param.types)
    if ok:
        return None
    declared = param.annotation or f"{type(param.default).__name__} (default {param.default_source})"
    hint = ""
    if value is None:
        hint = "; to accept null, annotate it Optional[...] in the notebook"
    elif not param.annotation:
        hint = f"; to accept several types, annotate it, e.g. `{param.name}: Union[...] = {param.default_source}`"
    return f"value {_describe(value)} does not match the declared type {declared}{hint}"


@dataclass
class ResolvedNotebook:
    """A notebook with the parameters to inject and where each value came from."""

    spec: NotebookSpec
    parameters: dict
    sources: dict = field(default_factory=dict)
    declared: dict = field(default_factory=dict)


def parse_value(text: str):
    """A command-line value parsed as YAML.

    Examples
    --------
    >>> parse_value("640"), parse_value("[1, 2]"), parse_value("null"), parse_value("abc")
    (640, [1, 2], None, 'abc')
    """
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def parse_overrides(pairs) -> dict:
    """The ``-p name value`` pairs of the command line as a dict of parsed values (:func:`parse_value`).

    Examples
    --------
    >>> parse_overrides([("context", "640"), ("subjects", "[sub-01]")])
    {'context': 640, 'subjects': ['sub-01']}
    """
    return {str(name): parse_value(str(value)) for name, value in (pairs or [])}


def profile_names(config: Config) -> list[str]:
    """The profiles of params.yml, in the file's order."""
    return list(config.profiles)


def get_profile(config: Config, profile: str | None) -> tuple[str, dict]:
    """A profile's name and entry (``profile`` None: the default profile).

    Raises
    ------
    ParamsError
        If there is no such profile (with a suggestion).
    """
    name = profile or config.default_profile
    if name not in config.profiles:
        raise ParamsError(f"Unknown profile {name!r}{_suggest(name, config.profiles)}; profiles in "
                          f"{config.path.name}: {', '.join(config.profiles) or '(none)'}.")
    return name, config.profiles[name] or {}


#: A layer of values: its label (``{nb}`` is the notebook's name), its values if shared by every
#: notebook (else None), and the function giving a notebook its own values (for per-notebook layers).
_Layer = tuple


def _declared(config: Config, selected: list[NotebookSpec], require_all: bool) -> tuple[dict, list[NotebookSpec]]:
    """Every present notebook's declared parameters, and the notebooks that are missing.

    Raises :class:`ParamsError` for a selected (or, with ``require_all``, any) missing notebook and
    for a notebook whose parameters cell cannot be read.
    """
    errors, missing = [], [nb for nb in config.notebooks if not nb.exists]
    for nb in missing:
        if require_all or nb in selected:
            errors.append(f"{nb.name}: notebook not found at {nb.path.relative_to(config.root)} "
                          f"(listed in {config.path.name}).")
    declared = {}
    for nb in config.notebooks:
        if nb.exists:
            try:
                declared[nb.name] = notebook_parameters(nb.path)
            except ParamsError as exc:
                errors.append(str(exc))
    if errors:
        raise ParamsError("\n".join(errors))
    return declared, missing


def _layers(config: Config, pname: str, prof: dict, overrides: dict | None) -> list[_Layer]:
    """The layers of values, lowest precedence first (see the module docstring)."""
    return [
        ("global", config.global_params, None),
        ("notebooks.{nb}.params", None, lambda nb: nb.params),
        (f"profiles.{pname}.global", prof.get("global") or {}, None),
        (f"profiles.{pname}.notebooks.{{nb}}", None, lambda nb: (prof.get("notebooks") or {}).get(nb.name) or {}),
        ("-p (command line)", overrides or {}, None),
    ]


def _undeclared_shared(layers: list[_Layer], config: Config, selected: list[NotebookSpec], declared: dict,
                       missing: list[NotebookSpec]) -> list[str]:
    """Errors for names in a shared layer that no notebook declares.

    Command-line names are checked against the selected notebooks, the others against all of them.
    While notebooks are missing, a params.yml name is only warned about (it may be theirs).
    """
    errors = []
    for label, shared, _ in layers:
        if shared is None:
            continue
        scope = selected if label.startswith("-p") else config.notebooks
        for key in shared:
            if any(key in declared.get(nb.name, {}) for nb in scope):
                continue
            known = sorted({k for nb in scope for k in declared.get(nb.name, {})})
            where = ", ".join(nb.name for nb in scope if nb.name in declared)
            whom = f"notebook {where}" if len(scope) == 1 else f"any notebook ({where})"
            msg = (f"{label}: parameter {key!r} is not declared by {whom}{_suggest(key, known)}; "
                   f"valid names: {', '.join(known)}.")
            if missing and not label.startswith("-p"):
                warnings.warn(msg + f" (Not checked against missing notebooks: {', '.join(n.name for n in missing)}.)",
                              stacklevel=3)
            else:
                errors.append(msg)
    return errors


def _resolve_notebook(nb: NotebookSpec, decl: dict, layers: list[_Layer]) -> tuple[ResolvedNotebook, list[str]]:
    """One notebook's values, layer by layer, type-checked; and the errors found."""
    errors, values, sources = [], {}, {}
    for label, shared, per_nb in layers:
        label = label.format(nb=nb.name)
        layer = shared if shared is not None else per_nb(nb)
        if not isinstance(layer, dict):
            errors.append(f"{label} must be a mapping.")
            continue
        for key, value in layer.items():
            if key not in decl:
                if shared is None:  # per-notebook: must be declared by this notebook
                    errors.append(f"{nb.name}: {label} sets {key!r}, which the notebook does not declare"
                                  f"{_suggest(key, decl)}; valid names: {', '.join(decl)}.")
                continue
            values[key], sources[key] = copy.deepcopy(value), label
    for key, value in values.items():
        problem = check_type(decl[key], value)
        if problem:
            errors.append(f"{nb.name}: parameter {key!r} (from {sources[key]}): {problem}.")
    return ResolvedNotebook(nb, values, sources, decl), errors


def resolve(config: Config, profile: str | None = None, overrides: dict | None = None,
            notebooks: list[str] | None = None, require_all: bool = False) -> list[ResolvedNotebook]:
    """Resolve the parameters for each selected notebook and validate them.

    Values come in layers, lowest precedence first: ``global``, ``notebooks.<nb>.params``,
    ``profiles.<p>.global``, ``profiles.<p>.notebooks.<nb>``, then ``overrides``. A notebook gets a
    value only for a name it declares; what it does not get stays its parameters cell's default.

    Parameters
    ----------
    config : Config
        The parameters file (:func:`load_config`).
    profile : str, optional
        Profile name (default: ``config.default_profile``).
    overrides : dict, optional
        Command-line values; each goes to every selected notebook that declares it, and must be declared
        by at least one of them.
    notebooks : list of str, optional
        Names to resolve (any form :func:`find_notebook` accepts); default: all, in params.yml order.
    require_all : bool
        Raise if a notebook listed in params.yml does not exist (default: only the selected ones must).

    Returns
    -------
    list of ResolvedNotebook
        In params.yml order.

    Raises
    ------
    ParamsError
        Listing every problem found: unknown profile or notebook, missing notebook, a name no
        notebook (or not this notebook) declares, a value of the wrong type.
    """
    pname, prof = get_profile(config, profile)
    chosen = [find_notebook(config, n) for n in notebooks] if notebooks else list(config.notebooks)
    selected = [nb for nb in config.notebooks if nb in chosen]
    declared, missing = _declared(config, selected, require_all)
    layers = _layers(config, pname, prof, overrides)
    errors = _undeclared_shared(layers, config, selected, declared, missing)
    resolved = []
    for nb in selected:
        result, problems = _resolve_notebook(nb, declared[nb.name], layers)
        resolved.append(result)
        errors += problems
    if errors:
        raise ParamsError("\n".join(errors))
    return resolved


# --------------------------------------------------------------------------- reference table


def _fmt(value) -> str:
    text = json.dumps(value, default=str)
    text = text.replace("|", "\\|")
    return f"`{text}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def parameter_reference(config: Config, profiles: list[str] | None = None) -> str:
    """The parameter reference as Markdown: one table of shared parameters, one per notebook.

    Parameters
    ----------
    config : Config
    profiles : list of str, optional
        The profiles to give a column each (default: all, in params.yml order).

    Returns
    -------
    str
        Columns: name, type, the value each profile runs with (params.yml or the notebook default),
        the notebooks that declare it (shared table), and its meaning (the comment after it in the
        parameters cell). Notebooks not yet present are listed as such.
    """
    profiles = profiles or profile_names(config) or [config.default_profile]
    present = [nb for nb in config.notebooks if nb.exists]
    with warnings.catch_warnings():  # "not checked against missing notebooks": already said by the run
        warnings.simplefilter("ignore")
        by_profile = {p: {r.spec.name: r for r in resolve(config, p, notebooks=[nb.name for nb in present])}
                      if present else {} for p in profiles}
    declared = {nb.name: (next(iter(by_profile.values()))[nb.name].declared if present else {}) for nb in present}
    users: dict[str, list[str]] = {}
    for nb in present:
        for name in declared[nb.name]:
            users.setdefault(name, []).append(nb.name)
    shared = [n for n in users if len(users[n]) > 1 or n in config.global_params]

    def value_in(profile, name, nbs):
        vals = []
        for nbn in nbs:
            r = by_profile[profile][nbn]
            vals.append(r.parameters[name] if name in r.parameters else declared[nbn][name].default)
        vals = [("(expression)" if v is _NO_LITERAL else v) for v in vals]
        if all(json.dumps(v, default=str) == json.dumps(vals[0], default=str) for v in vals):
            return _fmt(vals[0])
        return "varies by notebook"

    def first(name, nbs):
        return declared[nbs[0]][name]

    lines = [f"<!-- generated from {config.path.name} and the notebooks' parameters cells by "
             f"brainattr.book.params.parameter_reference; do not edit -->", ""]
    prof_cols = " | ".join(f"`{p}`" for p in profiles)
    lines += ["### Shared parameters", "",
              "Set under `global:` in `params.yml`; passed to every notebook that declares them.", "",
              f"| Parameter | Type | {prof_cols} | Notebooks | Meaning |",
              "|---|---|" + "---|" * len(profiles) + "---|---|"]
    for name in shared:
        nbs = users[name]
        p = first(name, nbs)
        nums = ", ".join(n.split("_", 1)[0] for n in nbs)
        vals = " | ".join(value_in(pr, name, nbs) for pr in profiles)
        lines.append(f"| `{name}` | {_cell(p.type_name)} | {vals} | {nums} | {_cell(p.help)} |")
    for nb in config.notebooks:
        lines += ["", f"### {nb.title} (`{nb.name}`)", ""]
        if not nb.exists:
            lines.append(f"*Notebook not present yet ({nb.path.relative_to(config.root)}).*")
            continue
        own = [n for n in declared[nb.name] if n not in shared]
        if not own:
            lines.append("Only shared parameters.")
            continue
        lines += [f"| Parameter | Type | {prof_cols} | Meaning |", "|---|---|" + "---|" * len(profiles) + "---|"]
        for name in own:
            p = declared[nb.name][name]
            vals = " | ".join(value_in(pr, name, [nb.name]) for pr in profiles)
            lines.append(f"| `{name}` | {_cell(p.type_name)} | {vals} | {_cell(p.help)} |")
    lines.append("")
    return "\n".join(lines)


def resolved_as_yaml(resolved: list[ResolvedNotebook], profile: str) -> str:
    """The resolved parameters as YAML, for ``brainattr params``.

    Parameters
    ----------
    resolved : list of ResolvedNotebook
        From :func:`resolve`.
    profile : str
        The profile's name (printed first).

    Returns
    -------
    str
        ``profile: NAME`` then ``notebooks:``, each with the values injected into it.
    """
    doc = {"profile": profile, "notebooks": {r.spec.name: r.parameters for r in resolved}}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
