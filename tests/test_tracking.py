"""Provenance helpers: run end states and credentials kept out of everything logged."""

import pytest

from lmtransfer.tracking import redact_url, run_status


@pytest.mark.parametrize("url, shown", [
    ("postgresql://user:s3cret@db.example:5432/optuna", "postgresql://user:***@db.example:5432/optuna"),
    ("postgresql+psycopg2://u:p%40ss@host/db?sslmode=require", "postgresql+psycopg2://u:***@host/db?sslmode=require"),
    ("mysql://:only-password@host/db", "mysql://***@host/db"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("sqlite:///optuna/tune.db", "sqlite:///optuna/tune.db"),
    ("https://tracking.example.org", "https://tracking.example.org"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_run_status():
    assert run_status(None) == "FINISHED"
    assert run_status(KeyboardInterrupt()) == "KILLED"
    assert run_status(SystemExit(143)) == "KILLED"
    assert run_status(ValueError("x")) == "FAILED"
