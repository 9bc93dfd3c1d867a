"""The model-agnostic training engine: epochs of gradient-accumulated AdamW steps with EMA,
validation on the EMA weights, periodic DDIM sampling, ``metrics.csv`` rows and atomic
checkpoints that ``resume`` continues exactly.

What a model family must provide is a :class:`ptk.models.tasks.Task` (loss, optional extras,
optional sampler); this package never looks inside a model. The run-folder layout it writes is
the contract in ``docs/run-folder.md``, whose names and formats :mod:`ptk.runs` owns (config.json
is written by the pipeline, the tables and checkpoints here, through it).

Data parallelism: under ``torchrun`` (``WORLD_SIZE > 1``) every rank reads its shard of the data
through a ``DistributedSampler`` and the accumulated gradients are averaged with one bucketed
``all_reduce`` per optimizer step. This is what ``DistributedDataParallel`` computes, done by hand
because (1) the model families call sub-modules directly inside their loss functions
(self-conditioning passes, CFG's unconditional branch, the frozen encoder), so the forward does not
go through a wrapper's ``__call__``; (2) those branches leave parameters unused on some steps,
which DDP's reducer rejects without ``find_unused_parameters``; and (3) a NaN micro-batch must be
dropped on every rank without a hung collective. Only rank 0 writes files.

One concept per module:

- :mod:`~ptk.models.trainer.loop`: :class:`Trainer`, the epochs and micro-batches;
- :mod:`~ptk.models.trainer.step`: one optimizer step (averaging, fp16 loss scale, clipping)
  and the autocast precision;
- :mod:`~ptk.models.trainer.tripwire`: the gradient-norm tripwire of one watched module;
- :mod:`~ptk.models.trainer.evaluation`: validation and the DDIM hook on the EMA weights;
- :mod:`~ptk.models.trainer.metrics_log`: ``metrics.csv`` and ``grad_cosine.csv``;
- :mod:`~ptk.models.trainer.checkpoint`: ``checkpoints/last.pt`` and ``best.pt``;
- :mod:`~ptk.models.trainer.loaders`: the data loaders and :func:`to_device`;
- :mod:`~ptk.models.trainer.parallel`: :class:`DistInfo` and the collectives.
"""

from ptk.models.trainer.loaders import to_device
from ptk.models.trainer.loop import Trainer
from ptk.models.trainer.metrics_log import GRAD_COSINE_NAME, METRIC_TAIL
from ptk.models.trainer.parallel import DistInfo, setup_distributed

__all__ = ["DistInfo", "GRAD_COSINE_NAME", "METRIC_TAIL", "Trainer", "setup_distributed", "to_device"]
