#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/nfc-cases.json: strings and their NFC form from Python's
unicodedata, the independent reference for QwenSharp's own NFC. Run: python3 tools/gen_nfc_cases.py"""
import json, random, sys, unicodedata

rng = random.Random(20261125)
bases = "aeiouAEIOUcnsyzACNSZ" + "αωΑΩ" + "иеИЕ" + "\u3042\u304b\u30a2"
marks = [0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0x30C, 0x323, 0x327, 0x328, 0x331, 0x345, 0x5B0, 0x3099, 0x309A, 0x1DC0, 0x20D7]
special = ["\u212B", "\u2126", "\u0958", "\u1E9B\u0323", "\u0344", "\u0F73", "\U0001D15E", "\U0001D160", "\uFB1D", "\u2ADC",
           "\u1100\u1161\u11A8", "\u1100\u1161", "\uAC00\u11A8", "\u1112\u116E\u11AF", "\u00C5", "A\u030A", "\u0041\u0301\u0323",
           "\u0065\u0323\u0302", "\u1EC7", "\u0071\u0307\u0323", "\u00E9", "e\u0301", "\u0627\u0653", "\u09C7\u09BE", "\u0B47\u0B56",
           "\U000110A5\U000110BA", "\U00011131\U00011127"]
cases = []
for s in special:
    cases.append(s)
for _ in range(300):
    parts = []
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.35:
            parts.append(rng.choice(bases))
        elif r < 0.7:
            parts.append(chr(rng.choice(marks)))
        elif r < 0.85:
            parts.append(rng.choice(special))
        elif r < 0.95:
            parts.append(chr(rng.choice([0x1100 + rng.randint(0, 18), 0x1161 + rng.randint(0, 20), 0x11A8 + rng.randint(0, 26), 0xAC00 + rng.randint(0, 11171)])))
        else:
            parts.append(rng.choice([" ", "x", "\n", "\U0001F917"]))
    cases.append("".join(parts))
out = [{"text": s, "nfc": unicodedata.normalize("NFC", s)} for s in cases]
meta = {"generator": "tools/gen_nfc_cases.py", "unicode": unicodedata.unidata_version, "cases": out}
path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokenizer/nfc-cases.json"
open(path, "w").write(json.dumps(meta, ensure_ascii=False, indent=0) + "\n")
print(f"{len(out)} cases ({sum(1 for c in out if c['text'] != c['nfc'])} change) -> {path}")
