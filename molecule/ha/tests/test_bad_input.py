"""The bad-input corpus (tests/bad_input.yml) on this scenario's converged hosts: each value refused
before anything changes, naming its variable."""

import pytest
from bench_checks import bad_input_cases, check_bad_input_case


@pytest.mark.parametrize("case", bad_input_cases("ha"))
def test_bad_input_is_refused_before_any_change_or_works_or_is_rolled_back(case):
    check_bad_input_case(case)
