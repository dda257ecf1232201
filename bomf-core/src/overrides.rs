//! Command-line overrides of a TOML config: `--set fusion.budget=40` sets one value as if the
//! file said so, before the config is deserialised (so every check of the file applies to it).
//!
//! - The key is a dotted path of bare TOML keys; a table on the way that the file lacks is
//!   created (as a dotted key in the file would), one that is not a table is an error.
//! - The value is a TOML value (`40`, `2e-4`, `true`, `"text"`, `[1, 2]`); anything else, a bare
//!   word such as `cosine` or `/data/train.tsv`, is a string. A value that starts like a quoted
//!   string, an array or a table must parse as one. A table is refused: a `--set` gives one value,
//!   a table's keys are set one by one.
//! - A key the config does not know is an error naming the `--set` (the config types deny unknown
//!   fields), and so is a value of the wrong type.
//!
//! [`parse`] also returns the text a run records as its config: the file itself when nothing is
//! overridden, else the overridden table, headed by the overrides, so a resume with the same
//! overrides finds the same text and one with others is refused at the line that differs.
//!
//! This file depends on `std`, `serde`, `toml` and `thiserror` only: `xtask` compiles it too
//! (`#[path]` include), so the config text it prepares for a run is the one `bomf run` records.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use thiserror::Error;
use toml::{Table, Value};

/// One `KEY=VALUE` override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    key: Vec<String>,
    value: Value,
}

/// Why an override, or the config it applies to, was refused.
#[derive(Debug, Error)]
pub enum OverrideError {
    #[error("`{arg}` is not KEY=VALUE (e.g. `fusion.budget=40`)")]
    NotAnAssignment { arg: String },
    #[error("`{key}` is not a key: dot-separated names of letters, digits, `_` and `-`")]
    BadKey { key: String },
    #[error("{key}={value}: not a TOML value ({message})")]
    BadValue {
        key: String,
        value: String,
        message: String,
    },
    #[error(
        "{key}: a --set gives one value, not a table; set the table's keys one by one \
         ({key}.NAME=VALUE)"
    )]
    TableValue { key: String },
    #[error("{key}: `{prefix}` is a value, not a table, so it has no keys")]
    NotATable { key: String, prefix: String },
    #[error("--seed {seed} and --set seed=… both set the seed: give one")]
    SeedTwice { seed: u64 },
    #[error("--seed {seed}: a seed is at most {}", i64::MAX)]
    SeedTooLarge { seed: u64 },
    /// The config file itself does not parse or does not fit the config type (with its line).
    #[error(transparent)]
    File(#[from] toml::de::Error),
    /// The config with this override applied does not fit the config type.
    #[error("--set {arg}: {message}")]
    Rejected { arg: String, message: String },
    /// The overridden config cannot be written back as TOML.
    #[error("cannot write the overridden config: {0}")]
    Write(#[from] toml::ser::Error),
}

type Result<T> = std::result::Result<T, OverrideError>;

impl Override {
    /// Sets `key` (a dotted path) to `value`.
    pub fn new(key: &str, value: Value) -> Result<Self> {
        let key = parse_key(key)?;
        check_not_table(&key.join("."), &value)?;
        Ok(Self { key, value })
    }

    /// The dotted key.
    pub fn key(&self) -> String {
        self.key.join(".")
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Sets the value in `table`, creating missing tables on the way.
    pub fn apply(&self, table: &mut Table) -> Result<()> {
        let Some((last, parents)) = self.key.split_last() else {
            return Err(OverrideError::BadKey { key: self.key() });
        };
        let mut current = table;
        for (i, name) in parents.iter().enumerate() {
            let entry = current
                .entry(name.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(t) => current = t,
                _ => {
                    return Err(OverrideError::NotATable {
                        key: self.key(),
                        prefix: self.key[..=i].join("."),
                    });
                }
            }
        }
        current.insert(last.clone(), self.value.clone());
        Ok(())
    }
}

impl FromStr for Override {
    type Err = OverrideError;

    /// `KEY=VALUE`, split at the first `=`.
    fn from_str(arg: &str) -> Result<Self> {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(OverrideError::NotAnAssignment { arg: arg.into() });
        };
        let key = key.trim();
        let value = parse_value(raw.trim()).map_err(|message| OverrideError::BadValue {
            key: key.into(),
            value: raw.trim().into(),
            message,
        })?;
        Self::new(key, value)
    }
}

/// `KEY=VALUE` with the value as TOML writes it (strings quoted).
impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key(), self.value)
    }
}

fn parse_key(key: &str) -> Result<Vec<String>> {
    let bare = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let parts: Vec<String> = key.split('.').map(str::to_string).collect();
    if parts.iter().all(|p| bare(p)) {
        Ok(parts)
    } else {
        Err(OverrideError::BadKey { key: key.into() })
    }
}

/// `raw` as a TOML value; a bare word (anything that does not parse) is a string, unless it
/// starts like a string, an array or a table, which must then parse.
fn parse_value(raw: &str) -> std::result::Result<Value, String> {
    let parsed = if raw.contains('\n') {
        None
    } else {
        toml::from_str::<Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match parsed {
        // No run setting is a date: a bare date is the text as written.
        Some(Value::Datetime(_)) => Ok(Value::String(raw.into())),
        Some(value) => Ok(value),
        None if raw.starts_with(['"', '\'', '[', '{']) => {
            match toml::from_str::<Table>(&format!("v = {raw}")) {
                Err(e) => Err(e.message().to_string()),
                Ok(_) => Err("one value on one line".into()),
            }
        }
        None => Ok(Value::String(raw.into())),
    }
}

fn check_not_table(key: &str, value: &Value) -> Result<()> {
    match value {
        Value::Table(_) => Err(OverrideError::TableValue { key: key.into() }),
        Value::Array(items) => items.iter().try_for_each(|v| check_not_table(key, v)),
        _ => Ok(()),
    }
}

/// `--seed N` as the override `seed=N`, first, then `set`; both setting the seed is an error.
pub fn with_seed(seed: Option<u64>, set: &[Override]) -> Result<Vec<Override>> {
    let mut all = Vec::with_capacity(set.len() + 1);
    if let Some(seed) = seed {
        if set.iter().any(|o| o.key == ["seed"]) {
            return Err(OverrideError::SeedTwice { seed });
        }
        let n = i64::try_from(seed).map_err(|_| OverrideError::SeedTooLarge { seed })?;
        all.push(Override::new("seed", Value::Integer(n))?);
    }
    all.extend_from_slice(set);
    Ok(all)
}

/// A config parsed with its overrides: as `T`, as the TOML table `T` was read from, and as the
/// text a run records for it.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    pub config: T,
    pub table: Table,
    pub text: String,
}

/// Parses config `text` as `T` with `overrides` applied in order (a later one wins). Without
/// overrides this is `toml::from_str` (errors carry the file's line), and the recorded text is
/// `text`; with overrides, an error names the `--set` at fault, and the recorded text is the
/// overridden table headed by the overrides.
pub fn parse<T: DeserializeOwned>(text: &str, overrides: &[Override]) -> Result<Parsed<T>> {
    let file: Table = toml::from_str(text)?;
    if overrides.is_empty() {
        return Ok(Parsed {
            config: toml::from_str(text)?,
            table: file,
            text: text.to_string(),
        });
    }
    let table = overridden(&file, overrides)?;
    match deserialize::<T>(&table) {
        Ok(config) => Ok(Parsed {
            config,
            text: recorded_text(&table, overrides)?,
            table,
        }),
        Err(e) => Err(blame::<T>(text, &file, overrides, e)),
    }
}

/// The text a run records for `text` with `overrides` (none: `text` itself).
pub fn effective_text(text: &str, overrides: &[Override]) -> Result<String> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let file: Table = toml::from_str(text)?;
    recorded_text(&overridden(&file, overrides)?, overrides)
}

/// `table` as TOML, headed by the overrides that made it. The file's comments and key order
/// are not kept (keys are sorted).
fn recorded_text(table: &Table, overrides: &[Override]) -> Result<String> {
    let mut text = String::from("# The run config with these command-line overrides applied:\n");
    for o in overrides {
        // A value with a line break stays inside the comment.
        text += &format!("# --set {}\n", o.to_string().replace('\n', "\n#   "));
    }
    text += "\n";
    text += &toml::to_string(table)?;
    Ok(text)
}

fn overridden(file: &Table, overrides: &[Override]) -> Result<Table> {
    let mut table = file.clone();
    for o in overrides {
        o.apply(&mut table)?;
    }
    Ok(table)
}

fn deserialize<T: DeserializeOwned>(table: &Table) -> std::result::Result<T, toml::de::Error> {
    Value::Table(table.clone()).try_into()
}

/// The error of a config that does not deserialise with its overrides, naming the override at
/// fault: the one without which it deserialises; else, when the file alone is fine, the first
/// after which it fails; else the file's own error.
fn blame<T: DeserializeOwned>(
    text: &str,
    file: &Table,
    overrides: &[Override],
    error: toml::de::Error,
) -> OverrideError {
    let rejected = |o: &Override, e: &toml::de::Error| OverrideError::Rejected {
        arg: o.to_string(),
        message: e.to_string().trim_end().replace('\n', " "),
    };
    for (i, o) in overrides.iter().enumerate() {
        let others: Vec<Override> = [&overrides[..i], &overrides[i + 1..]].concat();
        if overridden(file, &others).is_ok_and(|t| deserialize::<T>(&t).is_ok()) {
            return rejected(o, &error);
        }
    }
    if let Err(e) = toml::from_str::<T>(text) {
        return OverrideError::File(e);
    }
    let mut table = file.clone();
    for o in overrides {
        if o.apply(&mut table).is_ok()
            && let Err(e) = deserialize::<T>(&table)
        {
            return rejected(o, &e);
        }
    }
    OverrideError::File(error)
}

/// `overrides` as `bomf run` arguments (`--set 'KEY=VALUE'`, quoted for a POSIX shell where
/// needed), e.g. for a command a user can paste.
pub fn as_args(overrides: &[Override]) -> String {
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.=/:,+@%".contains(c))
    };
    overrides
        .iter()
        .map(|o| {
            let arg = o.to_string();
            if plain(&arg) {
                format!(" --set {arg}")
            } else {
                format!(" --set '{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        seed: u64,
        #[serde(default)]
        name: String,
        fusion: Fusion,
        #[serde(default)]
        extra: Option<Extra>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Fusion {
        budget: usize,
        #[serde(default)]
        rate: f64,
        #[serde(default)]
        on: bool,
        #[serde(default)]
        kernel: String,
        #[serde(default)]
        sizes: Vec<usize>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        depth: i64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Extra {
        note: String,
    }

    const FILE: &str = "# a comment\nseed = 1\n\n[fusion]\nbudget = 10 # evaluations\n";

    fn set(args: &[&str]) -> Vec<Override> {
        args.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn parse_with(args: &[&str]) -> Result<Config> {
        parse::<Config>(FILE, &set(args)).map(|p| p.config)
    }

    #[test]
    fn values_are_toml_and_a_bare_word_is_a_string() {
        let value = |arg: &str| arg.parse::<Override>().unwrap().value().clone();
        assert_eq!(value("a=40"), Value::Integer(40));
        assert_eq!(value("a=-3"), Value::Integer(-3));
        assert_eq!(value("a=2e-4"), Value::Float(2e-4));
        assert_eq!(value("a=true"), Value::Boolean(true));
        assert_eq!(value("a=\"x y\""), Value::String("x y".into()));
        assert_eq!(value("a='lit'"), Value::String("lit".into()));
        assert_eq!(value("a=cosine"), Value::String("cosine".into()));
        assert_eq!(value("a=cuda:0"), Value::String("cuda:0".into()));
        assert_eq!(value("a=/opt/x y/m"), Value::String("/opt/x y/m".into()));
        assert_eq!(value("a=2024-01-02"), Value::String("2024-01-02".into()));
        assert_eq!(value("a="), Value::String(String::new()));
        assert_eq!(
            value("a=[1, 2]"),
            Value::Array(vec![Value::Integer(1), Value::Integer(2)])
        );
        // Split at the first `=`: the value may hold more.
        assert_eq!(value("a=x=y"), Value::String("x=y".into()));
        assert_eq!(value(" a.b = 3 ").to_string(), "3");
    }

    #[test]
    fn malformed_arguments_keys_and_values_are_refused() {
        let err = |arg: &str| arg.parse::<Override>().unwrap_err().to_string();
        assert!(err("budget").contains("not KEY=VALUE"), "{}", err("budget"));
        for key in ["", "a..b", ".a", "a.", "a b", "\"a\".b"] {
            let e = err(&format!("{key}=1"));
            assert!(e.contains("is not a key"), "{key}: {e}");
        }
        let e = err("a=[1, 2");
        assert!(e.contains("a=[1, 2: not a TOML value"), "{e}");
        let e = err("a=\"open");
        assert!(e.contains("not a TOML value"), "{e}");
        let e = err("fusion={ budget = 3 }");
        assert!(
            e.contains("fusion: a --set gives one value, not a table"),
            "{e}"
        );
        let e = err("a=[{ b = 1 }]");
        assert!(e.contains("not a table"), "{e}");
    }

    #[test]
    fn overrides_set_nested_keys_of_every_type_in_order() {
        let c = parse_with(&[
            "seed=7",
            "name=run-a",
            "fusion.budget=3",
            "fusion.rate=0.5",
            "fusion.on=true",
            "fusion.kernel=matern52_gamma",
            "fusion.sizes=[4, 8]",
            "fusion.inner.depth=-2",
            "extra.note=\"quoted # not a comment\"",
            "fusion.budget=4",
        ])
        .unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(c.name, "run-a");
        let f = &c.fusion;
        assert_eq!((f.budget, f.rate, f.on), (4, 0.5, true), "the later wins");
        assert_eq!(f.kernel, "matern52_gamma");
        assert_eq!(f.sizes, [4, 8]);
        // Missing tables are created on the way.
        assert_eq!(f.inner, Some(Inner { depth: -2 }));
        assert_eq!(c.extra.unwrap().note, "quoted # not a comment");
        // An integer where a float is expected is fine, as in the file.
        assert_eq!(parse_with(&["fusion.rate=1"]).unwrap().fusion.rate, 1.0);
    }

    #[test]
    fn an_unknown_key_or_a_wrong_type_is_refused_naming_the_override() {
        let e = parse_with(&["seed=2", "fusion.budgett=3"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--set fusion.budgett=3: "), "{e}");
        assert!(e.contains("unknown field `budgett`"), "{e}");
        let e = parse_with(&["nope=1"]).unwrap_err().to_string();
        assert!(e.starts_with("--set nope=1: unknown field `nope`"), "{e}");
        let e = parse_with(&["fusion.budget=many"]).unwrap_err().to_string();
        assert!(
            e.starts_with("--set fusion.budget=\"many\": invalid type"),
            "{e}"
        );
        // Replacing a table by a value is a type error of the config, naming it.
        let e = parse_with(&["fusion=3"]).unwrap_err().to_string();
        assert!(e.starts_with("--set fusion=3: "), "{e}");
        // A path through a value.
        let e = parse_with(&["seed.x=1"]).unwrap_err().to_string();
        assert_eq!(
            e,
            "seed.x: `seed` is a value, not a table, so it has no keys"
        );
        let e = parse_with(&["fusion.budget.max=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`fusion.budget` is a value"), "{e}");
    }

    #[test]
    fn an_override_can_supply_what_the_file_lacks_and_the_file_keeps_its_errors() {
        let without_budget = "seed = 1\n[fusion]\nrate = 0.1\n";
        let c: Config = parse(without_budget, &set(&["fusion.budget=2"]))
            .unwrap()
            .config;
        assert_eq!(c.fusion.budget, 2);
        // The culprit is found even when the file alone does not deserialise.
        let e = parse::<Config>(without_budget, &set(&["fusion.budget=2", "fusion.x=1"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--set fusion.x=1: "), "{e}");
        // Without overrides the file's own errors say where (toml's message, with the line).
        let e = parse::<Config>("seed = 1\n[fusion]\nbudgt = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("budgt"), "{e}");
        let e = parse::<Config>("seed = 1\n[fusion]\nbudgt = 1\n", &set(&["seed=2"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("budgt"), "{e}");
        let e = parse::<Config>("seed = = 1\n", &set(&["seed=2"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn the_recorded_text_is_the_file_or_the_overridden_config_headed_by_its_overrides() {
        let plain = parse::<Config>(FILE, &[]).unwrap();
        assert_eq!(plain.text, FILE);
        let args = set(&["fusion.kernel=rbf", "seed=3"]);
        let p = parse::<Config>(FILE, &args).unwrap();
        assert!(
            p.text.starts_with(
                "# The run config with these command-line overrides applied:\n\
                 # --set fusion.kernel=\"rbf\"\n# --set seed=3\n"
            ),
            "{}",
            p.text
        );
        // The recorded text is the config: read back without overrides, it is the same.
        let again = parse::<Config>(&p.text, &[]).unwrap();
        assert_eq!(again.config, p.config);
        assert_eq!(again.table, p.table);
        assert_eq!(again.config.seed, 3);
        // Deterministic: the same overrides give the same text, others another.
        assert_eq!(effective_text(FILE, &args).unwrap(), p.text);
        let other = effective_text(FILE, &set(&["fusion.kernel=rbf", "seed=4"])).unwrap();
        assert_ne!(other, p.text);
    }

    #[test]
    fn seed_is_shorthand_for_set_seed() {
        let all = with_seed(Some(5), &set(&["fusion.budget=2"])).unwrap();
        assert_eq!(all, set(&["seed=5", "fusion.budget=2"]));
        assert_eq!(with_seed(None, &[]).unwrap(), []);
        let e = with_seed(Some(5), &set(&["seed=6"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--seed 5 and --set seed="), "{e}");
        assert!(with_seed(Some(u64::MAX), &[]).is_err());
    }

    #[test]
    fn overrides_render_as_arguments_a_shell_reads_back() {
        let args = set(&["seed=3", "model.path=/opt/a b/m", "x=[1, 2]", "y=it's"]);
        assert_eq!(
            as_args(&args),
            " --set seed=3 --set 'model.path=\"/opt/a b/m\"' --set 'x=[1, 2]' \
             --set 'y=\"it'\\''s\"'"
        );
    }
}
