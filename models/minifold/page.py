"""Where ptk's Mini-Fold defaults differ from the reference page (``minifold_report_page.txt``):
one :class:`PageDeviation` per config key, with the page's value (``--set KEY=VALUE`` restores
it) and the measured reason. ``ptk versions`` and the report's version card list them
(:func:`page_deviations`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PageDeviation", "PAGE_DEVIATIONS", "page_deviations"]


@dataclass(frozen=True)
class PageDeviation:
    """A default of ptk's that differs from the Mini-Fold page: the config key (a dotted path of
    :meth:`VersionConfig.to_dict`), the page's value (``--set KEY=VALUE`` restores it), why, and
    whether it applies to the IPA denoisers only (v11 … v14)."""

    key: str
    page: Any
    why: str
    ipa_only: bool = True
    #: the versions it applies to (and their descendants' saved configs); () = every Mini-Fold.
    versions: tuple[str, ...] = ()


#: Measured on memorisation runs (``benchmarks/learning.py``, v13 small, 6 chains, 600 steps);
#: the figures behind each are in ``docs/learning.md``.
PAGE_DEVIATIONS: tuple[PageDeviation, ...] = (
    PageDeviation(
        "model.denoiser.frame_init",
        "snr_gated",
        "Gram-Schmidt frames of noised Cα triplets (÷10 Å) are no better than random rotations up "
        "to SNR ≈ 5 (median error 98-121° against 126° at random), yet the page's gate opens them "
        "fully at SNR 1; even a gate calibrated to where they carry orientation made DDIM drift at "
        "low noise. ptk starts every frame at the identity (AF2's black-hole start) and lets x_t "
        "in through the translations and distance features. Loses rotation equivariance.",
    ),
    PageDeviation(
        "model.denoiser.trans_init",
        "noised",
        "Frames start at E[x0 | x_t] for a Gaussian of the predicted R_g (the origin at high noise, "
        "x_t at low noise) instead of at x_t, so high-noise steps build the chain from the "
        "sequence instead of first undoing the noise.",
    ),
    PageDeviation(
        "model.denoiser.self_cond",
        "frames",
        "The page starts the self-conditioned pass from the frames of the previous x0; trained so, "
        "the pass learns to keep them and DDIM drifts: from the true x_t at t = 200 it ended at "
        "7.2 Å against 4.4 Å without self-conditioning. ptk feeds the previous x0 as features "
        "(its pair distances and its coordinates in the initial frames).",
    ),
    PageDeviation(
        "model.diffusion.schedule",
        "shifted_cosine",
        "The page states SNR < 1 at roughly t > 700, which the cosine schedule with every SNR "
        "multiplied by 4 gives (SNR = 1 at t = 702); plain cosine crosses at t = 496. But the "
        "page's own measurement, 57.7% of frames with gate confidence > 0.5 (v11 post-mortem), is "
        "what plain cosine gives to the tenth of a percent (57.7%; shifted 76.2%), and its "
        "'roughly t > 700' matches where cosine's gate gives pure identity frames (SNR < 0.2 from "
        "t = 730). ptk keeps the schedule the page's figure implies.",
        ipa_only=False,
    ),
    PageDeviation(
        "train.sample_guidance",
        1.5,
        "Classifier-free guidance extrapolates the x0 estimate away from the unconditional one; "
        "on memorised chains the page's 1.5 stretched the chain (Cα–Cα 4.8 ± 1.3 Å) and lowered "
        "the median TM from 0.83 (guidance 1) to 0.63. ptk samples with the conditional model "
        "alone by default; the unconditional branch is still trained (p_uncond 0.1).",
        ipa_only=False,
        versions=("v13", "v14"),
    ),
    PageDeviation(
        "train.ema_warmup",
        False,
        "The page averages at decay 0.999 from the first step, so after 600 steps the average still "
        "holds 55% of the random initialisation: short runs (memorisation, the demo, the first "
        "epochs) would validate and sample a model that is mostly noise. ptk warms the decay up as "
        "min(0.999, (1+n)/(10+n)), which reaches 0.999 after about 9,000 steps.",
        ipa_only=False,
    ),
    PageDeviation(
        "train.amp",
        "fp16",
        "The page trains in fp16 with a GradScaler. ptk's auto is bf16 autocast on CUDA (fp32 on "
        "CPU): bf16 keeps fp32's exponent range, so no loss scale and no steps skipped for "
        "overflow. fp16 with a dynamic loss scale is one --set away, for GPUs without bf16.",
        ipa_only=False,
    ),
    PageDeviation(
        "train.val_weights",
        "epoch",
        "The page's Val Total weighs the bond term by the epoch's annealed β(e) (and v14's "
        "backbone terms by their ramp), so it rises with the epoch by construction and early "
        "stopping and best.pt favour the first epochs. ptk validates every epoch with the "
        "end-of-anneal weights, so totals of different epochs compare.",
        ipa_only=False,
    ),
)


def _lookup(tree: Mapping[str, Any], key: str) -> Any:
    value: Any = tree
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def page_deviations(config: Mapping[str, Any]) -> list[tuple[PageDeviation, Any]]:
    """The deviations of a resolved config (:meth:`VersionConfig.to_dict`, or a run's
    ``config.json``) from the page, with its value: those that apply and are not set back."""
    if config.get("family", "minifold") != "minifold":
        return []
    kind = _lookup(config, "model.denoiser.kind")
    out = []
    for dev in PAGE_DEVIATIONS:
        value = _lookup(config, dev.key)
        if value is None or (dev.ipa_only and kind != "ipa") or value == dev.page:
            continue
        if dev.versions and config.get("version") not in dev.versions:
            continue
        out.append((dev, value))
    return out
