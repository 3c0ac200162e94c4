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
    section = (tmp_path / "benchmarks.md").read_text()
    assert f"## {TITLE}" in section and "| context_distill | 1 |" in section and "| doc_pretrain | 1 |" in section


def test_documents_option_learns_the_first_n_into_a_section_of_its_own(tiny_core_dir, tmp_path):
    figures = run(DocumentsPlan(core=str(tiny_core_dir), docs=tmp_path, quick=True, hive=tmp_path / "hive",
                                learners=("doc_pretrain",), documents=3))
    assert json.loads((tmp_path / "documents-3.json").read_text()) == figures
    assert not (tmp_path / "documents.json").exists()
    assert figures["all"]["documents"] == 3 and [s["documents"] for s in figures["sizes"]] == [2]
    assert "## Documents: 3 documents of a workplace learned, checked closed-book" in (tmp_path / "benchmarks.md").read_text()
