"""The scan report: a versioned data model and one module per output format.

- :mod:`~leakaudit.report.document`: :class:`Report`, :class:`SampleRecord` (the JSON layout).
- :mod:`~leakaudit.report.build`: assemble a report from the engine's result.
- :mod:`~leakaudit.report.ranking`: ranks, percentiles, distributions (pure functions).
- :mod:`~leakaudit.report.json_out`, :mod:`~leakaudit.report.markdown`,
  :mod:`~leakaudit.report.terminal`: the formats.
- :mod:`~leakaudit.report.schema`: the JSON schema and its checker.
- :mod:`~leakaudit.report.partial`: partial results for ``--resume``.
- :mod:`~leakaudit.report.files`: atomic writes.
- :mod:`~leakaudit.report.validation_table`, :mod:`~leakaudit.report.plots`: a validation's
  agreement tables and figure.
"""

from leakaudit.report.document import SCHEMA_VERSION, Report, SampleRecord

__all__ = ["SCHEMA_VERSION", "Report", "SampleRecord"]
