#!/usr/bin/env python3
"""Mutation check: do the tests notice a broken rule?

Applies seeded random operator mutations (comparison, boolean, off-by-one, min/max) one at a time to the
sources of core/, simulator/ and traces/, rebuilds, runs the tests that exercise those folders, and reports
the score: killed / (killed + survived). A mutant that does not compile is not counted. Each surviving
mutant is a missing test, or code that does nothing and should go.

It works on a copy of the working tree (tracked files) under --work, so the checkout and its build are
never touched. Run through scripts/mutants.sh; on demand, not in CI.
"""
import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIRS = ["core/src", "simulator/src", "traces/src"]
# The tests that exercise core/, simulator/ and traces/ without libtorch or Qt (the CLI tests of `pippy
# sim`, `pippy schedule` and `pippy trace` included). Not the actors' own tests: CAF 0.17 spawning an actor
# without arguments dereferences an empty shared_ptr<tuple<>>, which the bounds-checked build aborts on.
TEST_LABELS = "core|simulator|traces|tools"


@dataclasses.dataclass(frozen=True)
class Mutant:
    file: str     # relative to the repository root
    offset: int   # byte offset of the replaced text
    old: str
    new: str
    kind: str

    def line(self, text: str) -> int:
        return text.count("\n", 0, self.offset) + 1

    def describe(self, text: str) -> str:
        return f"{self.file}:{self.line(text)}: {self.kind}: '{self.old}' -> '{self.new}'"


def blank_comments_and_literals(src: str) -> str:
    """The source with comments, string and character literals replaced by spaces (offsets kept), so
    mutations only ever touch code."""
    out = list(src)
    i, n = 0, len(src)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif src.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', src[i:])
            end = src.find(")" + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            blank(i, j)
            i = j
        elif c in "\"'":
            # A digit separator (1'000) is not a character literal.
            if c == "'" and i > 0 and src[i - 1].isalnum():
                i += 1
                continue
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "#" and (i == 0 or src[src.rfind("\n", 0, i) + 1:i].strip() == ""):
            # Preprocessor lines (#include <a>) are not code to mutate.
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        else:
            i += 1
    return "".join(out)


# (pattern on the blanked text, replacement text, kind). Binary operators are matched with a space on both
# sides, which is how the code base writes them and never how it writes template brackets.
RULES = [
    (r" < ", " <= ", "comparison"),
    (r" <= ", " < ", "comparison"),
    (r" > ", " >= ", "comparison"),
    (r" >= ", " > ", "comparison"),
    (r" == ", " != ", "comparison"),
    (r" != ", " == ", "comparison"),
    (r" && ", " || ", "boolean"),
    (r" \|\| ", " && ", "boolean"),
    (r"\btrue\b", "false", "boolean"),
    (r"\bfalse\b", "true", "boolean"),
    (r"!(?!=)", "", "boolean"),
    (r"\bstd::min\b", "std::max", "min/max"),
    (r"\bstd::max\b", "std::min", "min/max"),
    (r" \+ 1\b(?![.eE])", " - 1", "off-by-one"),
    (r" - 1\b(?![.eE])", " + 1", "off-by-one"),
    (r"\+\+", "--", "off-by-one"),
    (r"(?<![\w.])0(?![\w.'xX])", "1", "off-by-one"),
    (r"(?<![\w.])1(?![\w.'])", "0", "off-by-one"),
]


def mutants_of(rel: str, src: str):
    code = blank_comments_and_literals(src)
    found = []
    for pattern, new, kind in RULES:
        for m in re.finditer(pattern, code):
            # '++' only in a loop header's increment, '!' never in 'operator!' or '!=' or a '#if !'.
            if m.group() == "++" and not re.search(r"for \(", code[code.rfind("\n", 0, m.start()):m.start()]):
                continue
            if m.group() == "!" and code[max(0, m.start() - 8):m.start()].endswith("operator"):
                continue
            found.append(Mutant(rel, m.start(), m.group(), new, kind))
    return found


def draw_key(seed: int, m: Mutant, text: str) -> str:
    start = text.rfind("\n", 0, m.offset) + 1
    end = text.find("\n", m.offset)
    line = text[start:end if end >= 0 else len(text)]
    column = m.offset - start
    nth = sum(1 for k in range(len(line)) if line.startswith(m.old, k) and k < column)
    key = f"{seed}:{m.file}:{line.strip()}:{nth}:{m.old}->{m.new}"
    return hashlib.sha256(key.encode()).hexdigest()


def all_mutants(dirs):
    result = []
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*.cpp")):
            rel = str(path.relative_to(ROOT))
            result += mutants_of(rel, path.read_text())
    return sorted(result, key=lambda m: (m.file, m.offset, m.new))


def run(cmd, cwd, timeout=None, log=None):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    if log is not None:
        log.write(f"$ {' '.join(map(str, cmd))}\n{p.stdout}\n")
    return p.returncode, p.stdout


def copy_tree(src_root: Path, dst: Path):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=src_root, stdout=subprocess.PIPE,
                           check=True).stdout.split(b"\0")
    for f in files:
        if not f:
            continue
        rel = f.decode()
        s, d = src_root / rel, dst / rel
        if not s.is_file():
            continue
        if d.exists() and d.read_bytes() == s.read_bytes():
            continue
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s, d)  # a fresh mtime: an older one would hide the change from the build


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1, help="which mutants are drawn (default 1)")
    ap.add_argument("--count", type=int, default=60, help="mutants to run; 0 = all (default 60)")
    ap.add_argument("--dirs", nargs="+", default=DEFAULT_DIRS, help="folders to mutate (default %(default)s)")
    ap.add_argument("--work", type=Path, default=ROOT / "build-mutants",
                    help="scratch folder: source copy, build, report (default build-mutants/)")
    ap.add_argument("--labels", default=TEST_LABELS, help="ctest -L regex of the tests run (default %(default)s)")
    ap.add_argument("--exclude", default="", help="ctest -E regex of tests left out (default: none; the "
                    "torch-free build has no pippy split tests to leave out)")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per test; a mutant that hangs is killed")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--list", action="store_true", help="print the drawn mutants and stop")
    ap.add_argument("--only", type=int, nargs="*", help="run only these indices of the drawn list")
    args = ap.parse_args()

    every = all_mutants(args.dirs)
    texts = {m.file: (ROOT / m.file).read_text() for m in every}
    # The draw hashes each mutant's file, line text and operator with the seed, so an edit elsewhere in a
    # file leaves the rest of the draw as it was: scores before and after a change compare the same mutants.
    drawn = sorted(every, key=lambda m: draw_key(args.seed, m, texts[m.file]))
    if args.count:
        drawn = drawn[:args.count]
    if args.list:
        for i, m in enumerate(drawn):
            print(f"{i:4d} {m.describe(texts[m.file])}")
        print(f"{len(drawn)} of {len(every)} mutation sites (seed {args.seed})")
        return 0

    src, build = args.work / "src", args.work / "build"
    src.mkdir(parents=True, exist_ok=True)
    copy_tree(ROOT, src)
    log = open(args.work / "log.txt", "w")
    configure = ["cmake", "-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Debug",
                 "-DPIPPY_BUILD_TORCH=OFF", "-DPIPPY_BUILD_GUI=OFF", "-DPIPPY_BUILD_BENCH=OFF",
                 "-DPIPPY_BUILD_CUDA=OFF", "-DPIPPY_WERROR=OFF",
                 # Bounds-checked containers: a mutant that reads past the end fails instead of reading garbage.
                 "-DCMAKE_CXX_FLAGS=-D_GLIBCXX_ASSERTIONS"]
    rc, out = run(configure, src, log=log)
    if rc:
        print(out)
        return 2
    ctest = ["ctest", "--test-dir", build, "-L", args.labels, "-j", str(args.jobs),
             "--timeout", str(args.timeout), "--stop-on-failure"] + (["-E", args.exclude] if args.exclude else [])

    def build_and_test():
        rc, out = run(["ninja", "-C", build, "-j", str(args.jobs)], src, log=log)
        if rc:
            return "uncompilable", out
        try:
            rc, out = run(ctest, src, timeout=args.timeout * 20, log=log)
        except subprocess.TimeoutExpired:
            return "killed", "timeout"
        return ("killed" if rc else "survived"), out

    t0 = time.time()
    verdict, out = build_and_test()
    if verdict != "survived":
        print(f"the unmutated tree does not pass ({verdict}); see {args.work / 'log.txt'}\n{out[-3000:]}")
        return 2
    print(f"baseline passes ({time.time() - t0:.0f} s); {len(drawn)} of {len(every)} mutation sites, seed {args.seed}",
          flush=True)

    results = []
    indices = args.only if args.only is not None else range(len(drawn))
    for i in indices:
        m = drawn[i]
        path = src / m.file
        original = texts[m.file]
        assert original[m.offset:m.offset + len(m.old)] == m.old
        path.write_text(original[:m.offset] + m.new + original[m.offset + len(m.old):])
        t = time.time()
        try:
            verdict, _ = build_and_test()
        finally:
            path.write_text(original)
        results.append({"index": i, "mutant": m.describe(original), "verdict": verdict})
        print(f"{i:4d} {verdict:12s} {time.time() - t:5.0f} s  {m.describe(original)}", flush=True)
    run(["ninja", "-C", build], src, log=log)  # leave the build matching the sources

    killed = sum(r["verdict"] == "killed" for r in results)
    survived = [r for r in results if r["verdict"] == "survived"]
    counted = killed + len(survived)
    score = 100.0 * killed / counted if counted else 0.0
    (args.work / "report.json").write_text(json.dumps(
        {"seed": args.seed, "count": len(results), "sites": len(every), "killed": killed,
         "survived": len(survived), "uncompilable": len(results) - counted, "score": score,
         "results": results}, indent=1))
    print(f"\nseed {args.seed}: {killed} killed, {len(survived)} survived, {len(results) - counted} did not compile; "
          f"score {score:.1f}% ({killed}/{counted})")
    for r in survived:
        print(f"  survived: {r['mutant']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
