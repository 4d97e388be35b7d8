"""Model parameters are data (a pickle or code is refused); the `models:` block is checked like alert rules."""
from __future__ import annotations

import base64
import json
import pickle

import pytest

from sinkframe.config.validate import validate_files
from sinkframe.errors import ModelError
from sinkframe.models.detector import Baseline, Detector
from sinkframe.models.params import detector_from_json, detector_to_json

from sinktest.paths import REPO

CONNECTOR = """\
name: breakers
topic: iot.breakers
mapper:
  plugin: smart_breaker
models:
{models}
alerts:
{alerts}
"""
MODEL = """\
  - name: contact_health
    features: [temperature, current_phase_a, current_phase_b, current_phase_c]
    key: device_id
"""


def a_detector() -> Detector:
    return Detector({"breaker-1": Baseline((20.0, 0.01, 0.0, -1.0, 2.0), 0.3, 600.0, 0.1, 0.05, 12.0),
                     "breaker-2": Baseline((22.0, 0.02, 0.1, 1.0, -2.0), 0.2, 900.0, 0.0, float("inf"), 3.0)},
                    threshold=0.6)


def test_parameters_go_through_json_and_back_unchanged():
    stored = json.loads(json.dumps(detector_to_json(a_detector())))
    assert detector_from_json(stored, model="breakers/contact_health version 1") == a_detector()


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("tamper, where", [
    (lambda p: base64.b64encode(pickle.dumps(Exploit())).decode(), "at $: expected an object of numbers, got str"),
    (lambda p: {**p, "code": "__import__('os').system('touch /tmp/owned')"}, "unknown key(s) 'code'"),
    (lambda p: {**p, "kind": "python"}, "at $.kind"),
    (lambda p: {**p, "threshold": "lambda x: x > 0.5"}, "at $.threshold: expected a finite number, got str"),
    (lambda p: {**p, "baselines": {"breaker-1": {**p["baselines"]["breaker-1"],
                                                 "coef": ["eval('1')", 0, 0, 0, 0]}}}, "coef[0]"),
    (lambda p: {**p, "baselines": {"breaker-1": {**p["baselines"]["breaker-1"], "sigma": True}}}, ".sigma"),
    (lambda p: {**p, "alpha": 2.0}, "$.alpha: 2.0 is out of range"),
])
def test_a_model_row_that_is_not_plain_numbers_is_refused(tamper, where, capsys):
    parameters = tamper(json.loads(json.dumps(detector_to_json(a_detector()))))
    with pytest.raises(ModelError) as refused:
        detector_from_json(parameters, model="breakers/contact_health version 7")
    message = str(refused.value)
    assert "breakers/contact_health version 7" in message and where in message
    assert "never loaded" in message
    assert "this must never run" not in capsys.readouterr().out


def write(tmp_path, models: str, alerts: str = "  []") -> str:
    path = tmp_path / "breakers.yaml"
    path.write_text(CONNECTOR.format(models=models, alerts=alerts))
    return str(path)


def test_validate_accepts_a_model_and_an_alert_rule_on_its_score(tmp_path):
    path = write(tmp_path, MODEL, "  - name: contact_failing\n    when: contact_health > 0.8\n")
    reports = validate_files([path], schema_dir="schema")
    assert reports[0].errors == []


def test_an_alert_rule_on_a_model_that_is_not_there_is_an_unknown_column(tmp_path):
    path = write(tmp_path, "  []", "  - name: contact_failing\n    when: contact_health > 0.8\n")
    errors = validate_files([path], schema_dir="schema")[0].errors
    assert len(errors) == 1 and "$.alerts[0].when: unknown column 'contact_health'" in errors[0]


def test_validate_names_each_problem_of_the_models_block_with_file_line_and_path(tmp_path):
    models = """\
  - name: contact_health
    features: [temprature, breaker_status, current_phase_b]
    key: extra_measurements
  - name: voltage_phase_a
    features: [temperature, current_phase_a]
    table: nowhere
  - name: contact_health
    features: [temperature, current_phase_a]
    colour: red
  - name: contact_health
    features: [temperature, current_phase_a]
"""
    errors = validate_files([write(tmp_path, models)], schema_dir="schema")[0].errors
    text = "\n".join(errors)
    assert f"{tmp_path / 'breakers.yaml'}:14::$.models[2].colour: unknown key 'colour'" in text
    assert not any(".features[" in e for e in errors)  # a file whose shape is wrong stops at the shape

    models = models.replace("    colour: red\n", "")
    errors = validate_files([write(tmp_path, models)], schema_dir="schema")[0].errors
    expected = [
        ":7::$.models[0].features[0]: unknown column 'temprature' (did you mean 'temperature'?)",
        ":7::$.models[0].features[1]: column breaker_status is text: a feature must be a number",
        ":8::$.models[0].key: key column extra_measurements is jsonb: it cannot identify a state",
        ":11::$.models[1].table: unknown table (mapper role) 'nowhere'",
        ":14::$.models[3].name: duplicate model name 'contact_health' (first at models[0])",
    ]
    for fragment in expected:
        assert any(fragment in e for e in errors), (fragment, errors)
    models = "  - name: voltage_phase_a\n    features: [temperature, current_phase_a]\n"
    errors = validate_files([write(tmp_path, models)], schema_dir="schema")[0].errors
    assert len(errors) == 1 and "already has a column 'voltage_phase_a'" in errors[0]


def test_the_shipped_smart_breaker_connector_documents_a_model_and_a_rule_that_validate(tmp_path):
    """configs/smart_breaker.yaml's commented models: block and its rule, uncommented, pass validate."""
    lines = (REPO / "configs" / "smart_breaker.yaml").read_text().splitlines()
    start, rule = lines.index("# models:"), lines.index("# the rule on its score, for the alerts: list:")
    model_block = [line[2:] for line in lines[start + 1:rule] if line.startswith("#  ")]
    rule_block = [line[2:] for line in lines[rule + 1:] if line.startswith("#  ")]
    assert any("when: contact_health > 0.8" in line for line in rule_block)
    enabled = "\n".join([*(line for line in lines if not line.startswith("#")), "models:", *model_block,
                         "alerts:", *rule_block]) + "\n"
    path = tmp_path / "smart_breaker.yaml"
    path.write_text(enabled)
    reports = validate_files([path], schema_dir=str(REPO / "schema"))
    assert reports[0].errors == [], reports[0].errors


def test_the_block_the_demo_appends_to_the_shipped_connector_validates(tmp_path):
    from sinkframe.models.spec import SMART_BREAKER_MODELS

    path = tmp_path / "smart_breaker.yaml"
    path.write_text((REPO / "configs" / "smart_breaker.yaml").read_text() + SMART_BREAKER_MODELS)
    assert validate_files([path], schema_dir=str(REPO / "schema"))[0].errors == []
