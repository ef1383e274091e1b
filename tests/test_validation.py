import pandas as pd
import pytest

from models.errors import ConfigError
from simulator import validation
from simulator.cli import main

COLUMNS = list(validation.REQUIRED_COLUMNS)


def _row(**fields):
    row = dict.fromkeys(COLUMNS, None)
    row.update(id="x1", source="Somebody's table 3 — detail", quantity="allreduce_busbw",
               value=400.0, gpu="h200-sxm", gpus_total=8, gpus_per_node=8,
               intra_link="nvlink4", collective="auto", message_bytes=2**30)
    row.update(fields)
    return row


def test_rows_it_cannot_model_are_reported_with_the_reason_and_others_go_on():
    table = pd.DataFrame([
        _row(id="ok"),
        _row(id="gpu", gpu="h900"),
        _row(id="size", message_bytes=None),
        _row(id="qty", quantity="latency"),
        _row(id="nodes", gpus_total=12, gpus_per_node=8, inter_link="ib-ndr"),
    ])
    rows = validation.predict_rows(table).set_index("id")
    assert rows.loc["ok", "status"] == "ok" and rows.loc["ok", "predicted"] > 0
    assert "cluster.gpu: 'h900'" in rows.loc["gpu", "status"]
    assert rows.loc["size", "status"] == "unsupported: message_bytes is empty"
    assert "quantity 'latency' is not one of" in rows.loc["qty", "status"]
    assert "not a multiple of gpus_per_node" in rows.loc["nodes", "status"]


def test_signed_error_is_relative_to_the_measurement():
    rows = validation.predict_rows(pd.DataFrame([_row(value=100.0)]))
    predicted = rows.loc[0, "predicted"]
    assert rows.loc[0, "error_pct"] == pytest.approx(predicted - 100.0)


def test_summary_reports_median_p90_and_worst():
    rows = pd.DataFrame({
        "id": ["a", "b", "c", "d"], "quantity": ["throughput"] * 3 + ["time_to_train"],
        "error_pct": [5.0, -20.0, 10.0, float("nan")],
        "status": ["ok", "ok", "ok", "unsupported: no target"],
    })
    summary = validation.summarize(rows).set_index("quantity")
    assert summary.loc["throughput", "median_abs_error_pct"] == pytest.approx(10.0)
    assert summary.loc["throughput", "p90_abs_error_pct"] == pytest.approx(18.0)
    assert summary.loc["throughput", "worst_id"] == "b"
    assert summary.loc["time_to_train", "predicted"] == 0


def test_missing_columns_are_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,value\n1,2\n")
    with pytest.raises(ConfigError, match="missing: source, quantity"):
        validation.load_measurements(path)


def test_validate_command_writes_rows_summary_and_plots(tmp_path, capsys):
    data = tmp_path / "rows.csv"
    pd.DataFrame([_row(), _row(id="x2", gpu="nope")]).to_csv(data, index=False)
    assert main(["validate", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    written = pd.read_csv(tmp_path / "out" / "rows.csv")
    assert {"id", "quantity", "measured", "predicted", "error_pct", "status"} <= set(written)
    assert written["status"].tolist()[0] == "ok"
    assert written["status"].tolist()[1].startswith("unsupported: ")
    for name in ("summary.csv", "parity.png", "parity.svg"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "allreduce_busbw" in capsys.readouterr().out


def test_validate_command_names_a_missing_file(tmp_path, capsys):
    assert main(["validate", "--data", str(tmp_path / "none.csv")]) == 2
    assert "--data" in capsys.readouterr().err
