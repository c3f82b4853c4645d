//! Checks of the deployment artefacts: `Dockerfile`, `.dockerignore`,
//! `config/docker-compose.example.yml`, `systemd/sheetsync.service`,
//! `systemd/sheetsync.env.example`, and the one release build command
//! (`scripts/build-release`) shared by the Dockerfile and CI.
//!
//! No container engine runs on the build machines, so the Dockerfile and the
//! compose file are parsed (line-based, enough for these files) and their
//! properties asserted. The systemd unit is also handed to `systemd-analyze
//! verify` and `systemd-analyze security --offline=yes` when the tool is
//! installed; when it is not, the test fails and says to install `systemd`,
//! unless `SHEETSYNC_SKIP_SYSTEMD_ANALYZE=1` is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The highest `systemd-analyze security` exposure the unit may have.
const MAX_EXPOSURE: f64 = 2.0;
const SKIP_ANALYZE_ENV: &str = "SHEETSYNC_SKIP_SYSTEMD_ANALYZE";

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
    line: usize,
}

#[derive(Debug)]
struct Stage {
    base: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&Instruction> {
        self.instructions.iter().filter(|i| i.keyword == keyword).collect()
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.instructions.iter().rev().find(|i| i.keyword == keyword)
    }

    fn position(&self, predicate: impl Fn(&Instruction) -> bool) -> Option<usize> {
        self.instructions.iter().position(predicate)
    }
}

/// Splits a Dockerfile into instructions: comment lines dropped (also inside
/// a continuation, as Docker does), `\` continuations joined.
fn parse_instructions(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (continues, body) = match trimmed.strip_suffix('\\') {
            Some(body) => (true, body.trim_end()),
            None => (false, trimmed),
        };
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        if !joined.is_empty() && !body.is_empty() {
            joined.push(' ');
        }
        joined.push_str(body);
        if continues {
            pending = Some((start, joined));
        } else if !joined.is_empty() {
            let (keyword, args) = joined.split_once(char::is_whitespace).unwrap_or((joined.as_str(), ""));
            instructions.push(Instruction {
                keyword: keyword.to_ascii_uppercase(),
                args: args.trim().to_owned(),
                line: start,
            });
        }
    }
    assert!(pending.is_none(), "Dockerfile ends inside a `\\` continuation");
    instructions
}

fn parse_stages(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in parse_instructions(text) {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                other => panic!("line {}: unexpected FROM {other:?}", instruction.line),
            };
            stages.push(Stage {
                base: words[0].to_owned(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction);
        } else {
            assert!(
                instruction.keyword == "ARG",
                "line {}: {} before the first FROM",
                instruction.line,
                instruction.keyword
            );
        }
    }
    stages
}

/// An exec-form (JSON array) argument, e.g. `["sheetsync", "run"]`.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|error| panic!("not an exec-form JSON array: {args}: {error}"))
}

/// `KEY=value` pairs of an `ENV`, `LABEL` or `ARG` instruction (double quotes removed).
fn key_values(args: &str) -> BTreeMap<String, String> {
    let mut pairs = BTreeMap::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            if chars.next_if_eq(&'"').is_some() {
                value = std::iter::from_fn(|| chars.next_if(|c| *c != '"')).collect();
                chars.next();
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect();
            }
        }
        pairs.insert(key, value);
    }
    pairs
}

fn dockerfile() -> Vec<Stage> {
    parse_stages(&read("Dockerfile"))
}

fn builder_and_runtime(stages: &[Stage]) -> (&Stage, &Stage) {
    assert!(
        stages.len() >= 2,
        "the Dockerfile must be multi-stage, found {} stage(s)",
        stages.len()
    );
    let runtime = stages.last().unwrap();
    let builder = stages
        .iter()
        .find(|stage| stage.name.as_deref() == Some("builder"))
        .expect("a stage named `builder`");
    (builder, runtime)
}

#[test]
fn dockerfile_parser_handles_continuations_and_comments() {
    let stages = parse_stages(
        "# syntax=docker/dockerfile:1\nARG X=1\nFROM a:1 AS one\nRUN echo a \\\n    # comment inside\n    && echo b\n\nFROM --platform=$BUILDPLATFORM b\nLABEL k=\"v w\" x=y\n",
    );
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0].name.as_deref(), Some("one"));
    assert_eq!(stages[0].instructions[0].args, "echo a && echo b");
    assert_eq!(stages[1].base, "b");
    let labels = key_values(&stages[1].instructions[0].args);
    assert_eq!(labels["k"], "v w");
    assert_eq!(labels["x"], "y");
}

#[test]
fn dockerfile_is_multi_stage_rust_builder_and_slim_debian_runtime() {
    let stages = dockerfile();
    let (builder, runtime) = builder_and_runtime(&stages);
    assert!(builder.base.starts_with("rust:"), "builder base: {}", builder.base);
    assert_eq!(runtime.base, "debian:bookworm-slim");
    let binary = runtime
        .all("COPY")
        .into_iter()
        .find(|copy| copy.args.starts_with("--from=builder"))
        .expect("the runtime stage copies the binary from the builder");
    assert!(
        binary
            .args
            .ends_with("/target/release/sheetsync /usr/local/bin/sheetsync"),
        "runtime binary copy: {}",
        binary.args
    );
}

#[test]
fn dockerfile_caches_dependencies_in_their_own_layer() {
    let stages = dockerfile();
    let (builder, _) = builder_and_runtime(&stages);
    let manifest = builder
        .position(|i| i.keyword == "COPY" && i.args.contains("Cargo.toml") && i.args.contains("Cargo.lock"))
        .expect("COPY Cargo.toml Cargo.lock");
    let sources = builder
        .position(|i| i.keyword == "COPY" && i.args.split_whitespace().next() == Some("src"))
        .expect("COPY src");
    let builds: Vec<usize> = builder
        .instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "RUN" && i.args.contains("scripts/build-release"))
        .map(|(index, _)| index)
        .collect();
    assert!(manifest < sources, "the manifest must be copied before the sources");
    assert!(
        builds.iter().any(|&b| manifest < b && b < sources),
        "a dependency build between COPY Cargo.toml/Cargo.lock and COPY src"
    );
    assert!(builds.iter().any(|&b| b > sources), "a build after COPY src");
    let stub = &builder.instructions[builds[0]];
    assert!(
        stub.args.contains("src/main.rs"),
        "the dependency layer builds a stub main: {}",
        stub.args
    );
}

/// Cargo refuses to build a manifest whose explicitly declared targets are
/// missing, so the stub layer must create every one the image does not copy.
#[test]
fn dockerfile_stub_layer_covers_every_declared_target() {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml parses");
    let stages = dockerfile();
    let (builder, _) = builder_and_runtime(&stages);
    let copied: Vec<&str> = builder.all("COPY").into_iter().map(|copy| copy.args.as_str()).collect();
    let stub = builder
        .instructions
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("scripts/build-release"))
        .expect("a stub build");
    for (section, folder) in [("bench", "benches"), ("test", "tests"), ("example", "examples")] {
        let targets = manifest
            .get(section)
            .and_then(|value| value.as_array())
            .cloned()
            .unwrap_or_default();
        for target in targets {
            let name = target
                .get("name")
                .and_then(|name| name.as_str())
                .expect("a named target");
            let default_path = format!("{folder}/{name}.rs");
            let path = target
                .get("path")
                .and_then(|path| path.as_str())
                .unwrap_or(&default_path);
            assert!(
                stub.args.contains(path) || copied.iter().any(|args| args.contains(path)),
                "Cargo.toml declares {section} `{name}` at {path}; the Dockerfile's stub layer must create it"
            );
        }
    }
}

#[test]
fn dockerfile_builds_with_the_one_release_command_that_ci_runs() {
    let script = read("scripts/build-release");
    let commands: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("cargo "))
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(
        commands,
        ["exec cargo build --release --locked --bin sheetsync \"$@\""],
        "scripts/build-release holds the one release build command"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(repo_file("scripts/build-release"))
            .unwrap()
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "scripts/build-release must be executable (the Dockerfile runs it)"
        );
    }

    for stage in dockerfile() {
        for run in stage.all("RUN") {
            assert!(
                !run.args.contains("cargo "),
                "line {}: the Dockerfile must build through scripts/build-release only, not `{}`",
                run.line,
                run.args
            );
            for step in run.args.split("&&").map(str::trim) {
                if step.contains("scripts/build-release") {
                    assert_eq!(
                        step, "scripts/build-release",
                        "line {}: no extra build arguments",
                        run.line
                    );
                }
            }
        }
    }

    let ci = read(".ci/run");
    let lines: Vec<&str> = ci.lines().map(str::trim).collect();
    let build = lines
        .iter()
        .position(|line| *line == "scripts/build-release")
        .expect(".ci/run runs scripts/build-release");
    let tests = lines
        .iter()
        .position(|line| *line == "scripts/test")
        .expect(".ci/run runs scripts/test");
    assert!(build < tests, ".ci/run builds the release before the tests");
    assert!(
        !lines.iter().any(|line| line.starts_with("cargo build")),
        ".ci/run must not have a second release build command"
    );

    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let release = &manifest["profile"]["release"];
    assert_eq!(release["lto"].as_str(), Some("thin"));
    assert_eq!(release["strip"].as_bool(), Some(true));
}

#[test]
fn dockerfile_runtime_runs_as_a_numeric_non_root_user() {
    let stages = dockerfile();
    let (_, runtime) = builder_and_runtime(&stages);
    let user = runtime.last("USER").expect("USER in the runtime stage");
    let ids: Vec<&str> = user.args.split(':').collect();
    assert!(
        !ids.is_empty()
            && ids.len() <= 2
            && ids
                .iter()
                .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())),
        "USER must be numeric uid[:gid] (Kubernetes runAsNonRoot needs it): {}",
        user.args
    );
    assert!(ids.iter().all(|id| *id != "0"), "USER must not be root: {}", user.args);
    let user_index = runtime.position(|i| std::ptr::eq(i, user)).unwrap();
    for later in &runtime.instructions[user_index..] {
        assert!(later.keyword != "RUN", "line {}: RUN after USER", later.line);
    }
}

#[test]
fn dockerfile_runtime_entrypoint_cmd_port_listen_health_and_stop_signal() {
    let stages = dockerfile();
    let (_, runtime) = builder_and_runtime(&stages);
    let get = |keyword: &str| {
        runtime
            .last(keyword)
            .unwrap_or_else(|| panic!("{keyword} in the runtime stage"))
    };
    assert_eq!(exec_form(&get("ENTRYPOINT").args), ["sheetsync"]);
    assert_eq!(exec_form(&get("CMD").args), ["run"]);
    assert_eq!(get("EXPOSE").args, "8080");
    assert_eq!(get("STOPSIGNAL").args, "SIGTERM");

    let env: BTreeMap<String, String> = runtime.all("ENV").iter().flat_map(|i| key_values(&i.args)).collect();
    assert_eq!(env.get("SHEETSYNC_LISTEN").map(String::as_str), Some("0.0.0.0:8080"));

    let health = &get("HEALTHCHECK").args;
    let (options, command) = health.split_once("CMD").expect("HEALTHCHECK ... CMD [...]");
    for option in ["--interval=", "--timeout=", "--start-period=", "--retries="] {
        assert!(options.contains(option), "HEALTHCHECK sets {option}: {health}");
    }
    let command = exec_form(command.trim());
    assert_eq!(
        command[..2],
        ["sheetsync", "health"],
        "the health check is the binary's own probe"
    );
}

#[test]
fn dockerfile_runtime_has_oci_labels() {
    let stages = dockerfile();
    let (_, runtime) = builder_and_runtime(&stages);
    let labels: BTreeMap<String, String> = runtime.all("LABEL").iter().flat_map(|i| key_values(&i.args)).collect();
    for key in ["title", "description", "version", "licenses", "source"] {
        let key = format!("org.opencontainers.image.{key}");
        assert!(
            labels.get(&key).is_some_and(|v| !v.is_empty()),
            "label {key} missing: {labels:?}"
        );
    }
    assert_eq!(labels["org.opencontainers.image.licenses"], env!("CARGO_PKG_LICENSE"));
    // The version label comes from ARG VERSION, whose default tracks Cargo.toml.
    let args: BTreeMap<String, String> = runtime.all("ARG").iter().flat_map(|i| key_values(&i.args)).collect();
    assert_eq!(labels["org.opencontainers.image.version"], "${VERSION}");
    assert_eq!(args.get("VERSION").map(String::as_str), Some(env!("CARGO_PKG_VERSION")));
}

#[test]
fn dockerfile_runtime_installs_ca_certificates_only_and_no_http_client() {
    let stages = dockerfile();
    let (_, runtime) = builder_and_runtime(&stages);
    let mut installed = Vec::new();
    for run in runtime.all("RUN") {
        for tool in ["curl", "wget"] {
            assert!(
                !run.args.contains(tool),
                "line {}: no {tool} in the runtime image",
                run.line
            );
        }
        for step in run.args.split("&&").map(str::trim) {
            if let Some(rest) = step.strip_prefix("apt-get install") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                assert!(words.contains(&"--no-install-recommends"), "line {}: {step}", run.line);
                installed.extend(words.into_iter().filter(|w| !w.starts_with('-')));
            }
        }
        if run.args.contains("apt-get update") {
            assert!(
                run.args.contains("rm -rf /var/lib/apt/lists/*"),
                "line {}: apt lists left in the image",
                run.line
            );
        }
    }
    assert_eq!(installed, ["ca-certificates"]);
}

#[test]
fn dockerignore_admits_exactly_what_the_dockerfile_copies() {
    let ignore = read(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        ".dockerignore is an allow-list starting with `*`"
    );
    let allowed: Vec<&str> = rules
        .iter()
        .filter_map(|r| r.strip_prefix('!'))
        .map(|r| r.trim_end_matches('/'))
        .collect();
    for stage in dockerfile() {
        for copy in stage.all("COPY") {
            if copy.args.starts_with("--from=") {
                continue;
            }
            let words: Vec<&str> = copy.args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            for source in &words[..words.len() - 1] {
                assert!(
                    allowed.contains(source),
                    "line {}: {source} is excluded by .dockerignore",
                    copy.line
                );
            }
        }
    }
    assert!(
        !allowed
            .iter()
            .any(|a| a.starts_with("target") || a.starts_with(".git") || a.contains("secret"))
    );
}

// ---------------------------------------------------------------------------
// docker-compose example (indentation-based reading, enough for this file)
// ---------------------------------------------------------------------------

/// The lines of the block under `path` (e.g. `["services", "database"]`), with
/// their indentation kept; `None` when a key is missing.
fn yaml_block<'a>(text: &'a str, path: &[&str]) -> Option<Vec<&'a str>> {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .collect();
    let mut indent = 0;
    for key in path {
        let start = lines
            .iter()
            .position(|l| indent_of(l) == indent && l.trim() == format!("{key}:"))?;
        let child_indent = lines.get(start + 1).map(|l| indent_of(l)).filter(|&i| i > indent)?;
        let end = lines[start + 1..]
            .iter()
            .position(|l| indent_of(l) <= indent)
            .map_or(lines.len(), |offset| start + 1 + offset);
        lines = lines[start + 1..end].to_vec();
        indent = child_indent;
    }
    Some(lines)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `key: value` entries at the block's top indentation.
fn yaml_map(block: &[&str]) -> BTreeMap<String, String> {
    let indent = block.first().map_or(0, |l| indent_of(l));
    block
        .iter()
        .filter(|l| indent_of(l) == indent)
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

/// `- item` entries at the block's top indentation.
fn yaml_list(block: &[&str]) -> Vec<String> {
    block
        .iter()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|v| v.trim().to_owned())
        .collect()
}

const COMPOSE: &str = "config/docker-compose.example.yml";

#[test]
fn compose_runs_sheetsync_beside_a_mongodb_7_service_named_database() {
    let text = read(COMPOSE);
    let database = yaml_map(&yaml_block(&text, &["services", "database"]).expect("services.database"));
    assert!(
        database["image"].starts_with("mongo:7"),
        "database image: {}",
        database["image"]
    );
    let db_env = yaml_map(&yaml_block(&text, &["services", "database", "environment"]).unwrap());
    assert_eq!(db_env["MONGO_INITDB_ROOT_USERNAME"], "root");
    assert!(
        !db_env.contains_key("MONGO_INITDB_ROOT_PASSWORD"),
        "the root password comes from a secret file"
    );
    assert_eq!(
        db_env["MONGO_INITDB_ROOT_PASSWORD_FILE"],
        "/run/secrets/mongo_root_password"
    );

    let sheetsync = yaml_block(&text, &["services", "sheetsync"]).expect("services.sheetsync");
    let depends = yaml_block(&text, &["services", "sheetsync", "depends_on"]).unwrap();
    assert!(
        depends.iter().any(|l| l.trim() == "database:"),
        "sheetsync depends on database"
    );
    assert!(yaml_map(&sheetsync).contains_key("build"));
    assert_eq!(
        yaml_map(&yaml_block(&text, &["services", "sheetsync", "build"]).unwrap())["context"],
        ".."
    );
    // MONGO_URL (it carries the password) comes from an env file, not from the compose file.
    let env = yaml_map(&yaml_block(&text, &["services", "sheetsync", "environment"]).unwrap());
    assert!(!env.contains_key("MONGO_URL") && !env.contains_key("SHEETSYNC_ADMIN_TOKEN"));
    assert!(yaml_block(&text, &["services", "sheetsync", "env_file"]).is_some());
    assert!(text.contains("mongodb://root:<password>@database:27017/sales_analytics?authSource=admin"));
}

#[test]
fn compose_passes_the_admin_token_and_google_key_as_secrets() {
    let text = read(COMPOSE);
    let used = yaml_list(&yaml_block(&text, &["services", "sheetsync", "secrets"]).expect("sheetsync secrets"));
    assert_eq!(used, ["sheetsync_admin_token", "google_service_account"]);
    for name in ["sheetsync_admin_token", "google_service_account", "mongo_root_password"] {
        let secret = yaml_map(&yaml_block(&text, &["secrets", name]).unwrap_or_else(|| panic!("secrets.{name}")));
        assert!(
            secret["file"].starts_with("../secrets/"),
            "secret {name} from a file: {secret:?}"
        );
    }
    let env = yaml_map(&yaml_block(&text, &["services", "sheetsync", "environment"]).unwrap());
    assert_eq!(
        env["GOOGLE_APPLICATION_CREDENTIALS"],
        "/run/secrets/google_service_account"
    );
    let config = yaml_block(&text, &["configs", "sheetsync_toml"]).expect("configs.sheetsync_toml");
    assert!(
        config
            .iter()
            .any(|l| l.trim() == "admin_token_file = \"/run/secrets/sheetsync_admin_token\""),
        "the daemon reads the admin token from the secret file"
    );
}

// ---------------------------------------------------------------------------
// systemd unit and env file
// ---------------------------------------------------------------------------

const UNIT: &str = "systemd/sheetsync.service";

/// `[Section]` -> every `Key=value` in order (keys may repeat).
fn parse_unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "keep the unit free of continuation lines: {line}"
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not Key=value: {line}"));
        sections
            .entry(current.clone())
            .or_default()
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
    sections
}

fn values<'a>(unit: &'a BTreeMap<String, Vec<(String, String)>>, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .map(|entries| {
            entries
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn unit_has_the_required_settings() {
    let unit = parse_unit(&read(UNIT));
    let one = |section: &str, key: &str| -> String {
        let found = values(&unit, section, key);
        assert_eq!(found.len(), 1, "[{section}] {key}= once, found {found:?}");
        found[0].to_owned()
    };
    let expected = [
        ("Service", "Type", "notify"),
        ("Service", "ExecStart", "/usr/local/bin/sheetsync run"),
        ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Service", "Restart", "on-failure"),
        ("Service", "KillSignal", "SIGTERM"),
        ("Service", "EnvironmentFile", "-/etc/sheetsync/sheetsync.env"),
        (
            "Service",
            "LoadCredential",
            "google-service-account.json:/etc/sheetsync/google-service-account.json",
        ),
        ("Service", "DynamicUser", "yes"),
        ("Service", "UMask", "0077"),
        ("Service", "NoNewPrivileges", "yes"),
        ("Service", "CapabilityBoundingSet", ""),
        ("Service", "AmbientCapabilities", ""),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "ProtectHome", "yes"),
        ("Service", "PrivateTmp", "yes"),
        ("Service", "PrivateDevices", "yes"),
        ("Service", "ProtectKernelTunables", "yes"),
        ("Service", "ProtectKernelModules", "yes"),
        ("Service", "ProtectKernelLogs", "yes"),
        ("Service", "ProtectControlGroups", "yes"),
        ("Service", "RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("Service", "RestrictNamespaces", "yes"),
        ("Service", "RestrictRealtime", "yes"),
        ("Service", "RestrictSUIDSGID", "yes"),
        ("Service", "MemoryDenyWriteExecute", "yes"),
        ("Service", "LockPersonality", "yes"),
        ("Service", "SystemCallArchitectures", "native"),
        ("Install", "WantedBy", "multi-user.target"),
    ];
    for (section, key, value) in expected {
        assert_eq!(one(section, key), value, "[{section}] {key}=");
    }
    for (section, key) in [
        ("Unit", "StartLimitIntervalSec"),
        ("Unit", "StartLimitBurst"),
        ("Service", "WatchdogSec"),
        ("Service", "RestartSec"),
        ("Service", "TimeoutStopSec"),
    ] {
        let value = one(section, key);
        let number = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        assert!(
            number.parse::<u32>().is_ok_and(|n| n > 0),
            "[{section}] {key}={value} must be a positive time"
        );
    }
    let filters = values(&unit, "Service", "SystemCallFilter");
    assert_eq!(
        filters.first(),
        Some(&"@system-service"),
        "SystemCallFilter=@system-service first"
    );
    let environment = values(&unit, "Service", "Environment");
    assert!(environment.contains(&"SHEETSYNC_CONFIG=/etc/sheetsync/sheetsync.toml"));
    // Secrets stay in the 0600 env file and the credential, never in the unit
    // (unit files are world-readable and `systemctl show` prints Environment=).
    for secret in ["MONGO_URL", "SHEETSYNC_ADMIN_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"] {
        assert!(
            !environment.iter().any(|e| e.starts_with(secret)),
            "{secret} must not be in the unit"
        );
    }
    assert!(
        values(&unit, "Service", "ReadWritePaths").is_empty(),
        "the daemon writes nothing to disk"
    );
}

#[test]
fn env_example_comments_every_variable_with_its_default() {
    let text = read("systemd/sheetsync.env.example");
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "every line is commented out: {line}"
        );
    }
    for variable in [
        "MONGO_URL",
        "DB_NAME",
        "SHEETSYNC_ADMIN_TOKEN",
        "SHEETSYNC_LISTEN",
        "SHEETSYNC_LOG_FORMAT",
        "SHEETSYNC_CONFIG",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SHEETSYNC_SHEETS_API_URL",
    ] {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("#{variable}=")))
            .unwrap_or_else(|| panic!("#{variable}= in the env example"));
        let block_start = lines[..at].iter().rposition(|l| l.is_empty()).map_or(0, |i| i + 1);
        assert!(
            lines[block_start..at].iter().any(|l| l.contains("Default:")),
            "{variable}: its comment states the default"
        );
    }
    for secret in ["MONGO_URL", "SHEETSYNC_ADMIN_TOKEN"] {
        let line = lines.iter().find(|l| l.starts_with(&format!("#{secret}="))).unwrap();
        assert!(line.contains("CHANGE-ME"), "{secret} holds a placeholder only: {line}");
    }
}

// ---------------------------------------------------------------------------
// systemd-analyze
// ---------------------------------------------------------------------------

/// The `systemd-analyze` on PATH; `None` (`test` skipped) only when the
/// skip variable is set, otherwise a failure telling how to install it.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("systemd-analyze"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => Some(path),
        None if std::env::var(SKIP_ANALYZE_ENV).is_ok_and(|v| v == "1") => {
            crate::harness::skip(test, &format!("systemd-analyze not found and {SKIP_ANALYZE_ENV}=1"));
            None
        }
        None => panic!(
            "systemd-analyze not found: install it (Debian: `apt-get install systemd`) \
             or set {SKIP_ANALYZE_ENV}=1 to skip the unit's verify and security checks"
        ),
    }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze("deployment::unit_passes_systemd_analyze_verify") else {
        return;
    };
    // `verify` checks that ExecStart's binary exists and is executable, and
    // /usr/local/bin/sheetsync is not installed on build machines. So verify
    // a copy whose ExecStart points at the binary cargo just built for this
    // test; every other line is the shipped unit's, byte for byte.
    let unit = read(UNIT);
    let shipped = "ExecStart=/usr/local/bin/sheetsync run";
    assert_eq!(unit.matches(shipped).count(), 1, "{shipped} once in the unit");
    let copy = unit.replace(shipped, &format!("ExecStart={} run", env!("CARGO_BIN_EXE_sheetsync")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sheetsync.service");
    std::fs::write(&path, copy).unwrap();

    let output = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "systemd-analyze verify failed ({}):\n{printed}",
        output.status
    );
    assert!(
        printed.trim().is_empty(),
        "systemd-analyze verify printed warnings:\n{printed}"
    );
}

#[test]
fn unit_exposure_is_at_most_two() {
    let Some(analyze) = systemd_analyze("deployment::unit_exposure_is_at_most_two") else {
        return;
    };
    let output = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(repo_file(UNIT))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze security failed:\n{stdout}{stderr}"
    );
    let exposure: f64 = stdout
        .lines()
        .find_map(|line| line.split("Overall exposure level for sheetsync.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{stdout}{stderr}"));
    eprintln!("systemd-analyze security --offline=yes: exposure {exposure}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} above {MAX_EXPOSURE}; the failing checks:\n{}",
        stdout
            .lines()
            .filter(|l| l.contains('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
