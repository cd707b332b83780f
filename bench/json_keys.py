"""What refusing a key given twice costs the body decoder (controller/jsonbody.py): the same
decoder without and with its `object_pairs_hook`, interleaved in one run, CPU time, best of 7.

    .venv/bin/python bench/json_keys.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import jsonbody

ROUNDS = 7


def main() -> None:
    without = json.JSONDecoder(parse_int=jsonbody._int, parse_float=jsonbody._float,
                               parse_constant=jsonbody.OutOfRange)
    one = json.dumps({"dbid": "10.0.0.21", "cpu": 0.5, "sessions": 3, "queue": 0,
                      "capacity": 8, "processing_delay_ms": 3.0})
    batch = json.dumps({"reports": [{"dbid": f"10.0.{k // 250}.{k % 250}", "cpu": 0.5,
                                     "sessions": 3, "queue": 0, "capacity": 8}
                                    for k in range(10000)]})
    best: dict[tuple[str, str], float] = {}
    for _ in range(ROUNDS):
        for name, decoder in (("without", without), ("with", jsonbody._DECODER)):
            for label, text, n in (("single report", one, 20000),
                                   ("10,000-report batch", batch, 10)):
                started = time.process_time()
                for _ in range(n):
                    decoder.decode(text)
                took = (time.process_time() - started) / n
                best[(label, name)] = min(best.get((label, name), took), took)
    for (label, name), took in best.items():
        print(f"{label:20s} {name:8s} hook {took * 1e6:9.1f} us CPU (best of {ROUNDS})")


if __name__ == "__main__":
    main()
