//! `gostocks`: real-time market monitoring on timely/differential dataflow.
//!
//! `main` only wires: parse the command line, install tracing, dispatch.

mod analyze;
mod bench;
mod cli;
mod dataflow;
mod grpc;
mod http;
mod ingest;
mod kafka_feed;
mod recording;
mod replay;
mod run;
mod simulate;
mod state;
mod telemetry;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    telemetry::init(cli.log.as_deref());
    match cli.command {
        cli::Command::Run(args) => run::run(args),
        cli::Command::Simulate(args) => simulate::simulate(args),
        cli::Command::Analyze(args) => analyze::analyze(args),
        cli::Command::Bench(args) => bench::bench(args),
        cli::Command::Replay(args) => replay::replay(args),
        cli::Command::Ingest(args) => ingest::ingest(args),
    }
}
