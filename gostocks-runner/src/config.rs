//! The configuration, layered with figment. **Precedence, lowest first:**
//!
//! 1. the built-in defaults (shown in `--help`);
//! 2. the `--config` TOML file (`GOSTOCKS_CONFIG`);
//! 3. the `GOSTOCKS_*` environment variables (each named in `--help`);
//! 4. the command-line flags.
//!
//! The file holds `log` and `log_format` at its top, a `[run]` and an `[ingest]` table whose keys
//! are those commands' flags with `_` for `-` (`http_addr = "0.0.0.0:8080"`), and a
//! `[kafka.options]` table of librdkafka settings that every Kafka client of every command gets.
//! `--kafka-option key=value` and `GOSTOCKS_KAFKA_OPTIONS` override its entries key by key. A key
//! the file does not know is an error naming the key and the file; so is a value that does not
//! parse. A Kafka option's value `${file:PATH}` is read from that file (its trailing newline
//! dropped), `${env:NAME}` from that environment variable: secrets stay out of the file.
//!
//! How it works: clap reads the flags, the environment and the defaults, and says which of the
//! three each value came from; those become three figment layers, with the file between the
//! defaults and the environment. The merged values of `run` and `ingest` are handed back to clap
//! as flags, so that every value, whatever its layer, goes through the same parser.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use gostocks_connectors::kafka::{KafkaOptions, is_secret_key};

use crate::cli::{Cli, Command, KafkaOptionArgs};

/// A command whose flags a config file may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// `[run]`: `gostocks run`.
    Run,
    /// `[ingest]`: `gostocks ingest`.
    Ingest,
}

impl Section {
    const ALL: [Section; 2] = [Section::Run, Section::Ingest];

    fn name(self) -> &'static str {
        match self {
            Section::Run => "run",
            Section::Ingest => "ingest",
        }
    }

    fn of(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The table of librdkafka settings.
const KAFKA_OPTIONS: &str = "kafka.options";
/// The arguments of the root command a file may set.
const ROOT_KEYS: [&str; 2] = ["log", "log_format"];
/// Arguments that are no configuration.
const NOT_KEYS: [&str; 4] = ["help", "version", "config", "kafka_option"];

/// Parses the command line of this process with the layers above.
pub fn parse() -> anyhow::Result<Cli> {
    parse_from(std::env::args_os().collect())
}

/// Parses `argv` (program name first) with the layers above. A command-line error exits, as
/// clap does; a configuration error is returned.
pub fn parse_from(argv: Vec<OsString>) -> anyhow::Result<Cli> {
    let cmd = Cli::command();
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let file = matches.get_one::<PathBuf>("config").cloned();
    if let Some(path) = &file {
        check_file(path)?;
    }
    let (sub, sub_matches) = matches
        .subcommand()
        .map(|(name, m)| (name.to_owned(), m.clone()))
        .unwrap_or_default();
    let section = Section::of(&sub);
    if file.is_none() && section.is_none() {
        return Ok(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()));
    }
    let figment = layers(
        &matches,
        section.map(|s| (s, &sub_matches)),
        file.as_deref(),
    )?;
    let argv = match section {
        // Every value of the command's table, merged, goes back through clap.
        Some(s) => {
            let mut out = vec![argv[0].clone()];
            out.extend(flags_of(&figment, None)?);
            out.push(sub.clone().into());
            out.extend(flags_of(&figment, Some(s))?);
            // Kafka options given as flags stay flags (their merge is redone by `resolve`).
            let given = sub_matches.value_source("kafka_option") == Some(ValueSource::CommandLine);
            for v in sub_matches
                .get_raw("kafka_option")
                .into_iter()
                .flatten()
                .filter(|_| given)
            {
                let mut flag = OsString::from("--kafka-option=");
                flag.push(v);
                out.push(flag);
            }
            out
        }
        // Other commands take the file's top-level keys, unless a flag or variable set them.
        None => {
            let mut out = argv.clone();
            let from_file = |key: &str| {
                figment
                    .find_metadata(key)
                    .is_some_and(|m| matches!(m.source, Some(figment::Source::File(_))))
            };
            out.extend(flags_of(&figment, None)?.into_iter().filter(|f| {
                let f = f.to_string_lossy();
                let key = f.trim_start_matches("--").split('=').next().unwrap_or("");
                from_file(&key.replace('-', "_"))
            }));
            out
        }
    };
    let matches = cmd.try_get_matches_from(&argv).unwrap_or_else(|e| e.exit());
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let options = kafka_options_of(&figment)?;
    if let Some(k) = kafka_args(&mut cli.command) {
        k.from_file = options;
    }
    Ok(cli)
}

/// The Kafka options of the commands that have them.
fn kafka_args(command: &mut Command) -> Option<&mut KafkaOptionArgs> {
    match command {
        Command::Run(a) => Some(&mut a.kafka_options),
        Command::Ingest(a) => Some(&mut a.kafka.kafka_options),
        Command::Replay(a) => Some(&mut a.kafka.kafka_options),
        Command::Check(a) => Some(&mut a.kafka_options),
        _ => None,
    }
}

/// The merged `[kafka.options]`, as `(key, value)` sorted by key.
fn kafka_options_of(figment: &Figment) -> anyhow::Result<Vec<(String, String)>> {
    let Ok(Value::Dict(_, dict)) = figment.find_value(KAFKA_OPTIONS) else {
        return Ok(Vec::new());
    };
    dict.iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                scalar(v).with_context(|| format!("[kafka.options] {k}"))?,
            ))
        })
        .collect()
}

impl KafkaOptionArgs {
    /// The librdkafka settings: the file's `[kafka.options]`, then `--kafka-option` (or
    /// `GOSTOCKS_KAFKA_OPTIONS`), key by key, with `${file:PATH}` and `${env:NAME}` values read.
    pub fn resolve(&self) -> anyhow::Result<KafkaOptions> {
        let mut merged: BTreeMap<String, String> = self.from_file.iter().cloned().collect();
        for kv in &self.kafka_option {
            let (k, v) = kv.split_once('=').with_context(|| {
                format!(
                    "--kafka-option `{}` is not key=value",
                    excerpt(kv.split('=').next().unwrap_or(""))
                )
            })?;
            merged.insert(k.trim().to_owned(), v.to_owned());
        }
        let resolved = merged
            .into_iter()
            .map(|(k, v)| {
                let v = secret(&v).with_context(|| format!("kafka option {k}"))?;
                Ok((k, v))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(KafkaOptions(resolved))
    }
}

/// A value as given, or read from `${file:PATH}` or `${env:NAME}`.
fn secret(value: &str) -> anyhow::Result<String> {
    let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return Ok(value.to_owned());
    };
    if let Some(path) = inner.strip_prefix("file:") {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Some(name) = inner.strip_prefix("env:") {
        return std::env::var(name)
            .with_context(|| format!("environment variable {name} is not set"));
    }
    anyhow::bail!(
        "`${{{}}}`: use ${{file:PATH}} or ${{env:NAME}}",
        excerpt(inner)
    )
}

/// At most 40 characters of `s`, for error messages.
fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

/// One layer of values clap found: defaults, environment or flags.
struct Layer {
    name: &'static str,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// The figment of the root's keys and of `section`: defaults < `file` < environment < flags.
fn layers(
    root: &ArgMatches,
    section: Option<(Section, &ArgMatches)>,
    file: Option<&Path>,
) -> anyhow::Result<Figment> {
    let cmd = Cli::command();
    let mut by_source: [Dict; 3] = Default::default();
    let slot = |s: ValueSource| match s {
        ValueSource::DefaultValue => 0,
        ValueSource::EnvVariable => 1,
        _ => 2,
    };
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if !ROOT_KEYS.contains(&id) {
            continue;
        }
        if let Some((src, value)) = value_of(root, arg) {
            by_source[slot(src)].insert(id.to_owned(), value);
        }
    }
    if let Some((section, matches)) = section {
        let sub = cmd
            .find_subcommand(section.name())
            .expect("every section is a subcommand");
        let mut tables: [Dict; 3] = Default::default();
        for arg in sub.get_arguments() {
            let id = arg.get_id().as_str();
            if NOT_KEYS.contains(&id) || ROOT_KEYS.contains(&id) {
                continue;
            }
            if let Some((src, value)) = value_of(matches, arg) {
                tables[slot(src)].insert(id.to_owned(), value);
            }
        }
        for (i, table) in tables.into_iter().enumerate() {
            by_source[i].insert(section.name().to_owned(), table.into());
        }
        // `--kafka-option` and GOSTOCKS_KAFKA_OPTIONS, key by key, over `[kafka.options]`.
        if let Some(src) = matches.value_source("kafka_option") {
            let mut options = Dict::new();
            for kv in matches
                .get_many::<String>("kafka_option")
                .into_iter()
                .flatten()
            {
                if let Some((k, v)) = kv.split_once('=') {
                    options.insert(k.trim().to_owned(), v.into());
                }
            }
            let mut kafka = Dict::new();
            kafka.insert("options".into(), options.into());
            by_source[slot(src)].insert("kafka".into(), kafka.into());
        }
    }
    let [defaults, env, flags] = by_source;
    let mut figment = Figment::new().merge(Layer {
        name: "default",
        dict: defaults,
    });
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    Ok(figment
        .merge(Layer {
            name: "environment",
            dict: env,
        })
        .merge(Layer {
            name: "flag",
            dict: flags,
        }))
}

/// Where `arg`'s value in `matches` came from, and the value (`None`: it has none).
fn value_of(matches: &ArgMatches, arg: &clap::Arg) -> Option<(ValueSource, Value)> {
    let id = arg.get_id().as_str();
    let src = matches.value_source(id)?;
    let value = if matches!(arg.get_action(), ArgAction::SetTrue) {
        Value::from(matches.get_flag(id))
    } else {
        let raw: Vec<String> = matches
            .get_raw(id)?
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if matches!(arg.get_action(), ArgAction::Append) {
            Value::from(raw)
        } else {
            Value::from(raw.into_iter().next()?)
        }
    };
    Some((src, value))
}

/// A scalar value as its text (a string as it is, a number or a boolean written out).
fn scalar(value: &Value) -> anyhow::Result<String> {
    match value {
        Value::String(_, s) => Ok(s.clone()),
        Value::Char(_, c) => Ok(c.to_string()),
        Value::Bool(_, b) => Ok(b.to_string()),
        Value::Num(..) => Ok(serde_json::to_string(value)?),
        _ => anyhow::bail!("expected a string, number or boolean"),
    }
}

/// The flags that give the merged values of `section` (`None`: the root's keys).
fn flags_of(figment: &Figment, section: Option<Section>) -> anyhow::Result<Vec<OsString>> {
    let cmd = Cli::command();
    let (table, cmd) = match section {
        Some(s) => (
            figment.find_value(s.name()).ok(),
            cmd.find_subcommand(s.name())
                .cloned()
                .expect("a subcommand"),
        ),
        None => {
            let mut root = Dict::new();
            for key in ROOT_KEYS {
                if let Ok(v) = figment.find_value(key) {
                    root.insert(key.into(), v);
                }
            }
            (Some(Value::from(root)), cmd)
        }
    };
    let Some(Value::Dict(_, table)) = table else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, value) in &table {
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == key.as_str()) else {
            continue;
        };
        let long = format!("--{}", arg.get_long().unwrap_or(key.as_str()));
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            if value.to_bool() == Some(true) {
                out.push(long.into());
            }
            continue;
        }
        let values = match value {
            Value::Array(_, items) => items.iter().map(scalar).collect::<anyhow::Result<_>>()?,
            v => vec![scalar(v)?],
        };
        for v in values {
            out.push(format!("{long}={v}").into());
        }
    }
    Ok(out)
}

/// Checks `path`: TOML, every key known, every value parsed by its flag's parser. The error
/// names the file and the key.
pub fn check_file(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    anyhow::ensure!(path.is_file(), "--config {shown}: no such file");
    let data = Figment::from(Toml::file_exact(path))
        .data()
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let top = data.get(&Profile::Default).cloned().unwrap_or_default();
    let cmd = Cli::command();
    for (key, value) in &top {
        if let Some(section) = Section::of(key) {
            let Value::Dict(_, table) = value else {
                anyhow::bail!("{shown}: `{key}` must be a table, [{key}]");
            };
            let sub = cmd.find_subcommand(key).expect("a subcommand");
            for (k, v) in table {
                let arg = sub
                    .get_arguments()
                    .find(|a| a.get_id() == k.as_str())
                    .filter(|a| !NOT_KEYS.contains(&a.get_id().as_str()));
                let Some(arg) = arg else {
                    anyhow::bail!(
                        "{shown}: unknown key `{key}.{k}`: the keys of [{key}] are the flags of `gostocks {key} --help` with `_` for `-`{}",
                        if k.contains('-') {
                            format!(" (`{}`?)", k.replace('-', "_"))
                        } else {
                            String::new()
                        }
                    );
                };
                check_value(&format!("{shown}: `{}.{k}`", section.name()), arg, v)?;
            }
        } else if ROOT_KEYS.contains(&key.as_str()) {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == key.as_str())
                .expect("a root key");
            check_value(&format!("{shown}: `{key}`"), arg, value)?;
        } else if key == "kafka" {
            let Value::Dict(_, kafka) = value else {
                anyhow::bail!("{shown}: `kafka` must be a table holding [kafka.options]");
            };
            for (k, v) in kafka {
                let Value::Dict(_, options) = v.clone() else {
                    anyhow::bail!(
                        "{shown}: unknown key `kafka.{k}`: [kafka] holds only [kafka.options]"
                    );
                };
                anyhow::ensure!(
                    k == "options",
                    "{shown}: unknown key `kafka.{k}`: [kafka] holds only [kafka.options]"
                );
                for (name, v) in &options {
                    scalar(v)
                        .map_err(|e| anyhow::anyhow!("{shown}: `kafka.options.{name}`: {e}"))?;
                }
            }
        } else {
            anyhow::bail!(
                "{shown}: unknown key `{key}`: the file holds log, log_format, [run], [ingest] and [kafka.options]"
            );
        }
    }
    Ok(())
}

/// Checks one value of the file with `arg`'s own parser.
fn check_value(what: &str, arg: &clap::Arg, value: &Value) -> anyhow::Result<()> {
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        anyhow::ensure!(value.to_bool().is_some(), "{what}: expected true or false");
        return Ok(());
    }
    let values: Vec<String> = match value {
        Value::Array(_, items) if matches!(arg.get_action(), ArgAction::Append) => items
            .iter()
            .map(scalar)
            .collect::<anyhow::Result<_>>()
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?,
        v => vec![scalar(v).map_err(|e| anyhow::anyhow!("{what}: {e}"))?],
    };
    let one = clap::Command::new("check")
        .no_binary_name(true)
        .arg(arg.clone().required(false));
    let long = format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str()));
    for v in values {
        if let Err(e) = one.clone().try_get_matches_from([format!("{long}={v}")]) {
            let reason = e.to_string();
            let reason = reason
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            anyhow::bail!("{what}: {reason}");
        }
    }
    Ok(())
}

/// `gostocks config show`: the effective configuration of `section` with each value's origin,
/// as TOML (secrets as `***`), for this process's command line and environment.
pub fn show(section: Section) -> anyhow::Result<String> {
    let root = Cli::command()
        .try_get_matches_from(std::env::args_os())
        .unwrap_or_else(|e| e.exit());
    let root = &root;
    let file = root.get_one::<PathBuf>("config").cloned();
    if let Some(path) = &file {
        check_file(path)?;
    }
    let sub = Cli::command()
        .find_subcommand(section.name())
        .cloned()
        .expect("a subcommand")
        .ignore_errors(true);
    let matches = sub
        .clone()
        .try_get_matches_from([section.name()])
        .context("reading the environment")?;
    let figment = layers(root, Some((section, &matches)), file.as_deref())?;
    let mut out = format!(
        "# The effective configuration of `gostocks {}`: default < file < environment < flag.\n",
        section.name()
    );
    let cmd = Cli::command();
    // By the value's tag: a Kafka option's key holds dots, which a path lookup would split.
    let origin = |value: &Value, arg: Option<&clap::Arg>| -> String {
        let Some(m) = figment.get_metadata(value.tag()) else {
            return String::new();
        };
        match (m.name.as_ref(), &m.source, arg) {
            ("environment", _, Some(a)) => format!(
                "environment {}",
                a.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            ("environment", _, None) => "environment GOSTOCKS_KAFKA_OPTIONS".into(),
            ("flag", _, Some(a)) => format!("flag --{}", a.get_long().unwrap_or_default()),
            ("flag", _, None) => "flag --kafka-option".into(),
            (_, Some(figment::Source::File(path)), _) => format!("file {}", path.display()),
            (name, _, _) => name.to_owned(),
        }
    };
    let line = |out: &mut String, shown: &str, value: String, from: String| {
        let text = format!("{shown} = {value}");
        out.push_str(&format!("{text:<48} # {from}\n"));
    };
    for key in ROOT_KEYS {
        if let Ok(v) = figment.find_value(key) {
            let arg = cmd.get_arguments().find(|a| a.get_id() == key);
            line(&mut out, key, render(key, &v), origin(&v, arg));
        }
    }
    out.push_str(&format!("\n[{}]\n", section.name()));
    if let Ok(Value::Dict(_, table)) = figment.find_value(section.name()) {
        let sub = cmd.find_subcommand(section.name()).expect("a subcommand");
        for (k, v) in &table {
            let arg = sub.get_arguments().find(|a| a.get_id() == k.as_str());
            line(&mut out, k, render(k, v), origin(v, arg));
        }
    }
    out.push_str("\n[kafka.options]\n");
    if let Ok(Value::Dict(_, options)) = figment.find_value(KAFKA_OPTIONS) {
        for (k, v) in &options {
            let shown = toml_string(k);
            // A reference names where the secret is, not the secret: it is shown.
            let value = match v.as_str() {
                Some(s) if is_reference(v) => toml_string(s),
                _ => render(k, v),
            };
            line(&mut out, &shown, value, origin(v, None));
        }
    }
    Ok(out)
}

/// A `${file:...}` or `${env:...}` reference (naming where a secret is, not the secret).
fn is_reference(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.starts_with("${file:") || s.starts_with("${env:"))
}

/// `value` as TOML, with secrets as `***`: the value of a key naming a password, secret or
/// token, and the password of a URL (`postgres://user:***@host/db`).
fn render(key: &str, value: &Value) -> String {
    match value {
        Value::Array(_, items) => format!(
            "[{}]",
            items
                .iter()
                .map(|v| render(key, v))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::String(_, s) if is_secret_key(key) && !s.is_empty() => "\"***\"".into(),
        Value::String(_, s) => toml_string(&redact_url(s)),
        Value::Bool(_, b) => b.to_string(),
        v => scalar(v).unwrap_or_default(),
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// `url` with the password of its user info as `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact_url("rediss://:pw@cache:6380"),
            "rediss://:***@cache:6380"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("127.0.0.1:9092"), "127.0.0.1:9092");
    }

    #[test]
    fn secrets_come_from_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("gostocks-secret-{}", std::process::id()));
        std::fs::write(&dir, "hunter2\n").expect("write");
        let args = KafkaOptionArgs {
            kafka_option: vec![format!("sasl.password=${{file:{}}}", dir.display())],
            from_file: vec![
                ("sasl.password".into(), "from-file".into()),
                ("security.protocol".into(), "SASL_SSL".into()),
            ],
        };
        let resolved = args.resolve().expect("resolve");
        assert_eq!(
            resolved.0,
            vec![
                ("sasl.password".to_owned(), "hunter2".to_owned()),
                ("security.protocol".to_owned(), "SASL_SSL".to_owned())
            ]
        );
        assert!(!format!("{resolved:?}").contains("hunter2"));
        let _ = std::fs::remove_file(dir);
        assert!(secret("${env:GOSTOCKS_TEST_UNSET_VARIABLE}").is_err());
        assert!(secret("${vault:x}").is_err());
    }
}
