"""The documents benchmark's quick form runs every part and writes its section."""

import json

from apiary.bench.documents import TITLE, DocumentsPlan, run


def test_quick_documents_bench_measures_every_learner_and_size(tiny_core_dir, tmp_path):
    figures = run(DocumentsPlan(core=str(tiny_core_dir), docs=tmp_path, quick=True, hive=tmp_path / "hive",
                                learners=("context_distill", "doc_pretrain")))
    assert json.loads((tmp_path / "documents.json").read_text()) == figures
    assert figures["all"]["documents"] == 4 and figures["all"]["questions"] == 8
    for learner in ("context_distill", "doc_pretrain"):
        point = figures["learners"][learner]
        assert point["steps"] == 1 and point["flips"]["items"] > 0 and point["allowed"] is not None
    assert [s["documents"] for s in figures["sizes"]] == [2, 4] and [s["questions"] for s in figures["sizes"]] == [4, 8]
    assert figures["sizes_learner"] == "context_distill"  # the first learner learns the sizes
    section = (tmp_path / "benchmarks.md").read_text()
    assert f"## {TITLE}" in section and "| context_distill | 1 |" in section and "| doc_pretrain | 1 |" in section


def test_documents_option_learns_the_first_n_into_a_section_of_its_own(tiny_core_dir, tmp_path):
    figures = run(DocumentsPlan(core=str(tiny_core_dir), docs=tmp_path, quick=True, hive=tmp_path / "hive",
                                learners=("doc_pretrain",), documents=3))
    assert json.loads((tmp_path / "documents-3.json").read_text()) == figures
    assert not (tmp_path / "documents.json").exists()
    assert figures["all"]["documents"] == 3 and [s["documents"] for s in figures["sizes"]] == [2, 3]  # ends at all
    assert "## Documents: 3 documents of a workplace learned, checked closed-book" in (tmp_path / "benchmarks.md").read_text()


def test_a_learner_spec_names_its_learners_and_their_learning_rates():
    import pytest

    from apiary.bench.documents import learner_configs

    names, configs = learner_configs("recall@2e-4+distil_back")
    assert names == ["recall", "distil_back"] and list(configs) == ["recall"]
    assert configs["recall"].learning_rate == 2e-4 and configs["recall"].batch_size == 8
    with pytest.raises(ValueError, match="unknown learner"):
        learner_configs("recal+distil_back")
    names, configs = learner_configs("recall@2e-4,anchor_weight=1")
    assert configs["recall"].learning_rate == 2e-4 and configs["recall"].anchor_weight == 1.0
    with pytest.raises(TypeError):
        learner_configs("recall@anchor=1")
    seeded = DocumentsPlan(documents=10, seed=1)
    assert seeded.json_name == "documents-10-seed1.json" and seeded.title.endswith("10 documents of a workplace "
                                                                                   "learned, checked closed-book, seed 1")
