"""The comparison table of a compare.sh run, in markdown.

    python scripts/bench/table.py RESULTS_DIR

RESULTS_DIR holds, per model and type, `<shape>-<TYPE>.llama.json` (llama-bench -o
json) and `<shape>-<TYPE>.ours.txt` (`lfm-edge bench`, one `key: value` line each).
"""

import json
import re
import sys
from pathlib import Path


def ours(path: Path) -> dict:
    lines = dict(line.split(": ", 1) for line in path.read_text().splitlines() if ": " in line)
    number = lambda key: float(re.match(r"[\d.]+", lines[key]).group())  # noqa: E731
    return {
        "adapter": lines["adapter"],
        "prefill": number("prefill tok/s"),
        "decode": number("decode tok/s"),
        "probe": number("probe GB/s"),
        "decode_gbs": number("decode GB/s"),
    }


def llama(path: Path) -> dict:
    tests = json.loads(path.read_text())
    prefill = next(t for t in tests if t["n_gen"] == 0)
    decode = next(t for t in tests if t["n_prompt"] == 0)
    return {"device": prefill["gpu_info"], "prefill": prefill["avg_ts"], "decode": decode["avg_ts"]}


def size(path: Path) -> tuple[float, str]:
    """Smallest model first: 350M before 1.2B."""
    number, unit = re.search(r"([\d.]+)([MB])", path.name).groups()
    return float(number) * (1e6 if unit == "M" else 1e9), path.name


def main() -> None:
    results = Path(sys.argv[1])
    rows, adapters, devices = [], set(), set()
    for path in sorted(results.glob("*.ours.txt"), key=size):
        name = path.name.removesuffix(".ours.txt")
        shape, gguf_type = name.rsplit("-", 1)
        try:
            a, b = ours(path), llama(results / f"{name}.llama.json")
        except (KeyError, ValueError, StopIteration, AttributeError, OSError) as e:
            rows.append(f"| {name} | no result: {type(e).__name__} {e} |")
            continue
        adapters.add(a["adapter"])
        devices.add(b["device"])
        rows.append(
            f"| {shape if shape.startswith('Qwen') else 'LFM2-' + shape} | {gguf_type} "
            f"| {a['prefill']:.2f} | {b['prefill']:.2f} | {a['prefill'] / b['prefill']:.2f}× "
            f"| {a['decode']:.2f} | {b['decode']:.2f} | {a['decode'] / b['decode']:.2f}× "
            f"| {a['decode_gbs']:.2f} of {a['probe']:.2f} ({100 * a['decode_gbs'] / a['probe']:.0f} %) |"
        )
    print(f"lfm-edge adapter: {', '.join(sorted(adapters))}; llama.cpp device: {', '.join(sorted(devices))}\n")
    print("| model | type | prefill tok/s (ours) | prefill tok/s (llama.cpp) | ratio "
          "| decode tok/s (ours) | decode tok/s (llama.cpp) | ratio | decode GB/s of the copy probe |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
