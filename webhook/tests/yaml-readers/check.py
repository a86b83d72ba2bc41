#!/usr/bin/env python3
"""Cross-checks `deputy-webhook inject` against two real YAML readers (not run in CI: needs Go,
the sigs.k8s.io/yaml module and PyYAML):

- kubectl's own conversion (sigs.k8s.io/yaml, YAML 1.1 scalars) reads our output as it reads our
  input, for every document we leave alone: we read as kubectl does;
- kubectl and PyYAML (a YAML 1.1 reader) read every output the same: we quote what 1.1 retypes;
- ~80 awkward strings (`on`, `12:30`, `0755`, NEL, BOM, leading spaces, multi-line, ...) written
  by us read back as themselves in both; ~70 plain scalars (`0x`, `08`, `1_000`, `-_1`, huge ints,
  ...) are typed by us exactly as by kubectl.

Negative control: a writer that left `12:30` plain would fail here (PyYAML reads 750, kubectl
"12:30"), and so would a date (PyYAML reads a date object).

Usage: python3 webhook/tests/yaml-readers/check.py [path/to/deputy-webhook]
"""
import glob, json, os, subprocess, sys, tempfile

import yaml  # PyYAML

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "inject")
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, "../../../target/x86_64-unknown-linux-gnu/debug/deputy-webhook")
TMP = tempfile.mkdtemp()
TOOL = os.path.join(TMP, "yamltojson")
subprocess.run(["go", "build", "-o", TOOL, "."], cwd=HERE, check=True)


def kubectl(path):
    out = subprocess.run([TOOL, path], capture_output=True, text=True, check=True).stdout
    return [l if l.startswith("ERROR") else json.loads(l) for l in out.split("\n") if l]


def pyyaml(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(json.dumps(d, default=lambda v: {"not a string": str(v)})) for d in yaml.safe_load_all(f) if d is not None]


def numbers_as_floats(v):
    """Go's JSON prints 1.8446744073709552e+19 as 18446744073709552000: compare values."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, list):
        return [numbers_as_floats(x) for x in v]
    return {k: numbers_as_floats(x) for k, x in v.items()}


def inject(path):
    out = os.path.join(TMP, os.path.basename(path) + ".out")
    with open(out, "w") as f:
        subprocess.run([BIN, "inject", "-f", path, "--agent-image", "agent:1"], stdout=f,
                       stderr=subprocess.DEVNULL, check=True)
    return out


problems = []
STRINGS = ["on", "yes", "NO", "off", "y", "Y", "n", "12:30", "190:20:30", "2024-01-01",
           "2001-12-14t21:59:43.10-05:00", "0755", "0400", "08", "", "~", "null", "Null", "42",
           "-1", "+1", "1_000", "1.5", "1e3", "1E+3", "0x1F", "0o17", "0b101", ".inf", "-.Inf",
           ".NaN", "<<", "=", "a: b", "#x", "a #b", "- x", "-", "--flag", "it's", "tab\tx",
           "multi\nline\n", "multi\nline", "two\n\n", "\u0085nel", " lead", "trail ", "\"dq\"",
           "back\\slash", "ünïcödé", "emoji 🚀", "{a}", "[b]", "a,b", "*alias", "&anchor", "!tag",
           "%dir", "@at", "`bt", "|pipe", ">fold", "---", "...", "?", ":", "a:", "a\u0000b",
           "a\r\nb", "x\u2028y", "\ufeffbom", "1.2.3", "1:2", "3d", "10m", "100Mi", "v1.2", " ",
           "  \n", "line\n  indented\n", "trailing space \nx", "k" * 2000, "on" * 600]
PLAIN = ["0x", "0o17", "0O17", "0b101", "0B101", "1_000", "-_1", "08", "09.5", "1e5", "1E5",
         "+.5", ".5", "1.", "12:30", "190:20:30", "2024-01-01", "2024-1-1", "y", "Yes", "ON", "oN",
         "~", "null", "NULL", "Null", "nULL", "9223372036854775807", "9223372036854775808",
         "18446744073709551615", "18446744073709551616", "-9223372036854775808",
         "-9223372036854775809", "0.1", "0777", "0o777", "0X1f", "1__0", "_1", "1_", "+0x10",
         "-0b11", "0b", "0b2", "00", "000", "0.0", "-0", "+0", "1e-5", "3.14e+2", "1e+5",
         "-1.5e-3", "0.5e3", "1e20", "123456789.5", "+", "-x", "1,000", "1 000", ".", "..",
         "1..2", "0x_1F", "1_0.5", "12e", "0e0", "-.5", "+1_0"]


def quoted(s):
    return json.dumps(s, ensure_ascii=False).replace("\u2028", "\\u2028") \
        .replace("\u0085", "\\u0085").replace("\ufeff", "\\ufeff")


stress = os.path.join(TMP, "stress.in.yaml")
with open(stress, "w", encoding="utf-8") as f:
    f.write("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stress\ndata:\n")
    # Explicit keys: readers refuse implicit ones over 1024 characters.
    f.writelines(f"  ? {quoted(s)}\n  : {quoted(s)}\n" for s in STRINGS)
    f.write("list:\n" + "".join(f"- {quoted(s)}\n" for s in STRINGS))
plain = os.path.join(TMP, "plain.in.yaml")
with open(plain, "w") as f:
    f.write("apiVersion: v1\nkind: Thing\nmetadata:\n  name: plain\nspec:\n")
    f.writelines(f"  k{i}: {v}\n" for i, v in enumerate(PLAIN))

inputs = sorted(glob.glob(os.path.join(FIXTURES, "*.in.yaml"))) + [stress, plain]
for path in inputs:
    out = inject(path)
    before, after, py = kubectl(path), kubectl(out), pyyaml(out)
    name = os.path.basename(path)
    if numbers_as_floats(after) != numbers_as_floats(py):
        problems.append(f"{name}: kubectl and PyYAML read our output differently")
    for i, (b, a) in enumerate(zip(before, after)):
        if b != a and "k8s-deputy.io/status" not in json.dumps(a):
            problems.append(f"{name}: document {i + 1} left alone reads differently\n  {b}\n  {a}")
    print(f"{name}: {len(after)} documents checked")

want = {s: s for s in STRINGS}
for reader, docs in [("kubectl", kubectl(inject(stress))), ("PyYAML", pyyaml(inject(stress)))]:
    if docs[0]["data"] != want or docs[0]["list"] != STRINGS:
        problems.append(f"{reader} misreads a string we wrote")

for p in problems:
    print("PROBLEM:", p)
print("all readers agree" if not problems else f"{len(problems)} problems")
sys.exit(1 if problems else 0)
