//! The tool describing itself: `help`, `completions` and `man`, all from the clap definitions.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

/// `atl-token help [COMMAND]`: as `--help`, for the tool or one subcommand.
pub fn help(command: Option<&str>) -> Result<()> {
    let mut cli = Cli::command();
    let mut target = match command {
        None => cli,
        Some(name) => match cli.find_subcommand_mut(name) {
            Some(sub) => sub.clone().bin_name(format!("atl-token {name}")),
            None => {
                let names: Vec<&str> = cli.get_subcommands().map(clap::Command::get_name).collect();
                return Err(Exit::usage(format!(
                    "there is no command '{name}': the commands are {}",
                    names.join(", ")
                ))
                .into());
            }
        },
    };
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

/// `atl-token man`: the manual page, in roff, on stdout.
pub fn man() -> Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    std::io::stdout().write_all(&out)?;
    Ok(())
}
