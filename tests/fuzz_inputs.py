"""Real small models and deterministic mutations of them, for tests/test_fuzz.py.

Every input is built at test time from a model fitted (or traced) here with a fixed seed,
so nothing depends on an artefact made on another machine. A mutation is named
``TARGET/KIND`` (structural, chosen by hand) or ``TARGET/bytes:OP:N`` (seeded byte
damage: ``random.Random(f"{SEED}/{target}/{N}")``), so a case can be replayed by name.

Each target's ``make`` writes its inputs into a fresh directory and returns the onnxgate
arguments that read them; :func:`run_case` runs ``python -m onnxgate`` on them in a
subprocess and classifies the outcome from outside.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SEED = 20240613
CASE_TIMEOUT_S = 60.0  # the subprocess's wall-clock limit: longer is a hang
ONNXGATE_TIMEOUT = "20"  # passed as --timeout where the command takes one
FUZZ_ENV = {
    "ONNXGATE_MEMORY_LIMIT": "8e9",  # the same memory budget on every machine
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "PYTHONFAULTHANDLER": "",  # a crash shows as a signal, not as a faulthandler dump we would misread
}


# -- running one case from outside -------------------------------------------------------


@dataclass
class Outcome:
    case: str
    code: int | None  # None: killed after CASE_TIMEOUT_S
    err: str
    seconds: float

    @property
    def verdict(self) -> str:
        """``handled``, or what went wrong in the parent: ``signal N``, ``traceback``, ``hang``, ``exit N``, ``noisy error``."""
        if self.code is None:
            return "hang"
        if self.code < 0:
            return f"signal {-self.code}"
        if "Traceback (most recent call last)" in self.err:
            return "traceback"
        if self.code not in (0, 1, 2):
            return f"exit {self.code}"
        lines = [l for l in self.err.splitlines() if l.strip()]
        if self.code == 2 and (len(lines) != 1 or not lines[0].startswith("onnxgate: error: ")):
            return "noisy error"
        return "handled"

    @property
    def parent_crash(self) -> bool:
        return self.verdict in ("hang", "traceback") or self.verdict.startswith(("signal", "exit"))

    def summary(self) -> str:
        last = (self.err.strip().splitlines() or [""])[-1][:300]
        return f"{self.case}: {self.verdict} (exit {self.code}, {self.seconds:.1f}s) {last}"


def error_lines(err: str) -> list[str]:
    return [l for l in err.splitlines() if l.startswith("onnxgate: error")]


def signature(o: Outcome) -> str:
    """The exit code and the first error line with names, numbers and paths blanked: a distinct outcome."""
    text = (error_lines(o.err) or [""])[0]
    text = re.sub(r"'[^']*'|\"[^\"]*\"|/\S+|\[[^\]]*\]|\b[0-9a-f]{16,}\b|\d+(\.\d+)?", "_", text)
    return f"{o.verdict} {o.code}: {' '.join(text.split()[:10])}"


def run_onnxgate(args: list[str], cwd: Path, case: str) -> Outcome:
    """``python -m onnxgate -q ARGS`` in its own process; the outcome is read from its exit status and stderr."""
    return run_command([sys.executable, "-m", "onnxgate", "-q", *args], cwd, case)


def run_command(command: list[str], cwd: Path, case: str) -> Outcome:
    env = dict(os.environ, **FUZZ_ENV)
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,  # bytes: a model may echo non-UTF-8
        start_new_session=True,  # so a hang can be killed with everything it started
    )
    try:
        _, err = proc.communicate(timeout=CASE_TIMEOUT_S)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        _, err = proc.communicate()
        code = None
    return Outcome(case, code, err.decode("utf-8", "replace"), time.perf_counter() - start)


# -- the real models, built once per session -------------------------------------------------


class Bases:
    """Lazily built real models under one directory: each is made on first use, from a fixed seed."""

    def __init__(self, root: Path):
        self.root = root
        self._built: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self._built:
            d = self.root / name
            d.mkdir(parents=True, exist_ok=True)
            BUILDERS[name](d)
            self._built[name] = d
        return self._built[name]


def iris_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


def write_samples(d: Path, x: np.ndarray) -> None:
    np.save(d / "x.npy", x)
    np.savez(d / "x.npz", X=x)
    lines = ["a,b,c,d"] + [",".join(f"{v:.2f}" for v in row) for row in x]
    (d / "x.csv").write_text("\n".join(lines) + "\n")


def sklearn_to_onnx(model, x: np.ndarray) -> bytes:
    from skl2onnx import to_onnx

    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    onx.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return onx.SerializeToString()


def build_iris(d: Path) -> None:
    """A logistic regression (.skops), its ONNX conversion, samples, and evidence made by ONNX Runtime."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    X, y = iris_data()
    model = LogisticRegression(max_iter=500).fit(X, y)
    sio.dump(model, d / "iris.skops")
    x = X[:12]
    (d / "iris.onnx").write_bytes(sklearn_to_onnx(model, x))
    write_samples(d, x)
    write_evidence(d / "evidence" / "test_data_set_0", d / "iris.onnx", x)


def write_evidence(directory: Path, onnx_path: Path, x: np.ndarray) -> None:
    """test_data_set_N/input_0.pb + output_K.pb: the ONNX model's own outputs on ``x``."""
    import onnxruntime as ort
    from onnx import numpy_helper

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outputs = sess.run(None, {name: x})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "input_0.pb").write_bytes(numpy_helper.from_array(x, name=name).SerializeToString())
    for k, (meta, value) in enumerate(zip(sess.get_outputs(), outputs)):
        (directory / f"output_{k}.pb").write_bytes(numpy_helper.from_array(np.asarray(value), name=meta.name).SerializeToString())


def build_forest(d: Path) -> None:
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris_data()
    model = RandomForestClassifier(n_estimators=2, max_depth=3, random_state=0).fit(X, y)
    sio.dump(model, d / "rf.skops")
    write_samples(d, X[:12])


def build_xgboost(d: Path) -> None:
    import xgboost

    X, y = iris_data()
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2, "seed": 0, "nthread": 1},
                            xgboost.DMatrix(X, label=(y == 0)), num_boost_round=2)
    booster.save_model(str(d / "xgb.json"))
    write_samples(d, X[:12])


def build_lightgbm(d: Path) -> None:
    import lightgbm

    X, y = iris_data()
    params = {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 5, "verbose": -1, "seed": 0,
              "num_threads": 1, "deterministic": True}
    booster = lightgbm.train(params, lightgbm.Dataset(X, label=(y == 0).astype(int)), num_boost_round=2)
    booster.save_model(str(d / "lgb.txt"))
    write_samples(d, X[:12])


def build_torch(d: Path) -> None:
    """A tiny Linear module exported with torch.export.save."""
    import torch

    torch.manual_seed(SEED)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    x = torch.randn(2, 4)
    torch.export.save(torch.export.export(module, (x,)), str(d / "tiny.pt2"))
    np.save(d / "x.npy", x.numpy())


def build_keras(d: Path) -> None:
    """A tiny Dense model saved as .keras (built in a subprocess: TensorFlow stays out of the test process)."""
    script = (
        "import sys, numpy as np, keras\n"
        f"keras.utils.set_random_seed({SEED})\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation='relu')])\n"
        "m.save(sys.argv[1] + '/tiny.keras')\n"
        f"np.save(sys.argv[1] + '/x.npy', np.random.default_rng({SEED}).standard_normal((2, 4)).astype(np.float32))\n"
    )
    env = dict(os.environ, **FUZZ_ENV)
    subprocess.run([sys.executable, "-c", script, str(d)], check=True, capture_output=True, env=env, timeout=300)


def build_zoo(d: Path) -> None:
    """A zoo directory (model.onnx + test_data_set_0) indexed into ONNX_HUB_MANIFEST.json with its .tar.gz."""
    from onnxgate.model_zoo.manifest import MANIFEST_NAME, dumps, model_entry
    from sklearn.linear_model import LogisticRegression

    X, y = iris_data()
    model = LogisticRegression(max_iter=500).fit(X, y)
    model_dir = d / "zoo" / "iris"
    model_dir.mkdir(parents=True)
    (model_dir / "model.onnx").write_bytes(sklearn_to_onnx(model, X[:12]))
    write_evidence(model_dir / "test_data_set_0", model_dir / "model.onnx", X[:12])
    entry = model_entry(model_dir, name="iris", root=d / "zoo", version="1")
    (d / "zoo" / MANIFEST_NAME).write_text(dumps([entry]))


BUILDERS: dict[str, Callable[[Path], None]] = {
    "iris": build_iris, "forest": build_forest, "xgboost": build_xgboost, "lightgbm": build_lightgbm,
    "torch": build_torch, "keras": build_keras, "zoo": build_zoo,
}


# -- byte and field mutations ------------------------------------------------------------------


def mutate_bytes(data: bytes, op: str, n: int, salt: str) -> bytes:
    """Seeded damage: ``flip`` up to 8 bits, ``truncate`` at a random point, ``splice`` random bytes in."""
    rng = random.Random(f"{SEED}/{salt}/{n}")
    if not data:
        return b"\x00"
    if op == "flip":
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            p = rng.randrange(len(buf))
            buf[p] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if op == "truncate":
        return data[: rng.randrange(len(data))]
    if op == "splice":
        at = rng.randrange(len(data))
        return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]
    raise ValueError(op)


def byte_mutations(count: int) -> list[str]:
    ops = ("flip", "truncate", "splice")
    return [f"bytes:{ops[i % 3]}:{i}" for i in range(count)]


def apply_bytes(data: bytes, mutation: str, salt: str) -> bytes:
    _, op, n = mutation.split(":")
    return mutate_bytes(data, op, int(n), salt)


def rewrite_zip_member(data: bytes, pick: Callable[[str], bool], change: Callable[[bytes], bytes]) -> bytes:
    """A copy of the zip archive ``data`` whose first member matching ``pick`` holds ``change(old)``."""
    out = io.BytesIO()
    done = False
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            blob = src.read(info)
            if not done and pick(info.filename):
                blob, done = change(blob), True
            dst.writestr(info, blob)
    assert done, "no zip member matched"
    return out.getvalue()


# -- targets: each writes its inputs into ``work`` and returns the CLI arguments -----------------


def skops_source(work: Path, bases: Bases, mutation: str) -> list[str]:
    """A RandomForest .skops with its tree arrays damaged; the tree type trusted, as the audit allows."""
    import skops.io as sio

    base = bases.get("forest")
    data = (base / "rf.skops").read_bytes()
    trust = ["--trust-type", "sklearn.tree._tree.Tree"]
    if mutation.startswith("bytes:"):
        blob = apply_bytes(data, mutation, "skops")
    else:
        model = sio.load(base / "rf.skops", trusted=sio.get_untrusted_types(file=base / "rf.skops"))
        tree = model.estimators_[0].tree_
        state = tree.__getstate__()
        nodes = state["nodes"].copy()
        if mutation == "children_out_of_range":
            nodes["left_child"][0] = 10**6
        elif mutation == "children_negative":
            nodes["right_child"][0] = -7
        elif mutation == "cycle":
            nodes["left_child"][1] = 0
            nodes["right_child"][1] = 0
            nodes["feature"][1] = 0
        elif mutation == "feature_out_of_range":
            nodes["feature"][0] = 999
        else:
            raise ValueError(mutation)
        state["nodes"] = nodes
        tree.__setstate__(state)
        path = work / "src.skops"
        sio.dump(model, path)
        blob = path.read_bytes()
    (work / "m.skops").write_bytes(blob)
    return ["run", "m.skops", "--sample", str(base / "x.npy"), *trust, "--timeout", ONNXGATE_TIMEOUT]


def xgboost_source(work: Path, bases: Bases, mutation: str) -> list[str]:
    base = bases.get("xgboost")
    data = (base / "xgb.json").read_bytes()
    if mutation.startswith("bytes:"):
        blob = apply_bytes(data, mutation, "xgboost")
    else:
        doc = json.loads(data)
        tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
        if mutation == "left_children_out_of_range":
            tree["left_children"][0] = 10**6
        elif mutation == "cycle":
            tree["left_children"][1] = 0
            tree["right_children"][1] = 0
        elif mutation == "split_indices_out_of_range":
            tree["split_indices"][0] = 10**6
        elif mutation == "wrong_type":
            tree["left_children"] = "nope"
        else:
            raise ValueError(mutation)
        blob = json.dumps(doc).encode()
    (work / "m.json").write_bytes(blob)
    return ["run", "m.json", "--sample", str(base / "x.npy"), "--timeout", ONNXGATE_TIMEOUT]


def lightgbm_source(work: Path, bases: Bases, mutation: str) -> list[str]:
    base = bases.get("lightgbm")
    text = (base / "lgb.txt").read_text()
    if mutation.startswith("bytes:"):
        blob = apply_bytes(text.encode(), mutation, "lightgbm")
    else:
        key, value = {
            "split_feature_corrupt": ("split_feature", "999 -5 123456"),
            "left_child_out_of_range": ("left_child", "1000000 -1 -2"),
            "cycle": ("left_child", "0 0 0"),
            "num_leaves_huge": ("num_leaves", "2147483647"),
        }[mutation]
        blob = re.sub(rf"^{key}=.*$", f"{key}={value}", text, count=1, flags=re.M).encode()
    (work / "m.txt").write_bytes(blob)
    return ["run", "m.txt", "--sample", str(base / "x.npy"), "--timeout", ONNXGATE_TIMEOUT]


def torch_source(work: Path, bases: Bases, mutation: str) -> list[str]:
    base = bases.get("torch")
    data = (base / "tiny.pt2").read_bytes()
    if mutation.startswith("bytes:"):
        blob = apply_bytes(data, mutation, "torch")
    elif mutation == "program_json_garbage":
        blob = rewrite_zip_member(data, lambda n: n.endswith("models/model.json"), lambda b: b[: len(b) // 2])
    elif mutation == "weights_truncated":
        blob = rewrite_zip_member(data, lambda n: "/data/weights/" in n and not n.endswith("json"), lambda b: b[:3])
    else:
        raise ValueError(mutation)
    (work / "m.pt2").write_bytes(blob)
    return ["run", "m.pt2", "--sample", str(base / "x.npy"), "--timeout", ONNXGATE_TIMEOUT]


def keras_source(work: Path, bases: Bases, mutation: str) -> list[str]:
    base = bases.get("keras")
    data = (base / "tiny.keras").read_bytes()

    def config(change: Callable[[dict], None]) -> bytes:
        def edit(b: bytes) -> bytes:
            doc = json.loads(b)
            change(doc)
            return json.dumps(doc).encode()

        return rewrite_zip_member(data, lambda n: n == "config.json", edit)

    def dense(doc: dict) -> dict:
        return doc["config"]["layers"][-1]["config"]

    if mutation.startswith("bytes:"):
        blob = apply_bytes(data, mutation, "keras")
    elif mutation == "units_huge":
        blob = config(lambda doc: dense(doc).update(units=2**40))
    elif mutation == "unknown_layer":
        blob = config(lambda doc: doc["config"]["layers"][-1].update(class_name="NoSuchLayer"))
    elif mutation == "config_not_json":
        blob = rewrite_zip_member(data, lambda n: n == "config.json", lambda b: b[: len(b) // 3])
    else:
        raise ValueError(mutation)
    (work / "m.keras").write_bytes(blob)
    return ["run", "m.keras", "--sample", str(base / "x.npy"), "--timeout", ONNXGATE_TIMEOUT]


def evidence_replay(work: Path, bases: Bases, mutation: str) -> list[str]:
    """``validate MODEL.onnx --evidence DIR`` with a damaged test_data_set_0."""
    from onnx import TensorProto

    base = bases.get("iris")
    ds = work / "evidence" / "test_data_set_0"
    ds.mkdir(parents=True)
    for f in (base / "evidence" / "test_data_set_0").iterdir():
        (ds / f.name).write_bytes(f.read_bytes())
    if mutation.startswith("bytes:"):
        n = int(mutation.rsplit(":", 1)[1])
        victim = sorted(ds.iterdir())[n % 3]
        victim.write_bytes(apply_bytes(victim.read_bytes(), mutation, "evidence"))
    else:
        t = TensorProto()
        t.ParseFromString((ds / "input_0.pb").read_bytes())
        if mutation == "input_huge_dims":
            t.dims[:] = [2**31, 2**31]
        elif mutation == "input_wrong_dtype":
            t.data_type = TensorProto.STRING
        elif mutation == "input_renamed":
            t.name = "nosuch"
        elif mutation == "missing_output":
            (ds / "output_1.pb").unlink()
        elif mutation == "extra_output":
            (ds / "output_7.pb").write_bytes((ds / "output_0.pb").read_bytes())
        else:
            raise ValueError(mutation)
        (ds / "input_0.pb").write_bytes(t.SerializeToString())
    return ["validate", str(base / "iris.onnx"), "--evidence", str(work / "evidence"), "--timeout", ONNXGATE_TIMEOUT]


def copy_zoo(work: Path, bases: Bases) -> tuple[Path, list[dict]]:
    import shutil

    shutil.copytree(bases.get("zoo") / "zoo", work / "zoo")
    manifest = work / "zoo" / "ONNX_HUB_MANIFEST.json"
    return manifest, json.loads(manifest.read_text())


def zoo_verify_args(work: Path, manifest: Path) -> list[str]:
    return ["zoo", "verify", str(manifest), "--cache", str(work / "cache"), "--timeout", ONNXGATE_TIMEOUT]


def manifest_file(work: Path, bases: Bases, mutation: str) -> list[str]:
    """``zoo verify MANIFEST`` on a local manifest with a damaged field."""
    manifest, entries = copy_zoo(work, bases)
    meta = entries[0]["metadata"]
    if mutation.startswith("bytes:"):
        manifest.write_bytes(apply_bytes(manifest.read_bytes(), mutation, "manifest"))
        return zoo_verify_args(work, manifest)
    if mutation == "path_outside":
        entries[0]["model_path"] = "../../../../etc/passwd"
        meta.pop("model_with_data_path")
    elif mutation == "archive_outside":
        meta["model_with_data_path"] = "../../../../etc/hostname"
    elif mutation == "wrong_sha":
        meta["model_with_data_sha"] = "0" * 64
    elif mutation == "size_huge":
        meta["model_with_data_bytes"] = 2**62
    elif mutation == "entry_not_object":
        entries[0] = ["iris"]
    elif mutation == "opset_string":
        entries[0]["opset_version"] = "17"
    else:
        raise ValueError(mutation)
    manifest.write_text(json.dumps(entries))
    return zoo_verify_args(work, manifest)


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for info, blob in members:
            tar.addfile(info, io.BytesIO(blob) if blob is not None else None)
    return raw.getvalue()


def archive_file(work: Path, bases: Bases, mutation: str) -> list[str]:
    """``zoo verify`` whose .tar.gz (test data + model) is damaged; the manifest's sha256 and size follow it."""
    manifest, entries = copy_zoo(work, bases)
    meta = entries[0]["metadata"]
    archive = work / "zoo" / meta["model_with_data_path"]
    data = archive.read_bytes()
    if mutation.startswith("bytes:"):
        blob = apply_bytes(data, mutation, "archive")
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
        if mutation == "member_outside":
            info = tarfile.TarInfo("iris/../../evil.txt")
            info.size = 4
            members.append((info, b"evil"))
        elif mutation == "symlink_out":
            info = tarfile.TarInfo("iris/test_data_set_0/input_0.pb")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            members = [(m, b) for m, b in members if m.name != info.name] + [(info, None)]
        elif mutation == "absolute_member":
            info = tarfile.TarInfo("/tmp/onnxgate-fuzz-absolute")
            info.size = 1
            members.append((info, b"x"))
        elif mutation == "no_model":
            members = [(m, b) for m, b in members if not m.name.endswith("model.onnx")]
        elif mutation == "device_member":
            info = tarfile.TarInfo("iris/dev")
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            members.append((info, None))
        else:
            raise ValueError(mutation)
        blob = tar_bytes(members)
    archive.write_bytes(blob)
    meta["model_with_data_sha"] = hashlib.sha256(blob).hexdigest()
    meta["model_with_data_bytes"] = len(blob)
    manifest.write_text(json.dumps(entries))
    return zoo_verify_args(work, manifest)


GATE_TOML = """\
[defaults]
registry = "registry"
providers = ["CPU"]

[[model]]
name = "iris"
source = "models/iris.skops"
sample = "data/iris.npy"
version = "1.0.0"
"""

GATE_EDITS = {
    "unknown_key": ('version = "1.0.0"', 'version = "1.0.0"\nnosuch = 3'),
    "opset_string": ('providers = ["CPU"]', 'providers = ["CPU"]\nopset = "seventeen"'),
    "opset_huge": ('providers = ["CPU"]', "providers = [\"CPU\"]\nopset = 99999999999999999"),
    "source_outside": ("models/iris.skops", "../../../../etc/passwd"),
    "source_callable": ("models/iris.skops", "os:system"),
    "sample_directory": ("data/iris.npy", "data"),
    "duplicate_name": ("[[model]]", '[[model]]\nname = "iris"\nsource = "models/iris.skops"\nversion = "1"\n\n[[model]]'),
    "registry_file": ('registry = "registry"', 'registry = "models/iris.skops"'),
    "not_toml": ("[defaults]", "[defaults"),
}


def gate_config(work: Path, bases: Bases, mutation: str) -> list[str]:
    """``gate --config onnxgate.toml`` in a git repository holding a real model and sample."""
    base = bases.get("iris")
    repo = work / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "data").mkdir()
    (repo / "models" / "iris.skops").write_bytes((base / "iris.skops").read_bytes())
    (repo / "data" / "iris.npy").write_bytes((base / "x.npy").read_bytes())
    if mutation.startswith("bytes:"):
        text = apply_bytes(GATE_TOML.encode(), mutation, "gate")
    else:
        old, new = GATE_EDITS[mutation]
        text = GATE_TOML.replace(old, new, 1).encode()
    (repo / "onnxgate.toml").write_bytes(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=f@example.com", "-c", "user.name=f", "commit", "-q", "-m", "m"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return ["gate", "--config", str(repo / "onnxgate.toml")]


def onnx_file(work: Path, bases: Bases, mutation: str) -> list[str]:
    """``validate iris.skops MODEL.onnx`` with the ONNX file damaged."""
    import onnx

    base = bases.get("iris")
    data = (base / "iris.onnx").read_bytes()
    if mutation.startswith("bytes:"):
        blob = apply_bytes(data, mutation, "onnx")
    else:
        m = onnx.load_from_string(data)
        g = m.graph
        if mutation == "cycle":
            g.node[0].input[0] = g.node[-1].output[0]
        elif mutation == "huge_dim":
            g.input[0].type.tensor_type.shape.dim[1].dim_value = 2**40
        elif mutation == "external_outside":
            w = g.initializer.add()
            w.CopyFrom(onnx.numpy_helper.from_array(np.ones(4, np.float32), "w"))
            w.ClearField("raw_data")
            w.data_location = onnx.TensorProto.EXTERNAL
            w.external_data.add(key="location", value="../../../../etc/passwd")
        elif mutation == "unknown_op":
            g.node[0].op_type = "Nope"
        elif mutation == "elem_type":
            g.input[0].type.tensor_type.elem_type = onnx.TensorProto.STRING
        elif mutation == "opset":
            m.opset_import[0].version = 2**40
        elif mutation == "ir_version":
            m.ir_version = 99
        elif mutation == "drop_outputs":
            del g.output[:]
        elif mutation == "domain":
            g.node[0].domain = "com.evil"
        elif mutation == "dangling":
            g.node[-1].input[0] = "nowhere"
        elif mutation == "rename_input":
            g.input[0].name = "label"
        elif mutation == "dup_output":
            g.node[-1].output[0] = g.node[0].output[0]
        elif mutation == "attr_type":
            g.node[0].attribute[0].type = onnx.AttributeProto.GRAPH
        elif mutation == "endless_loop":
            m = endless_loop_model()
        else:
            raise ValueError(mutation)
        blob = m.SerializeToString()
    (work / "m.onnx").write_bytes(blob)
    return ["validate", str(base / "iris.skops"), "m.onnx", "--sample", str(base / "x.npy"), "--timeout", ONNXGATE_TIMEOUT]


def endless_loop_model():
    """X[N,4] -> a Loop whose condition never turns false (no trip count), so ORT never returns."""
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)],
    )
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["true"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])),
         helper.make_node("Loop", ["", "true", "X"], ["Y"], body=body)],
        "endless",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def sample_file(work: Path, bases: Bases, mutation: str) -> list[str]:
    base = bases.get("iris")
    kind, _, rest = mutation.partition("/")
    name = {"npy": "x.npy", "npz": "x.npz", "csv": "x.csv"}[kind]
    blob = apply_bytes((base / name).read_bytes(), rest, f"sample-{kind}")
    (work / name).write_bytes(blob)
    return ["validate", str(base / "iris.skops"), str(base / "iris.onnx"), "--sample", name, "--timeout", ONNXGATE_TIMEOUT]


@dataclass
class Target:
    make: Callable[[Path, Bases, str], list[str]]
    mutations: list[str]  # every structural mutation (the slow sweep adds seeded byte damage)
    quick: list[str]  # the default run: the ones that reach the deepest code, cheaply
    byte_cases: int = 6
    extra: list[str] = field(default_factory=list)


TARGETS: dict[str, Target] = {
    "skops": Target(skops_source, ["children_out_of_range", "children_negative", "cycle", "feature_out_of_range"],
                    ["children_out_of_range"]),
    "xgboost": Target(xgboost_source, ["left_children_out_of_range", "cycle", "split_indices_out_of_range", "wrong_type"],
                      ["left_children_out_of_range"]),
    "lightgbm": Target(lightgbm_source, ["split_feature_corrupt", "left_child_out_of_range", "cycle", "num_leaves_huge"],
                       ["split_feature_corrupt"]),
    "torch": Target(torch_source, ["program_json_garbage", "weights_truncated"], ["program_json_garbage"], byte_cases=3),
    "keras": Target(keras_source, ["units_huge", "unknown_layer", "config_not_json"], ["unknown_layer"], byte_cases=3),
    "evidence": Target(evidence_replay, ["input_huge_dims", "input_wrong_dtype", "input_renamed", "missing_output", "extra_output"],
                       ["input_huge_dims"]),
    "manifest": Target(manifest_file, ["path_outside", "archive_outside", "wrong_sha", "size_huge", "entry_not_object", "opset_string"],
                       ["path_outside"]),
    "archive": Target(archive_file, ["member_outside", "symlink_out", "absolute_member", "no_model", "device_member"],
                      ["symlink_out"]),
    "gate": Target(gate_config, list(GATE_EDITS), ["source_outside"]),
    "onnx": Target(onnx_file, ["cycle", "huge_dim", "external_outside", "unknown_op", "endless_loop", "elem_type", "opset",
                               "ir_version", "drop_outputs", "domain", "dangling", "rename_input", "dup_output", "attr_type"],
                   ["external_outside"]),
    "sample": Target(sample_file, [], ["npz/bytes:truncate:1"], byte_cases=0,
                     extra=[f"{k}/bytes:{op}:{i}" for i, (k, op) in enumerate(
                         [("npy", "flip"), ("npz", "truncate"), ("csv", "splice"), ("npy", "truncate"), ("npz", "flip"), ("csv", "flip")])]),
}


def quick_cases() -> list[str]:
    return [f"{t}/{m}" for t, target in TARGETS.items() for m in target.quick]


# Seeded byte-damage cases per target in the default sweep (a flip; the suite must stay under
# 15 minutes on 2 cores); ONNXGATE_FUZZ_BYTES=6 runs the full set (each case is a fresh process, ~4 s).
BYTE_CASES = int(os.environ.get("ONNXGATE_FUZZ_BYTES", "1"))


def sweep_cases() -> list[str]:
    """Every structural mutation plus seeded byte damage, for every target (the slow sweep)."""
    cases = []
    for t, target in TARGETS.items():
        names = target.mutations + byte_mutations(min(target.byte_cases, BYTE_CASES)) + target.extra
        cases += [f"{t}/{m}" for m in names]
    return cases


def run_case(case: str, bases: Bases, work: Path) -> Outcome:
    """Build the mutated input for ``case`` in ``work`` and run onnxgate on it in a subprocess."""
    target, mutation = case.split("/", 1)
    work.mkdir(parents=True, exist_ok=True)
    args = TARGETS[target].make(work, bases, mutation)
    return run_onnxgate(args, work, case)
