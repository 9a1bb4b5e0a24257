"""RulesError: a rejected expression, rendered like Cloudflare's engine: a caret under the fault."""

from __future__ import annotations


class RulesError(Exception):
    """`reason` is the short cause; `render()` gives the full caret diagnostic."""

    def __init__(self, reason: str, expression: str, start: int, end: int | None = None) -> None:
        self.reason = reason
        self.expression = expression
        self.start = max(0, min(start, len(expression)))
        self.end = max(self.start + 1, end if end is not None else self.start + 1)
        super().__init__(self.render())

    @property
    def line_col(self) -> tuple[int, int]:
        before = self.expression[: self.start]
        line = before.count("\n") + 1
        col = self.start - (before.rfind("\n") + 1) + 1
        return line, col

    def render(self) -> str:
        line_no, col = self.line_col
        line_start = self.expression.rfind("\n", 0, self.start) + 1
        line_end = self.expression.find("\n", self.start)
        if line_end == -1:
            line_end = len(self.expression)
        text = self.expression[line_start:line_end]
        width = max(1, min(self.end, line_end) - self.start)
        return (
            f"Filter parsing error ({line_no}:{col}):\n{text}\n"
            f"{' ' * (col - 1)}{'^' * width} {self.reason}"
        )
