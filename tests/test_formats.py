"""One number format for every page (dashboard/formats.py): text, and tables drawn from percent-scaled copies."""

import math

import pandas as pd

from dashboard import formats


def test_numbers_read_the_same_everywhere():
    assert [formats.percent(x) for x in (0.87, 0.8688, 0.9, 1.0)] == ["87.00%", "86.88%", "90.00%", "100.00%"]
    assert formats.points(0.0031) == "+0.31 pp" and formats.points(-0.02) == "-2.00 pp"
    assert formats.count(1199882) == "1,199,882" and formats.count(1600.0) == "1,600"
    assert [formats.duration(s) for s in (0.46, 9.9, 42, 119.6, 210, 7500)] == [
        "0.5 s",
        "9.9 s",
        "42 s",
        "120 s",
        "3.5 min",
        "2.1 h",
    ]
    assert formats.percent(math.nan) == formats.count(None) == formats.duration(math.nan) == ""


def test_tables_are_drawn_with_percentage_columns_scaled_and_the_rest_untouched():
    config = {
        "acc": formats.percent_column("acc"),
        "gap": formats.points_column("gap"),
        "std": formats.spread_column("std"),
        "params": formats.count_column("params"),
        "absent": "absent",
    }
    table = pd.DataFrame(
        {
            "acc": [0.8688, math.nan],
            "gap": [0.0447, -0.01],
            "std": [0.003, 0.0],
            "params": [1199882, 7850],
            "name": ["a", "b"],
        }
    )
    shown = formats.shown(table, config)
    assert shown["acc"].iloc[0] == 86.88 and math.isnan(shown["acc"].iloc[1])
    assert list(shown["gap"]) == [4.47, -1.0] and list(shown["std"]) == [0.3, 0.0]
    assert list(shown["params"]) == [1199882, 7850] and list(shown["name"]) == ["a", "b"]
    assert table["acc"].iloc[0] == 0.8688  # the caller's table is not changed
    assert config["acc"]["type_config"]["format"] == "%.2f%%" and config["gap"]["type_config"]["format"] == "%+.2f pp"


def test_a_heartbeat_tag_reads_as_a_time_and_other_tags_as_logged():
    assert formats.tag_value("heartbeat", "1795737600000") == "2026-11-27 00:00:00 UTC"
    assert formats.tag_value("diagnosis", "good fit") == "good fit"
    assert [formats.tag_value("heartbeat", odd) for odd in ("9" * 30, "²", "soon")] == ["9" * 30, "²", "soon"]


def test_every_gallery_captions_an_image_the_same_way():
    assert formats.image_caption(18, "3", "5", 0.99994) == "#18 3→5 (99.99%)"
    assert formats.image_caption(7, "cat", "dog") == "#7 cat→dog"
