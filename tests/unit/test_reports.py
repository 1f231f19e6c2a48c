"""The run reports as the Prefect UI renders them (flows/reports/): links named by the plain
URI that open the object where the template says, no bare "-" in a table, and table-artifact
cells that render as text. Parsed with markdown-it (CommonMark with GFM tables), which reads
these the way the UI's renderer does: a markdown table's cells inline, a table artifact's
string cell as a document of its own."""

from __future__ import annotations

from datetime import date

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from flows.reports import inference as inference_reports
from flows.reports import ingest as ingest_reports
from flows.reports import monitoring as monitoring_reports
from flows.reports import training as training_reports
from flows.reports.markdown import code
from taxi.layout import browser_url
from taxi.monitoring import NO_REFERENCE

MARKDOWN = MarkdownIt("commonmark").enable("table")
SEAWEEDFS = "http://localhost:9001/api/files/download?path=/buckets/{bucket}/{key}"
VERSION = "20210402T060000Z-abc123"
CHAMPION = "20210315T060000Z-def456"


def _summary(champion: str | None) -> dict:
    models = f"s3://taxi/models/{VERSION}"
    return {
        "model_version": VERSION,
        "model_type": "gbm",
        "promoted": champion is None,
        "promotion_reason": "no champion yet" if champion is None else "not better",
        "champion_version": champion,
        "champion_rmse_test": None if champion is None else 6.5,
        "rmse_train": 5.12345,
        "rmse_test": 6.54321,
        "rmse_test_course_baseline": 10.4475,
        "train_months": ["2021-02"],
        "test_month": "2021-03",
        "train_rows": 61_921,
        "trained_rows": 61_921,
        "test_rows": 80_372,
        "manifest_uri": f"{models}/manifest.json",
        "plot_uri": f"{models}/evaluation.png",
        "predictions_uri": f"s3://taxi/predictions/test/{VERSION}/green 2021-03+b.parquet",
        "model_signed": True,
    }


def _details() -> dict:
    data = "s3://taxi/data/green/green_tripdata_2021-0"
    return {
        "model_type": "gbm",
        "model_format": "x",
        "use_trip_distance": False,
        "features": ["a", "b"],
        "train_data": {"uri": f"{data}2.parquet", "rows_read": 64_572, "rows_used": 61_921},
        "test_data": {"uri": f"{data}3.parquet", "rows_read": 83_827, "rows_used": 80_372},
        "window": {
            "as_of": "2021-04-02",
            "color": "green",
            "train_months": ["2021-02"],
            "test_month": "2021-03",
            "backfill": False,
        },
        "training_sample": {
            "rows_trained": 61_921,
            "sampled": False,
            "max_train_rows": None,
            "months": [{"source": f"{data}2.parquet", "rows_read": 64_572, "rows_kept": 61_921}],
        },
        "promotion": {},
    }


def _hourly(plot_redrawn: bool) -> dict:
    return {
        "model_version": VERSION,
        "model_signed": True,
        "files": 3,
        "predicted": [
            {"input": "incoming/a.parquet", "predictions": "s3://taxi/predictions/a.parquet"}
        ],
        "skipped": [{"input": "incoming/b.parquet", "reason": "predicted before"}],
        "failed": [{"input": "incoming/c.parquet", "error": "- not a parquet file", "failures": 1}],
        "set_aside": [],
        "monitoring_plot": {
            "uri": "s3://taxi/monitoring/plots/monitoring.png",
            "redrawn": plot_redrawn,
            "drawn_at": "2021-04-02T06:00:00+00:00",
            "records": 4 if plot_redrawn else None,
        },
    }


def _inline(markdown: str) -> list[Token]:
    return [token for token in MARKDOWN.parse(markdown) if token.type == "inline"]


def _links(markdown: str) -> list[tuple[str, list[Token]]]:
    """Every link of `markdown`: its href and the tokens of its text."""
    found = []
    for inline in _inline(markdown):
        children = inline.children or []
        for i, child in enumerate(children):
            if child.type == "link_open":
                end = next(j for j in range(i, len(children)) if children[j].type == "link_close")
                found.append((child.attrs["href"], children[i + 1 : end]))
    return found


def _table_cells(markdown: str) -> list[str]:
    """The text of every header and body cell of the tables of `markdown`."""
    tokens = MARKDOWN.parse(markdown)
    return [
        tokens[i + 1].content
        for i, token in enumerate(tokens)
        if token.type in ("th_open", "td_open")
    ]


def _reports(template: str | None) -> dict[str, str]:
    return {
        "training, no champion": training_reports.training_report(
            _summary(None), _details(), template
        ),
        "training, champion": training_reports.training_report(
            _summary(CHAMPION), _details(), template
        ),
        "inference": inference_reports.inference_report(
            "s3://taxi/incoming/a.parquet",
            "s3://taxi/predictions/a.parquet",
            VERSION,
            "gbm",
            10,
            {"pickup_zone": 2},
            template,
        ),
        "hourly, redrawn": inference_reports.incoming_report(
            "s3://taxi/incoming/", _hourly(True), template
        ),
        "hourly, kept": inference_reports.incoming_report(
            "s3://taxi/incoming/", _hourly(False), template
        ),
    }


def test_links_are_named_by_the_plain_uri_and_open_the_object_where_the_template_says():
    for name, markdown in _reports(SEAWEEDFS).items():
        links = _links(markdown)
        assert links, name
        for href, text in links:
            # The UI shows a link's text as written: one plain text token, the URI.
            assert [token.type for token in text] == ["text"], (name, href, text)
            uri = text[0].content
            assert uri.startswith("s3://") and href == browser_url(uri, SEAWEEDFS), (name, href)
        assert "[`" not in markdown, name
    training = _reports(SEAWEEDFS)["training, champion"]
    stored = training.split("## Stored in S3", 1)[1]
    hrefs = [href for href, _ in _links(stored)]
    assert hrefs == [
        f"http://localhost:9001/api/files/download?path=/buckets/taxi/models%2F{VERSION}%2F{name}"
        for name in ("manifest.json", "evaluation.png")
    ] + [
        "http://localhost:9001/api/files/download?path=/buckets/taxi/predictions%2Ftest%2F"
        f"{VERSION}%2Fgreen%202021-03%2Bb.parquet"
    ]


def test_without_a_template_objects_are_code_and_nothing_links_to_s3():
    for name, markdown in _reports(None).items():
        assert _links(markdown) == [], name
        codes = [
            c.content for t in _inline(markdown) for c in t.children if c.type == "code_inline"
        ]
        assert "s3://taxi/predictions/a.parquet" in codes or name.startswith("training"), name
    training = _reports(None)["training, no champion"]
    assert f"- Manifest: `s3://taxi/models/{VERSION}/manifest.json`" in training
    hourly = _reports(None)["hourly, redrawn"]
    assert "`s3://taxi/monitoring/plots/monitoring.png`" in hourly


@pytest.mark.parametrize("template", [None, SEAWEEDFS])
def test_no_markdown_table_cell_is_a_bare_dash(template):
    for name, markdown in {
        **_reports(template),
        "ingest": ingest_reports.ingest_report(
            {
                "color": "green",
                "source": "/opt/taxi/data",
                "ingested": [],
                "skipped": [{"month": "2021-01", "reason": "in the bucket"}],
                "not_available": [],
                "failed": [],
                "not_attempted": ["2021-02"],
                "ignored": [
                    {"month": "2999-12", "reason": "data/green/x: after the current month"}
                ],
            }
        ),
    }.items():
        cells = _table_cells(markdown)
        assert cells, name
        assert not [cell for cell in cells if cell.strip() in ("-", "*", "+")], (name, cells)
    # What does not exist says so: the champion's train RMSE (or the champion), the baseline's.
    rmse = _table_cells(_reports(template)["training, no champion"])[-8:]
    assert rmse == [
        "champion (current `latest`)",
        "none published yet",
        "n/a",
        "n/a",
        "course baseline (one-hot + linear)",
        "n/a",
        "n/a",
        "10.4475",
    ]
    champion = _table_cells(_reports(template)["training, champion"])[-8:-4]
    assert champion == ["champion (current `latest`)", f"`{CHAMPION}`", "n/a", "6.5000"]


def _renders_as_text(cell: object) -> bool:
    """A table artifact's cell as the UI shows it: a string as a markdown document (one
    paragraph, or nothing), anything else as its value."""
    if not isinstance(cell, str):
        return True
    blocks = [token.type for token in MARKDOWN.parse(cell)]
    return blocks in ([], ["paragraph_open", "inline", "paragraph_close"])


def test_the_check_sees_what_the_ui_made_of_a_dash():
    assert not _renders_as_text("-")  # an empty bullet list
    assert _renders_as_text(None) and _renders_as_text("2021-01, 2021-02")


def _monitoring_record(drift_statistics: str) -> dict:
    statistic = {
        "statistic": "jensen-shannon",
        "value": 0.02,
        "threshold": 0.1,
        "drift": False,
        "noise": 0.01,
        "configured_threshold": 0.1,
    }
    computed = drift_statistics == "computed"
    return {
        "input": "s3://taxi/incoming/green_tripdata_2021-03.parquet",
        "model_version": VERSION,
        "rows": 10,
        "unknown_zone_rows": 0 if computed else None,
        "drift_statistics": drift_statistics,
        "features": {"pickup_zone": statistic} if computed else {},
        "prediction_drift": statistic if computed else None,
        "target_drift": None,
        "drift_detected": False,
        "realized_rmse": 6.1 if computed else None,
        "realized_rows": 10,
        "created_at": "2021-04-02T06:00:00+00:00",
    }


def test_every_table_artifact_cell_renders_as_text():
    tables = {
        "metrics, no champion": training_reports.metrics_table(_summary(None)),
        "metrics, champion": training_reports.metrics_table(_summary(CHAMPION)),
        "monitoring": monitoring_reports.monitoring_table(_monitoring_record("computed")),
        "monitoring, no reference": monitoring_reports.monitoring_table(
            _monitoring_record(NO_REFERENCE)
        ),
        "backfill": [training_reports.backfill_row(date(2021, 4, 2), _summary(CHAMPION))],
    }
    for name, rows in tables.items():
        bad = [(row, cell) for row in rows for cell in row.values() if not _renders_as_text(cell)]
        assert not bad, (name, bad)
    # What a model lacks is an empty cell: the baseline has no version and no train RMSE.
    baseline = tables["metrics, champion"][-1]
    assert baseline["model"].startswith("course baseline")
    assert (baseline["version"], baseline["rmse_train"], baseline["rmse_test"]) == (
        None,
        None,
        10.4475,
    )
    assert tables["metrics, champion"][1]["version"] == CHAMPION


# Keys as an uploader may name them: markup of every kind, a line break, a tab.
HOSTILE_KEYS = [
    "incoming/a`b`.parquet",
    "incoming/``x | y``.csv",
    "incoming/[click](http://example.com) *now*.parquet",
    "incoming/two\nlines\tand a \\| pipe.parquet",
    "incoming/<b>x</b> & #1 _y_ ~z~ !.csv",
    "incoming/`",
]


def _rows(markdown: str) -> list[list[str]]:
    """Each table row of `markdown` as the texts its cells show (code spans included)."""
    rows, row = [], None
    for token in MARKDOWN.parse(markdown):
        if token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append("".join(child.content for child in token.children or []))
        elif token.type == "tr_close":
            rows.append(row)
            row = None
    return rows


def _as_shown(key: str) -> str:
    return " ".join(key.split())  # a line break or tab shows as one space


@pytest.mark.parametrize("template", [None, SEAWEEDFS])
def test_keys_with_markup_stay_in_their_cell_and_show_as_written(template):
    summary = _hourly(True) | {
        "predicted": [{"input": k, "predictions": f"s3://taxi/{k}"} for k in HOSTILE_KEYS],
        "failed": [{"input": k, "error": f"cannot read {k}", "failures": 1} for k in HOSTILE_KEYS],
        "skipped": [{"input": k, "reason": f"[{k}](x)"} for k in HOSTILE_KEYS],
    }
    rows = _rows(inference_reports.incoming_report("s3://taxi/incoming/", summary, template))
    assert all(len(row) == 3 for row in rows), rows
    body = rows[1:]
    shown = [_as_shown(k) for k in HOSTILE_KEYS]
    assert [row[0] for row in body] == shown * 3
    assert [row[2] for row in body[: len(shown)]] == [f"s3://taxi/{k}" for k in shown]
    assert [row[2] for row in body[len(shown) : 2 * len(shown)]] == [
        f"cannot read {k}" for k in shown
    ]
    assert [row[2] for row in body[2 * len(shown) :]] == [f"[{k}](x)" for k in shown]
    markdown = inference_reports.incoming_report("s3://taxi/incoming/", summary, template)
    hrefs = [href for href, _ in _links(markdown)]
    assert not [h for h in hrefs if h.startswith("http://example.com")]  # no link made by a key


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_a_code_span_holds_any_key(key):
    [inline] = _inline(code(key))
    [child] = inline.children
    assert child.type == "code_inline" and child.content == _as_shown(key)


def test_the_ingest_report_keeps_its_table_whatever_the_error_says():
    error = "HTTP 500 | <html>\n`oops`"
    summary = {
        "color": "green",
        "source": "https://example.com/`x`",
        "ingested": [{"month": "2021-01", "rows": 1, "bytes": 2, "uri": "s3://taxi/data/a|b"}],
        "skipped": [],
        "not_available": [],
        "failed": [{"month": "2021-02", "error": error}],
        "not_attempted": [],
        "ignored": [],
    }
    rows = _rows(ingest_reports.ingest_report(summary))
    assert all(len(row) == 3 for row in rows), rows
    assert rows[1][2].endswith("s3://taxi/data/a|b") and rows[2][2] == _as_shown(error)


def _drifted(input_: str) -> dict:
    record = _monitoring_record("computed")
    feature = record["features"]["pickup_zone"] | {"value": 0.5, "drift": True}
    return record | {"input": input_, "drift_detected": True, "features": {"pickup_zone": feature}}


def test_one_hourly_drift_event_lists_its_batches_up_to_a_cap():
    many = monitoring_reports.MAX_EVENT_BATCHES + 3
    drifted = [
        (_drifted(f"s3://taxi/incoming/{i}.parquet"), f"s3://m/{i}.json") for i in range(many)
    ]
    event = monitoring_reports.hourly_drift_event("s3://taxi/incoming/", "run-1", VERSION, drifted)
    assert event["resource"]["prefect.resource.id"] == "taxi.hourly-run.run-1"
    assert event["resource"]["taxi.input"] == f"s3://taxi/incoming/ ({many} files with drift)"
    payload = event["payload"]
    assert payload["drifted"] == ["pickup_zone"] and payload["rows"] == 10 * many
    assert len(payload["batches"]) == monitoring_reports.MAX_EVENT_BATCHES and payload["more"] == 3
    assert payload["batches"][0] == {
        "input": "s3://taxi/incoming/0.parquet",
        "drifted": ["pickup_zone"],
        "realized_rmse": 6.1,
        "record": "s3://m/0.json",
    }


def test_a_drift_event_names_its_input_on_one_line():
    event = monitoring_reports.drift_event(_drifted("s3://taxi/incoming/a\nFAKE: line.csv"))
    assert event["resource"]["taxi.input"] == "s3://taxi/incoming/a FAKE: line.csv"
