"""WeightWatcher's fastest path on a checkpoint folder: ``WeightWatcher(model=folder).analyze()``.

Uses the real ``weightwatcher`` package (``pip install -e .[bench]``) with its defaults
(plot, randomize and mp_fit off). WeightWatcher reads ``model*.safetensors`` in the folder
itself (and the shard index for the layer order). It picks its SVD back end at import: on a
machine with CUDA it uses torch on the GPU (after converting every weight to float16); without
CUDA, SciPy in float64 on the CPU. ``benchmarks/run.py --device cpu`` hides the GPU from it.

    python benchmarks/ww_analyze.py FOLDER

Prints two JSON lines: the names of the layers analysed, then the number of layers and the
import/analyze times.
"""

from __future__ import annotations

import json
import logging
import sys
import time


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python benchmarks/ww_analyze.py FOLDER", file=sys.stderr)
        return 2
    folder = argv[0]
    start = time.perf_counter()
    import weightwatcher

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    imported = time.perf_counter()
    watcher = weightwatcher.WeightWatcher(model=folder)
    details = watcher.analyze()
    analysed = time.perf_counter()
    names = [str(name) for name in details["name"]] if "name" in details else []
    print(json.dumps({"layer_names": names}))
    # The summary comes last, on its own short line: benchmarks/run.py reads the last line.
    print(json.dumps({
        "layers_analyzed": len(details),
        "import_s": round(imported - start, 3),
        "analyze_s": round(analysed - imported, 3),
        "weightwatcher": weightwatcher.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
