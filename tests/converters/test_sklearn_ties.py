"""Nearest-neighbour ties (converters/sklearn_ties.py, judge/ties.py), end to end.

Real fits, real skl2onnx conversions, real ONNX Runtime sessions. A model whose k-th and (k+1)-th
neighbours tie passes with the ties reported; the same model with one fitted value changed fails,
even where the change lands near a tie: each broken model is converted and validated against the
original.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

pytest.importorskip("skl2onnx")
warnings.filterwarnings("ignore")


def _iris_lof():
    from sklearn.datasets import load_iris
    from sklearn.neighbors import LocalOutlierFactor

    X = load_iris().data  # has duplicate rows: their neighbours tie
    rows = np.random.default_rng(0).permutation(len(X))[:16]  # the catalogue's rows
    return LocalOutlierFactor(novelty=True).fit(X), X[rows]


def _grid(seed: int = 0):
    """Points on an integer grid: distances are exact in every implementation, and many tie."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, size=(60, 2)).astype(np.float64)
    Q = rng.integers(0, 4, size=(16, 2)).astype(np.float64)
    return X, Q, rng


def _run(model, rows, tmp_path, onnx_of=None):
    """Validate ``model`` against its own conversion, or against the conversion of ``onnx_of``."""
    from onnxgate.pipelines.run import convert, validate

    sample = tmp_path / "x.npy"
    np.save(sample, rows)
    out = tmp_path / "model.onnx"
    convert(onnx_of if onnx_of is not None else model, out, in_process=True, sample=str(sample)).reference.close()
    return validate(model, out, sample=str(sample), in_process=True)


def _ties(report):
    return {o.name: max(c_o.ties for c in report.cases for c_o in c.outputs if c_o.name == o.name)
            for o in report.cases[0].outputs}


def test_lof_on_iris_duplicates_passes_and_reports_the_tie(tmp_path):
    est, rows = _iris_lof()
    report = _run(est, rows, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert _ties(report)["scores"] >= 1
    ties = [f.message for f in report.findings if f.check == "tie"]
    assert ties and "'scores'" in ties[0] and "neighbour tie" in ties[0]
    assert "tie-break" in report.cases[0].outputs[1].rule


def _lrd_of_a_tied_rows_neighbour(est, rows):
    """A fitted point among the sure neighbours of a row whose neighbours tie."""
    from onnxgate.converters.sklearn_ties import neighbor_sets

    sets = neighbor_sets(est, rows.astype(np.float32).astype(np.float64), 2.0**-24, est.n_neighbors_)
    tied_row = int(np.bincount(sets.rows).argmax())
    mine = sets.index[sets.rows == tied_row]
    common = set(mine[0].tolist()).intersection(*map(set, mine.tolist()))
    return min(common)


@pytest.mark.parametrize("broken", ["lrd", "offset", "distances_fit_X"])
def test_a_broken_lof_is_caught_next_to_a_tie(broken, tmp_path):
    est, rows = _iris_lof()
    bad = copy.deepcopy(est)
    if broken == "lrd":
        bad._lrd = bad._lrd.copy()
        j = _lrd_of_a_tied_rows_neighbour(est, rows)
        bad._lrd[j] *= 1.01
    elif broken == "offset":
        bad.offset_ = bad.offset_ * 1.01
    else:
        bad._distances_fit_X_ = bad._distances_fit_X_ * 1.01
    report = _run(est, rows, tmp_path, onnx_of=bad)
    assert report.status == "failed"
    scores = next(o for o in report.cases[0].outputs if o.name == "scores")
    assert not scores.passed
    if broken == "lrd":  # every row with that neighbour fails, the row on the tie included: none hides there
        _, index = est.kneighbors(rows.astype(np.float32).astype(np.float64))
        assert scores.mismatched == sum(j in r for r in index)


def test_knn_regressor_with_exact_ties_passes_and_a_broken_one_fails(tmp_path):
    from sklearn.neighbors import KNeighborsRegressor

    X, Q, rng = _grid()
    est = KNeighborsRegressor(n_neighbors=5, algorithm="kd_tree").fit(X, rng.normal(size=len(X)))
    report = _run(est, Q, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert _ties(report)["variable"] >= 1
    bad = copy.deepcopy(est)
    bad._y = bad._y * 1.01
    assert _run(est, Q, tmp_path, onnx_of=bad).status == "failed"


def test_knn_classifier_with_exact_ties_passes_and_a_broken_one_fails(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    X, Q, rng = _grid()
    est = KNeighborsClassifier(n_neighbors=5, algorithm="kd_tree").fit(X, rng.integers(0, 3, size=len(X)))
    report = _run(est, Q, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert _ties(report)["probabilities"] >= 1
    # relabel the one nearest fitted point of a query row: in every valid neighbour set of that row
    d = np.linalg.norm(Q[:, None, :] - X[None], axis=2)
    row = next(i for i in range(len(Q)) if np.sum(d[i] == d[i].min()) == 1)
    bad = copy.deepcopy(est)
    bad._y = bad._y.copy()
    j = int(d[row].argmin())
    bad._y[j] = (bad._y[j] + 1) % 3
    assert _run(est, Q, tmp_path, onnx_of=bad).status == "failed"



def test_knn_transformer_with_exact_ties_passes_and_a_broken_one_fails(tmp_path):
    """Its dense graph: a tied candidate's entry is its distance under one tie-break, 0 under another."""
    from sklearn.neighbors import KNeighborsTransformer

    X, Q, _ = _grid()
    est = KNeighborsTransformer(n_neighbors=5).fit(X)
    report = _run(est, Q, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert _ties(report)["variable"] >= 1
    bad = copy.deepcopy(est)
    bad._fit_X = bad._fit_X.copy()
    bad._fit_X[int(np.linalg.norm(X - Q[0], axis=1).argmin())] += 0.01  # Q[0]'s nearest point moves
    assert _run(est, Q, tmp_path, onnx_of=bad).status == "failed"


def test_knn_imputer_with_tied_donors_passes_and_a_broken_one_fails(tmp_path):
    """A missing value is the mean over its k nearest donors: donors tied at the k-th give one mean each."""
    from sklearn.impute import KNNImputer

    X, Q, _ = _grid()
    Q[::2, 0] = np.nan
    est = KNNImputer(n_neighbors=3).fit(X)
    report = _run(est, Q, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert _ties(report)["variable"] >= 1
    bad = copy.deepcopy(est)
    bad._fit_X = bad._fit_X.copy()
    bad._fit_X[:, 0] *= 1.01  # the imputed column's donor values
    assert _run(est, Q, tmp_path, onnx_of=bad).status == "failed"


def test_too_many_tie_breaks_are_said_and_held_to_the_original(tmp_path):
    """40 copies of one point and k=20: C(40, 20) tie-breaks, beyond the cap: not enumerated, said."""
    from sklearn.neighbors import KNeighborsRegressor

    rng = np.random.default_rng(0)
    X = np.vstack([np.zeros((40, 2)), rng.normal(size=(20, 2)) + 5])
    est = KNeighborsRegressor(n_neighbors=20).fit(X, rng.normal(size=len(X)))
    report = _run(est, np.vstack([np.full((2, 2), 0.3), rng.normal(size=(6, 2)) + 5]), tmp_path)
    capped = [f for f in report.findings if f.check == "tie" and "too many tie-breaks" in f.message]
    assert capped and capped[0].level == "warning" and "2 row(s)" in capped[0].message

def test_a_pass_resting_on_ties_alone_is_vacuous(tmp_path):
    """Rows that all sit on a tie: agreeing with some tie-break on each shows little, so not a pass."""
    from sklearn.neighbors import KNeighborsRegressor

    X, Q, rng = _grid()
    est = KNeighborsRegressor(n_neighbors=5, algorithm="kd_tree").fit(X, rng.normal(size=len(X)))
    report = _run(est, Q[1:], tmp_path)  # every row of Q but the first sits on a tie
    assert report.status == "vacuous", report.to_markdown()[:3000]
    assert "neighbour tie" in report.vacuous


@pytest.mark.slow  # a framework worker start: ~15 s on a busy 2-core machine
def test_ties_come_back_from_the_framework_worker(tmp_path, cli):
    """The CLI path: the original runs in its worker process, the tie-breaks travel back as arrays."""
    import json

    sio = pytest.importorskip("skops.io")
    est, rows = _iris_lof()
    src, sample, report = tmp_path / "lof.skops", tmp_path / "x.npy", tmp_path / "report.json"
    sio.dump(est, src)
    np.save(sample, rows)
    result = cli("-q", "run", src, "--sample", sample, "--report", report, "--trust-code")
    assert result.code == 0, result.out + result.err
    data = json.loads(report.read_text())
    assert any(f["check"] == "tie" and "'scores'" in f["message"] for f in data["findings"])
    assert max(o["ties"] for c in data["cases"] for o in c["outputs"] if o["name"] == "scores") >= 1


def test_published_tie_verifies_in_the_zoo(tmp_path):
    """The published test data keeps the tie-break ONNX Runtime took (also a correct answer of the
    original), so `zoo verify`, which has no original to ask, agrees with the model it was given."""
    from onnxgate.model_zoo.zoo import verify_zoo
    from onnxgate.pipelines.publish import publish

    est, rows = _iris_lof()
    np.save(tmp_path / "x.npy", rows)
    result = publish(est, tmp_path / "zoo", name="lof", version="1", sample=str(tmp_path / "x.npy"), in_process=True)
    assert result.report.status == "passed" and _ties(result.report)["scores"] >= 1
    own = est.decision_function(rows.astype(np.float32).astype(np.float64))
    stored = result.report.evidence.outputs["scores"].ravel()
    assert np.sum(stored != own) == _ties(result.report)["scores"]  # only the tied values differ
    assert verify_zoo(tmp_path / "zoo", in_process=True).status == "passed"


def test_saved_evidence_of_a_tie_replays(tmp_path):
    """--save-evidence stores the same settled outputs for every case: replaying them with ONNX Runtime alone passes."""
    from onnxgate.pipelines.run import validate

    est, rows = _iris_lof()
    report = _run(est, rows, tmp_path)  # converts to tmp_path/model.onnx
    assert _ties(report)["scores"] >= 1
    saved = validate(est, tmp_path / "model.onnx", sample=str(tmp_path / "x.npy"), in_process=True, save_evidence=str(tmp_path / "ev"))
    assert saved.passed and saved.inputs.evidence
    replay = validate(None, tmp_path / "model.onnx", evidence=str(tmp_path / "ev"))
    assert replay.status == "passed", replay.to_markdown()[:2000]


def test_optimised_variants_are_judged_with_the_same_tie_breaks(tmp_path):
    """--optimize validates each variant on every case as the converted model is: with the tie-breaks."""
    from onnxgate.pipelines.run import run

    est, rows = _iris_lof()
    np.save(tmp_path / "x.npy", rows)
    report, _ = run(est, sample=str(tmp_path / "x.npy"), in_process=True, optimize=True, benchmark_seconds=0.02)
    assert report.status == "passed", report.to_markdown()[:3000]
    checked = [v for v in report.variants.variants if v.cases]
    assert checked and all(v.passed for v in checked), [(v.name, v.error, [c.status for c in v.cases]) for v in checked]
    assert any(o.ties for v in checked for c in v.cases for o in c.outputs)
