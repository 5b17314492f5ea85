"""Numbers for people, shared by the CLI and the app: sizes, durations, missing values, bars."""

from __future__ import annotations

from tui_gpt.formatting import format_duration, format_number, human_size, progress_bar


def test_sizes_are_in_powers_of_1024_with_one_decimal():
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KB"
    assert human_size(5 * 1024**3) == "5.0 GB"


def test_durations_keep_the_two_largest_units():
    assert format_duration(0.4) == "0s"
    assert format_duration(59) == "59s"
    assert format_duration(192) == "3m12s"
    assert format_duration(2 * 3600 + 5 * 60 + 30) == "2h05m"


def test_a_missing_number_is_a_dash():
    assert format_number(None, ".3f") == "-"
    assert format_number(5.25, ".3f") == "5.250"


def test_progress_bars_clamp_the_fraction_and_take_their_characters():
    assert progress_bar(0.5, 4) == "██░░"
    assert progress_bar(1.5, 3, ("#", "-")) == "###"
    assert progress_bar(-1.0, 2, ("#", "-")) == "--"
