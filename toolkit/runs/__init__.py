"""The training run folder (``docs/run-folder.md``): the one package that knows its names and
file formats, and both writes and reads them.

``ptk train`` (:mod:`ptk.pipelines.train`, the engine :mod:`ptk.models.trainer`), the sampling
code (:meth:`ptk.models.tasks.Task.sample_and_evaluate`, ``ptk sample``), warm starts, the report
(:mod:`ptk.report`) and the loss-curve plots (:mod:`ptk.plots`) call it::

    RUN/
      config.json              write_config, read_config, read_resume_config
      train.log                log_path
      metrics.csv              metrics_row, append_metrics, truncate_metrics, read_metrics
      grad_cosine.csv          append_cosines, truncate_cosines, read_grad_cosines
      checkpoints/last.pt      checkpoint_path (their keys: ptk.models.trainer.checkpoint)
      checkpoints/best.pt
      samples/epoch_NNN/       epoch_samples_dir, sample_folders(layout="run"), write_eval_csv
      samples/NAME/            sample_folders(layout="flat"), FLAT_EVAL_NAME
      report/                  report_dir

:func:`load_run`, :func:`find_runs`, :func:`pick_run` and :func:`latest_samples` read a folder
back (:class:`Run`, :class:`Sampling`). No torch here: checkpoints are written and read by
:mod:`ptk.models`; this package only names them.

One concept per module: :mod:`~ptk.runs.layout` (names and paths), :mod:`~ptk.runs.config`
(``config.json``), :mod:`~ptk.runs.tables` (the CSV tables), :mod:`~ptk.runs.run` (a run read
back).
"""

from ptk.runs.config import read_config, read_resume_config, write_config
from ptk.runs.layout import (
    BEST_NAME,
    CHECKPOINTS_DIR,
    CONFIG_NAME,
    EVAL_COLUMNS,
    EVAL_NAME,
    FLAT_EVAL_NAME,
    GRAD_COSINE_NAME,
    LAST_NAME,
    LOG_NAME,
    METRICS_NAME,
    REPORT_DIR,
    RESUME_KEYS,
    SAMPLES_DIR,
    checkpoint_path,
    checkpoints_dir,
    config_path,
    epoch_of,
    epoch_samples_dir,
    grad_cosine_path,
    log_path,
    metrics_path,
    report_dir,
    sample_folders,
    samples_dir,
)
from ptk.runs.run import Run, Sampling, find_runs, latest_samples, load_run, pick_run
from ptk.runs.tables import (
    COSINE_HEADER,
    METRIC_TAIL,
    append_cosines,
    append_metrics,
    discard_tables,
    loss_terms,
    metrics_row,
    read_grad_cosines,
    read_metrics,
    truncate_cosines,
    truncate_metrics,
    write_eval_csv,
)

__all__ = [
    "BEST_NAME",
    "CHECKPOINTS_DIR",
    "CONFIG_NAME",
    "COSINE_HEADER",
    "EVAL_COLUMNS",
    "EVAL_NAME",
    "FLAT_EVAL_NAME",
    "GRAD_COSINE_NAME",
    "LAST_NAME",
    "LOG_NAME",
    "METRICS_NAME",
    "METRIC_TAIL",
    "REPORT_DIR",
    "RESUME_KEYS",
    "Run",
    "SAMPLES_DIR",
    "Sampling",
    "append_cosines",
    "append_metrics",
    "checkpoint_path",
    "checkpoints_dir",
    "config_path",
    "discard_tables",
    "epoch_of",
    "epoch_samples_dir",
    "find_runs",
    "grad_cosine_path",
    "latest_samples",
    "load_run",
    "log_path",
    "loss_terms",
    "metrics_path",
    "metrics_row",
    "pick_run",
    "read_config",
    "read_grad_cosines",
    "read_metrics",
    "read_resume_config",
    "report_dir",
    "sample_folders",
    "samples_dir",
    "truncate_cosines",
    "truncate_metrics",
    "write_config",
    "write_eval_csv",
]
