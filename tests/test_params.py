"""params.yml: loading, profile resolution and validation against the notebooks' parameters cells."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from _project_factory import FIRST, make_project, write_notebook
from brainattr.book.params import (ParamsError, find_notebook, load_config, notebook_parameters, parameter_reference,
                              parse_overrides, resolve)


@pytest.fixture
def project(tmp_path):
    return load_config(make_project(tmp_path))


def _edit(config, change):
    raw = yaml.safe_load(config.path.read_text())
    change(raw)
    config.path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(config.path)


def test_notebook_parameters_reads_types_defaults_and_comments(project):
    params = notebook_parameters(project.notebooks[1].path)
    assert list(params) == ["context", "alpha", "layers", "n_trs"]
    assert params["context"].default == 80 and params["context"].help == "words of preceding context"
    assert params["layers"].annotation == "Union[list, str]"
    assert params["n_trs"].types is not None and type(None) in params["n_trs"].types


def test_quick_profile_layers_global_and_notebook_values(project):
    first, second = resolve(project, "quick")
    assert first.parameters == {"context": 80, "model": "smollm2-135m", "subjects": ["sub-01"]}
    assert second.parameters == {"context": 80, "alpha": 2.0}  # `model` is not declared by 02: not passed
    assert second.sources["alpha"] == "notebooks.02_second.params"


def test_profile_overrides_global_and_per_notebook(project):
    first, second = resolve(project, "tiny")
    assert first.parameters["context"] == 8 and first.parameters["max_words"] == 600
    assert second.parameters == {"context": 8, "alpha": 3, "layers": [1, 2]}  # int accepted for float
    paper = resolve(project, "paper")[1]
    assert paper.parameters["n_trs"] is None and paper.parameters["context"] == 640


def test_command_line_overrides_win_and_are_parsed_as_yaml(project):
    overrides = parse_overrides([("context", "640"), ("layers", "[3, 5]"), ("n_trs", "null")])
    assert overrides == {"context": 640, "layers": [3, 5], "n_trs": None}
    (second,) = resolve(project, "tiny", overrides, notebooks=["02"])
    assert second.parameters["context"] == 640 and second.parameters["layers"] == [3, 5]


def test_default_profile_is_used(project):
    assert resolve(project)[0].parameters == resolve(project, "quick")[0].parameters


def test_unknown_command_line_name_suggests_and_lists_valid_names(project):
    with pytest.raises(ParamsError) as err:
        resolve(project, "quick", {"contxt": 640}, notebooks=["02_second"])
    msg = str(err.value)
    assert "'contxt'" in msg and "did you mean 'context'" in msg and "02_second" in msg
    assert "valid names: alpha, context, layers, n_trs" in msg


def test_unknown_per_notebook_name_is_an_error_naming_the_notebook(project):
    config = _edit(project, lambda raw: raw["notebooks"]["02_second"]["params"].update(alpah=2.0))
    with pytest.raises(ParamsError, match=r"02_second: .*'alpah'.*did you mean 'alpha'"):
        resolve(config, "quick")


def test_unknown_profile_notebook_name_is_an_error(project):
    config = _edit(project, lambda raw: raw["profiles"]["tiny"]["notebooks"]["02_second"].update(n_tr=3))
    with pytest.raises(ParamsError, match=r"profiles.tiny.notebooks.02_second sets 'n_tr'.*did you mean 'n_trs'"):
        resolve(config, "tiny")


def test_global_not_declared_by_any_notebook_is_an_error(project):
    config = _edit(project, lambda raw: raw["global"].update(contex=80))
    with pytest.raises(ParamsError, match=r"global: parameter 'contex' is not declared by any notebook.*"
                                          r"did you mean 'context'"):
        resolve(config, "quick")
    config = _edit(project, lambda raw: raw["profiles"]["paper"]["global"].update(seeds=1))
    with pytest.raises(ParamsError, match=r"profiles.paper.global: parameter 'seeds'"):
        resolve(config, "paper")


@pytest.mark.parametrize("name, value, fragment", [
    ("context", "640", "(str) does not match the declared type int"),
    ("context", 6.5, "(float) does not match the declared type int"),
    ("context", True, "(bool) does not match"),
    ("alpha", "big", "(str) does not match the declared type float"),
    ("context", None, "annotate it Optional"),
    ("layers", 3, "does not match the declared type Union[list, str]"),
])
def test_type_clash_is_an_error(project, name, value, fragment):
    with pytest.raises(ParamsError) as err:
        resolve(project, "quick", {name: value}, notebooks=["02"])
    assert fragment in str(err.value) and f"'{name}'" in str(err.value)


def test_none_default_accepts_anything_and_optional_accepts_null(project):
    (first,) = resolve(project, "quick", {"max_words": 600}, notebooks=["01"])
    assert first.parameters["max_words"] == 600 and first.sources["max_words"] == "-p (command line)"
    write_notebook(project.notebooks[0].path, FIRST + "anything = None  # unannotated: no declared type\n")
    (first,) = resolve(project, "quick", {"anything": [1, "two"]}, notebooks=["01"])
    assert first.parameters["anything"] == [1, "two"] and first.declared["anything"].types is None
    (second,) = resolve(project, "quick", {"n_trs": None}, notebooks=["02"])
    assert second.parameters == {"context": 80, "alpha": 2.0, "n_trs": None}
    assert second.declared["n_trs"].default == 8  # the notebook's default is overridden, not changed


def test_all_problems_are_reported_together(project):
    config = _edit(project, lambda raw: (raw["global"].update(contex=1),
                                         raw["notebooks"]["02_second"]["params"].update(alpha="x")))
    with pytest.raises(ParamsError) as err:
        resolve(config, "quick")
    assert "'contex'" in str(err.value) and "'alpha'" in str(err.value)


def test_unknown_profile_and_notebook_names(project):
    with pytest.raises(ParamsError, match="did you mean 'paper'"):
        resolve(project, "papr")
    with pytest.raises(ParamsError, match="did you mean 'second'|notebooks: 01_first, 02_second"):
        find_notebook(project, "secnd")


@pytest.mark.parametrize("name", ["02", "02_second", "second", "notebooks/02_second.ipynb"])
def test_notebook_name_forms(project, name):
    assert find_notebook(project, name).name == "02_second"


def test_bad_file_structure_is_reported(tmp_path):
    path = make_project(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["profile"] = {}  # typo for `profiles`
    raw["notebooks"]["02_second"]["parms"] = {}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as err:
        load_config(path)
    assert "unknown key 'profile'" in str(err.value) and "'parms'" in str(err.value)


def test_missing_notebook_is_reported_when_selected(project):
    project.notebooks[1].path.unlink()
    assert [r.spec.name for r in resolve(project, "quick", notebooks=["01"])] == ["01_first"]
    with pytest.raises(ParamsError, match="02_second: notebook not found"):
        resolve(project, "quick")


def test_parameters_cell_must_exist_once(tmp_path):
    path = write_notebook(tmp_path / "x.ipynb", "a = 1", tag=False)
    with pytest.raises(ParamsError, match="exactly one cell tagged 'parameters', found 0"):
        notebook_parameters(path)


def test_reference_table(project):
    md = parameter_reference(project)
    assert "| Parameter | Type | `quick` | `paper` | `tiny` | Notebooks | Meaning |" in md
    assert "| `context` | int | `80` | `640` | `8` | 01, 02 | words of preceding context |" in md
    assert "| `layers` | Union[list, str] | `\"all\"` | `\"all\"` | `[1, 2]` | layers to fit |" in md


REPO = Path(__file__).resolve().parents[1]


def test_every_notebook_default_is_the_quick_profile_value():
    """A notebook opened by hand (Jupyter, Binder, Colab) must compute what the book shows.

    The book runs the `quick` profile; a notebook run top to bottom uses its parameters cell. So
    every value `quick` resolves for a notebook (params.yml: global, the notebook's own, the
    profile's) must already be that notebook's default. No parameter is exempt: none is run-specific
    (output paths and the like are not parameters).
    """
    config = load_config(REPO / "params.yml")
    differ = []
    for nb in resolve(config, "quick"):
        for name, value in nb.parameters.items():
            default = nb.declared[name].default
            if default != value or type(default) is not type(value):
                differ.append(f"{nb.spec.name}: {name} = {nb.declared[name].default_source} in the notebook, "
                              f"{value!r} in the quick profile (from {nb.sources[name]})")
    assert not differ, "set these defaults in the notebooks' parameters cells:\n" + "\n".join(differ)
