"""The worker's cost per span in CPU instructions, counted by valgrind: a figure without noise.

    python benchmarks/instructions.py            # about 3 minutes; needs valgrind

Timings on a shared 2-core machine move by 10-20% from run to run; instruction counts do not
(with ``PYTHONHASHSEED`` fixed, the same code runs the same instructions). Counted per span,
for each workload (``_workload.py``), over the same finished spans:

- stock: ``encode_spans(batch).SerializePartialToString()``, the OTLP exporter's encoding;
- weave: ``ExportPipeline._calls_for`` (select, map, redact, roll up, encode and seal) and the
  ``calls_complete`` request body.

Neither sends anything: HTTP is ``run.py``'s to measure. Each figure is the difference of two
runs of a child process (the work done twice, and not at all) over ``--spans`` spans.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from _workload import WORKLOADS

PIPELINES = ("stock", "weave")
_I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def child(pipeline: str, workload: str, spans_count: int, loops: int) -> None:
    from profile_hot_paths import make_spans, settings_for

    spans = make_spans(spans_count, workload)
    if pipeline == "stock":
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        def work() -> None:
            encode_spans(spans).SerializePartialToString()
    else:
        from opentelemetry.exporter.weave._call import calls_complete_body
        from opentelemetry.exporter.weave._pipeline import ExportPipeline

        pipeline_ = ExportPipeline(settings_for("http://127.0.0.1:9", "calls_complete"))

        def work() -> None:
            calls, _, _ = pipeline_._calls_for(spans)
            calls_complete_body(calls)

    work()  # caches and lazy imports warmed up, in both counted runs alike
    for _ in range(loops):
        work()


def counted(pipeline: str, workload: str, spans_count: int, loops: int) -> int:
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        pipeline,
        workload,
        str(spans_count),
        str(loops),
    ]
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    finished = subprocess.run(command, check=False, capture_output=True, text=True, env=environment)
    found = _I_REFS.search(finished.stderr)
    if finished.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed:\n{finished.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=300, help="spans per run (default 300)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pipeline, workload, spans_count, loops = args.child
        child(pipeline, workload, int(spans_count), int(loops))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts (apt install valgrind)")
        return 1
    print(f"instructions per span, {args.spans} spans, valgrind cachegrind:")
    for workload in WORKLOADS:
        per_span = {}
        for pipeline in PIPELINES:
            twice = counted(pipeline, workload, args.spans, 2)
            none = counted(pipeline, workload, args.spans, 0)
            per_span[pipeline] = (twice - none) / (2 * args.spans)
        ratio = per_span["weave"] / per_span["stock"]
        print(
            f"  {workload:10} stock {per_span['stock']:>9,.0f}   weave calls_complete "
            f"{per_span['weave']:>9,.0f}   ratio {ratio:.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
