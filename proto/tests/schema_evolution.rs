//! A `Tick` written by an older and by a newer version of the contract decodes both ways without
//! losing the fields the reader knows.

use gostocks_proto::v1;
use prost::Message;

/// The first version of `Tick`: no side, trade id or conditions.
#[derive(Clone, PartialEq, prost::Message)]
struct TickV0 {
    #[prost(string, tag = "1")]
    symbol: String,
    #[prost(message, optional, tag = "2")]
    price: Option<v1::Decimal>,
    #[prost(message, optional, tag = "3")]
    size: Option<v1::Decimal>,
    #[prost(int64, tag = "4")]
    time_ns: i64,
    #[prost(uint64, tag = "5")]
    seq: u64,
    #[prost(string, tag = "6")]
    source: String,
}

/// A future version: today's fields plus a venue timestamp.
#[derive(Clone, PartialEq, prost::Message)]
struct TickV2 {
    #[prost(string, tag = "1")]
    symbol: String,
    #[prost(message, optional, tag = "2")]
    price: Option<v1::Decimal>,
    #[prost(message, optional, tag = "3")]
    size: Option<v1::Decimal>,
    #[prost(int64, tag = "4")]
    time_ns: i64,
    #[prost(uint64, tag = "5")]
    seq: u64,
    #[prost(string, tag = "6")]
    source: String,
    #[prost(enumeration = "v1::Side", optional, tag = "7")]
    side: Option<i32>,
    #[prost(uint64, optional, tag = "8")]
    trade_id: Option<u64>,
    #[prost(string, repeated, tag = "9")]
    conditions: Vec<String>,
    #[prost(int64, optional, tag = "10")]
    venue_time_ns: Option<i64>,
}

fn dec(mantissa: i64, scale: u32) -> Option<v1::Decimal> {
    Some(v1::Decimal { mantissa, scale })
}

#[test]
fn older_writer_newer_reader() {
    let old = TickV0 {
        symbol: "AAPL".into(),
        price: dec(58533, 2),
        size: dec(100, 0),
        time_ns: 1_340_285_400_000_000_000,
        seq: 7,
        source: "lobster".into(),
    };
    let now = v1::Tick::decode(old.encode_to_vec().as_slice()).expect("v1 reads v0");
    assert_eq!(
        (now.symbol.as_str(), now.time_ns, now.seq),
        ("AAPL", old.time_ns, 7)
    );
    assert_eq!((now.price, now.size), (old.price, old.size));
    assert_eq!(
        (now.side, now.trade_id, now.conditions.len()),
        (None, None, 0)
    );
    let back = TickV0::decode(now.encode_to_vec().as_slice()).expect("v0 reads v1");
    assert_eq!(back, old);
}

#[test]
fn newer_writer_older_reader() {
    let new = TickV2 {
        symbol: "BTCUSDT".into(),
        price: dec(2_900_012, 2),
        size: dec(15, 4),
        time_ns: 1_723_075_200_000_000_000,
        seq: 3,
        source: "binance".into(),
        side: Some(v1::Side::Sell as i32),
        trade_id: Some(3_700_000_001),
        conditions: vec!["m".into()],
        venue_time_ns: Some(1_723_075_199_999_000_000),
    };
    let now = v1::Tick::decode(new.encode_to_vec().as_slice()).expect("v1 reads v2");
    assert_eq!(now.trade_id, Some(3_700_000_001));
    assert_eq!(now.side, Some(v1::Side::Sell as i32));
    assert_eq!(now.conditions, vec!["m".to_string()]);
    let core = gostocks_core::Tick::try_from(now.clone()).expect("valid tick");
    assert_eq!(core.price.to_string(), "29000.12");
    assert_eq!(core.size.to_string(), "0.0015");
    // The field v1 does not know is skipped, and the ones it knows survive a v1 -> v2 trip.
    let again = TickV2::decode(now.encode_to_vec().as_slice()).expect("v2 reads v1");
    assert_eq!(
        TickV2 {
            venue_time_ns: None,
            ..new
        },
        again
    );
}
