"""``python -m bench.bare_train SPEC_JSON``: bare ``YOLO(model).train(**spec)``, the baseline of
``bench train --overhead``. Imports nothing of the project, so the process is as bare as can be."""

from __future__ import annotations

import json
import sys
from typing import Any


def bare_train(spec: dict[str, Any]) -> None:
    from ultralytics import YOLO

    spec = dict(spec)
    model = spec.pop("model")
    YOLO(model).train(exist_ok=True, verbose=True, **spec)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.bare_train SPEC_JSON")
    bare_train(json.loads(sys.argv[1]))
