"""The judge's side of neighbour ties (judge/ties.py, judge/compare.py): a value that equals another
valid tie-break's answer is a counted tie; a value between two answers, or beside them, fails."""

from __future__ import annotations

import numpy as np
import pytest

from onnxgate.judge.compare import compare_outputs
from onnxgate.judge.report import Case
from onnxgate.judge.ties import TieSet, only_ties_reason, pack_ties, unpack_ties

# three rows; row 1 has two correct answers, 0.50 (the original's own) and 0.52
REF = np.array([[0.1], [0.50], [0.9]])
TIES = {"scores": TieSet(np.array([[[0.1, 0.1]], [[0.50, 0.52]], [[0.9, 0.9]]]))}


@pytest.mark.parametrize("value, passed, ties", [
    (0.50, True, 0),  # the original's own tie-break
    (0.52, True, 1),  # the other one: a tie, counted
    (0.52 + 1e-7, True, 1),  # within the normal tolerance of it
    (0.51, False, 0),  # between the two: no tie-break gives it
    (0.53, False, 0),  # beyond both
])
def test_a_float_on_a_tie_must_match_one_answer(value, passed, ties):
    got = REF.astype(np.float32).copy()
    got[1, 0] = value
    (c,) = compare_outputs({"scores": REF}, {"scores": got}, ties=TIES)
    assert (c.passed, c.ties, c.on_tie) == (passed, ties, 1)
    assert "tie-break" in c.rule


def test_a_value_off_the_tie_is_held_to_the_reference():
    got = REF.astype(np.float32).copy()
    got[0, 0] = 0.11
    (c,) = compare_outputs({"scores": REF}, {"scores": got}, ties=TIES)
    assert not c.passed and c.mismatched == 1 and c.worst["index"] == [0, 0]


def test_a_label_on_a_tie_may_be_any_tie_breaks_label():
    ref = np.array(["a", "b", "c"], dtype=object)
    ties = {"label": TieSet(np.array([["a", "a"], ["b", "c"], ["c", "c"]], dtype=object))}
    ok = np.array(["a", "c", "c"], dtype=object)
    (c,) = compare_outputs({"label": ref}, {"label": ok}, ties=ties)
    assert c.passed and c.ties == 1 and c.kind == "label"
    wrong = np.array(["a", "a", "c"], dtype=object)
    (c,) = compare_outputs({"label": ref}, {"label": wrong}, ties=ties)
    assert not c.passed and c.mismatched == 1


def test_tie_sets_travel_as_arrays():
    ties = {"scores": TieSet(np.ones((2, 1, 3)), capped=2), "label": TieSet(np.array([["x", "y"], ["z", "z"]], dtype=object))}
    meta, arrays = pack_ties(ties)
    back = unpack_ties(meta, arrays)
    assert back["scores"].capped == 2 and back["label"].on_tie.tolist() == [True, False]


def test_only_ties_is_vacuous_but_one_untied_value_is_not():
    tied_only = {"scores": TieSet(np.array([[[0.50, 0.52]]]))}
    ref, got = np.array([[0.50]]), np.array([[0.52]], dtype=np.float32)
    case = Case("batch=1", "CPU", "all", {}, compare_outputs({"scores": ref}, {"scores": got}, ties=tied_only))
    assert "neighbour tie" in only_ties_reason([case], {"scores"})
    (c,) = compare_outputs({"scores": REF}, {"scores": REF.astype(np.float32)}, ties=TIES)
    assert only_ties_reason([Case("b", "CPU", "all", {}, [c])], {"scores"}) is None
