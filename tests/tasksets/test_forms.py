"""Forms built from the engine's parameter models, and the upload field."""

from __future__ import annotations

import pytest
from django import forms

from apps.tasksets.forms import FamilyParamsForm, TaskSetCreateForm, TaskSetVersionForm, params_initial
from tests.tasksets.data import good_csv, upload


def test_sinusoid_fields_carry_descriptions_defaults_and_bounds():
    form = FamilyParamsForm(family="sinusoid")
    assert list(form.fields) == ["amplitude_min", "amplitude_max", "phase_min", "phase_max", "x_min", "x_max"]
    field = form.fields["amplitude_min"]
    assert isinstance(field, forms.FloatField)
    assert (field.initial, field.min_value, field.max_value) == (0.1, 0, 100)
    assert field.help_text == "Smallest amplitude."
    assert field.label == "Amplitude min"
    html = str(form["amplitude_min"])
    assert 'name="params-amplitude_min"' in html and 'min="0"' in html and 'value="0.1"' in html


def test_glyphs_optional_int_and_bool():
    form = FamilyParamsForm(family="glyphs")
    assert isinstance(form.fields["max_classes"], forms.IntegerField)
    assert form.fields["max_classes"].required is False
    assert isinstance(form.fields["augment"], forms.BooleanField)
    bound = FamilyParamsForm({"params-noise": "0.1"}, family="glyphs")
    assert bound.is_valid(), bound.errors
    assert bound.params["max_classes"] is None
    assert bound.params["augment"] is False  # an unticked box
    assert bound.params["noise"] == 0.1


def test_table_choice_and_sequence_fields():
    form = FamilyParamsForm(family="table")
    assert [c for c, _ in form.fields["kind"].choices] == ["regression", "classification"]
    data = {
        "params-kind": "regression",
        "params-task_column": "task",
        "params-target_column": "y",
        "params-feature_columns": "a, b ,c",
        "params-max_bytes": "1000",
        "params-val_fraction": "0.2",
        "params-test_fraction": "0.2",
    }
    bound = FamilyParamsForm(data, family="table")
    assert bound.is_valid(), bound.errors
    assert bound.params["feature_columns"] == ["a", "b", "c"]
    assert bound.params["kind"] == "regression"
    initial = params_initial("table", bound.params | {"stale": 1})
    assert initial["feature_columns"] == "a, b, c" and "stale" not in initial


def test_bounds_and_cross_field_errors_land_on_fields():
    bound = FamilyParamsForm(
        {
            "params-amplitude_min": "3",
            "params-amplitude_max": "2",
            "params-phase_min": "0",
            "params-phase_max": "1",
            "params-x_min": "-1",
            "params-x_max": "1",
        },
        family="sinusoid",
    )
    assert not bound.is_valid()
    assert bound.errors == {"amplitude_max": ["must be greater than amplitude_min (3.0)"]}

    low = FamilyParamsForm({"params-amplitude_min": "-1"}, family="sinusoid")
    assert not low.is_valid()
    assert low.errors["amplitude_min"] == ["Ensure this value is greater than or equal to 0."]

    word = FamilyParamsForm({"params-amplitude_min": "big"}, family="sinusoid")
    assert not word.is_valid()
    assert word.errors["amplitude_min"] == ["Enter a number."]


def test_exclusive_bound_is_checked_by_the_model():
    bound = FamilyParamsForm({"params-val_fraction": "1"}, family="digits")
    assert not bound.is_valid()
    assert bound.errors == {"val_fraction": ["Input should be less than 1"]}


def _create_form(files=None, family="table", **kwargs):
    data = {"family": family, "name": "T", "description": ""}
    return TaskSetCreateForm(data, files or {}, **kwargs)


def test_create_form_upload_rules(settings):
    assert _create_form({"data_file": upload(good_csv())}).is_valid()

    missing = _create_form()
    assert not missing.is_valid()
    assert missing.errors["data_file"] == ["This family needs a data file."]

    empty = _create_form({"data_file": upload(b"")})
    assert not empty.is_valid()
    assert empty.errors["data_file"] == ["The submitted file is empty."]

    wrong = _create_form({"data_file": upload(b"a,b\n", "data.xlsx")})
    assert wrong.errors["data_file"] == ["Upload a .csv file, or a .zip of class folders of PNG images."]

    sines = _create_form({"data_file": upload(good_csv())}, family="sinusoid")
    assert sines.errors["data_file"] == ["The sinusoid family takes no data file."]

    settings.TASKSET_UPLOAD_MAX_BYTES = 10
    big = _create_form({"data_file": upload(b"x" * 11)})
    assert big.errors["data_file"] == ["The file is 11 bytes; the limit is 10 bytes."]

    dropped = _create_form(oversized=True)
    assert dropped.errors["data_file"] == ["The file is larger than the limit of 10 bytes."]


@pytest.mark.parametrize(("family", "has_file"), [("table", True), ("sinusoid", False)])
def test_version_form_has_a_file_field_only_for_data_families(family, has_file):
    assert ("data_file" in TaskSetVersionForm(family=family).fields) is has_file
