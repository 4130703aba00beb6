//! The tool describing itself: `help`, `completions` and `man`, all from the clap definition
//! (the last two made from it at build time, see build.rs).

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, Shell};
use crate::exit::Exit;

/// `atl-token help [COMMAND]`: as `--help`, for the tool or one subcommand.
pub fn help(command: Option<&str>) -> Result<()> {
    let mut target = topic(command)?;
    write!(std::io::stdout(), "{}", target.render_long_help())?;
    Ok(())
}

// `COMPLETIONS` and `MAN_PAGES`, made by build.rs from the same definition.
include!(concat!(env!("OUT_DIR"), "/docs.rs"));

/// `atl-token completions SHELL`: the completion script on stdout.
pub fn completions(shell: Shell) -> Result<()> {
    let script = COMPLETIONS.iter().find(|(s, _)| *s == shell).map(|(_, text)| *text).unwrap_or_default();
    crate::output::write_out(script.as_bytes())
}

/// `atl-token man [COMMAND]`: the manual page, in roff, on stdout. The tool's page lists the
/// commands as `atl-token-NAME(1)`; `atl-token man NAME` gives that page.
pub fn man(command: Option<&str>) -> Result<()> {
    let page = MAN_PAGES.iter().find(|(name, _)| *name == command).map(|(_, page)| *page);
    let page = page.ok_or_else(|| {
        no_such_command(command.unwrap_or_default(), MAN_PAGES.iter().filter_map(|(n, _)| *n))
    })?;
    crate::output::write_out(page.as_bytes())
}

/// The tool's command definition, or one subcommand's, named as it is run.
fn topic(command: Option<&str>) -> Result<clap::Command> {
    let mut cli = Cli::command();
    let Some(name) = command else { return Ok(cli) };
    match cli.find_subcommand_mut(name) {
        Some(sub) => Ok(sub.clone().bin_name(format!("atl-token {name}"))),
        None => Err(no_such_command(name, cli.get_subcommands().map(clap::Command::get_name))),
    }
}

/// Exit 2 for a `help` or `man` topic that is no command, listing the commands.
fn no_such_command<'a>(name: &str, commands: impl Iterator<Item = &'a str>) -> anyhow::Error {
    let names: Vec<&str> = commands.collect();
    Exit::usage(format!("there is no command '{name}': the commands are {}", names.join(", "))).into()
}
