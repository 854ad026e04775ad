"""Property-based fuzzing of params.yaml: every document either validates or is refused with one
ParamsError line; never a traceback of another kind, and nothing is written."""

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stages.shared.params import ParamsError, load_params
from tests.conftest import ROOT

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
TRIED = {"valid": 0, "refused": 0}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from paths(child, (*prefix, index))


ALL_PATHS = [p for p in paths(DEFAULT) if p]


@st.composite
def mutated(draw):
    """The default params with 1-3 keys replaced by random values, deleted, or added."""
    doc = copy.deepcopy(DEFAULT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path's parent
    return doc


def check(tmp_path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        load_params(path)
        TRIED["valid"] += 1
    except ParamsError as err:
        assert "\n" not in str(err) and str(err).startswith(str(path))
        TRIED["refused"] += 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=mutated())
def test_mutated_documents_validate_or_fail_in_one_line(tmp_path, doc):
    check(tmp_path, yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_validates_or_fails_in_one_line(tmp_path, text):
    check(tmp_path, text)


def test_fuzzing_exercised_both_outcomes():
    """Runs after the two properties above (file order): both outcomes must have occurred."""
    assert TRIED["refused"] >= 100
    assert TRIED["valid"] >= 1
