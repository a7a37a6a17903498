"""The CodingScheme value: validation, properties, hash, JSON, and the published schemes by name."""

import numpy as np
import pytest

import coded_resnext as cr
from coded_resnext.coding import CodingScheme, CodingSchemeError, list_paper_schemes, paper_scheme
from coded_resnext.coding.defaults import GeneratedScheme
from tests.conftest import reference_json

pytestmark = pytest.mark.unit


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


def test_properties_of_a_small_scheme():
    s = CodingScheme(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1]]))
    assert (s.num_classes, s.num_branches, s.num_active, s.ratio) == (4, 4, 2, 0.5)
    assert s.min_distance == 2
    assert s.column_sums.tolist() == [2, 2, 2, 2] and s.column_spread == 0


def test_every_published_scheme_loads_with_its_stated_properties():
    raw = reference_json("paper_coding_schemes.json")
    assert len(list_paper_schemes()) == len(raw["schemes"]) == 10
    for entry in raw["schemes"]:
        s = paper_scheme(f"paper:{entry['dataset']}/{entry['name']}")
        assert s.min_distance == entry["min_hamming_distance"]
        assert (int(s.column_sums.min()), int(s.column_sums.max())) == (
            entry["column_sum_min"],
            entry["column_sum_max"],
        )


def test_json_round_trip_and_hash_is_stable(tmp_path):
    s = paper_scheme("paper:cifar100/4/20")
    path = tmp_path / "s.json"
    s.save(path)
    back = CodingScheme.load(path)
    assert back == s and back.content_hash == s.content_hash
    assert s.content_hash == "97515d964da1a571"  # recorded with runs: must not change across versions
    # the hash depends on the codewords only, and changes with them
    renamed = CodingScheme(s.codewords, name="other")
    assert renamed.content_hash == s.content_hash
    swapped = CodingScheme(s.codewords[::-1])
    assert swapped.content_hash != s.content_hash


def test_unequal_weights_are_rejected_naming_the_codeword():
    with pytest.raises(CodingSchemeError) as err:
        CodingScheme(np.array([[1, 1, 0], [1, 0, 0]]))
    assert "rule A" in _one_line(err) and "codeword 1 has 1" in str(err.value)


def test_duplicate_codewords_are_rejected_naming_the_classes():
    with pytest.raises(CodingSchemeError) as err:
        CodingScheme(np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]]))
    assert "classes [0, 2]" in _one_line(err)


@pytest.mark.parametrize(
    "words, fragment",
    [
        ([[1, 1, 1], [1, 1, 1]], "1 <= active branches < 3"),
        ([[1, 0, 0]], "at least 2 classes"),
        ([[2, 0], [0, 1]], "only 0 and 1"),
    ],
)
def test_other_invalid_matrices(words, fragment):
    with pytest.raises(CodingSchemeError) as err:
        CodingScheme(np.array(words))
    assert fragment in _one_line(err)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "malformed JSON at line 1"),
        ('{"codewords": ["110", "01"]}', "same length"),
        ('{"codewords": ["1a0", "011"]}', "other than 0 and 1"),
        ('{"codewords": "110"}', "non-empty list"),
        ("[1, 2]", "expected a JSON object"),
        ('{"codewords": ["110", "011"], "min_hamming_distance": 4}', "'min_hamming_distance' says 4"),
    ],
)
def test_bad_json_files_give_one_line_errors(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CodingSchemeError) as err:
        CodingScheme.load(path)
    assert fragment in _one_line(err) and str(path) in str(err.value)


def test_unknown_published_name_lists_the_choices():
    with pytest.raises(CodingSchemeError) as err:
        paper_scheme("paper:cifar10/9/10")
    assert "paper:cifar10/5/10" in _one_line(err)


def test_scheme_class_count_must_match_the_model():
    with pytest.raises(CodingSchemeError) as err:
        cr.create_model("coded_resnext_mini", 10, schemes={"c3": "paper:cifar100/8/20"})
    assert "100 codewords but the model has 10 classes" in _one_line(err)


def test_a_scheme_file_of_another_length_resizes_the_stage(tmp_path):
    words = np.zeros((10, 12), dtype=bool)
    for k in range(10):
        words[k, [k, (k + 1) % 12, (k + 5) % 12]] = True
    path = tmp_path / "s12.json"
    CodingScheme(words).save(path)
    model = cr.create_model("coded_resnext_mini", 10, schemes={"c4": str(path)})
    assert [b.num_branches for b in model.coded_block_modules] == [10, 10, 12, 12]
    assert model.schemes["c4"] == CodingScheme(words)


def test_model_uses_a_scheme_given_by_path_and_its_active_count(tmp_path):
    s = paper_scheme("paper:cifar10/3/10")
    path = tmp_path / "c3.json"
    s.save(path)
    model = cr.create_model("coded_resnext_mini", 10, schemes={"c3": str(path)})
    assert model.schemes["c3"] == s
    assert model.coded_blocks[0].scheme.ratio == pytest.approx(0.3)


def test_model_gets_a_generated_scheme_when_none_is_published():
    model = cr.create_model("coded_resnext_mini", 7, schemes={"c4": GeneratedScheme(3, min_distance=4, seed=1)})
    for scheme in model.schemes.values():
        assert scheme.num_classes == 7 and scheme.num_branches == 10
    assert model.schemes["c4"].min_distance >= 4
    assert model.schemes["c4"].num_active == 3


def test_bad_model_overrides_give_one_line_errors():
    with pytest.raises(cr.ModelConfigError) as err:
        cr.create_model("coded_resnext_mini", colour="red")
    assert "unknown model override(s) ['colour']" in _one_line(err)
    with pytest.raises(cr.ModelConfigError) as err:
        cr.create_model("resnet9000")
    assert "coded_resnext_mini" in _one_line(err)
    with pytest.raises(cr.ModelConfigError) as err:
        cr.create_model("coded_resnext_mini", drop_prob=1.5)
    assert "drop_prob" in _one_line(err)
    with pytest.raises(cr.ModelConfigError) as err:
        cr.create_model("coded_resnext_mini", schemes={"c9": "paper:cifar10/5/10"})
    assert "unknown stages ['c9']" in _one_line(err)
