from ernie_cpt.data.annotate import paragraph_spans
from ernie_cpt.data.sections import is_generic_heading, paragraph_sections


def test_generic_headings_open_sections():
    text = ("EMMA\n\nBy Jane Austen\n\nVOLUME I\n\nCHAPTER I\n\nEmma Woodhouse, handsome.\n\nShe was the youngest.\n\n"
            "Chapter 2.\n\nMr. Weston was a native of Highbury.\n\nThe chapter 3 of his life was long.")
    starts, ends = zip(*paragraph_spans(text))
    assert paragraph_sections(text, list(starts), list(ends)) == [0, 0, 1, 2, 2, 2, 3, 3, 3]
    assert [is_generic_heading(h) for h in ("Part  IV", "Letter 12", "Chapter", "Chapter One", "Volume 2 ends")] \
        == [True, True, False, False, False]
    plain = "One paragraph.\n\nAnother one."
    starts, ends = zip(*paragraph_spans(plain))
    assert paragraph_sections(plain, list(starts), list(ends)) == [0, 0]
