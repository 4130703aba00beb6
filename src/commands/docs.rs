//! The tool describing itself: `help`, `completions` and `man`, all from the clap definitions.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

/// `atl-token help [COMMAND]`: as `--help`, for the tool or one subcommand.
pub fn help(command: Option<&str>) -> Result<()> {
    let mut target = topic(command)?;
    write!(std::io::stdout(), "{}", target.render_long_help())?;
    Ok(())
}

/// `atl-token completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cli = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cli, "atl-token", &mut out);
    std::io::stdout().write_all(&out)?;
    Ok(())
}

/// `atl-token man [COMMAND]`: the manual page, in roff, on stdout. The tool's page lists the
/// commands as `atl-token-NAME(1)`; `atl-token man NAME` gives that page.
pub fn man(command: Option<&str>) -> Result<()> {
    let page = topic(command)?;
    let page = match command {
        Some(name) => page.name(format!("atl-token-{name}")),
        None => page,
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    std::io::stdout().write_all(&out)?;
    Ok(())
}

/// The tool's command definition, or one subcommand's, named as it is run.
fn topic(command: Option<&str>) -> Result<clap::Command> {
    let mut cli = Cli::command();
    let Some(name) = command else { return Ok(cli) };
    match cli.find_subcommand_mut(name) {
        Some(sub) => Ok(sub.clone().bin_name(format!("atl-token {name}"))),
        None => {
            let names: Vec<&str> = cli.get_subcommands().map(clap::Command::get_name).collect();
            Err(Exit::usage(format!("there is no command '{name}': the commands are {}", names.join(", ")))
                .into())
        }
    }
}
