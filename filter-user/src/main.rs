//! The `borderfilter` binary: the daemon and the CLI in one (see `filter_user::cli`).

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = filter_user::cli::Cli::parse();
    std::process::exit(filter_user::cli::execute(cli));
}
