"""The interface every report format implements: a name, text for a file or a pipe, and
how it shows on a console."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from rich.console import Console

    from leakaudit.report.document import Report


class ReportFormat(ABC):
    """A way to write a :class:`~leakaudit.report.document.Report`.

    Attributes:
        name: the ``--format`` / ``output.format`` value that selects it.
        extension: the usual file suffix.
        top_k: rows of the riskiest-samples table (formats without one ignore it).
    """

    name: ClassVar[str]
    extension: ClassVar[str]

    def __init__(self, top_k: int = 10) -> None:
        self.top_k = top_k

    @abstractmethod
    def render(self, report: Report) -> str:
        """The report as text for a file or a pipe, ending in a newline."""

    def show(self, report: Report, console: Console) -> None:
        """Print the report on ``console`` (by default, :meth:`render`'s text as is)."""
        console.out(self.render(report), end="", highlight=False)
