"""The export's model card claims the license the user gives, and none otherwise (issue 27: it said
``license: other``, which tells a reader of the Hub page nothing true)."""

from __future__ import annotations

import yaml

from ernie_cpt.commands.model_card import _metadata
from ernie_cpt.commands.options import ExportOptions
from ernie_cpt.options import groups_from_values

DESCRIPTION = {"masked_lm_task": "knowledge_masking", "layout": "transformers", "heads": {}}


def _card(**values) -> dict:
    license_id = groups_from_values([ExportOptions], values)[ExportOptions].license  # as export(..., license=)
    return yaml.safe_load(_metadata(DESCRIPTION, {}, "model", license_id, ["en"]).to_yaml())


def test_the_card_names_the_license_given_and_none_otherwise():
    assert "license" not in _card()
    assert _card(license="apache-2.0")["license"] == "apache-2.0"
    assert _card(license="cc-by-4.0")["language"] == ["en"]
