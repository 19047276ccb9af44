#!/usr/bin/env python3
"""Write tests/fixtures/text/hostile_tokens.json: token ids of hostile texts (emoji, CJK, HTML
entities, 10 kB strings, control characters, ...) as ImageBind's own SimpleTokenizer makes them,
the ground truth of the Rust tokenizer's test (tests/text_tokens.rs). Also writes
src/preprocess/text/html5_entities.tsv, Python's `html.entities.html5` table, which
`html.unescape` (called by ImageBind) and ftfy decode with.

The reference is imported from an unpacked ImageBind source tree at the commit refdata was made
with (53680b02d7e37b19b124fa37bae4b6c98c38f5be: it keeps EOT at position 76 when truncating; the
PyPI `imagebind-packaged` 0.1.2 does not), e.g.

    git -C ImageBind archive 53680b02d7e37b19b124fa37bae4b6c98c38f5be imagebind | tar -x -C /tmp/ib
    python tools/make_text_token_fixture.py --upstream /tmp/ib

Its licence is CC BY-NC-SA 4.0: it is only imported here, never vendored. Each text goes through
`SimpleTokenizer(bpe)(text)` exactly as `imagebind.data.load_and_transform_text` calls it (the
package `__init__` and data.py, which pull torchaudio and pytorchvideo, are bypassed). Needs
torch, ftfy, regex, iopath, timm, einops, numpy.

A case whose text ftfy repairs as mojibake (`fix_text` differs with and without
`fix_encoding`) is marked `"mojibake": true` and also gets `ids_without_encoding_repair`: the
reference's ids with ftfy's encoding repair switched off, which is what edgebind computes
(docs: the Rust tokenizer does not repair mojibake).
"""
import argparse
import functools
import html.entities
import json
import os
import sys
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINNED_COMMIT = "53680b02d7e37b19b124fa37bae4b6c98c38f5be"


def cases():
    long_words = " ".join(["very"] * 120)
    c = [
        ("plain", "a dog barking"),
        ("emoji", "a 🐕 barking 🔥🔥 at 3am 😱"),
        ("emoji_zwj_flags_skin", "family 👨‍👩‍👧‍👦 flag 🇫🇷 thumbs 👍🏽"),
        ("cjk_chinese", "一只狗在叫"),
        ("cjk_japanese", "犬が吠える。カタカナ、ｶﾀｶﾅ"),
        ("cjk_korean", "개가 짖는다"),
        ("fullwidth", "ＡＢＣ１２３！　ｄｏｇ"),
        ("html_named", "Tom &amp; Jerry &lt;3 caf&eacute; &copy 2024 &notit; &notin;"),
        ("html_double", "&amp;amp; &amp;lt;b&amp;gt; &amp;amp;amp;"),
        ("html_upper", "&EACUTE;t&Eacute; &AMP; &NBSP;x"),
        ("html_numeric", "&#x1F600; &#128512; &#39;q&#39; &#150; &#x80; &#0; &#x110000; &#55296;"),
        ("html_with_tag", "<b>bold</b> &amp; &eacute;"),
        ("html_tag_later_line", "first &eacute;\nsecond <i> &eacute;"),
        ("html_no_semicolon", "&ampx &lt &gtx &eacutex &#65 &#x41z"),
        ("control_c0", "a\x00b\x01c\x08d\x0be\x0cf\x1fg\x7fh"),
        ("control_whitespace", "  tab\there\nnew line\r\nwin\rmac  \u2028sep\u2029para\x85nel "),
        ("control_c1", "euro\x80 ellipsis\x85 undefined\x81\x8d dash\x96"),
        ("terminal_escapes", "\x1b[31mred\x1b[0m and \x1b[1;4mbold\x1b[m"),
        ("invisible", "zero\u200bwidth \ufeffbom \u206anominal \ufff9anchor \u00adsoft"),
        ("curly_quotes", "“quoted” ‘single’ it‛s ʼn „low“"),
        ("ligatures", "ﬁne ﬂow eﬀort ﬃ ĳs ǆ"),
        ("special_tokens", "a <|endoftext|> b <|startoftext|> c <|ENDOFTEXT|>"),
        ("contractions", "It'S we'LL they'RE you'VE I'M he'D don'T"),
        ("combining_nfc", "cafe\u0301 n\u0303 A\u030a"),
        ("devanagari_thai", "कुत्ता भौंकता है สุนัขเห่า"),
        ("greek_sigma", "ΟΔΥΣΣΕΥΣ ΣΟΦΟΣ"),
        ("numbers", "1234 ٣٤ ⅳ ½ ²"),
        ("mixed_scripts", "Ünïcödé ДОБРЫЙ день Ελληνικά עברית العربية"),
        ("whitespace_only", " \t\n "),
        ("empty", ""),
        ("mojibake", "cafÃ© dÃ©jÃ  vu â€œquotedâ€\x9d"),
        ("truncated_words", "a photo of " + long_words + " long prompt that must be truncated"),
        ("truncate_74", " ".join(["dog"] * 74)),
        ("truncate_75", " ".join(["dog"] * 75)),
        ("truncate_76", " ".join(["dog"] * 76)),
        ("long_10k_words", ("the quick brown fox jumps over the lazy dog " * 250)[:10240]),
        ("long_10k_one_word", "a" * 10240),
        ("long_10k_cjk", "狗" * 3414),
        ("long_10k_emoji", "🐕" * 2560),
        ("long_10k_entities", "&amp;" * 2048),
        ("long_10k_controls", "\x01\x02 x" * 2048),
        ("long_10k_punct", "!?" * 5120),
    ]
    return c


def import_reference(root):
    pkg = types.ModuleType("imagebind")
    pkg.__path__ = [os.path.join(root, "imagebind")]
    sys.modules["imagebind"] = pkg
    from imagebind.models import multimodal_preprocessors as mmp  # noqa: E402
    return mmp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help=f"ImageBind source tree at {PINNED_COMMIT}")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "text",
                                                  "hostile_tokens.json"))
    ap.add_argument("--entities", default=os.path.join(REPO, "src", "preprocess", "text",
                                                       "html5_entities.tsv"))
    args = ap.parse_args()
    import ftfy
    mmp = import_reference(args.upstream)
    bpe = os.path.join(args.upstream, "imagebind", "bpe", "bpe_simple_vocab_16e6.txt.gz")
    tok = mmp.SimpleTokenizer(bpe_path=bpe)

    def ids(text):
        return [int(v) for v in tok(text).tolist()]

    rows = []
    for name, text in cases():
        row = {"name": name, "text": text, "ids": ids(text)}
        if ftfy.fix_text(text) != ftfy.fix_text(text, fix_encoding=False):
            row["mojibake"] = True
            real_fix = mmp.ftfy.fix_text
            mmp.ftfy.fix_text = functools.partial(real_fix, fix_encoding=False)
            try:
                row["ids_without_encoding_repair"] = ids(text)
            finally:
                mmp.ftfy.fix_text = real_fix
        assert len(row["ids"]) == 77
        rows.append(row)
    doc = {
        "about": "token ids of ImageBind's SimpleTokenizer (ImageBind @" + PINNED_COMMIT
                 + ") for hostile texts; made by tools/make_text_token_fixture.py",
        "ftfy": ftfy.__version__,
        "python": sys.version.split()[0],
        "cases": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(rows)} cases "
          f"({sum(1 for r in rows if r.get('mojibake'))} repaired as mojibake by ftfy)")

    # name TAB code points (hex, space separated); names keep their ';' (or lack of it).
    os.makedirs(os.path.dirname(args.entities), exist_ok=True)
    with open(args.entities, "w", encoding="ascii") as f:
        f.write("# Python " + sys.version.split()[0] + " html.entities.html5 "
                "(tools/make_text_token_fixture.py)\n")
        for name, value in sorted(html.entities.html5.items()):
            f.write(name + "\t" + " ".join(f"{ord(ch):X}" for ch in value) + "\n")
    print(f"wrote {args.entities}: {len(html.entities.html5)} entities")


if __name__ == "__main__":
    main()
