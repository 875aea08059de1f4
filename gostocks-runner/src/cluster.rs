//! Timely clusters: the configuration of one process of `--processes` processes.

use anyhow::Context;

use crate::cli::ClusterArgs;

/// The largest hostfile read: a line per process leaves room for thousands.
const MAX_HOSTFILE_BYTES: u64 = 64 << 10;

/// The UTF-8 text of `path`, refused if it is over `max` bytes.
fn read_capped(path: &std::path::Path, max: u64) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_string(&mut text)?;
    anyhow::ensure!(
        text.len() as u64 <= max,
        "it is over {max} bytes: a hostfile holds one host:port per line"
    );
    Ok(text)
}

/// The first port of the default addresses (timely's own default).
const DEFAULT_PORT: u16 = 2101;

/// The timely configuration of `workers` threads in this process, alone or as one process of
/// the cluster `cluster` describes.
pub fn timely_config(workers: usize, cluster: &ClusterArgs) -> anyhow::Result<timely::Config> {
    anyhow::ensure!(workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(cluster.processes >= 1, "--processes must be at least 1");
    anyhow::ensure!(
        cluster.process < cluster.processes,
        "--process {} is not below --processes {}: processes are numbered 0 to {}",
        cluster.process,
        cluster.processes,
        cluster.processes - 1
    );
    if cluster.processes == 1 {
        anyhow::ensure!(
            cluster.hostfile.is_none(),
            "--hostfile needs --processes N (N > 1)"
        );
        return Ok(gostocks_core::batch::timely_config(workers));
    }
    let addresses = addresses(cluster)?;
    Ok(timely::Config {
        communication: timely::CommunicationConfig::Cluster {
            threads: workers,
            process: cluster.process,
            addresses,
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    })
}

/// A timely cluster does not re-form without a process it lost: when a process dies, timely's
/// network threads in the others panic ("timely communication error"), and their workers would
/// wait forever. After this, any panic in this process is reported and ends the process with
/// status 70, so that its supervisor restarts it and, with the others, the cluster. Nothing is
/// lost: what is committed to Kafka has been written by every process's sinks.
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(
            panic = %info,
            "exiting: a thread panicked; if it was a timely communication error, the cluster lost a process (a connection closed), and timely does not re-form a cluster, so start every process again"
        );
        std::process::exit(70);
    }));
}

/// The `--processes` addresses: the hostfile's first lines, or 127.0.0.1 from port 2101 on.
fn addresses(cluster: &ClusterArgs) -> anyhow::Result<Vec<String>> {
    let Some(path) = &cluster.hostfile else {
        return Ok((0..cluster.processes)
            .map(|i| format!("127.0.0.1:{}", usize::from(DEFAULT_PORT) + i))
            .collect());
    };
    let text = read_capped(path, MAX_HOSTFILE_BYTES)
        .with_context(|| format!("reading --hostfile {}", path.display()))?;
    let hosts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .take(cluster.processes)
        .collect();
    anyhow::ensure!(
        hosts.len() == cluster.processes,
        "--hostfile {} lists {} addresses; --processes {} needs one per process (host:port per line)",
        path.display(),
        hosts.len(),
        cluster.processes
    );
    for host in &hosts {
        anyhow::ensure!(
            host.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
            "--hostfile {}: `{}` is not host:port",
            path.display(),
            gostocks_core::symbol::excerpt(host)
        );
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostfile_gives_the_cluster_its_addresses_and_mistakes_are_named() {
        let dir = std::env::temp_dir().join(format!("gostocks-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hostfile = dir.join("hosts");
        std::fs::write(
            &hostfile,
            "# the cluster\nnode-a:2101\n\nnode-b:2101 # second\nnode-c:2101\n",
        )
        .unwrap();
        let cluster = |processes, process| ClusterArgs {
            processes,
            process,
            hostfile: Some(hostfile.clone()),
        };
        assert_eq!(
            addresses(&cluster(2, 1)).unwrap(),
            ["node-a:2101", "node-b:2101"]
        );
        let err = timely_config(1, &cluster(4, 0)).unwrap_err().to_string();
        assert!(err.contains("lists 3 addresses"), "{err}");
        let err = timely_config(1, &cluster(2, 2)).unwrap_err().to_string();
        assert!(
            err.contains("--process 2 is not below --processes 2"),
            "{err}"
        );
        std::fs::write(&hostfile, "node-a\n").unwrap();
        let err = timely_config(1, &cluster(1 + 1, 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lists 1 addresses"), "{err}");
        let err = timely_config(
            1,
            &ClusterArgs {
                processes: 1,
                process: 0,
                hostfile: Some(hostfile),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--hostfile needs --processes"), "{err}");
        let big = dir.join("big");
        std::fs::write(&big, "node-a:2101\n".repeat(10_000)).unwrap();
        let err = format!(
            "{:#}",
            addresses(&ClusterArgs {
                processes: 2,
                process: 0,
                hostfile: Some(big),
            })
            .unwrap_err()
        );
        assert!(err.contains("over 65536 bytes"), "{err}");
        assert_eq!(
            addresses(&ClusterArgs {
                processes: 2,
                process: 0,
                hostfile: None
            })
            .unwrap(),
            ["127.0.0.1:2101", "127.0.0.1:2102"]
        );
    }
}
