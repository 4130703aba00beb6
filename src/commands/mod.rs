//! One module per subcommand: each reads its arguments and the settings, and calls the
//! layers below. Nothing below imports a command, and commands do not import each other.

pub mod api;
pub mod docs;
pub mod exec;
pub mod init;
pub mod keygen;
pub mod login;
pub mod logout;
pub mod print;
pub mod profiles;
pub mod psoxy;
pub mod push;
pub mod refresh;
pub mod sites;
pub mod status;
pub mod trust;
