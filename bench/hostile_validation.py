"""How long validation takes for records built to hurt it: `python -m bench.hostile_validation`.

Each case is decided by app.validation.validate_order, as the consumer does; the figure is the best of
a few rounds (a shared machine only ever slows a round down)."""

import time

from app.validation import validate_order
from harness import contract_example

EXAMPLE = contract_example()


def cases() -> dict[str, dict]:
    item = EXAMPLE["items"][0]
    wrong_item = {name: "x" for name in item}
    return {
        "the contract example (1 item)": EXAMPLE,
        "1,000 valid items (the limit)": {**EXAMPLE, "items": [item] * 1000},
        "800 empty items": {**EXAMPLE, "items": [{}] * 800},
        "3,000 empty items": {**EXAMPLE, "items": [{}] * 3000},
        "2,000 unknown keys": {**EXAMPLE, **{f"k{i}": 0 for i in range(2000)}},
        "1,000 items, every field a string": {**EXAMPLE, "items": [wrong_item] * 1000},
        "an unknown key of 1 MiB": {**EXAMPLE, "a" * 1_048_400: 0},
    }


def best_ms(document: dict, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        validate_order(document)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    print("| record | ms to decide | error paths |\n| --- | ---: | ---: |")
    for name, document in cases().items():
        print(f"| {name} | {best_ms(document):.3f} | {len(validate_order(document))} |")


if __name__ == "__main__":
    main()
