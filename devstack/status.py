"""One line per service for `make infra-status`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Status:
    state: str  # up, starting or down
    address: str
    who: str  # "ours, pid N", "external, not started by this script" or "-"
    files: str = ""  # where its data, config and logs are

    @property
    def up(self) -> bool:
        return self.state == "up"

    def line(self, name: str) -> str:
        who = f"({self.who})"
        return f"infra: {name:<9} {self.state:<8} {self.address:<16} {who:<40} {self.files}".rstrip()
