//! atl-token: gets, keeps and hands out OAuth tokens for Atlassian products.

mod api_base;
#[cfg(feature = "aws")]
mod aws_sdk;
mod binding;
mod callback;
mod checkup;
mod cli;
mod commands;
mod config;
mod duration;
mod envfile;
mod exit;
#[cfg(feature = "gcp")]
mod gcp_sdk;
mod handoff;
mod health;
mod hook;
mod hot;
mod http;
mod oauth;
mod oauth1;
mod output;
mod paging;
mod provider;
mod psoxy;
mod renew;
mod safe_path;
mod secret;
mod session;
mod shell;
mod sites;
mod store;
mod text;
mod token;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, PsoxyCommand, StoreCommand};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `print` on a fresh token, before anything else is built.
    if hot::print(&args) {
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) if exit::Exit::is_silent(&err) => exit::code_for(&err).into(),
        Err(err) => {
            // Errors may quote a server: nothing in them may act on the terminal.
            eprintln!("atl-token: error: {}", text::printable(&format!("{err:#}")));
            exit::code_for(&err).into()
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.verbose {
        http::log_requests();
    }
    let lookup = || config::Lookup::new(cli.env_file.as_deref(), cli.profile.as_deref());
    let config = || config::load(&lookup(), cli.token_file.as_deref());
    match &cli.command {
        Command::Login(args) => commands::login::run(&config()?, args),
        Command::Refresh(args) => commands::refresh::run(&config()?, args),
        Command::Print(args) => commands::print::run(&config()?, args),
        Command::Api(args) => commands::api::run(&config()?, args),
        Command::Sites(args) => commands::sites::run(&config()?, args),
        Command::Exec(args) => commands::exec::run(&config()?, args),
        Command::Status(args) => commands::status::run(&config()?, args),
        Command::Logout(args) => commands::logout::run(&config()?, args),
        // These need no settings: they make them, list them, or describe the tool.
        Command::Store(StoreCommand::Push(args)) => commands::push::run(&config()?, args),
        Command::Psoxy(PsoxyCommand::Push(args)) => commands::psoxy::push(config()?, args),
        Command::Psoxy(PsoxyCommand::Status(args)) => commands::psoxy::status(&config()?, args),
        Command::Keygen(args) => commands::keygen::run(args),
        Command::Init(args) => commands::init::run(&lookup(), args),
        Command::Profiles(args) => commands::profiles::run(&lookup(), args),
        Command::Trust(args) => commands::trust::run(&lookup(), args),
        Command::Completions(args) => commands::docs::completions(args.shell),
        Command::Man(args) => commands::docs::man(args.command.as_deref()),
        Command::Help(args) => commands::docs::help(args.command.as_deref()),
    }
}
