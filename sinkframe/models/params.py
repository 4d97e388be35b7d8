"""A detector's parameters as data: JSON numbers in, JSON numbers out, never code.

A model version is stored as JSON (`sinkframe_models.parameters`, jsonb) and read
back through `detector_from_json`, which accepts exactly the shape
`detector_to_json` writes: known keys, finite numbers, lists of known length.
Anything else (a string where numbers belong, a pickle's base64, a code string,
an unknown key) is refused with a `ModelError` naming the model, its version and
the path of the offending value. Nothing in a row can choose a class or run a
function: there is no pickle, no eval and no import driven by stored data.
"""
from __future__ import annotations

import math
from typing import Any

from sinkframe.errors import ModelError
from sinkframe.models.detector import COEFFICIENTS, FORMAT, KIND, Baseline, Detector

_TOP_KEYS = frozenset(("kind", "format", "alpha", "cap", "scale", "threshold", "baselines"))
_BASELINE_KEYS = frozenset(("coef", "sigma", "tau", "balance", "balance_sigma", "load_median"))


def detector_to_json(detector: Detector) -> dict[str, Any]:
    """The detector as JSON-ready data (an infinite spread, meaning "not judged", as null)."""
    return {
        "kind": KIND, "format": FORMAT, "alpha": detector.alpha, "cap": detector.cap, "scale": detector.scale,
        "threshold": detector.threshold,
        "baselines": {key: {"coef": list(b.coef), "sigma": b.sigma, "tau": b.tau, "balance": b.balance,
                            "balance_sigma": None if math.isinf(b.balance_sigma) else b.balance_sigma,
                            "load_median": b.load_median}
                      for key, b in sorted(detector.baselines.items())},
    }


def detector_from_json(parameters: Any, *, model: str) -> Detector:
    """The detector stored as `parameters`; ModelError when they are anything but its data.

    `model` names it in errors (e.g. `connector/contact_health version 3`).
    """
    _expect_object(parameters, _TOP_KEYS, "$", model)
    if parameters["kind"] != KIND or parameters["format"] != FORMAT:
        raise _refused(model, "$.kind", f"expected kind {KIND!r} format {FORMAT}, got kind "
                                        f"{_preview(parameters['kind'])} format {_preview(parameters['format'])}")
    alpha = _number(parameters["alpha"], "$.alpha", model, low=0.0, high=1.0)
    cap = _number(parameters["cap"], "$.cap", model, low=0.0)
    scale = _number(parameters["scale"], "$.scale", model, low=0.0)
    threshold = _number(parameters["threshold"], "$.threshold", model, low=0.0, high=1.0)
    baselines = parameters["baselines"]
    if not isinstance(baselines, dict):
        raise _refused(model, "$.baselines", f"expected an object of baselines by key, got {_preview(baselines)}")
    return Detector({str(key): _baseline(value, f"$.baselines[{key!r}]", model) for key, value in baselines.items()},
                    threshold, alpha=alpha, cap=cap, scale=scale)


def _baseline(value: Any, path: str, model: str) -> Baseline:
    _expect_object(value, _BASELINE_KEYS, path, model)
    coef = value["coef"]
    if not isinstance(coef, list) or len(coef) != COEFFICIENTS:
        raise _refused(model, f"{path}.coef", f"expected a list of {COEFFICIENTS} numbers, got {_preview(coef)}")
    spread = value["balance_sigma"]
    return Baseline(
        tuple(_number(c, f"{path}.coef[{i}]", model) for i, c in enumerate(coef)),
        _number(value["sigma"], f"{path}.sigma", model, low=0.0),
        _number(value["tau"], f"{path}.tau", model, low=0.0),
        _number(value["balance"], f"{path}.balance", model),
        math.inf if spread is None else _number(spread, f"{path}.balance_sigma", model, low=0.0),
        _number(value["load_median"], f"{path}.load_median", model))


def _expect_object(value: Any, keys: frozenset, path: str, model: str) -> None:
    if not isinstance(value, dict):
        raise _refused(model, path, f"expected an object of numbers, got {_preview(value)}")
    unknown, missing = sorted(set(value) - keys), sorted(keys - set(value))
    if unknown or missing:
        raise _refused(model, path, "; ".join(
            part for part in (f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown else "",
                              f"missing key(s) {', '.join(missing)}" if missing else "") if part))


def _number(value: Any, path: str, model: str, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _refused(model, path, f"expected a finite number, got {_preview(value)}")
    if (low is not None and value <= low and path != "$.threshold") or (high is not None and value > high):
        raise _refused(model, path, f"{value} is out of range")
    return float(value)


def _preview(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _refused(model: str, path: str, reason: str) -> ModelError:
    return ModelError(f"model {model}: parameters refused at {path}: {reason}. A model's parameters are "
                      "data (JSON numbers written by `sinkframe models fit`); a pickle or code is never loaded")
