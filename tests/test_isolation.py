"""The suite reads nothing outside the repository and the test's own temporary folder."""

from __future__ import annotations

from engine.runs.store import default_data_dir
from engine.weights.hf_cache import hub_cache_dir


def test_user_data_dir_and_hugging_face_cache_are_the_tests_own(tmp_path):
    assert default_data_dir().is_relative_to(tmp_path)
    assert hub_cache_dir().is_relative_to(tmp_path)
