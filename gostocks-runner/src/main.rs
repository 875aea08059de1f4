//! `gostocks`: real-time market monitoring on timely/differential dataflow.
//!
//! `main` only wires: parse the command line, install tracing, dispatch.

mod alerts;
mod analyze;
mod bench;
mod bench_pipeline;
mod check;
mod cli;
mod cluster;
mod config;
mod counters;
mod dataflow;
mod event_time;
mod grpc;
mod http;
mod ingest;
mod intake;
mod kafka_input;
mod kafka_status;
mod metrics;
mod notify;
mod read_model;
mod recording;
mod replay;
mod run;
mod serve;
mod shutdown;
mod simulate;
mod sinks;
mod state;
mod telemetry;
mod users;

/// mimalloc keeps freed pages for reuse: the dataflow hands large message buffers back and
/// forth, and the system allocator returned them to the kernel and faulted them in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = config::parse()?;
    telemetry::init(cli.log.as_deref(), cli.log_format);
    match cli.command {
        cli::Command::Run(args) => run::run(*args),
        cli::Command::Simulate(args) => simulate::simulate(args),
        cli::Command::Analyze(args) => analyze::analyze(args),
        cli::Command::Bench(args) => bench::bench(args),
        cli::Command::Replay(args) => replay::replay(args),
        cli::Command::Users(args) => users::users(args),
        cli::Command::Migrate(args) => users::migrate(args),
        cli::Command::Check(args) => check::check(args),
        cli::Command::BenchPipeline(args) => bench_pipeline::bench_pipeline(args),
        cli::Command::Ingest(args) => ingest::ingest(args),
        cli::Command::Config(args) => match args.command {
            cli::ConfigCommand::Show { command } => {
                print!("{}", config::show(command)?);
                Ok(())
            }
            cli::ConfigCommand::Check { file } => {
                config::check_file(&file)?;
                println!("{}: ok", file.display());
                Ok(())
            }
        },
        cli::Command::Completions { shell } => {
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "gostocks", &mut std::io::stdout());
            Ok(())
        }
    }
}
