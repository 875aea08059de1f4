//! # gostocks-connectors
//!
//! The systems gostocks talks to, one folder each: [`file`](mod@file) (recorded ticks in every supported
//! format), [`kafka`], [`redis`], [`postgres`], and market [`websocket`]s (Finnhub, Alpaca, Binance). Each has its `config`, and a `source` and/or
//! `sink`. Errors say whether retrying can help ([`Error::is_transient`]). What one record may cost
//! (its length, what its rejection echoes, its time range) is bounded the same way for every
//! reader: see [`limits`].
#![forbid(missing_docs)]

pub mod error;
pub mod file;
pub mod kafka;
pub mod limits;
pub mod postgres;
pub mod redis;
pub mod websocket;

pub use error::Error;

/// The README's code, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
