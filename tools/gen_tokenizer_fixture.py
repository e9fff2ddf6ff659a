"""Reference data for the Rust CLIP tokenizer (src/clip/tokenizer/), made by open_clip itself.

Writes two files, both from the installed PyPI packages pinned in tools/requirements.txt
(open-clip-torch, ftfy, regex) and Python's standard library, nothing else:

- tests/fixtures/tokenizer.json: {"context_length": 77, "cases": [{"text", "ids"}]}, where ids is
  open_clip.tokenize(text)[0] with its trailing zero padding removed. tests/tokenizer.rs demands
  that the Rust tokenizer give exactly these ids.
- src/clip/html5_entities.txt: Python's html.entities.html5 table, one `name hex[,hex]` a line.
  The Rust tokenizer embeds it so that its html.unescape knows the same names as Python's.

Every case must avoid ftfy's mojibake repair (fix_encoding), which the Rust side deliberately
does not reproduce; the script stops if a hand-written case triggers it and leaves such fuzz
strings out.

Run from the repository root:  python tools/gen_tokenizer_fixture.py
"""

import html.entities
import json
import random
from pathlib import Path

import ftfy
import open_clip

CONTEXT_LENGTH = 77
ROOT = Path(__file__).resolve().parent.parent

# METHOD.md §3: the 7 + 7 AnoVL state words, `{}` = object name.
NORMAL_STATES = ["normal {}", "flawless {}", "perfect {}", "unblemished {}",
                 "{} without flaw", "{} without defect", "{} without damage"]
ABNORMAL_STATES = ["damaged {}", "abnormal {}", "imperfect {}", "blemished {}",
                   "{} with flaw", "{} with defect", "{} with damage"]
# A few of the 22 sentence forms, already filled with a domain phrase.
TEMPLATES = ["a cropped industrial photo of the {}", "an industrial image of a small {}",
             "a jpeg corrupted surface picture of a {}",
             "a brain MRI scan of the {} for anomaly detection"]
OBJECTS = ["metal_nut", "bottle", "carpet", "macaroni", "brain"]

ASCII = [
    "a photo of a cat", "hello world", "Hello World", "HELLO WORLD", "The Quick Brown Fox",
    "don't", "it's", "we're", "they've", "I'm", "you'll", "he'd", "IT'S", "DON'T STOP",
    "rock'n'roll", "'s", "o'clock", "''quoted''", "'tis", "a'b'c", "x's y't z're",
    "transistor", "screw", "hazelnut", "toothbrush", "zipper", "pcb4", "pipe_fryum",
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "antidisestablishmentarianism", "supercalifragilisticexpialidocious", "a", "I", "x y z",
]
PUNCTUATION = [
    "hello, world!", "...", "?!?!", "a-b_c", "x@y.com", "http://example.com/a?b=c&d=e",
    "(parenthesis) [brackets] {braces}", "#hashtag @mention", "$100.00", "50%",
    "C++ & C#", "a/b\\c", "~`^|", "<tag>", "1 < 2 > 0", "semi;colon", "--flag=value",
    "\"double\" 'single'", "a...b", "!!!", "hello!!!world", "e.g. i.e. etc.", "*bold* _it_",
    "-- em -- dash --", "«guillemets»", "¿Qué?", "¡Hola!", "§ ¶ † ‡ • … ‰ ′ ″",
    "€ £ ¥ ¢ ₹", "© ® ™", "← → ↑ ↓", "∑ ∫ √ ∞ ≈ ≠ ≤ ≥", "°C", "µm", "½ ¾",
]
DIGITS = [
    "12345", "3.14159", "2024-01-01", "1,000,000", "version 2.0.1", "abc123def", "0",
    "007", "1st 2nd 3rd 4th", "٣٤٥", "①②③", "Ⅻ", "²³", "१२३", "一二三", "12:30pm", "+49 30 1234",
]
ACCENTS = [
    "café", "naïve", "résumé", "Crème Brûlée", "Ångström", "São Paulo", "Zürich", "Dvořák",
    "Łódź", "cafe\u0301", "e\u0301te\u0301", "A\u030angstro\u0308m", "İstanbul", "ıi",
    "ΣΊΣΥΦΟΣ", "ΟΔΟΣ ΣΑΣ.", "Σ", "ὈΔΥΣΣΕΎΣ", "Привет мир", "ПРИВЕТ", "مرحبا بالعالم", "שלום",
    "नमस्ते दुनिया", "สวัสดีชาวโลก", "안녕하세요 세계", "Straße", "STRASSE", "ß", "ǅ",
    "Ǆemal", "Ω Ω", "Å Å", "ﬀ", "K", "ſ", "'ſ", "a\u0345b", "ᾳ", "ñ", "n\u0303",
]
CJK = [
    "你好，世界", "日本語のテキスト", "漢字かなカナ", "中文 English 混合", "ｶﾀｶﾅ", "ﾊﾟﾝ", "ｶﾞｷﾞ",
    "東京タワー", "我爱北京天安门", "螺丝钉有缺陷", "金属螺母", "한국어", "ㄱㄴㄷ", "ﾟ", "﹏",
    "「引用」", "『二重』", "、。・",
]
EMOJI = [
    "😀", "I ❤️ NY", "👍🏽", "👍🏿 ok", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏿‍💻", "🇩🇪🇯🇵", "🏴󠁧󠁢󠁷󠁬󠁳󠁿",
    "✔️ done", "1️⃣", "🤷‍♀️", "🧑🏻‍🤝‍🧑🏾", "cat 🐱 dog 🐶", "🔥🔥🔥", "😀😃😄😁",
    "©️", "⭐", "❤", "☕ coffee", "🚀 launch!", "🙂🙃",
]
WHITESPACE = [
    "  leading", "trailing  ", "a\tb", "a\n\nb", "a \t\n b", "\u00a0nbsp\u00a0",
    "\u3000ideographic\u3000space", "a\u2003em\u2002en\u2009thin", "a\r\nb", "a\rb",
    "a\u2028b\u2029c", "a\u000bb\u000cc", "a\u001cb\u001dc\u001ed\u001ff", "   ", "\t\n",
    "\n", " ", "word\u202fnarrow", "a\u205fb", "a\u1680b", "many     spaces    between",
    "tabs\t\t\tand\n\n\nnewlines", "a\u200bb", "soft\u00adhyphen", "x\u0085y",
]
HTML = [
    "&amp;", "&lt;b&gt;", "&quot;hi&quot;", "&copy; 2024", "&eacute;t&eacute;", "&EACUTE;",
    "&SZLIG;", "P&EACUTE;REZ", "&NTILDE; &nTILDE;", "a&nbsp;b", "&hellip;", "&mdash;",
    "&ldquo;quote&rdquo;", "&#39;", "&#x27;", "&#8217;s", "&#x1F600;", "&#0;", "&#128;",
    "&#x80;", "&#x85;", "&#xD800;", "&#1114112;", "&#99999999999999999999;", "&#1;",
    "&#59;", "&#65abc", "&#x41;&#X42;", "&amp;amp;", "&amp;amp;amp;amp;", "&amp;lt;",
    "&amp;ldquo;x&amp;rdquo;", "&copy", "&eacute", "&notit;", "&not", "this&not that",
    "&ampxyz", "&frac12", "&frac12;", "&AMP", "&AMP;", "&unknown;", "& alone", "AT&T",
    "&&", "&;", "&#;", "&#x;", "&Tab;x", "a&NewLine;b", "a&ZeroWidthSpace;b", "&nvlt;",
    "&fflig;", "&#xFF21;&#xFF22;", "&#x2019;", "&#8220;hi&#8221;", "&#13;", "&#x0D;x",
    "<b>&ldquo;x&rdquo;</b>", "line1 &ldquo;a&rdquo;\n<line2> &ldquo;b&rdquo;",
    "&lt;b&gt; &ldquo;x&rdquo;", "&ldquo;a&rdquo;\n&ldquo;b&rdquo;\n<c>", "&Jscr;ohn",
    "&HilbertSpace;", "&checkmark;", "&#x110000;", "&#xFFFE;", "&#xFDD0;", "&#127;",
    "&#x1F44D;&#x1F3FD;", "&lt;&lt;&lt;", "&gt;", "R&amp;D dept",
    "&nbsp", "&NotNestedGreaterGreater;", "&bne;", "&#38;amp;", "&#x26;lt;", "&#x26;#60;",
    "&amp;#60;", "&amp;amp;#x3C;", "&Aacute", "&AElig&AElig;", "&lt", "&ltx", "&gtx",
    "&sup2;", "&sup", "&supe;", "&supx", "&szlig;", "&SZLIG", "&x;", "&abcdefghijklmnopqrstuvwxyz0123456789;",
]
QUOTES_WIDTH_LIGATURES = [
    "“Hello”", "‘single’", "it’s", "‛reversed‟", "ʼn", "„German“", "he said “it’s fine”",
    "ＬＯＵＤ　ＮＯＩＳＥＳ", "ｆｕｌｌｗｉｄｔｈ １２３", "！？", "￥100", "￣", "ｈｅｌｌｏ，ｗｏｒｌｄ！",
    "Ｕﾀｰﾝ", "ﬂuﬃeﬆ", "ĳssel", "Ǆ", "ǈubljana", "ﬅ", "ﬁnancial ﬁle", "ŉ", "ǲ ǳ Ǳ",
    "\u02bcokina", "\u201bx\u201f",
]
CONTROL = [
    "a\x00b", "a\x07b", "\x1b[31mred\x1b[0m", "\x1b[1;32;40mgreen", "a\ufeffb", "\ufeffbom",
    "x\u206ay", "obj\ufffcect", "a\ufff9b\ufffbc", "del\x7fete", "a\u200cb\u200dc",
    "rtl \u202eabc\u202c", "\ufffd", "tag\U000e0041", "\x1b[", "\x1b[99",
]
SPECIAL = [
    "", "<start_of_text>", "<end_of_text> hi", "<START_OF_TEXT>", "a<end_of_text>b",
    "<start_of_text><end_of_text>", "<|endoftext|>", "</w>", "a</w>b",
]


def long_texts():
    lorem = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
             "incididunt ut labore et dolore magna aliqua. ")
    texts = [lorem * 3, "word " * 100, "漢字" * 60, "😀" * 40, "&amp; " * 90,
             "a photo of a damaged metal_nut with a scratch " * 8]
    # Around the truncation boundary: "a" is one token, so n words give n + 2 ids.
    texts += ["a " * n for n in (74, 75, 76, 77, 200)]
    return texts


def anovl_prompts():
    states = NORMAL_STATES + ABNORMAL_STATES
    out = []
    for i, template in enumerate(TEMPLATES):
        for j, state in enumerate(states):
            obj = OBJECTS[(i + j) % len(OBJECTS)]
            out.append(template.format(state.format(obj)))
    return out


def fuzz_texts(count, seed=0):
    """Deterministic random mixes of the tricky pieces above, to catch interactions."""
    pieces = ["a", "B", "z", " ", "  ", "\t", "\n", "'", "'s", "&", ";", "#", "&amp;", "&lt;",
              "&#39;", "&#x2019;", "&eacute", "é", "e\u0301", "ß", "Σ", "İ", "中", "ｶ", "ﾞ",
              "Ａ", "ﬁ", "“", "’", "😀", "👍🏽", "\u200d", "1", "٣", "²", "-", "...", "<", ">",
              "\u00a0", "\u3000", "\x00", "\x1b[0m", "\u2028", "ǅ", "ŉ"]
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        if not uses_mojibake_repair(text):
            out.append(text)
    return out


def uses_mojibake_repair(text):
    return ftfy.fix_text(text) != ftfy.fix_text(text, fix_encoding=False)


def all_texts():
    hand_written = (ASCII + PUNCTUATION + DIGITS + ACCENTS + CJK + EMOJI + WHITESPACE + HTML
                    + QUOTES_WIDTH_LIGATURES + CONTROL + SPECIAL + long_texts() + anovl_prompts())
    for text in hand_written:
        if uses_mojibake_repair(text):
            raise SystemExit(f"case {text!r} triggers ftfy's mojibake repair, which the Rust "
                             "tokenizer does not reproduce; change or drop it")
    texts = hand_written + fuzz_texts(60)
    seen = set()
    return [t for t in texts if not (t in seen or seen.add(t))]


def write_fixture():
    cases = []
    for text in all_texts():
        ids = open_clip.tokenize(text, context_length=CONTEXT_LENGTH)[0].tolist()
        while ids and ids[-1] == 0:
            ids.pop()
        cases.append({"text": text, "ids": ids})
    lines = ",\n".join(json.dumps(case) for case in cases)
    path = ROOT / "tests" / "fixtures" / "tokenizer.json"
    path.write_text(f'{{"context_length": {CONTEXT_LENGTH}, "cases": [\n{lines}\n]}}\n')
    print(f"wrote {len(cases)} cases to {path.relative_to(ROOT)}")


def write_entities():
    lines = [f"{name} {','.join(f'{ord(c):X}' for c in chars)}"
             for name, chars in sorted(html.entities.html5.items())]
    path = ROOT / "src" / "clip" / "html5_entities.txt"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} entities to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    write_fixture()
    write_entities()
