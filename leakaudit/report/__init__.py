"""The scan report: a versioned data model and its output formats.

- :mod:`~leakaudit.report.document`: :class:`Report`, :class:`SampleRecord` (the JSON layout).
- :mod:`~leakaudit.report.build`: assemble a report from the engine's result.
- :mod:`~leakaudit.report.ranking`: ranks, percentiles, distributions (pure functions).
- :mod:`~leakaudit.report.formats`: the formats (table, markdown, JSON) behind one
  interface, :class:`~leakaudit.report.formats.ReportFormat`.
- :mod:`~leakaudit.report.schema`: the JSON schema and its checker.
- :mod:`~leakaudit.report.paths`, :mod:`~leakaudit.report.redact`: relative and redacted
  paths and ids in a report.
- :mod:`~leakaudit.report.files`: atomic writes.
- :mod:`~leakaudit.report.validation_table`, :mod:`~leakaudit.report.plots`: a validation's
  agreement tables and figure.

Partial results for ``--resume`` live in :mod:`leakaudit.resume`, the ``init`` template in
:mod:`leakaudit.config.template`.
"""

from leakaudit.report.document import SCHEMA_VERSION, Report, SampleRecord

__all__ = ["SCHEMA_VERSION", "Report", "SampleRecord"]
