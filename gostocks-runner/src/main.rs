//! `gostocks`: real-time market monitoring on timely/differential dataflow.
//!
//! `main` only wires: parse the command line, install tracing, dispatch.

mod alerts;
mod analyze;
mod backfill;
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
mod quote_feed;
mod quotes;
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

/// Turns transparent huge pages off for this process (unless `MIMALLOC_ALLOW_THP` says
/// otherwise). mimalloc gives memory that stayed free for a while back to the kernel; with huge
/// pages, touching any of it again faults in, and zeroes, a whole 2 MiB page. An alert storm
/// through `analyze` (4.1 M events) took 6,579 such faults, 13 GB of zeroing and a quarter of
/// the worker's time; with 4 KiB pages only what is touched is zeroed. mimalloc reads the same
/// setting (`MIMALLOC_ALLOW_THP=0`) from the environment, but only the environment: a prctl is
/// the one way to choose it for the user.
fn no_huge_page_churn() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // Best effort: a kernel without the prctl keeps its default.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}

/// mimalloc keeps freed pages for reuse: the dataflow hands large message buffers back and
/// forth, and the system allocator returned them to the kernel and faulted them in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    no_huge_page_churn();
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
