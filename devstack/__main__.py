"""python -m devstack up|down|status: what `make infra`, `make infra-down` and `make infra-status`
run."""

import sys

try:  # config checks every setting's range as it loads: a wrong one is one line, not a traceback
    from devstack import stack
    from devstack.output import Failure
    from devstack.settings import Settings
except ValueError as exc:
    sys.exit(f"infra: error: {exc}")

COMMANDS = {"up": stack.up, "down": stack.down, "status": stack.status}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print("usage: python -m devstack up|down|status", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](Settings.from_env())
    except (Failure, PermissionError) as exc:
        print(f"infra: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
