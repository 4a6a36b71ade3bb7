"""Results leaving multibone for the hospital's files: the PDF case report
(:mod:`.pdf`) and, on explicit request only, DICOM Secondary Capture + Structured Report
objects for PACS (:mod:`.dicom`).

Layer 4 (beside :mod:`multibone.case`): these modules take a case, its result and its
explanation as :mod:`multibone.case` made them and only lay them out.
"""

from __future__ import annotations

from multibone.export.pdf import case_report_pdf

__all__ = ["case_report_pdf"]
