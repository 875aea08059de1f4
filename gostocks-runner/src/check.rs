//! `gostocks check`: end-to-end verification of a running pipeline. A probe tick goes into the
//! tick topic; the check waits for it in Redis and over REST and prints each hop's latency. It
//! exits non-zero naming the hop where the flow broke.

use std::time::{Duration, Instant};

use anyhow::Context;
use gostocks_connectors::kafka::{KafkaConfig, TickProducer};
use gostocks_connectors::redis::RedisSink;
use gostocks_core::Tick;

use crate::cli::CheckArgs;

/// Runs `gostocks check`.
pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

fn hop(name: &str, started: Instant) {
    println!(
        "ok   {name:<28} {:>8.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}

async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("clock")?;
    // A symbol of its own, so the probe is found whatever else flows.
    let symbol = format!("CHECK-{:X}", now.as_nanos() as u64 & 0xffff_ffff_ffff);
    let price = "1.2345";
    let tick = Tick::new(
        symbol.clone(),
        price.parse()?,
        "1".parse()?,
        now.as_nanos() as i64,
        0,
    )
    .with_source("check");
    let deadline = Instant::now() + Duration::from_nanos(args.timeout.ns());
    println!(
        "probe: {symbol} at {price} through {} → redis → REST",
        args.topic
    );

    let started = Instant::now();
    let producer = TickProducer::new(
        &KafkaConfig::new(&args.kafka, "gostocks-check")
            .with_options(args.kafka_options.resolve()?),
        args.tick_encoding,
    )
    .context("FAILED hop kafka: cannot create a producer")?;
    let sent = tokio::time::timeout(
        Duration::from_nanos(args.timeout.ns()),
        producer.send(&args.topic, &tick),
    )
    .await;
    match sent {
        Ok(Ok(_)) => hop("kafka (produce, acked)", started),
        Ok(Err(e)) => anyhow::bail!(
            "FAILED hop kafka: producing to {} at {}: {e}; is the broker up?",
            args.topic,
            args.kafka
        ),
        Err(_) => anyhow::bail!(
            "FAILED hop kafka: no acknowledgement from {} within the timeout; is the broker up?",
            args.kafka
        ),
    }

    if let Some(url) = &args.redis {
        let redis = RedisSink::connect(url, &args.redis_prefix)
            .await
            .context("FAILED hop redis: cannot connect")?;
        loop {
            let got = redis.read_prices(&[symbol.as_str()]).await;
            if let Ok(v) = &got
                && v.first()
                    .is_some_and(|p| p.as_ref().is_some_and(|(p, _)| p == price))
            {
                hop("dataflow → redis price", started);
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "FAILED hop dataflow → redis: {}{}{symbol} did not appear within the timeout; is `gostocks run --kafka ... --redis ...` consuming {}?",
                args.redis_prefix,
                gostocks_connectors::redis::PRICE_PREFIX,
                args.topic
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let url = format!("{}/price/{symbol}", args.http.trim_end_matches('/'));
    anyhow::ensure!(
        url.starts_with("http://") || url.starts_with("https://"),
        "--http must be an http:// URL"
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_nanos(args.timeout.ns()))
        .build()?;
    loop {
        let answer = http_get(&client, &url).await;
        if let Ok((200, body)) = &answer
            && body.contains(&format!("\"time_ns\":{}", tick.time_ns))
        {
            hop("REST /price", started);
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "FAILED hop REST: {url} did not answer the probe within the timeout (last: {answer:?}); is the gateway up at {}?",
            args.http
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("the pipeline is healthy");
    Ok(())
}

/// A GET with a per-request bound: (status, body). No redirects, no proxy: the probe asks the
/// gateway itself.
async fn http_get(client: &reqwest::Client, url: &str) -> anyhow::Result<(u16, String)> {
    let answer = client.get(url).send().await?;
    let status = answer.status().as_u16();
    Ok((status, answer.text().await?))
}
