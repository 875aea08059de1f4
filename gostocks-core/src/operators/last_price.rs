//! `last_price`: the latest trade per symbol, as a differential collection (to arrange, or join
//! against).

use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::generic::operator::Operator;

use super::sequence::{Point, Sequenced};
use crate::symbol::Symbol;

/// The latest trade of every symbol.
pub trait LastPrice<'scope> {
    /// A collection holding exactly one `(symbol, point)` per symbol seen: the greatest
    /// `(t, seq)` so far. Each sequenced trade replaces its predecessor (`+new, -prev`); within one
    /// timestamp the chain telescopes, so consolidated output changes once per symbol and time.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::{LastPrice, Sequence};
    /// use gostocks_core::{Symbol, Trade};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let t = |time_ns, price: &str| Trade::new(
    ///     Symbol::new("MSFT").unwrap(), time_ns, 0, price.parse().unwrap(), "1".parse().unwrap(),
    /// );
    /// let captured = timely::example(move |scope| {
    ///     let last = vec![t(3, "31"), t(1, "30")].to_stream(scope).sequence(1).last_price();
    ///     let _index = last.clone().arrange_by_key(); // for other operators to join against
    ///     last.consolidate().inner.capture()
    /// });
    /// let out: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// // At t=1 the price is 30; at t=3 it is replaced by 31.
    /// let show = |((_, p), t, d): &((Symbol, gostocks_core::operators::Point), u64, isize)| (p.price.to_string(), *t, *d);
    /// let changes: Vec<_> = out.iter().map(show).collect();
    /// assert_eq!(changes, [("30".into(), 1, 1), ("30".into(), 3, -1), ("31".into(), 3, 1)]);
    /// ```
    fn last_price(self) -> VecCollection<'scope, u64, (Symbol, Point)>;
}

impl<'scope> LastPrice<'scope> for StreamVec<'scope, u64, Sequenced> {
    fn last_price(self) -> VecCollection<'scope, u64, (Symbol, Point)> {
        self.unary(
            timely::dataflow::channels::pact::Pipeline,
            "LastPrice",
            move |_cap, _info| {
                let mut builder = Vec::with_capacity(2);
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        // An empty stamp carries no time and no progress claim; nothing to attribute.
                        let Some(cap) = cap.retain_least(output.output_index()) else {
                            return;
                        };
                        let mut session = output.session(&cap);
                        for container in data {
                            for s in container.drain(..) {
                                let time = s.time;
                                builder.clear();
                                builder.push((
                                    (s.trade.symbol, Point::from(&s.trade)),
                                    time,
                                    1isize,
                                ));
                                if let Some(prev) = s.prev {
                                    builder.push(((s.trade.symbol, prev), time, -1));
                                }
                                session.give_iterator(builder.drain(..));
                            }
                        }
                    });
                }
            },
        )
        .as_collection()
    }
}
