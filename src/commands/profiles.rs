//! `atl-token profiles`: the profiles in atl-token's folder, each with its health in one line.

use anyhow::Result;

use crate::checkup;
use crate::cli::ProfilesArgs;
use crate::config::{self, Lookup};
use crate::exit::Exit;

/// How the settings straight in atl-token's folder (no profile) are listed.
const DEFAULT: &str = "(default)";

pub fn run(lookup: &Lookup, args: &ProfilesArgs) -> Result<()> {
    let dir = lookup.config_dir().ok_or_else(|| {
        Exit::usage("neither HOME nor XDG_CONFIG_HOME is set, so there is no folder to look for profiles in")
    })?;
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join(".env").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| lookup.profile_env_file(name, "a profile").is_ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if dir.join(".env").is_file() {
        names.insert(0, DEFAULT.to_owned());
    }
    if names.is_empty() {
        eprintln!("no profiles in {}: make one with `atl-token init --profile NAME`", dir.display());
        return Ok(());
    }
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for name in &names {
        let lookup = if name == DEFAULT {
            Lookup { env_file_flag: Some(dir.join(".env")), ..lookup.clone() }
        } else {
            Lookup { env_file_flag: None, profile_flag: Some(name.clone()), ..lookup.clone() }
        };
        let line = match config::load(&lookup, None).and_then(|c| checkup::check(&c, args.warn_days)) {
            Ok((_, line)) => line,
            Err(e) => format!("ERROR: {e:#}"),
        };
        let line = match name.as_str() {
            DEFAULT => line,
            name => line.replace("`atl-token login`", &format!("`atl-token --profile {name} login`")),
        };
        out.push_str(&format!("{name:<width$}  {line}\n"));
    }
    crate::output::write_out(out.as_bytes())
}
