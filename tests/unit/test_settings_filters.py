"""plugins/filter/settings.py: the encoders of each file syntax and the preflight checks.

The systemd expectations were read back from systemd 252 (Debian 12): a unit with these words in
ExecStart=, Environment= and ReadWritePaths= ran a program that printed its argv and environment.
"""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from conftest import load_module

settings = load_module("plugins/filter/settings.py", "monstack_settings")

CONTROL_SAMPLES = ["a\nb", "a\rb", "a\tb", "a\x1b[31mb", "a\x00b", "a\u2028b", "a\x85b", "end\n"]


def systemd_unquote(word: str) -> str:
    """How systemd reads one ExecStart word back (quotes, C escapes, %% and $$), for the cases here."""
    if word.startswith('"'):
        assert word.endswith('"'), word
        word = re.sub(r'\\(.)', r'\1', word[1:-1])
    return word.replace("%%", "%").replace("$$", "$")


@pytest.mark.parametrize("value", [
    "--web.page-title=My Prom", "100%", "$HOME", 'say "hi"', "back\\slash", ";", "it's", "", "--flag=a=b",
    "/data dir/prometheus", "%h", "${X}",
])
def test_systemd_word_reads_back_as_the_value(value):
    word = settings.systemd_word(value)
    assert " " not in word or word.startswith('"'), word
    assert systemd_unquote(word) == value


def test_systemd_word_leaves_ordinary_flags_unquoted():
    # Units of converged hosts keep their text, so upgrading the stack restarts nothing.
    assert settings.systemd_word("--web.listen-address=0.0.0.0:9100") == "--web.listen-address=0.0.0.0:9100"
    assert settings.systemd_word("--storage.tsdb.path=/var/lib/prometheus/data") == \
        "--storage.tsdb.path=/var/lib/prometheus/data"


@pytest.mark.parametrize("value", CONTROL_SAMPLES)
@pytest.mark.parametrize("encoder", ["systemd_word", "systemd_text", "nft_comment", "ini_value", "libpq_value"])
def test_encoders_refuse_control_characters(encoder, value):
    with pytest.raises(AnsibleFilterError, match="contains"):
        getattr(settings, encoder)(value, "the setting")


def test_systemd_environment_and_paths_quote_what_systemd_would_split():
    assert settings.systemd_environment("A", 'x"y%z $HOME \\back') == '"A=x\\"y%%z $HOME \\\\back"'
    assert settings.systemd_paths(["/tmp/dir with space", "/var/lib/x"]) == '"/tmp/dir with space" /var/lib/x'
    assert settings.systemd_paths("-/var/lib/node_exporter/textfile") == "-/var/lib/node_exporter/textfile"
    assert settings.systemd_paths(["/tmp/pct%d"]) == "/tmp/pct%%d"
    with pytest.raises(AnsibleFilterError, match="not an absolute path"):
        settings.systemd_paths(["relative"])
    with pytest.raises(AnsibleFilterError, match="not an environment variable name"):
        settings.systemd_environment("A B", "x")


def test_systemd_text_escapes_specifiers():
    assert settings.systemd_text("100% sure") == "100%% sure"


# value -> the EnvironmentFile line: single quotes keep everything but a quote; double quotes then escape.
ENVIRONMENT_FILE_LINES = {
    "plain": "X='plain'",
    "with $dollar and \\ back": "X='with $dollar and \\ back'",
    "it's": "X=\"it's\"",
    "it's \"$x\" `y` \\": 'X="it\'s \\"\\$x\\" \\`y\\` \\\\"',
}


@pytest.mark.parametrize(("value", "line"), ENVIRONMENT_FILE_LINES.items())
def test_environment_file_lines_keep_the_value(value, line):
    assert settings.environment_file_line("X", value) == line


@pytest.mark.parametrize(("value", "written"), [
    ("admin", "admin"),
    ("Ops #1", "`Ops #1`"),
    ("a;b", "`a;b`"),
    (" padded ", "` padded `"),
    ('"quoted"', '`"quoted"`'),
    ("ends with \\", "`ends with \\`"),
    ("has ` and #", '"""has ` and #"""'),
    (True, "true"),
    (3000, "3000"),
])
def test_ini_values_read_back_by_go_ini(value, written):
    assert settings.ini_value(value) == written


def test_ini_value_refuses_what_go_ini_cannot_read_back():
    with pytest.raises(AnsibleFilterError, match="go-ini cannot read it back"):
        settings.ini_value('a ` and """ b')


def test_label_and_libpq_values_are_escaped():
    assert settings.prometheus_label_value('/etc/a "b"\\c\nd') == '"/etc/a \\"b\\"\\\\c\\nd"'
    assert settings.libpq_value("disable host=evil") == "'disable host=evil'"
    assert settings.libpq_value("it's \\") == "'it\\'s \\\\'"


@pytest.mark.parametrize(("duration", "seconds"), [
    ("15s", 15), ("5m", 300), ("200h", 720000), ("1h30m", 5400), ("2w", 1209600), ("1y", 31536000),
    ("500ms", 0.5), ("0", 0), ("1d12h", 129600),
    ("", -1), ("5m1h", -1), ("1.5h", -1), ("15", -1), ("15s\n", -1), ("-5m", -1), ("1h1h", -1),
])
def test_prometheus_durations_follow_prometheus_grammar(duration, seconds):
    assert settings.prometheus_duration_seconds(duration) == seconds


@pytest.mark.parametrize(("duration", "seconds"), [
    ("120h", 432000), ("1h30m", 5400), ("1.5h", 5400), ("500ms", 0.5), ("0", 0), ("90m", 5400),
    ("5d", -1), ("1w", -1), ("", -1), ("15", -1), ("120h\n", -1),
])
def test_go_durations_follow_go_grammar(duration, seconds):
    assert settings.go_duration_seconds(duration) == seconds


@pytest.mark.parametrize(("path", "kind", "complaint"), [
    ("/var/lib/prometheus", "directory", ""),
    ("/var/lib/prometheus/data", "directory", ""),
    ("/srv/data dir", "directory", ""),
    ("/var/lib", "directory", "system directory"),
    ("/", "directory", "system directory"),
    ("/tmp", "directory", "system directory"),
    ("/var/lib/", "directory", "not a normalised path"),
    ("/var/lib/../etc", "path", "not a normalised path"),
    ("//srv/x", "path", "not a normalised path"),
    ("var/lib/x", "path", "not an absolute path"),
    ("/tmp", "path", ""),
])
def test_path_problems(path, kind, complaint):
    problem = settings.path_problem(path, kind)
    assert (complaint in problem) if complaint else problem == "", problem


def test_system_directories_are_the_modules():
    state = load_module("plugins/modules/monstack_state.py", "monstack_state_for_settings_test")
    assert settings.SYSTEM_DIRECTORIES == state.SYSTEM_DIRECTORIES
    assert {"/", "/etc", "/usr", "/var", "/var/lib", "/tmp", "/home", "/srv"} <= settings.SYSTEM_DIRECTORIES


def test_settings_problems_name_each_wrong_variable_once():
    values = {
        "x_args": ["--ok", "--bad\nExecStartPre=/bin/sh"],
        "x_retention": "5d",
        "x_dir": "/var/lib",
        "x_fine": "15s",
        "x_labels": {"team\n": "a"},
        "x_template": "line one\nline two\n",
    }
    rules = [["x_retention", "go_duration"], ["x_dir", "directory"], ["x_fine", "duration"],
             ["x_args", "each", ".*", "never"]]
    problems = settings.settings_problems(values, rules, ["x_listen_address: 'nope' must be host:port", ""],
                                          multiline=["x_template"])
    names = [line.split(":", 1)[0] for line in problems]
    assert names == ["x_args[1]", "x_labels", "x_retention", "x_dir", "x_listen_address"], problems
    assert "a newline" in problems[0]
    assert "no d, w or y" in problems[2]


def test_settings_problems_pass_good_values():
    values = {"x_interval": "15s", "x_timeout": "10s", "x_names": ["cpu", "meminfo"], "x_url": "", "x_kind": "a"}
    rules = [["x_interval", "duration"], ["x_timeout", "not_longer_than", "x_interval"],
             ["x_names", "each", "[a-z]+", "must be lower-case names"], ["x_url", "url", "optional"],
             ["x_kind", "choice", "a", "b"]]
    assert settings.settings_problems(values, rules) == []
    values["x_timeout"] = "20s"
    assert settings.settings_problems(values, rules) == ["x_timeout: '20s' is longer than x_interval (15s)"]


def test_settings_problems_refuse_an_unknown_rule_or_variable():
    with pytest.raises(AnsibleFilterError, match="unknown rule kind"):
        settings.settings_problems({"x": 1}, [["x", "nonsense"]])
    with pytest.raises(AnsibleFilterError, match="not among the values"):
        settings.settings_problems({"x": 1}, [["y", "path"]])


def test_yaml_data_settings_may_carry_carriage_returns_and_others_may_not():
    # blackbox's query_response lines end in \r for line protocols (SMTP, IRC); blackbox.yml is YAML.
    values = {"x_modules": {"smtp": {"send": "EHLO prober\r"}}, "x_name": "a\rb"}
    problems = settings.settings_problems(values, multiline=["x_modules"])
    assert [line.split(":", 1)[0] for line in problems] == ["x_name"], problems
    assert "a carriage return" in problems[0]


@pytest.mark.parametrize(("web_config", "complaint"), [
    ({}, ""),
    ({"basic_auth_users": {"u": "p"}}, ""),
    ({"tls_server_config": {"cert_file": "/etc/ssl/a.crt", "key_file": "/etc/ssl/private/a.key"}}, ""),
    ({"tls_server_config": {"cert_file": "a.crt", "key_file": "/k"}},
     "tls_server_config.cert_file 'a.crt' is not an absolute path"),
    ({"tls_server_config": {"cert_file": "/c", "key_file": "/etc/../k"}},
     "tls_server_config.key_file '/etc/../k' is not a normalised"),
    ({"tls_server_config": {"cert_file": "/c", "key_file": "/k", "client_ca_file": "ca.pem"}}, "client_ca_file"),
    ({"tls_server_config": "yes"}, "tls_server_config must be a mapping"),
])
def test_tls_files_of_a_web_configuration_are_absolute_paths(web_config, complaint):
    problems = settings.settings_problems({"x_web_config": web_config}, [["x_web_config", "tls_files"]])
    if complaint:
        assert len(problems) == 1 and problems[0].startswith("x_web_config: ") and complaint in problems[0], problems
    else:
        assert problems == []


def test_blackbox_module_problems_name_the_variable_that_holds_the_module():
    modules = {"http_2xx": {"prober": "http"}, "slow": {"prober": "http", "timeout": "1d"}}
    assert settings.blackbox_module_problems(modules, {}) == [
        "blackbox_exporter_modules: the timeout of module slow is not a Go duration such as 5s or 1m30s (units h m s ms)"]
    extra = {"slow": {"prober": "http", "timeout": "90s"}, "odd": {"prober": "smtp"}}
    assert settings.blackbox_module_problems(modules, extra) == [
        "blackbox_exporter_modules_extra: module odd needs a prober of http, tcp, icmp, dns, grpc"]
    assert settings.blackbox_module_problems(modules, {"slow": {"prober": "tcp", "timeout": "1.5s"}}) == []
