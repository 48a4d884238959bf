"""Settings on their way into the host's files: checked, naming the variable, and encoded for each syntax.

Every string a role writes into a generated file passes one of two gates. The role's preflight asks
`settings_problems` for one line per setting that is wrong ("<variable>: <what is wrong>"), so a bad
value fails the play before anything on the host changes and the message names that variable only.
The templates then write each value through the encoder of the file's syntax (systemd unit lines,
EnvironmentFile lines, nftables, go-ini, the Prometheus exposition format, libpq), which either
returns the text encoded or refuses it: a value that slipped past a preflight still cannot add a
line, a directive, a rule or a key of its own.

Control characters (newlines, tabs, escape sequences, the Unicode line separators) are refused in
every setting unless the role names it as one whose format carries them (alert templates, rule
bodies written as YAML data).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import sys
import unicodedata
from pathlib import Path

from ansible.errors import AnsibleFilterError

# The stack's shared code (plugins/plugin_utils/monstack): Ansible loads a filter file by its path, not
# as part of a package, so that directory goes on sys.path once, appended (it shadows nothing).
if (_PLUGIN_UTILS := str(Path(__file__).resolve().parents[1] / "plugin_utils")) not in sys.path:
    sys.path.append(_PLUGIN_UTILS)

from monstack.durations import go_duration_seconds, prometheus_duration_seconds  # noqa: E402

# C0 and C1 controls, DEL, and the two characters YAML and JavaScript read as line breaks.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL byte",
                  "\x1b": "an escape character"}


def control_character(text, allowed: str = "") -> str:
    """The name of the first control character in `text` that is not in `allowed`; "" when none."""
    for match in _CONTROL.finditer(str(text)):
        found = match.group()
        if found not in allowed:
            return _CONTROL_NAMES.get(found, f"the control character U+{ord(found):04X} "
                                             f"({unicodedata.name(found, 'unnamed')})")
    return ""


def _refuse_control(text: str, what: str) -> str:
    """`text`, or a refusal naming `what` but never repeating the value (it may be a secret)."""
    found = control_character(text)
    if found:
        raise AnsibleFilterError(f"{what} contains {found}, which the file's syntax cannot carry")
    return text


# --- Encoders: one per syntax -----------------------------------------------------------------------

# A word systemd reads back unchanged without quotes (after %% and $$ doubling).
_SYSTEMD_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")


def systemd_word(value, what: str = "a unit argument") -> str:
    """One word of a unit's command line (ExecStart=): systemd reads it back as exactly `value`.

    `%` becomes %% (specifiers) and `$` becomes $$ (environment expansion); a word with spaces,
    quotes, backslashes or a lone `;` is double-quoted with `\\` and `"` escaped (systemd reads C
    escapes inside quotes). Control characters are refused."""
    text = _refuse_control(str(value), what).replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_text(value, what: str = "a unit setting") -> str:
    """A free-text unit setting (Description=, Documentation=, OnCalendar=): one line, specifiers escaped."""
    return _refuse_control(str(value), what).replace("%", "%%")


def systemd_paths(values, what: str = "a unit path") -> str:
    """A space-separated list of absolute paths (ReadWritePaths= and the other namespace lists, which
    systemd unquotes): each quoted when needed. Settings that take one path as it is (PathChanged=,
    EnvironmentFile=) take systemd_text instead.

    systemd strips a leading "-" (ignore if missing) before it reads the path, so a path that starts
    with one keeps it: the caller writes "-" itself where it means it."""
    words = []
    for value in [values] if isinstance(values, str) else values:
        text = str(value)
        prefix = "-" if text.startswith("-/") else ""
        path = text[len(prefix):]
        if not path.startswith("/"):
            raise AnsibleFilterError(f"{what} {text!r} is not an absolute path")
        words.append(prefix + systemd_word(path, what))
    return " ".join(words)


def systemd_environment(name, value, what: str = "an environment variable") -> str:
    """The quoted assignment of an Environment= line: systemd reads back NAME=value exactly."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
        raise AnsibleFilterError(f"{what}: {name!r} is not an environment variable name")
    text = _refuse_control(f"{name}={value}", what).replace("%", "%%")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def environment_file_line(name, value, what: str = "an environment file entry") -> str:
    """NAME='value' for a file systemd reads with EnvironmentFile=: single quotes are literal there,
    so only a value holding a single quote is double-quoted, with \\ " ` and $ escaped."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
        raise AnsibleFilterError(f"{what}: {name!r} is not an environment variable name")
    text = _refuse_control(str(value), f"{what} {name}")
    if "'" not in text:
        return f"{name}='{text}'"
    return f'{name}="' + re.sub(r'([\\"`$])', r"\\\1", text) + '"'


def nft_comment(value, what: str = "a firewall comment") -> str:
    """Text for a `# ...` comment line of an nftables ruleset: one line, so it cannot add a rule."""
    return _refuse_control(str(value), what)


def ini_value(value, what: str = "an INI value") -> str:
    """A value of Grafana's INI file (go-ini): read back exactly, or refused.

    go-ini ends a bare value at `#` or `;` (an inline comment), strips surrounding quotes and
    spaces, and joins the next line after a trailing backslash; a value between backticks is read
    literally. Such values are put between backticks (or triple quotes when they hold a backtick)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = _refuse_control(str(value), what)
    plain = (not re.search(r"[#;`]", text) and text == text.strip() and not text.endswith("\\")
             and not (len(text) > 1 and text[0] == text[-1] and text[0] in "'\"") and not text.startswith('"""'))
    if plain:
        return text
    if "`" not in text:
        return f"`{text}`"
    if '"""' not in text and not text.endswith('"'):
        return f'"""{text}"""'
    raise AnsibleFilterError(f"{what} {text!r} holds both a backtick and triple quotes: go-ini cannot read it back")


def prometheus_label_value(value, what: str = "a label value") -> str:
    """A label value of the Prometheus exposition format, quotes included."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def libpq_value(value, what: str = "a connection setting") -> str:
    """A value of a libpq keyword/value connection string, single-quoted: no keyword of its own."""
    text = _refuse_control(str(value), what)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- Checks: what a setting may be -----------------------------------------------------------------

def _system_directories() -> frozenset:
    """The directories no role may own (plugins/modules/monstack_state.py: SYSTEM_DIRECTORIES), read
    from the module that enforces them on the host, so the two never disagree."""
    path = Path(__file__).resolve().parents[1] / "modules" / "monstack_state.py"
    spec = importlib.util.spec_from_file_location("monstack_state_for_settings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SYSTEM_DIRECTORIES


SYSTEM_DIRECTORIES = _system_directories()


def path_problem(value, kind: str = "path") -> str:
    """What is wrong with a path setting ("" when nothing): absolute and normalised, and for
    kind "directory" (a directory the daemon owns) neither a system directory nor the root."""
    text = str(value)
    if not text.startswith("/"):
        return f"'{text}' is not an absolute path"
    if os.path.normpath(text) != text or text.startswith("//"):
        return f"'{text}' is not a normalised path (write {os.path.normpath(text)!r})"
    if kind == "directory" and text in SYSTEM_DIRECTORIES:
        return (f"'{text}' is a system directory; give the daemon a directory of its own inside it "
                f"(for example {text.rstrip('/')}/<name>)")
    return ""


def _check(kind: str, value, args: list, values: dict) -> str:
    """One rule of settings_problems: what is wrong with `value`, "" when nothing."""
    text = str(value)
    if kind == "duration":
        seconds = prometheus_duration_seconds(value)
        if seconds < 0 or (seconds == 0 and "positive" in args):
            return (f"'{text}' is not a Prometheus duration such as 15s, 5m, 2h30m or 12w (units y w d h m s "
                    f"ms, each once, largest first)")
        return ""
    if kind == "go_duration":
        seconds = go_duration_seconds(value)
        if seconds <= 0:
            return (f"'{text}' is not a Go duration such as 120h, 90m or 1h30m (units h m s ms: this setting "
                    f"is a command-line flag, which takes no d, w or y)")
        return ""
    if kind == "not_longer_than":
        other = args[0]
        if prometheus_duration_seconds(value) > prometheus_duration_seconds(values.get(other)) >= 0:
            return f"'{text}' is longer than {other} ({values.get(other)})"
        return ""
    if kind in ("path", "directory"):
        if not text and "optional" in args:
            return ""
        return path_problem(text, kind)
    if kind == "pattern":
        if not re.fullmatch(args[0], text):
            return f"'{text}' {args[1]}"
        return ""
    if kind == "each":
        wrong = [str(item) for item in value or [] if not re.fullmatch(args[0], str(item))]
        if wrong:
            return f"{', '.join(repr(item) for item in wrong)} {args[1]}"
        return ""
    if kind == "keys":
        wrong = [str(key) for key in (value or {}) if not re.fullmatch(args[0], str(key))]
        if wrong:
            return f"{', '.join(repr(key) for key in wrong)} {args[1]}"
        return ""
    if kind == "keys_in":
        unknown = sorted(str(key) for key in (value or {}) if key not in (values.get(args[0]) or {}))
        if unknown:
            return f"{', '.join(unknown)} not in {args[0]}"
        return ""
    if kind == "thresholds":
        return _thresholds_problem(value, values.get(args[0]) if args else None)
    if kind == "choice":
        if value not in args:
            return f"'{text}' is not one of {', '.join(str(choice) for choice in args)}"
        return ""
    if kind == "sha256":
        if text and not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            return f"'{text}' is not a sha256 digest (64 hexadecimal digits)"
        return ""
    if kind == "needed_for":
        condition, wanted, alternatives = args[0], args[1], args[2:]
        if str(values.get(condition)) == str(wanted) and not text and not any(values.get(a) for a in alternatives):
            return f"is needed when {condition} is {wanted}" + (
                f" (or give {' or '.join(alternatives)})" if alternatives else "")
        return ""
    if kind == "disjoint":
        both = sorted(set(value or []) & set(values.get(args[0]) or []))
        if both:
            return f"{', '.join(both)} also in {args[0]}: a setting cannot be both"
        return ""
    if kind == "url":
        if not re.fullmatch(r"https?://[^\s/?#@]+(/[^\s]*)?", text) and not (not text and "optional" in args):
            return f"'{text}' is not an http(s) URL"
        return ""
    if kind == "tls_files":
        # The files of an exporter-toolkit tls_server_config: the toolkit reads a relative path from
        # the configuration file's directory, and the daemons serving TLS from flags from their own.
        tls = (value or {}).get("tls_server_config") if isinstance(value, dict) else None
        if tls is None:
            return ""
        if not isinstance(tls, dict):
            return "tls_server_config must be a mapping (cert_file, key_file, client_ca_file...)"
        for key in ("cert_file", "key_file", "client_ca_file"):
            if key in tls:
                problem = path_problem(tls[key])
                if problem:
                    return f"tls_server_config.{key} {problem}"
        return ""
    if kind == "ip":
        try:
            if "%" in text:
                raise ValueError
            ipaddress.ip_address(text)
        except ValueError:
            return f"'{text}' is not an IP address" if text or "optional" not in args else ""
        return ""
    raise AnsibleFilterError(f"settings_problems: unknown rule kind {kind!r}")


def _thresholds_problem(thresholds, known) -> str:
    """Alert thresholds ({name: value}): a `*_for` key is a Prometheus duration, any other a number;
    with `known`, only its keys. They enter PromQL and the rules' YAML as written."""
    if not isinstance(thresholds, dict):
        return "must be a mapping of threshold names to values"
    wrong = []
    for key, value in thresholds.items():
        if known is not None and key not in known:
            wrong.append(f"{key} is not a threshold of the library")
        elif str(key).endswith("_for"):
            if prometheus_duration_seconds(value) < 0:
                wrong.append(f"{key} '{value}' is not a Prometheus duration such as 5m")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            wrong.append(f"{key} '{value}' is not a number")
    return "; ".join(wrong)


BLACKBOX_PROBERS = ("http", "tcp", "icmp", "dns", "grpc")


def blackbox_module_problems(modules: dict, extra: dict) -> list:
    """'<variable>: <problems>' for blackbox_exporter_modules and _modules_extra, after _modules_extra
    replaced the modules of the same name: each module needs a prober the exporter knows, and a
    timeout, when it has one, that Go's time.ParseDuration reads (the exporter's own reading)."""
    merged = {**(modules or {}), **(extra or {})}
    lines = []
    for variable, names in (("blackbox_exporter_modules", [name for name in merged if name not in (extra or {})]),
                            ("blackbox_exporter_modules_extra", list(extra or {}))):
        problems = []
        for name in names:
            module = merged[name] if isinstance(merged[name], dict) else {}
            if module.get("prober") not in BLACKBOX_PROBERS:
                problems.append(f"module {name} needs a prober of {', '.join(BLACKBOX_PROBERS)}")
            elif module.get("timeout") not in (None, "") and go_duration_seconds(module["timeout"]) <= 0:
                problems.append(f"the timeout of module {name} is not a Go duration such as 5s or 1m30s "
                                f"(units h m s ms)")
        if problems:
            lines.append(f"{variable}: {'; '.join(problems)}")
    return lines


def _describe(name: str, key) -> str:
    return f"{name}[{key}]" if isinstance(key, int) else (
        f"{name}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)) else f"{name}[{str(key)!r}]")


def _control_problems(name: str, value, allowed: str) -> list:
    """Every string in `value` (keys too) holding a control character, named by its place."""
    if isinstance(value, str):
        found = control_character(value, allowed)
        return [f"{name}: contains {found}; control characters are refused (each generated file would read "
                f"it as a line or a directive of its own)"] if found else []
    problems = []
    if isinstance(value, dict):
        for key, item in value.items():
            found = control_character(key, allowed)
            if found:
                problems.append(f"{name}: the key {str(key)!r} contains {found}; control characters are refused")
            problems += _control_problems(_describe(name, key), item, allowed)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problems += _control_problems(_describe(name, index), item, allowed)
    return problems


def settings_problems(values: dict, rules: list | None = None, found: list | None = None,
                      multiline: list | None = None) -> list:
    """One line per wrong setting, "<variable>: <what is wrong>", for a role's preflight assert.

    values:    {variable: value}, normally every variable of the role (ansible.builtin.varnames and
               ansible.builtin.vars): each is searched for control characters, keys included;
    rules:     [[variable, kind, *args]] checked in order (kinds: duration, go_duration,
               not_longer_than, path, directory, pattern, each, keys, keys_in, choice, disjoint,
               url, ip, sha256, needed_for, thresholds, tls_files; the argument "optional" lets an
               empty value pass); the first rule a variable fails is the one reported;
    found:     problems other filters worked out (listen addresses, web configurations), already
               naming their variable; empty strings are dropped;
    multiline: variables whose format carries newlines, tabs and carriage returns (YAML data written
               with to_nice_yaml, alert templates; blackbox's query_response lines end in \\r).
    A variable with a control character is reported for that alone."""
    problems, broken = [], set()
    for name in sorted(values):
        lines = _control_problems(name, values[name], "\n\t\r" if name in (multiline or []) else "")
        if lines:
            broken.add(name)
            problems += lines
    for rule in rules or []:
        name, kind, args = rule[0], rule[1], list(rule[2:])
        if name in broken:
            continue
        if name not in values:
            raise AnsibleFilterError(f"settings_problems: {name} is not among the values given")
        problem = _check(kind, values[name], args, values)
        if problem:
            broken.add(name)
            problems.append(f"{name}: {problem}")
    problems += [problem for problem in found or [] if problem and problem.split(":", 1)[0] not in broken]
    return problems


class FilterModule:
    def filters(self):
        return {
            "settings_problems": settings_problems,
            "blackbox_module_problems": blackbox_module_problems,
            "prometheus_duration_seconds": prometheus_duration_seconds,
            "go_duration_seconds": go_duration_seconds,
            "systemd_word": systemd_word,
            "systemd_text": systemd_text,
            "systemd_paths": systemd_paths,
            "systemd_environment": systemd_environment,
            "environment_file_line": environment_file_line,
            "nft_comment": nft_comment,
            "ini_value": ini_value,
            "prometheus_label_value": prometheus_label_value,
            "libpq_value": libpq_value,
        }
