"""A publisher process for the concurrency tests: validate once, then publish many versions.

usage: publish_worker.py REGISTRY NAME SOURCE SAMPLE START_FILE VERSIONS...

Waits until START_FILE exists (so all workers race), then publishes each version
(``OTHER:VERSION`` publishes under name OTHER); prints one line per version:
"NAME VERSION ok" or "NAME VERSION refused: <message>".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main() -> int:
    registry, name, source, sample, start, *versions = sys.argv[1:]
    from onnxgate.errors import OnnxgateError
    from onnxgate.pipelines.run import convert, validate
    from onnxgate.pipelines.publish import publish_report

    conv = convert(source, None, sample=sample)
    report = validate(source, conv.model, conversion=conv)
    assert report.passed, report.failures()
    while not Path(start).exists():
        time.sleep(0.005)
    for item in versions:
        model_name, _, version = item.rpartition(":")
        model_name = model_name or name
        try:
            publish_report(registry, name=model_name, version=version, model=conv.model, report=report)
            print(f"{model_name} {version} ok", flush=True)
        except OnnxgateError as exc:
            print(f"{model_name} {version} refused: {exc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
