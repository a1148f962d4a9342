#!/usr/bin/env python3
"""Checks that the repository's references to its own files resolve (CTest: docs.links).

    scripts/check-links.py [ROOT]        check the tree at ROOT (default: this script's ../)
    scripts/check-links.py --self-test   check that a broken link of each kind is caught

What counts as a reference:
  * every relative Markdown link or image, [text](path) or [text](path#anchor), and every
    reference definition "[id]: path", in *.md files (outside fenced code blocks);
    a same-file link "(#anchor)" is checked against the file's own headings;
  * every repository path named in plain text: a word that starts with docs/, src/, tests/,
    include/, scripts/, examples/, bench/, proto/ or cmake/ (e.g. `docs/endpoint-health.md`,
    src/protocol/http.{h,c}, docs/security.md#tls), in *.md files (code included) and in the
    comments of *.c, *.h and *.proto files, of CMakeLists.txt, *.cmake, Makefile and shell
    scripts (# comments) and of Python files (# comments and docstrings);
  * any "../" path in those same places: read from the file's folder it must stay inside the
    repository and exist (the repository must not point outside itself);
  * in those same places, any other relative path to a Markdown file (its first folder not one
    of the above): it must exist, read from the file's folder or from the root; and any
    Markdown file named without a folder (fallback.md): it must exist in the same folder, at
    the root or in docs/.
A path resolves when the file or folder exists; with "#anchor" the target Markdown file must
also have that heading (GitHub's slug: lower case, punctuation dropped, spaces to hyphens, -1,
-2, ... for repeats) or an explicit <a name=...>/id=... anchor. Patterns are not paths: a word
holding <, >, * or "..." (src/<layer>/, tests/unit/test_*.c) is skipped, and {a,b} is expanded.

Only the standard library; exit 0 when everything resolves, 1 otherwise (each broken reference
printed as FILE:LINE: message), 2 on bad usage.
"""
import os
import re
import sys
import tempfile

REPO_DIRS = ("docs", "src", "tests", "include", "scripts", "examples", "bench", "proto", "cmake")
C_LIKE = (".c", ".h", ".proto")
HASH_COMMENTED = (".cmake", ".sh")
HASH_COMMENTED_NAMES = ("CMakeLists.txt", "Makefile")

# [text](target) and ![alt](target); target up to a space (a title may follow) or ')'
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
MD_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
PATH_WORD = re.compile(
    r"(?<![\w/.$-])((?:%s)/[\w.+/{},<>*-]*(?:\.\.\.)?)(#[\w-]+)?" % "|".join(REPO_DIRS))
UP_PATH = re.compile(r"(?<![\w/.-])((?:\.\./)+[\w.-]+(?:/[\w.-]+)*)")
# a relative Markdown path whose first folder is not one of REPO_DIRS
FOLDER_MD = re.compile(r"(?<![\w/.-])((?!(?:%s)/)[\w-]+(?:/[\w.-]+)*/[\w.-]+\.md)\b"
                       % "|".join(REPO_DIRS))
BARE_MD = re.compile(r"(?<![\w/.-])([\w-]+\.md)\b(?!/)")
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"|\sid=\"([^\"]+)\"")


def is_build_dir(path):
    return os.path.exists(os.path.join(path, "CMakeCache.txt"))


def repo_files(root):
    """Every file worth checking, build folders and hidden folders left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(".") and not d.startswith("build")
                             and not is_build_dir(os.path.join(dirpath, d))
                             and not (d == "corpus" and os.path.basename(dirpath) == "fuzz"))
        for f in sorted(filenames):
            yield os.path.join(dirpath, f)


def blank_except(text, spans):
    """text with everything outside the (start, end) spans turned to spaces, newlines kept, so
    that offsets and line numbers still match the file."""
    out = []
    last = 0
    for start, end in spans:
        out.append(re.sub(r"[^\n]", " ", text[last:start]))
        out.append(text[start:end])
        last = end
    out.append(re.sub(r"[^\n]", " ", text[last:]))
    return "".join(out)


def c_comments(text):
    """The comments of C (or .proto) source: /* */ and //, strings and characters skipped."""
    spans = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            spans.append((i, end))
            i = end
        elif c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            spans.append((i, end))
            i = end
        elif c in "\"'":
            i += 1
            while i < n and text[i] != c and text[i] != "\n":
                i += 2 if text[i] == "\\" else 1
            i += 1
        else:
            i += 1
    return blank_except(text, spans)


def hash_comments(text):
    """Text after a '#' that starts a comment (at a line start or after a blank)."""
    spans = []
    pos = 0
    for line in text.splitlines(keepends=True):
        m = re.search(r"(^|\s)#", line)
        if m:
            spans.append((pos + m.end() - 1, pos + len(line.rstrip("\n"))))
        pos += len(line)
    return blank_except(text, spans)


def python_comments(text):
    """# comments and triple-quoted strings (docstrings) of a Python file."""
    hashed = hash_comments(text)
    spans = [(m.start(2), m.end(2)) for m in
             re.finditer(r'^[ \t]*[rRuU]?("""|\'\'\')(.*?)\1', text, re.S | re.M)]
    doc = blank_except(text, spans)
    return "".join(a if a != " " else b for a, b in zip(hashed, doc))


def markdown_outside_fences(text):
    """Markdown with fenced code blocks blanked (links there are examples, not links)."""
    spans = []
    pos = 0
    fence = None
    start = 0
    for line in text.splitlines(keepends=True):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                spans.append((start, pos))
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
            fence = None
            start = pos + len(line)
        pos += len(line)
    if fence is None:
        spans.append((start, len(text)))
    return blank_except(text, spans)


def slug(heading):
    """GitHub's anchor for a heading's text."""
    h = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    h = re.sub(r"<[^>]+>", "", h)                             # inline HTML dropped
    h = h.strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


_anchor_cache = {}


def anchors_of(path):
    if path not in _anchor_cache:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        seen = {}
        names = set()
        for line in markdown_outside_fences(text).splitlines():
            m = HEADING.match(line)
            if m:
                s = slug(m.group(1))
                k = seen.get(s, 0)
                seen[s] = k + 1
                names.add(s if k == 0 else "%s-%d" % (s, k))
            for a in HTML_ANCHOR.finditer(line):
                names.add(a.group(1) or a.group(2))
        _anchor_cache[path] = names
    return _anchor_cache[path]


def expand_braces(word):
    m = re.search(r"\{([^{}]*)\}", word)
    if not m:
        return [word]
    out = []
    for alt in m.group(1).split(","):
        out.extend(expand_braces(word[:m.start()] + alt + word[m.end():]))
    return out


class Checker:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.errors = []
        self.checked = 0
        self.link_spans = {}  # file -> [(start, end)] of its Markdown links (text and target)

    def error(self, path, text, offset, message):
        line = text.count("\n", 0, offset) + 1
        self.errors.append("%s:%d: %s" % (os.path.relpath(path, self.root), line, message))

    def inside(self, path):
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def check_target(self, path, text, offset, base_dir, target, what):
        """target: a relative path, maybe with #anchor, to resolve from base_dir."""
        self.checked += 1
        file_part, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(base_dir, file_part)) if file_part else path
        if not self.inside(dest):
            self.error(path, text, offset, "%s '%s' points outside the repository" % (what, target))
            return
        if not os.path.exists(dest):
            self.error(path, text, offset, "%s '%s': no such file or folder" % (what, target))
            return
        if anchor and dest.endswith(".md") and os.path.isfile(dest):
            if anchor.lower() not in anchors_of(dest):
                self.error(path, text, offset,
                           "%s '%s': %s has no heading with anchor #%s"
                           % (what, target, os.path.relpath(dest, self.root), anchor))

    def check_markdown_links(self, path, text):
        body = markdown_outside_fences(text)
        # inline code spans are not links either
        body = re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group(0)), body)
        base = os.path.dirname(path)
        for regex in (MD_LINK, MD_REFDEF):
            for m in regex.finditer(body):
                target = m.group(1)
                if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("/"):
                    continue  # http:, mailto:, absolute (a server path such as /status)
                self.link_spans.setdefault(path, []).append((m.start(), m.end()))
                self.check_target(path, text, m.start(1), base, target, "link")

    def in_link(self, path, offset):
        """Whether offset falls in a Markdown link already checked as one."""
        return any(a <= offset < b for a, b in self.link_spans.get(path, ()))

    def check_path_words(self, path, text, scanned, prose):
        """scanned: the text to look for paths in; prose: the same without code blocks."""
        for m in PATH_WORD.finditer(scanned):
            word, anchor = m.group(1), m.group(2) or ""
            if self.in_link(path, m.start(1)):
                continue  # part of a Markdown link: checked as a link
            if any(ch in word for ch in "<>*") or "..." in word:
                continue  # a pattern, not a path
            word = word.rstrip(".,:;")
            if word.count("{") != word.count("}"):
                continue
            for w in expand_braces(word):
                self.check_target(path, text, m.start(1), self.root, w + anchor, "path")
        # a dot-dot path in plain text: read from the file's folder, it must stay in the
        # repository and exist (one written from the root, to a sibling folder, fails too)
        base = os.path.dirname(path)
        for m in UP_PATH.finditer(scanned):
            if self.in_link(path, m.start(1)) or m.group(1).endswith("..."):
                continue
            word = m.group(1).rstrip(".")
            dest = os.path.normpath(os.path.join(base, word))
            self.checked += 1
            if not self.inside(dest):
                self.error(path, text, m.start(1), "'%s' points outside the repository" % word)
            elif not os.path.exists(dest):
                self.error(path, text, m.start(1), "'%s': no such file or folder (from %s)"
                           % (word, os.path.relpath(base, self.root)))
        for m in FOLDER_MD.finditer(scanned):
            if self.in_link(path, m.start(1)):
                continue
            self.checked += 1
            if not any(os.path.isfile(os.path.join(d, m.group(1))) for d in (base, self.root)):
                self.error(path, text, m.start(1), "'%s': no such file (from %s or the root)"
                           % (m.group(1), os.path.relpath(base, self.root)))
        # a Markdown file named without a folder (such as fallback.md), outside code blocks: it
        # must be in the same folder, at the root or in docs/
        for m in BARE_MD.finditer(prose):
            if self.in_link(path, m.start(1)):
                continue
            self.checked += 1
            if not any(os.path.isfile(os.path.join(d, m.group(1)))
                       for d in (base, self.root, os.path.join(self.root, "docs"))):
                self.error(path, text, m.start(1),
                           "'%s': no such file here, at the root or in docs/" % m.group(1))

    def run(self):
        for path in repo_files(self.root):
            name = os.path.basename(path)
            ext = os.path.splitext(name)[1]
            if ext == ".md":
                kind = "md"
            elif ext in C_LIKE:
                kind = "c"
            elif ext in HASH_COMMENTED or name in HASH_COMMENTED_NAMES:
                kind = "hash"
            elif ext == ".py":
                kind = "py"
            else:
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if kind == "md":
                self.check_markdown_links(path, text)
                scanned, prose = text, markdown_outside_fences(text)
            elif kind == "c":
                scanned = prose = c_comments(text)
            elif kind == "py":
                scanned = prose = python_comments(text)
            else:
                scanned = prose = hash_comments(text)
            self.check_path_words(path, text, scanned, prose)
        return self.errors


def self_test():
    """A small tree with one good and one broken reference of each kind: every broken one must
    be reported, no good one."""
    files = {
        "README.md": "[ok](docs/a.md) [ok](docs/a.md#second-part) [bad](docs/missing.md)\n"
                     "[bad anchor](docs/a.md#nowhere) [out](../elsewhere/x.md)\n"
                     "[web](https://example.com) see `docs/a.md` and docs/gone.md.\n"
                     "```\n[not a link](nowhere.md)\n```\n",
        "docs/a.md": "# A\n\n## Second part\n\n[self](#a) [self bad](#b)\n"
                     "the wire facts are in ../sibling/b.md; ../README.md is fine\n",
        "src/x.c": "/* docs/a.md, src/x.{c,h}, and docs/none.md */\n"
                   "static const char *s = \"docs/not-a-comment.md\";\n",
        "src/x.h": "// the layout is in ../../outside/LAYOUT.md\n"
                   "/* as RULES.md asks; a.md is in docs/ */\n",
        "CMakeLists.txt": "# see scripts/none.sh\nadd_test(x docs/not-checked.md)\n",
        "tests/gen.py": '"""Frames built from other/protocol/spec.md."""\n'
                        'x = "docs/not-a-docstring.md"  # README.md is fine\n',
    }
    expected = {
        "README.md:1: link 'docs/missing.md': no such file or folder",
        "README.md:2: link 'docs/a.md#nowhere': docs/a.md has no heading with anchor #nowhere",
        "README.md:2: link '../elsewhere/x.md' points outside the repository",
        "docs/a.md:6: '../sibling/b.md': no such file or folder (from docs)",
        "README.md:3: path 'docs/gone.md': no such file or folder",
        "docs/a.md:5: link '#b': docs/a.md has no heading with anchor #b",
        "src/x.c:1: path 'docs/none.md': no such file or folder",
        "src/x.h:1: '../../outside/LAYOUT.md' points outside the repository",
        "src/x.h:2: 'RULES.md': no such file here, at the root or in docs/",
        "CMakeLists.txt:1: path 'scripts/none.sh': no such file or folder",
        "tests/gen.py:1: 'other/protocol/spec.md': no such file (from tests or the root)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "repo")
        for rel, content in files.items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as f:
                f.write(content)
        got = set(Checker(root).run())
    ok = got == expected
    for e in sorted(expected - got):
        print("self-test: not reported: " + e)
    for e in sorted(got - expected):
        print("self-test: reported wrongly: " + e)
    print("self-test: %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__)
        return 2
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    here = os.path.dirname(os.path.abspath(__file__))
    root = argv[1] if len(argv) == 2 else os.path.join(here, "..")
    if not os.path.isdir(root):
        print("check-links: %s is not a folder" % root)
        return 2
    checker = Checker(root)
    errors = checker.run()
    for e in errors:
        print(e)
    print("check-links: %d references checked, %d broken" % (checker.checked, len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
