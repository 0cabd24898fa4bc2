#!/usr/bin/env python3
"""Writes bench/data/multilingual.txt (~1 MB of UTF-8): the text the tokenizer benchmark and the
Tokenizers.DotNet equality test encode. Assembled deterministically from text on a Debian machine:
English prose (Vim's user manual, the GPL), code (Python standard library modules), Chinese (zh_CN
message catalogues), and mixed scripts with emoji (ja, ko, ru, ar catalogues). Run: python3 tools/gen_tokenizer_corpus.py"""
import gettext, glob, os, random, sys, sysconfig

rng = random.Random(42)

def take(texts, budget):
    out, size = [], 0
    for t in texts:
        b = len(t.encode("utf-8"))
        if size + b > budget:
            break
        out.append(t)
        size += b
    return "".join(out)

def catalogue_strings(lang, limit_files=40):
    strings = []
    for path in sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo"))[:limit_files]:
        try:
            with open(path, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        for key in sorted(catalog, key=str):
            value = catalog[key]
            if isinstance(value, str) and value.strip() and key:
                strings.append(value.strip() + "\n")
    return strings

english = [open(p, encoding="utf-8", errors="replace").read() for p in sorted(glob.glob("/usr/share/vim/vim90/doc/usr_*.txt"))]
english.insert(0, open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read())
stdlib = sysconfig.get_paths()["stdlib"]
code = [open(os.path.join(stdlib, m), encoding="utf-8").read() for m in
        ["textwrap.py", "json/decoder.py", "json/encoder.py", "argparse.py", "difflib.py", "heapq.py", "bisect.py", "fractions.py", "statistics.py"]]
chinese = catalogue_strings("zh_CN")
mixed = []
emoji = ["🤗", "🚀", "👩‍👩‍👧‍👦", "😀", "🎉", "✅", "🇫🇷", "👍🏽"]
for lang in ["ja", "ko", "ru", "ar", "el", "hi", "de", "fr"]:
    mixed.extend(catalogue_strings(lang, 8))
rng.shuffle(mixed)
mixed = [s.rstrip("\n") + " " + rng.choice(emoji) + " " + str(rng.randint(0, 10**6)) + "\n" for s in mixed]

text = (take(english, 360_000) + "\n\n" + take(code, 250_000) + "\n\n" + take(chinese, 300_000) + "\n\n" + take(mixed, 100_000))
path = sys.argv[1] if len(sys.argv) > 1 else "bench/data/multilingual.txt"
with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(text)
print(f"{len(text.encode('utf-8'))} bytes, {len(text)} characters -> {path}")
