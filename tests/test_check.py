"""The exercise self-checks: they pass correct code, and explain wrong code precisely."""

import math

import numpy as np
import pytest
import torch

from metalearn_edu import check


def reference(x, scale):
    return scale * torch.sin(x)


CASES = [(torch.linspace(-1, 1, 5), 2.0), check.Case(args=(torch.zeros(2, 3), 1.0), label="zeros")]


def test_correct_function_passes_and_says_so(capsys):
    check.function(reference, reference=reference, cases=CASES, name="Ex 1", hint="h")
    assert capsys.readouterr().out.strip() == (
        "✔ Ex 1 passed: 2 of 2 cases agree with the reference."
    )


def test_wrong_values_name_case_input_index_and_hint():
    def wrong(x, scale):
        return scale * torch.cos(x)

    with pytest.raises(check.CheckFailed) as info:
        check.function(wrong, reference=reference, cases=CASES, name="Ex 1", hint="use sin")
    message = str(info.value)
    assert message.startswith("Ex 1: case 1 of 2, input (tensor([-1.0, -0.5, 0.0, 0.5, 1.0]), 2.0)")
    assert "values differ at index (" in message
    assert message.endswith("Hint: use sin")


def test_wrong_shape_and_type_are_reported():
    with pytest.raises(check.CheckFailed, match=r"expected shape \(5,\) but got shape \(1, 5\)"):
        check.function(
            lambda x, s: reference(x, s)[None],
            reference=reference,
            cases=CASES[:1],
            name="E",
            hint="h",
        )
    with pytest.raises(check.CheckFailed, match=r"expected a torch\.Tensor but got list"):
        check.function(
            lambda x, s: reference(x, s).tolist(),
            reference=reference,
            cases=CASES[:1],
            name="E",
            hint="h",
        )


def test_crash_in_student_code_is_explained_with_its_cause():
    def crashes(x, scale):
        return x @ x @ x

    with pytest.raises(check.CheckFailed, match="your function raised RuntimeError") as info:
        check.function(crashes, reference=reference, cases=CASES[1:], name="E", hint="h")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_unfinished_exercise_lets_not_implemented_through():
    def stub(x, scale):
        raise NotImplementedError("Exercise 9.9 (x) is yours to write")

    with pytest.raises(NotImplementedError, match="is yours to write"):
        check.function(stub, reference=reference, cases=CASES, name="E", hint="h")


@pytest.mark.parametrize(
    ("got", "expected", "fragment"),
    [
        (1.0, 1.0 + 1e-9, None),
        (1.0, 1.1, "expected 1.1 but got 1"),
        (torch.tensor(2.0), 2.0, None),
        ("a", 2.0, "expected a number but got str"),
        ({"w": torch.ones(2)}, {"w": torch.ones(2)}, None),
        ({"w": torch.ones(2)}, {"b": torch.ones(2)}, "expected keys ['b'] but got keys ['w']"),
        ([1, 2], [1, 3], "at item 1: expected 3 but got 2"),
        (np.array([1.0, 2.0]), np.array([1.0, 2.5]), "values differ at index (1,)"),
        (torch.tensor([1, 2]), torch.tensor([1.0, 2.0]), "expected a floating-point tensor"),
        (float("nan"), math.nan, None),
        (True, False, "expected False but got True"),
    ],
)
def test_compare(got, expected, fragment):
    problem = check.compare(got, expected)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem


def test_value_and_that(capsys):
    check.value(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), name="E", what="w", hint="h")
    check.that(True, name="E", what="the loss went down", hint="h")
    assert capsys.readouterr().out.count("passed") == 2
    with pytest.raises(check.CheckFailed, match="E: expected the loss went down, but it does not"):
        check.that(False, name="E", what="the loss went down", hint="h")


def test_no_cases_is_an_error():
    with pytest.raises(ValueError, match="at least one case"):
        check.function(reference, reference=reference, cases=[], name="E", hint="h")
