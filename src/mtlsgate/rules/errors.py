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

    def render(self, width: int | None = None) -> str:
        """The caret diagnostic. With `width`, a line longer than that shows only a window of
        `width` characters around the fault (cut ends marked "…"); the position in the first
        line and the carets under the fault stay exact."""
        line_no, col = self.line_col
        line_start = self.expression.rfind("\n", 0, self.start) + 1
        line_end = self.expression.find("\n", self.start)
        if line_end == -1:
            line_end = len(self.expression)
        shown_start, shown_end = line_start, line_end
        if width is not None and line_end - line_start > width:
            # The fault about a third of the way in, unless the line ends sooner.
            shown_start = max(line_start, min(self.start - width // 3, line_end - width))
            shown_end = shown_start + width
        text = self.expression[shown_start:shown_end]
        indent = self.start - shown_start
        if shown_start > line_start:
            text, indent = "…" + text, indent + 1
        if shown_end < line_end:
            text += "…"
        carets = max(1, min(self.end, shown_end) - self.start)
        return (
            f"Filter parsing error ({line_no}:{col}):\n{text}\n"
            f"{' ' * indent}{'^' * carets} {self.reason}"
        )
