//! # gostocks-proto
//!
//! The wire contract of gostocks (`proto/stock.proto`, package `gostocks.v1`), generated at build
//! time without a system `protoc`, and the conversions between its messages and
//! [`gostocks_core`] types.
//!
//! ```
//! use gostocks_proto::v1;
//! use prost::Message;
//!
//! let tick: gostocks_core::Tick = serde_json::from_str(
//!     r#"{"symbol":"BTCUSDT","price":"29000.12","size":"0.0015","time_ns":1,"seq":2}"#,
//! ).unwrap();
//! let wire = v1::Tick::from(&tick).encode_to_vec();
//! let back = gostocks_core::Tick::try_from(v1::Tick::decode(wire.as_slice()).unwrap()).unwrap();
//! assert_eq!(back, tick);
//! ```
#![deny(missing_docs)]

mod convert;

pub use convert::{ConversionError, quote_to_wire};

/// Generated messages and services of package `gostocks.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("gostocks.v1");
}

/// The encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gostocks_descriptor.bin"));

/// The README's code, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
