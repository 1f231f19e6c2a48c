"""What the Prefect UI's run form shows for the deployed flows, and how bad parameters are refused."""

from __future__ import annotations

from datetime import date

import pytest
from prefect.utilities.callables import parameter_schema

from taxi.layout import browser_url
from taxi.settings import Settings
from taxi.window import parse_as_of, whole_number


def _deployed_flows():
    from flows.backfill import backfill_flow
    from flows.inference import incoming_inference_flow, inference_flow
    from flows.ingest import ingest_flow
    from flows.training import training_flow

    return [training_flow, ingest_flow, inference_flow, incoming_inference_flow, backfill_flow]


def test_every_parameter_has_help_and_choices_are_listed():
    for flow in _deployed_flows():
        properties = parameter_schema(flow.fn).model_dump()["properties"]
        missing = [name for name, field in properties.items() if not field.get("description")]
        assert not missing, (flow.name, missing)
    training = parameter_schema(_deployed_flows()[0].fn).model_dump()["properties"]
    assert training["model_type"]["enum"] == ["linear", "gbm"]
    assert training["color"]["enum"] == ["yellow", "green"]
    ingest = parameter_schema(_deployed_flows()[1].fn).model_dump()["properties"]
    assert ingest["color"]["enum"] == ["yellow", "green"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-03-15", date(2021, 3, 15)),
        ("2021-03-15T10:00:00", date(2021, 3, 15)),
        (date(2021, 4, 2), date(2021, 4, 2)),
    ],
)
def test_as_of_accepts_dates_as_the_api_sends_them(value, expected):
    assert parse_as_of(value) == expected


@pytest.mark.parametrize("value", ["15/03/2021<script>", "", 20210315, None])
def test_bad_dates_and_numbers_are_refused_without_repeating_them(value):
    with pytest.raises(ValueError, match="as_of must be a date written YYYY-MM-DD") as error:
        parse_as_of(value)
    assert "<script>" not in str(error.value) and "20210315" not in str(error.value)
    if not isinstance(value, int):
        with pytest.raises(ValueError, match="train_months must be a whole number of at least 1"):
            whole_number(value, "train_months")
    for number in (True, 0, 1.5):
        with pytest.raises(ValueError, match="at least 1"):
            whole_number(number, "train_months")


def test_report_links_open_in_a_browser_when_a_template_is_set():
    uri = "s3://taxi/models/v1/manifest.json"
    assert browser_url(uri, None) == uri
    template = "http://localhost:9001/browser/{bucket}/{key}"
    assert (
        browser_url(uri, template)
        == "http://localhost:9001/browser/taxi/models%2Fv1%2Fmanifest.json"
    )
    assert Settings.from_env({"TAXI_OBJECT_URL_TEMPLATE": template}).object_url_template == template
    for bad in ("ftp://x/{key}", "http://x/{bucket}", "http://x/{key}/{other}", "http://x/{key"):
        with pytest.raises(ValueError, match="TAXI_OBJECT_URL_TEMPLATE must be an http") as error:
            Settings.from_env({"TAXI_OBJECT_URL_TEMPLATE": bad})
        assert bad not in str(error.value)


def test_each_flow_checks_its_parameters_in_one_function():
    from flows.parameters import backfill_parameters, ingest_parameters, training_parameters

    checked = training_parameters(as_of="2021-03-15T10:00:00", train_months=2)
    assert (checked.as_of, checked.train_months, checked.promote) == (date(2021, 3, 15), 2, None)
    for bad, message in [
        ({"train_path": "a.parquet"}, "give both train_path and test_path, or neither"),
        ({"promotion_margin": True}, "promotion_margin must be a number of minutes"),
        (
            {"promote": "yes"},
            "use_trip_distance must be true or false, and promote true, false or unset",
        ),
        ({"max_train_rows": 0}, "max_train_rows must be a whole number of at least 1"),
        ({"color": "purple"}, "color must be one of yellow, green"),
    ]:
        with pytest.raises(ValueError, match=message):
            training_parameters(**bad)
    today = date(2024, 5, 2)
    assert ingest_parameters("green", None, None, today) == ingest_parameters(
        "green", None, "2024-05", today
    )
    assert ingest_parameters("green", "2021-01", "2021-03", today).first == (2021, 1)
    with pytest.raises(ValueError, match="start must not be after end"):
        ingest_parameters("green", "2021-03", "2021-01", today)
    dates = backfill_parameters("2021-03-01", date(2021, 3, 20)).dates
    assert dates == (date(2021, 3, 1), date(2021, 3, 8), date(2021, 3, 15))
    with pytest.raises(ValueError, match="the backfill's end is before its start"):
        backfill_parameters("2021-03-20", "2021-03-01")


def test_the_hourly_job_takes_only_incoming_or_a_folder_below_it():
    from flows.parameters import incoming_parameters

    for prefix in ("incoming/", "incoming/2021-03/", "incoming/a/b/"):
        assert incoming_parameters(prefix, "latest").prefix == prefix
    refused = ["", "models/", "predictions/", "incoming", "incoming/../models/", "incoming/./"]
    refused += ["incoming//", "incoming/a//b/", "/incoming/", "incoming/" + "x/" * 300, None, 3]
    for prefix in refused:
        with pytest.raises(
            ValueError, match="prefix must be incoming/ or a folder below it"
        ) as error:
            incoming_parameters(prefix, "latest")
        assert "models" not in str(error.value) and ".." not in str(error.value)
    with pytest.raises(ValueError, match="model_version must be 'latest' or a model version id"):
        incoming_parameters("incoming/", ["latest"])
