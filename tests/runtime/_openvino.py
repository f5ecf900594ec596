"""The real OpenVINO execution provider for the provider tests, on whatever x86 CPU this is.

On an Intel CPU the installed ``onnxruntime-ep-openvino`` package is used as is (no
extra arguments). On another vendor's CPU its factory claims no device (it only
takes PCI vendor 0x8086), so the tests compile ``ov_vendor_shim.c`` - a wrapper
library that lets the real plugin claim the CPU - and pass it with ``--ep-plugin``.
Either way the model is compiled and run by OpenVINO's own CPU plugin.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

SHIM_SOURCE = Path(__file__).with_name("ov_vendor_shim.c")


def cpu_is_intel() -> bool:
    import onnxruntime as ort

    return any(d.device.type.name == "CPU" and int(d.device.vendor_id) == 0x8086 for d in ort.get_ep_devices())


def openvino_args() -> list[str]:
    """``[]`` on Intel CPUs, else ``["--ep-plugin", "OpenVINO=<compiled shim>"]``; skips when impossible.

    Built once per test process: ONNX Runtime cannot swap a plugin library that live
    sessions (here, in the shared worker processes) still use.
    """
    ov = pytest.importorskip("onnxruntime_ep_openvino", reason="onnxruntime-ep-openvino is not installed")
    if cpu_is_intel():
        return []
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("a C compiler is needed to build the OpenVINO vendor shim on a non-Intel CPU")
    return list(_build_shim(compiler, ov.get_library_path()))


@lru_cache(maxsize=1)
def _build_shim(compiler: str, real_plugin: str) -> tuple[str, ...]:
    folder = tempfile.mkdtemp(prefix="onnxgate-ovshim-")
    atexit.register(shutil.rmtree, folder, True)
    lib = Path(folder) / "libov_vendor_shim.so"
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(lib), str(SHIM_SOURCE), "-ldl",
         f'-DREAL_PLUGIN="{real_plugin}"'],
        check=True, capture_output=True, text=True,
    )
    return ("--ep-plugin", f"OpenVINO={lib}")
