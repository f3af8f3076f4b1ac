"""What a user looks at after a run: report figures and tables, provenance, viewer states.

- :func:`plot_slices`: image, affinities, segmentations and ground truth on a few slices.
- :func:`write_evaluation_report`: the evaluation table (CSV, HTML) and a comparison plot.
- :func:`write_provenance_page`: the provenance each output records, as one HTML page.
- :func:`read_record` / :func:`format_record`: an output's provenance (``info`` command).
- :func:`neuroglancer_state`, :func:`napari_script`: open an output in a viewer (``view``).
"""

from pipeline_lib.report.figures import plot_slices
from pipeline_lib.report.info import format_record, read_record
from pipeline_lib.report.provenance_page import write_provenance_page
from pipeline_lib.report.tables import evaluation_table, write_evaluation_report
from pipeline_lib.report.view import cors_server, napari_script, neuroglancer_link, neuroglancer_state

__all__ = [
    "cors_server",
    "evaluation_table",
    "format_record",
    "napari_script",
    "neuroglancer_link",
    "neuroglancer_state",
    "plot_slices",
    "read_record",
    "write_evaluation_report",
    "write_provenance_page",
]
