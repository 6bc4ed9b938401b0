"""The references in a CircleCI 2.1 config that its JSON schema cannot see.

check-jsonschema's `vendor.circle-ci` schema checks shapes, not names: a workflow
may name a job nobody defined, a step may be a typo that looks like a custom command,
a `run` may call a make target or script that does not exist. This checker reads the
config with PyYAML and reports each such reference as one line, `rule: where: what`.

Rules (the rule name starts each message):
  undefined-job        a workflow names a job that `jobs:` does not define
  undefined-requires   a `requires` names a job that is not in the same workflow
  undefined-executor   a job names an executor that `executors:` does not define
  no-executor          a job has neither an executor nor docker/machine/macos
  undefined-step       a step is neither a built-in step nor a defined command
  undefined-parameter  `<< parameters.x >>` / `<< pipeline.parameters.x >>` not declared
  bad-argument         an invocation passes an undeclared parameter or omits a required one
  not-thin             a run step calls neither a make target nor a build/ script
  undefined-make-target  `make X` names no target of the Makefile
  missing-script       a script path in a run step (build/, tests/, bench/, .ci/) does
                       not exist, or is run as a command without being executable
  missing-checksum-file  a cache key's `{{ checksum "f" }}` names no file
  unpersisted-workspace  `attach_workspace` when no upstream job persisted anything, or
                       a workspace path read that no upstream job persisted
  tags-filter          a job runs on tags but an upstream job does not (so it never runs)

Usage: python tests/pipeline/circleci_refs.py [CONFIG] [--root DIR]; exit 1 on findings.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import posixpath
import re
import shlex
import sys
from pathlib import Path

import yaml

# The built-in steps of CircleCI 2.1 (the `step` definition of the vendored schema).
BUILTIN_STEPS = frozenset({
    "add_ssh_keys", "attach_workspace", "checkout", "deploy", "install_signing_bundle",
    "persist_to_workspace", "restore_cache", "run", "save_cache", "setup_remote_docker",
    "store_artifacts", "store_test_results", "with_tool_cache", "when", "unless",
})
# Keys of a workflow's job entry that are not the job's parameters.
WORKFLOW_JOB_KEYS = frozenset({
    "requires", "name", "context", "filters", "type", "matrix", "pre-steps", "post-steps",
    "serial-group", "override-with",
})
SCRIPT_DIRS = ("build", "tests", "bench", ".ci")
SCRIPT_PATH = re.compile(r"^(?:\./)?(?:" + "|".join(map(re.escape, SCRIPT_DIRS)) + r")/[\w.+/-]+$")
PARAM_REF = re.compile(r"<<\s*(pipeline\.)?parameters\.([\w-]+)\s*>>")
CHECKSUM = re.compile(r"""\{\{\s*checksum\s+"([^"]+)"\s*\}\}""")
OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "|&", "\n"}
MAKE_OPTIONS_WITH_VALUE = {"-C", "-f", "-I", "-o", "-W", "--directory", "--file", "--makefile"}


def makefile_targets(makefile: Path) -> set[str]:
    """Explicit target names of a Makefile (rules and .PHONY), without pattern rules."""
    targets: set[str] = set()
    rule = re.compile(r"^([^\s:=#][^:=#]*?)\s*::?(?![=])(.*)$")
    for line in makefile.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("\t") or re.match(r"^\s*[\w.-]+\s*(?:[:?+!]?=|::=)", line):
            continue
        match = rule.match(line)
        if not match:
            continue
        names = match.group(1).split()
        if names == [".PHONY"]:
            names = match.group(2).split()
        targets.update(n for n in names if "$" not in n and "%" not in n and not n.startswith("."))
    return targets


def _substitute(value, params: dict):
    """`<< parameters.x >>` replaced by its value where the value is known."""
    if isinstance(value, str):
        def repl(match):
            if match.group(1) or match.group(2) not in params:
                return match.group(0)
            return str(params[match.group(2)])
        return PARAM_REF.sub(repl, value)
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    return value


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)


def _step_parts(step):
    if isinstance(step, str):
        return step, {}
    if isinstance(step, dict) and len(step) == 1:
        name, body = next(iter(step.items()))
        return name, body if body is not None else {}
    return None, step


def _tokens(command: str) -> list[str]:
    """Shell words and operators of a command; each line break is an operator too."""
    words: list[str] = []
    for line in command.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.commenters = "#"
        lexer.whitespace_split = True
        try:
            words.extend(lexer)
        except ValueError:  # unbalanced quotes: the shell would fail anyway
            words.extend(line.split())
        words.append("\n")
    return words


class Checker:
    def __init__(self, config: dict, root: Path, makefile: Path | None = None):
        self.config = config or {}
        self.root = Path(root)
        makefile = makefile or self.root / "Makefile"
        self.targets = makefile_targets(makefile) if makefile.exists() else set()
        self.errors: list[str] = []
        self.jobs = self.config.get("jobs") or {}
        self.commands = self.config.get("commands") or {}
        self.executors = self.config.get("executors") or {}
        self.orbs = set((self.config.get("orbs") or {}).keys())
        self.pipeline_params = set((self.config.get("parameters") or {}).keys())

    def error(self, rule: str, where: str, what: str) -> None:
        message = f"{rule}: {where}: {what}"
        if message not in self.errors:
            self.errors.append(message)

    # -- parameters ---------------------------------------------------------
    def _check_param_refs(self, value, declared: set[str] | None, where: str) -> None:
        for text in _strings(value):
            for match in PARAM_REF.finditer(text):
                pipeline, name = match.group(1), match.group(2)
                if pipeline and name not in self.pipeline_params:
                    self.error("undefined-parameter", where,
                               f"<< pipeline.parameters.{name} >> but parameters: does not declare {name!r}")
                elif not pipeline and (declared is None or name not in declared):
                    self.error("undefined-parameter", where,
                               f"<< parameters.{name} >> but it declares no parameter {name!r}")

    def _check_arguments(self, declared: dict, given: dict, where: str) -> dict:
        declared = declared or {}
        for name in given:
            if name not in declared:
                self.error("bad-argument", where, f"passes {name!r}, which is not a declared parameter")
        values = {}
        for name, spec in declared.items():
            spec = spec or {}
            if name in given:
                values[name] = given[name]
            elif "default" in spec:
                values[name] = spec["default"]
            else:
                self.error("bad-argument", where, f"does not pass required parameter {name!r}")
        return values

    # -- steps --------------------------------------------------------------
    def expand(self, steps, params: dict, where: str, stack=()) -> list[tuple[str, dict, str]]:
        """Steps with commands inlined: (built-in name, body, where)."""
        out = []
        for index, step in enumerate(steps or []):
            name, body = _step_parts(_substitute(step, params))
            here = f"{where} step {index + 1}"
            if name is None:
                self.error("undefined-step", here, f"{step!r} is not a step")
            elif name in ("when", "unless"):
                out.extend(self.expand((body or {}).get("steps"), params, here, stack))
            elif name in BUILTIN_STEPS:
                out.append((name, body, f"{here} ({name})"))
            elif name in self.commands:
                if name in stack:
                    self.error("undefined-step", here, f"command {name!r} calls itself")
                    continue
                command = self.commands[name] or {}
                given = body if isinstance(body, dict) else {}
                values = self._check_arguments(command.get("parameters"), given,
                                               f"{here}: command {name!r}")
                out.extend(self.expand(command.get("steps"), values, f"{here} -> {name}",
                                       stack + (name,)))
            elif "/" in name and name.split("/")[0] in self.orbs:
                continue
            else:
                self.error("undefined-step", here,
                           f"{name!r} is neither a built-in step nor a command defined in commands:")
        return out

    # -- run commands -------------------------------------------------------
    def check_run(self, body, where: str) -> list[str]:
        command = body if isinstance(body, str) else (body or {}).get("command", "")
        words = _tokens(command)
        thin = False
        at_command = True
        index = 0
        while index < len(words):
            word = words[index]
            if word in OPERATORS:
                at_command = True
                index += 1
                continue
            if at_command and re.match(r"^[A-Za-z_]\w*=", word):
                index += 1
                continue
            if word == "make":
                thin = True
                index = self._check_make(words, index + 1, where)
                at_command = False
                continue
            if SCRIPT_PATH.match(word):
                thin = thin or at_command
                path = self.root / word
                if not path.exists():
                    self.error("missing-script", where, f"{word} does not exist")
                elif at_command and not (path.is_file() and os.access(path, os.X_OK)):
                    self.error("missing-script", where,
                               f"{word} is run as a command but is not an executable file")
            at_command = word in ("sudo", "exec", "env", "time", "nice", "command")
            index += 1
        if not thin:
            self.error("not-thin", where,
                       f"{command.strip()!r} calls neither a make target nor a build/ script")
        return [w for w in words if w not in OPERATORS]

    def _check_make(self, words: list[str], index: int, where: str) -> int:
        makefile_elsewhere = False
        while index < len(words) and words[index] not in OPERATORS:
            word = words[index]
            if word in MAKE_OPTIONS_WITH_VALUE:
                makefile_elsewhere = True
                index += 2
                continue
            if word.startswith("-") or "=" in word:
                index += 1
                continue
            if not makefile_elsewhere and "$" not in word and "<<" not in word and word not in self.targets:
                self.error("undefined-make-target", where,
                           f"make {word}: the Makefile has no target {word!r}")
            index += 1
        return index

    # -- the whole config ---------------------------------------------------
    def run(self) -> list[str]:
        for name, command in self.commands.items():
            declared = set(((command or {}).get("parameters") or {}).keys())
            self._check_param_refs((command or {}).get("steps"), declared, f"command {name!r}")

        self.job_steps: dict[str, list] = {}
        self.job_words: dict[str, list] = {}
        for name, job in self.jobs.items():
            job = job or {}
            where = f"job {name!r}"
            declared = job.get("parameters") or {}
            self._check_param_refs({k: v for k, v in job.items() if k != "parameters"}, set(declared), where)
            self._check_executor(job, where)
            defaults = {k: (v or {})["default"] for k, v in declared.items() if "default" in (v or {})}
            steps = self.expand(job.get("steps"), defaults, where)
            self.job_steps[name] = steps
            words = []
            for step, body, step_where in steps:
                if step == "run":
                    words += self.check_run(body, step_where)
                elif step == "store_artifacts":
                    words.append((body or {}).get("path", ""))
                elif step in ("restore_cache", "save_cache"):
                    self._check_checksums(body, step_where)
            self.job_words[name] = words

        self.persisted = {name: self._persisted(steps) for name, steps in self.job_steps.items()}
        for name, workflow in (self.config.get("workflows") or {}).items():
            if name == "version" or not isinstance(workflow, dict):
                continue
            self._check_param_refs(workflow, set(), f"workflow {name!r}")
            self._check_workflow(name, workflow)
        return self.errors

    def _check_executor(self, job: dict, where: str) -> None:
        executor = job.get("executor")
        if isinstance(executor, dict):
            executor = executor.get("name")
        if executor is not None:
            from_orb = "/" in executor and executor.split("/")[0] in self.orbs
            if executor not in self.executors and not from_orb:
                self.error("undefined-executor", where, f"executor {executor!r} is not defined in executors:")
        elif not any(k in job for k in ("docker", "machine", "macos")):
            self.error("no-executor", where, "names no executor and has no docker/machine/macos")

    def _check_checksums(self, body, where: str) -> None:
        for text in _strings(body):
            for path in CHECKSUM.findall(text):
                if "<<" not in path and "$" not in path and not (self.root / path).is_file():
                    self.error("missing-checksum-file", where, f'{{{{ checksum "{path}" }}}}: no such file')

    @staticmethod
    def _persisted(steps) -> set[str]:
        paths = set()
        for step, body, _ in steps:
            if step == "persist_to_workspace":
                body = body or {}
                for path in ([body["path"]] if "path" in body else body.get("paths") or []):
                    paths.add(posixpath.normpath(str(path)))
        return paths

    def _check_workflow(self, wf_name: str, workflow: dict) -> None:
        entries = {}
        for entry in workflow.get("jobs") or []:
            job, body = _step_parts(entry)
            body = body if isinstance(body, dict) else {}
            alias = body.get("name", job)
            entries[alias] = (job, body)
        upstream = {}
        for alias, (job, body) in entries.items():
            where = f"workflow {wf_name!r} job {alias!r}"
            approval = body.get("type") == "approval"
            if not approval and job not in self.jobs and not ("/" in job and job.split("/")[0] in self.orbs):
                self.error("undefined-job", where, f"{job!r} is not defined in jobs:")
            elif job in self.jobs:
                given = {k: v for k, v in body.items() if k not in WORKFLOW_JOB_KEYS}
                self._check_arguments((self.jobs[job] or {}).get("parameters"), given, where)
            requires = body.get("requires") or []
            names = list(requires.keys()) if isinstance(requires, dict) else [
                next(iter(r)) if isinstance(r, dict) else r for r in requires]
            for required in names:
                if required not in entries:
                    self.error("undefined-requires", where,
                               f"requires {required!r}, which is not a job of workflow {wf_name!r}")
            upstream[alias] = [r for r in names if r in entries]

        def ancestors(alias, seen=None):
            seen = set() if seen is None else seen
            for parent in upstream.get(alias, []):
                if parent not in seen:
                    seen.add(parent)
                    ancestors(parent, seen)
            return seen

        everywhere = set().union(*self.persisted.values()) if self.persisted else set()
        for alias, (job, body) in entries.items():
            where = f"workflow {wf_name!r} job {alias!r}"
            above = ancestors(alias)
            if self._runs_on_tags(body):
                for parent in sorted(above):
                    if not self._runs_on_tags(entries[parent][1]):
                        self.error("tags-filter", where, f"runs on tags but its upstream {parent!r} has no "
                                   "tags filter, so on a tag neither runs")
            if job not in self.jobs:
                continue
            attaches = [body_ for step, body_, _ in self.job_steps[job] if step == "attach_workspace"]
            provided = set()
            for parent in above:
                provided |= self.persisted.get(entries[parent][0], set())
            if attaches and not provided:
                self.error("unpersisted-workspace", where,
                           "attaches a workspace but no upstream job persists anything to it")
                continue
            at = posixpath.normpath(str((attaches[0] or {}).get("at", "."))) if attaches else "."
            own = self.persisted.get(job, set())
            for word in self.job_words.get(job, []):
                path = posixpath.normpath(word) if word else ""
                if not path or not any(self._covers(posixpath.join(at, p), path) for p in everywhere):
                    continue
                if any(self._covers(p, path) for p in own):
                    continue
                if not attaches:
                    self.error("unpersisted-workspace", where,
                               f"reads {word!r}, a workspace path, without attach_workspace")
                elif not any(self._covers(posixpath.normpath(posixpath.join(at, p)), path) for p in provided):
                    self.error("unpersisted-workspace", where,
                               f"reads {word!r}, which no upstream job in workflow {wf_name!r} persists")

    @staticmethod
    def _covers(pattern: str, path: str) -> bool:
        pattern = posixpath.normpath(pattern)
        return path == pattern or path.startswith(pattern + "/") or fnmatch.fnmatch(path, pattern)

    @staticmethod
    def _runs_on_tags(body: dict) -> bool:
        tags = (body.get("filters") or {}).get("tags") or {}
        return bool(tags.get("only"))


def check(config: dict, root: Path, makefile: Path | None = None) -> list[str]:
    """Every finding in a parsed config, as `rule: where: what` lines."""
    return Checker(config, root, makefile).run()


def check_file(path: Path, root: Path, makefile: Path | None = None) -> list[str]:
    return check(yaml.safe_load(Path(path).read_text()), root, makefile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[2]
    parser.add_argument("config", nargs="?", type=Path, default=here / ".circleci/config.yml")
    parser.add_argument("--root", type=Path, default=here, help="the checkout (Makefile, scripts)")
    args = parser.parse_args(argv)
    errors = check_file(args.config, args.root)
    for error in errors:
        print(f"{args.config}: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
