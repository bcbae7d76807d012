"""``shown``: text from a client, as an operator must see it in the admin.

Keys and values come from paying clients. Django escapes them, so no markup
gets through; but characters that are invisible or reorder text (the bidi
overrides U+202E and kin, zero-width spaces, control characters) would still
make one key look like another, or a key read backwards. ``shown`` escapes
the text and replaces each such character with a visible, labelled marker
(``[U+202E]``), so what the admin shows is what is stored.
"""

from __future__ import annotations

import unicodedata

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

__all__ = ["hidden_characters", "shown", "shown_value", "visible"]

register = template.Library()


#: Unicode categories whose characters do not show as themselves: controls and format
#: characters (the bidi overrides, zero-width spaces), separators, private and unpaired.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs", "Co", "Cs"})
#: Blank or default-ignorable characters of other categories (letters and marks that show
#: nothing): the combining grapheme joiner, Hangul fillers, the braille blank, Khmer and
#: Mongolian invisibles, variation selectors.
HIDDEN_OTHERS = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0}.union(
        range(0x180B, 0x1810), range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0)
    )
)


def _hidden(char: str, keep: str) -> bool:
    if char in keep or char == " ":
        return False
    return unicodedata.category(char) in HIDDEN_CATEGORIES or ord(char) in HIDDEN_OTHERS


def hidden_characters(text: str, keep: str = "") -> list[str]:
    """The characters of ``text`` that :func:`shown` marks (``keep`` aside)."""
    return [char for char in text if _hidden(char, keep)]


def _marker(char: str) -> str:
    return f"[U+{ord(char):04X}]"


def visible(text: str) -> str:
    """Plain text (a page title, a message) with each hidden character as its marker."""
    return "".join(_marker(char) if _hidden(char, "") else char for char in text)


@register.filter(name="shown")
def shown(text: object, keep: str = "") -> SafeString:
    """``text`` escaped, each invisible or reordering character as a visible marker.

    ``keep`` lists characters left as they are (a value's newlines and tabs).
    """
    value = str(text)
    if not any(_hidden(char, keep) for char in value):
        return escape(value)
    parts = []
    for char in value:
        if _hidden(char, keep):
            name = unicodedata.name(char, "control character")
            parts.append(
                format_html(
                    '<span class="sessions-hidden-char" title="{}">[{}]</span>',
                    name,
                    _marker(char)[1:-1],
                )
            )
        else:
            parts.append(escape(char))
    return mark_safe("".join(parts))  # each part was escaped or built by format_html


@register.filter(name="shown_value")
def shown_value(text: object) -> SafeString:
    """:func:`shown` for a value shown whole: its line breaks and tabs stay as they are."""
    return shown(text, "\n\r\t")
