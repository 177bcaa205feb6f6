"""The worker's cost per span in CPU instructions, counted by valgrind: a figure without noise.

    python benchmarks/instructions.py            # about 3 minutes; needs valgrind
    python benchmarks/instructions.py --stages   # and the pipeline's stages, each on its own

Timings on a shared 2-core machine move by 10-20% from run to run; instruction counts do not
(with ``PYTHONHASHSEED`` fixed, the same code runs the same instructions). Counted per span,
for each workload (``_workload.py``), over the same finished spans:

- stock: ``encode_spans(batch).SerializePartialToString()``, the OTLP exporter's encoding;
- weave: ``ExportPipeline._calls_for`` (select, map, redact, roll up, name by op ref, encode
  and seal), op refs as at delivery (the op routes answered as ``run.py``'s sink answers them)
  and the ``calls_complete`` request body.

Neither sends anything: HTTP is ``run.py``'s to measure. Each figure is the difference of two
runs of a child process (the work done twice, and not at all) over ``--spans`` spans.

With ``--stages``, each of the pipeline's main stages is also counted on its own, over the same
spans, its input made before the counted work: mapping (``span_to_call``, with a fresh
``ConversationMemo`` per loop, as the pipeline maps), the secret scrubber (``Redactor.apply`` of
the mapped calls, the same ones in every loop: their texts' hashes are then known; the objects
it remembers as scrubbed forgotten after each loop, as after each batch), roll-up (a fresh
``SummaryRollup`` per loop), and encoding and sealing (``sealed()`` of fresh copies of the
scrubbed calls, ``WeaveCall.of``, which costs a little itself). What the stages leave of
``weave`` is the rest: threads, log join, the loop, the body.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from _workload import WORKLOADS

PIPELINES = ("stock", "weave")
STAGES = ("map", "scrub", "roll-up", "seal")
_I_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def child(pipeline: str, workload: str, spans_count: int, loops: int) -> None:
    from profile_hot_paths import PROJECT_ID, make_spans, settings_for

    spans = make_spans(spans_count, workload)
    if pipeline == "stock":
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        def work() -> None:
            encode_spans(spans).SerializePartialToString()
    elif pipeline == "weave":
        from opentelemetry.exporter.weave._call import calls_complete_body
        from opentelemetry.exporter.weave._ops import OpRefs
        from opentelemetry.exporter.weave._pipeline import ExportPipeline

        pipeline_ = ExportPipeline(settings_for("http://127.0.0.1:9", "calls_complete"))
        # Op refs as at delivery, the op routes answered as run.py's sink answers them.
        op_refs = pipeline_._op_refs = OpRefs(_OpAnswers(), time.monotonic, lambda *_: None)

        def work() -> None:
            calls, _, _ = pipeline_._calls_for(spans)
            calls_complete_body(op_refs.apply(calls, time.monotonic() + 10))
    else:
        work = _stage(pipeline, spans, PROJECT_ID)

    work()  # caches and lazy imports warmed up, in both counted runs alike
    for _ in range(loops):
        work()


class _OpAnswers:
    """Weave's op routes without HTTP: the answers of run.py's sink."""

    def post_for_answer(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> Any:
        from _sink import OP_ANSWERS

        from opentelemetry.exporter.weave._transport import PostResult

        return PostResult(200, body=OP_ANSWERS[path])


def _stage(stage: str, spans: list[Any], project_id: str) -> Callable[[], None]:
    """The work of one stage of the pipeline over ``spans``, its input made now."""
    from opentelemetry.exporter.weave import _mapping, _redaction, _rollup
    from opentelemetry.exporter.weave._call import WeaveCall
    from opentelemetry.exporter.weave._conversation import ConversationMemo

    conversations = ConversationMemo()
    mapped = [
        _mapping.span_to_call(span, project_id, conversations=conversations) for span in spans
    ]
    redactor = _redaction.Redactor()
    scrubbed = [redactor.apply(call) for call in mapped]

    def map_spans() -> None:
        conversations = ConversationMemo()  # as the pipeline maps: each trace's last input
        for span in spans:
            _mapping.span_to_call(span, project_id, conversations=conversations)

    def scrub() -> None:
        for call in mapped:
            redactor.apply(call)
        redactor.forget_items()  # as the pipeline does after each batch

    def roll_up() -> None:
        rollup = _rollup.SummaryRollup(len(scrubbed), 3600.0)
        for call in scrubbed:
            rollup.roll_up(call)

    def seal() -> None:
        for call in scrubbed:
            WeaveCall.of(call.start, call.end, call.facts).sealed()

    stages = {"map": map_spans, "scrub": scrub, "roll-up": roll_up, "seal": seal}
    return stages[stage]


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


def per_span_count(pipeline: str, workload: str, spans_count: int) -> float:
    """Instructions per span of ``pipeline``'s work (or a stage's): two loops less none."""
    twice = counted(pipeline, workload, spans_count, 2)
    none = counted(pipeline, workload, spans_count, 0)
    return (twice - none) / (2 * spans_count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=300, help="spans per run (default 300)")
    parser.add_argument(
        "--stages", action="store_true", help="also count each stage of the pipeline on its own"
    )
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
        per_span = {
            pipeline: per_span_count(pipeline, workload, args.spans) for pipeline in PIPELINES
        }
        ratio = per_span["weave"] / per_span["stock"]
        print(
            f"  {workload:10} stock {per_span['stock']:>9,.0f}   weave calls_complete "
            f"{per_span['weave']:>9,.0f}   ratio {ratio:.2f}x",
            flush=True,
        )
        if args.stages:
            stages = {stage: per_span_count(stage, workload, args.spans) for stage in STAGES}
            rest = per_span["weave"] - sum(stages.values())
            figures = "   ".join(f"{stage} {count:,.0f}" for stage, count in stages.items())
            print(f"  {'':10} of which: {figures}   the rest {rest:,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
