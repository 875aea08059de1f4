//! `match_alerts`: the alert rules, a differential collection, matched against every sequenced
//! trade of their symbol.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::VecCollection;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use super::sequence::Sequenced;
use crate::alerts::{AlertEvent, AlertRule, SymbolBook};
use crate::span::Span;
use crate::symbol::Symbol;

/// Alert matching.
pub trait MatchAlerts<'scope> {
    /// Matches `rules` against the sequenced trades: an event for every trade that fires a rule.
    ///
    /// A change of `rules` at time `T` (an insert, a retraction, or both for an update) applies
    /// to the trades of grid times `>= T`: to every trade after it. The trades of a symbol are
    /// seen in `(t, seq)` order, so the events do not depend on the arrival order of the ticks
    /// nor on the number of workers. `windows` are the analytics windows (rules refer to them
    /// by index).
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::alerts::{AlertRule, Condition, Mode};
    /// use gostocks_core::operators::{MatchAlerts, Sequence};
    /// use gostocks_core::{Symbol, Trade};
    /// use differential_dataflow::AsCollection;
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let sym = Symbol::new("X").unwrap();
    /// let t = move |time_ns, price: &str| Trade { symbol: sym, time_ns, seq: 0,
    ///     price: price.parse().unwrap(), size: "1".parse().unwrap() };
    /// let rule = AlertRule { id: "up".into(), symbol: sym, condition: Condition::CrossesAbove,
    ///     threshold: "10".parse().unwrap(), mode: Mode::Once, hysteresis: Default::default(),
    ///     cooldown_ns: 0, window: None, created_ns: 0 };
    /// let captured = timely::example(move |scope| {
    ///     let rules = vec![(rule, 0u64, 1isize)].to_stream(scope).as_collection();
    ///     let trades = vec![t(3, "11"), t(1, "9"), t(2, "10")].to_stream(scope).sequence(1);
    ///     trades.match_alerts(rules, &[]).capture()
    /// });
    /// let events: Vec<_> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// // 9 -> 10 does not cross above 10; 10 -> 11 does.
    /// assert_eq!(events.len(), 1);
    /// assert_eq!((events[0].time_ns, events[0].value), (3, 11.0));
    /// ```
    fn match_alerts(
        self,
        rules: VecCollection<'scope, u64, AlertRule>,
        windows: &[Span],
    ) -> StreamVec<'scope, u64, AlertEvent>;
}

impl<'scope> MatchAlerts<'scope> for StreamVec<'scope, u64, Sequenced> {
    fn match_alerts(
        self,
        rules: VecCollection<'scope, u64, AlertRule>,
        windows: &[Span],
    ) -> StreamVec<'scope, u64, AlertEvent> {
        let windows: Vec<u64> = windows.iter().map(Span::ns).collect();
        // Trades arrive already routed by symbol (the sequencer exchanged them); rules follow
        // them to the same worker.
        let route = Exchange::new(|(rule, _, _): &(AlertRule, u64, isize)| {
            super::route::symbol_route(&rule.symbol)
        });
        self.binary_frontier(
            rules.inner,
            Pipeline,
            route,
            "MatchAlerts",
            move |_cap, _info| {
                let mut books: HashMap<Symbol, SymbolBook> = HashMap::default();
                let mut trades: VecDeque<(Capability<u64>, Vec<Sequenced>, usize)> =
                    VecDeque::new();
                let mut changes: Vec<(u64, isize, AlertRule)> = Vec::new();
                let mut events = Vec::new();
                move |(input1, frontier1), (input2, frontier2), output| {
                    input1.for_each_stamp(|cap, data| {
                        let records: Vec<Sequenced> =
                            data.flat_map(|c| c.drain(..)).collect::<Vec<_>>();
                        if let Some(least) = records.iter().map(|s| s.time).min() {
                            trades.push_back((cap.delayed(&least, 0), records, 0));
                        }
                    });
                    input2.for_each_stamp(|_cap, data| {
                        for container in data {
                            changes.extend(container.drain(..).map(|(r, t, d)| (t, d, r)));
                        }
                    });
                    // Retractions before insertions at one time: an update replaces the rule.
                    changes.sort_unstable_by(|a, b| (a.0, a.1, &a.2.id).cmp(&(b.0, b.1, &b.2.id)));
                    let rules_frontier = frontier2.frontier();
                    let mut applied = 0;
                    'messages: while let Some((cap, records, next)) = trades.front_mut() {
                        while *next < records.len() {
                            let s = &records[*next];
                            // Every rule change at or before this grid time must be in.
                            if rules_frontier.less_equal(&s.time) {
                                break 'messages;
                            }
                            while applied < changes.len() && changes[applied].0 <= s.time {
                                let (_, diff, rule) = &changes[applied];
                                apply(&mut books, &windows, rule, *diff);
                                applied += 1;
                            }
                            let book = books
                                .entry(s.trade.symbol)
                                .or_insert_with(|| SymbolBook::new(&windows));
                            book.on_tick(&s.trade, s.prev.map(|p| p.price), &mut events);
                            *next += 1;
                        }
                        if !events.is_empty() {
                            output.session(&*cap).give_iterator(events.drain(..));
                        }
                        trades.pop_front();
                    }
                    if !events.is_empty()
                        && let Some((cap, ..)) = trades.front()
                    {
                        output.session(cap).give_iterator(events.drain(..));
                    }
                    // Changes no pending or future trade can precede are applied now, so that
                    // they do not pile up while a symbol is quiet.
                    let trades_frontier = frontier1.frontier();
                    let horizon = trades.front().map(|(_, r, n)| r[*n].time);
                    while applied < changes.len() {
                        let time = changes[applied].0;
                        if trades_frontier.less_equal(&time)
                            || rules_frontier.less_equal(&time)
                            || horizon.is_some_and(|h| h < time)
                        {
                            break;
                        }
                        let (_, diff, rule) = &changes[applied];
                        apply(&mut books, &windows, rule, *diff);
                        applied += 1;
                    }
                    changes.drain(..applied);
                }
            },
        )
    }
}

fn apply(books: &mut HashMap<Symbol, SymbolBook>, windows: &[u64], rule: &AlertRule, diff: isize) {
    let book = books
        .entry(rule.symbol)
        .or_insert_with(|| SymbolBook::new(windows));
    if diff < 0 {
        book.remove(&rule.id);
    } else if diff > 0 {
        book.insert(rule.clone());
    }
}
