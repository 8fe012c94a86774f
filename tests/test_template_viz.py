"""What the Export page draws of a training template: the verification table and the side-by-side view."""

from __future__ import annotations

from inspector.training_template.check import ConversationCheck, DiffLine, Mismatch, Verification, export_training_template, \
    side_by_side
from inspector.views.template import side_by_side_html, verification_frame


def test_verification_frame_names_each_result():
    rows = [ConversationCheck("a", "demo.jsonl:1", tokens=10, agree=10, identical=True),
            ConversationCheck("b", None, tokens=8, agree=6, identical=True,
                              mismatches=[Mismatch(3, "x", True, False), Mismatch(4, "y", True, False)]),
            ConversationCheck("c", None, reason="not comparable: the template raised")]
    df = verification_frame(Verification(rows))
    assert list(df["result"]) == ["verified", "2+ tokens differ", "not comparable: the template raised"]
    assert list(df["agree"]) == ["100.00%", "75.00%", "-"]
    assert list(df["text"]) == ["same", "same", "-"]
    assert list(df["source"]) == ["demo.jsonl:1", "", ""]


def test_side_by_side_html_marks_the_tags_and_escapes_the_template():
    new = "{% generation %}{{ m.content }}{% endgeneration %}"
    rows = [DiffLine(1, "<b>{{ bos }}</b>", 1, "<b>{{ bos }}</b>"), DiffLine(2, "{{ m.content }}", 2, new,
                                                                             ((0, 16), (31, 50)))]
    html = side_by_side_html(rows)
    assert html.count('class="sfti-diff-row"') == 2
    assert '<mark class="sfti-tag"' in html
    marks = [m.split(">", 1)[1].split("</mark>")[0] for m in html.split('<mark class="sfti-tag"')[1:]]
    assert marks == ["{% generation %}", "{% endgeneration %}"]
    assert "&lt;b&gt;{{ bos }}&lt;/b&gt;" in html and "<b>" not in html
    assert html.count('data-changed="true"') == 1


def test_side_by_side_html_changed_only_keeps_context_and_shows_gaps():
    rows = [DiffLine(i + 1, f"line {i}", i + 1, f"line {i}") for i in range(20)]
    rows[10] = DiffLine(11, "old", 11, "{% generation %}old{% endgeneration %}", ((0, 16), (19, 38)))
    html = side_by_side_html(rows, changed_only=True, context=2)
    assert html.count('class="sfti-diff-row"') == 5  # lines 8..12 of the new template
    assert html.count('class="sfti-gap"') == 2
    assert side_by_side_html(rows).count('class="sfti-diff-row"') == 20


def test_the_demo_templates_side_by_side_shows_the_generation_tags(deepseek_setup):
    from inspector.training_template.check import demo_conversations

    report = export_training_template(deepseek_setup, demo_conversations()[:4])
    rows = side_by_side(report.training)
    html = side_by_side_html(rows, changed_only=True)
    assert report.training.edits and "generation %}" in html
    assert html.count('<mark class="sfti-tag"') == sum(len(r.marks) for r in rows) > 0
    assert html.count('data-changed="true"') == sum(1 for r in rows if r.marks or r.old != r.new)
