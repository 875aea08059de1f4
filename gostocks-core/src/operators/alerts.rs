//! `match_alerts`: the alert rules, a differential collection, matched against every sequenced
//! trade of their symbol.

use std::collections::{BTreeSet, VecDeque};

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::VecCollection;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

use super::sequence::{Sequenced, Spares};
use super::symbol_ids::RecentSymbols;
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
    /// A `once_per_bar_close` alert's event, stamped with its bar's end `E`, leaves once `E` is
    /// final: no trade of the bar and no rule change at or before `E` can still come. The
    /// operator holds a capability at the earliest such `E` meanwhile (no later than the
    /// events of the trades after it would leave anyway). Bar sizes must be multiples of the
    /// resolution, so that every bar end is a grid time: the configured bars are
    /// ([`AlertSpec::to_rule_core`](crate::alerts::AlertSpec::to_rule_core) takes
    /// only those).
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::alerts::{AlertRule, Condition};
    /// use gostocks_core::operators::{MatchAlerts, Sequence};
    /// use gostocks_core::{Symbol, Trade};
    /// use differential_dataflow::AsCollection;
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let sym = Symbol::new("X").unwrap();
    /// let t = move |time_ns, price: &str| Trade::new(sym, time_ns, 0,
    ///     price.parse().unwrap(), "1".parse().unwrap());
    /// let rule = AlertRule::new("up", sym, Condition::CrossesAbove, "10".parse().unwrap())
    ///     .with_storm(None);
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
        match_alerts_core(self, rules, windows, None)
    }
}

/// [`MatchAlerts::match_alerts`], giving each message's container back to `spares` once its
/// trades are matched (the sequencer of the same worker fills it again).
pub(crate) fn match_alerts_core<'scope>(
    sequenced: StreamVec<'scope, u64, Sequenced>,
    rules: VecCollection<'scope, u64, AlertRule>,
    windows: &[Span],
    spares: Option<Spares>,
) -> StreamVec<'scope, u64, AlertEvent> {
    let windows: Vec<u64> = windows.iter().map(Span::ns).collect();
    // Trades arrive already routed by symbol (the sequencer exchanged them); rules follow
    // them to the same worker.
    let route = Exchange::new(|(rule, _, _): &(AlertRule, u64, isize)| {
        super::route::symbol_route(&rule.symbol)
    });
    let scope = sequenced.scope();
    sequenced.binary_frontier(
        rules.inner,
        Pipeline,
        route,
        "MatchAlerts",
        move |_cap, info| {
            // To yield after a burst of events, so that the operators downstream take
            // them while they are still in the cache, and come back for the rest.
            let activator = scope.activator_for(info.address);
            let mut books = Books::default();
            let mut trades: VecDeque<Message> = VecDeque::new();
            let mut grouping = Grouping::default();
            let mut changes: Vec<Change> = Vec::new();
            let mut arrivals: Vec<Vec<Change>> = Vec::new();
            let mut events = Vec::new();
            // The bars that `once_per_bar_close` alerts wait to see closed: (end, symbol),
            // one entry per book, at its `next_close`; their events (at the bars' ends)
            // go out at `held`, a capability at or before the earliest end.
            let mut closing: BTreeSet<(u64, Symbol)> = BTreeSet::new();
            let mut held: Option<Capability<u64>> = None;
            let mut closed = Vec::new();
            move |(input1, frontier1), (input2, frontier2), output| {
                input1.for_each_stamp(|cap, data| {
                    // The first container is kept as it is, not copied.
                    let mut records: Vec<Sequenced> = Vec::new();
                    for c in data {
                        if records.is_empty() {
                            records = std::mem::take(c);
                        } else {
                            records.append(c);
                        }
                    }
                    if let Some(least) = records.iter().map(|s| s.time).min() {
                        trades.push_back(Message {
                            cap: cap.delayed(&least, 0),
                            records,
                            next: 0,
                            grouped: None,
                        });
                    }
                });
                // Gathered first and copied once: every alert comes at once when the
                // dataflow starts, and `changes` grown container by container would copy
                // them over and over.
                input2.for_each_stamp(|_cap, data| {
                    arrivals.extend(data.map(std::mem::take));
                });
                if !arrivals.is_empty() {
                    // Mostly one container (every alert at once): it is kept as it is.
                    if changes.is_empty() {
                        changes = arrivals.swap_remove(0);
                    }
                    changes.reserve(arrivals.iter().map(Vec::len).sum());
                    for mut container in arrivals.drain(..) {
                        changes.append(&mut container);
                    }
                    consolidate(&mut changes);
                    books.reserve_for(&changes, &windows);
                }
                // Retractions before insertions at one time: an update replaces the rule.
                changes.sort_unstable_by(|a, b| (a.1, a.2, &a.0.id).cmp(&(b.1, b.2, &b.0.id)));
                let rules_frontier = frontier2.frontier();
                let mut applied = 0;
                let mut given = 0;
                'messages: while let Some(message) = trades.front_mut() {
                    let Message {
                        cap,
                        records,
                        next,
                        grouped,
                    } = message;
                    if *next == 0
                        && grouped.is_none()
                        && let Some((least, _)) =
                            groupable(records, rules_frontier, &changes[applied..])
                    {
                        // What matching in time order does before the message's first
                        // trade; no rule change falls within the message.
                        let pending = &changes[applied..];
                        applied += catch_up(
                            &mut books,
                            &mut closing,
                            &windows,
                            pending,
                            least,
                            &mut closed,
                        );
                        *grouped = Some(grouping.order(records, &mut books, &windows, least));
                    }
                    while *next < records.len() {
                        if given >= EVENTS_PER_ACTIVATION {
                            activator.activate();
                            break 'messages;
                        }
                        let s = match grouped {
                            Some(g) => &records[g.order[*next] as usize],
                            None => {
                                let s = &records[*next];
                                // Every rule change at or before this grid time must be in.
                                if rules_frontier.less_equal(&s.time) {
                                    break 'messages;
                                }
                                let pending = &changes[applied..];
                                applied += catch_up(
                                    &mut books,
                                    &mut closing,
                                    &windows,
                                    pending,
                                    s.time,
                                    &mut closed,
                                );
                                s
                            }
                        };
                        let symbol = s.trade.symbol;
                        let book = books.entry(&symbol, &windows);
                        let before = book.next_close();
                        if before.is_some() {
                            // This trade's bar follows the bars that end at or before it.
                            book.close_bars(s.trade.time_ns.saturating_add(1), &mut closed);
                        }
                        book.on_tick_with_return(
                            &s.trade,
                            s.prev.map(|p| p.price),
                            s.ret,
                            &mut events,
                        );
                        // A storm's events go out as they come, while they are still in
                        // the cache, rather than all of a message's at its end.
                        if events.len() >= EVENTS_AT_ONCE {
                            given += events.len();
                            output.session(&*cap).give_iterator(events.drain(..));
                        }
                        let after = book.next_close();
                        if before != after {
                            resync(&mut closing, symbol, before, after);
                            // A bar end is a grid time at or after this trade's, so at or
                            // after the message's.
                            if let Some(end) = after
                                && held.as_ref().is_none_or(|h| *h.time() > end)
                            {
                                held = Some(cap.delayed(&end.max(*cap.time())));
                            }
                        }
                        *next += 1;
                    }
                    if !events.is_empty() {
                        output.session(&*cap).give_iterator(events.drain(..));
                    }
                    if let Some(done) = trades.pop_front() {
                        if let Some(g) = done.grouped {
                            grouping.recycle(g.order);
                        }
                        if let Some(spares) = &spares {
                            spares.give(done.records);
                        }
                    }
                }
                if !events.is_empty()
                    && let Some(message) = trades.front()
                {
                    output.session(&message.cap).give_iterator(events.drain(..));
                }
                // Changes no pending or future trade can precede are applied now, so that
                // they do not pile up while a symbol is quiet.
                let trades_frontier = frontier1.frontier();
                // The least grid time of a trade not yet matched.
                let horizon = trades.front().map(|m| match &m.grouped {
                    Some(g) => g.least,
                    None => m.records[m.next].time,
                });
                while applied < changes.len() {
                    let time = changes[applied].1;
                    if trades_frontier.less_equal(&time)
                        || rules_frontier.less_equal(&time)
                        || horizon.is_some_and(|h| h < time)
                    {
                        break;
                    }
                    close_before(&mut books, &mut closing, time, &mut closed);
                    let (rule, _, diff) = &changes[applied];
                    change(&mut books, &mut closing, &windows, rule, *diff);
                    applied += 1;
                }
                changes.drain(..applied);
                // Bars whose every trade and every rule change up to their end are in.
                let first = |f: timely::progress::frontier::AntichainRef<u64>| {
                    f.first().copied().unwrap_or(u64::MAX)
                };
                let final_before = first(trades_frontier)
                    .min(first(rules_frontier))
                    .min(horizon.unwrap_or(u64::MAX));
                close_before(&mut books, &mut closing, final_before, &mut closed);
                if !closed.is_empty() {
                    let cap = held.as_ref().expect("a capability held while bars wait");
                    output.session(cap).give_iterator(closed.drain(..));
                }
                match closing.first() {
                    Some(&(end, _)) => {
                        if let Some(h) = held.as_mut()
                            && *h.time() < end
                        {
                            h.downgrade(&end);
                        }
                    }
                    None => held = None,
                }
            }
        },
    )
}

/// A change of the rules, as the collection carries it: the rule, its time, and its diff.
type Change = (AlertRule, u64, isize);

/// Cancels an insertion and a retraction of the same rule at the same time, as the collection
/// they change does (an alert created and deleted before its first grid time is never in it);
/// the retraction-first order below would otherwise leave it inserted.
fn consolidate(changes: &mut Vec<Change>) {
    changes.sort_unstable_by(|a, b| (a.1, &a.0, a.2).cmp(&(b.1, &b.0, b.2)));
    // In place: the changes of one rule at one time summed into the first of them.
    changes.dedup_by(|later, kept| {
        let same = later.1 == kept.1 && later.0 == kept.0;
        if same {
            kept.2 += later.2;
        }
        same
    });
    changes.retain(|c| c.2 != 0);
    // What is left of a rule at a time is one change per unit of its sum: mostly one, and
    // then the rule stays where it is rather than being cloned.
    if changes.iter().any(|c| c.2.unsigned_abs() != 1) {
        let units = changes.iter().map(|c| c.2.unsigned_abs()).sum();
        let mut out = Vec::with_capacity(units);
        for (rule, t, d) in changes.drain(..) {
            for _ in 1..d.unsigned_abs() {
                out.push((rule.clone(), t, d.signum()));
            }
            out.push((rule, t, d.signum()));
        }
        *changes = out;
    }
}

/// The symbols' books, in a vector with a map from symbol to place, and the places of the
/// symbols seen last at hand (see [`RecentSymbols`]): most trades find their book without
/// hashing.
#[derive(Default)]
struct Books {
    places: HashMap<Symbol, usize>,
    list: Vec<SymbolBook>,
    /// Each book's symbol.
    symbols: Vec<Symbol>,
    recent: RecentSymbols,
}

impl Books {
    #[inline(always)]
    fn place(&mut self, symbol: &Symbol) -> Option<usize> {
        match self.recent.get(symbol) {
            Some(i) => Some(i as usize),
            None => self.look_up(symbol),
        }
    }

    /// [`Books::place`] past the recent symbols: the map, out of line.
    #[inline(never)]
    fn look_up(&mut self, symbol: &Symbol) -> Option<usize> {
        let i = *self.places.get(symbol)?;
        self.recent.put(*symbol, i as u32);
        Some(i)
    }

    fn get(&mut self, symbol: &Symbol) -> Option<&SymbolBook> {
        let i = self.place(symbol)?;
        Some(&self.list[i])
    }

    fn get_mut(&mut self, symbol: &Symbol) -> Option<&mut SymbolBook> {
        let i = self.place(symbol)?;
        Some(&mut self.list[i])
    }

    /// `symbol`'s book, a new one when it has none yet.
    #[inline(always)]
    fn entry(&mut self, symbol: &Symbol, windows: &[u64]) -> &mut SymbolBook {
        let i = match self.place(symbol) {
            Some(i) => i,
            None => self.open(*symbol, windows),
        };
        &mut self.list[i]
    }

    /// Makes room in each symbol's book for the insertions among `changes`, ahead of applying
    /// them (a book is opened for a symbol that has none yet).
    fn reserve_for(&mut self, changes: &[Change], windows: &[u64]) {
        let mut inserts: HashMap<Symbol, usize> = HashMap::default();
        for (rule, _, diff) in changes {
            if *diff > 0 {
                *inserts.entry(rule.symbol).or_default() += 1;
            }
        }
        // A few rules at a time, as users change them, need no room made.
        for (symbol, n) in inserts.into_iter().filter(|&(_, n)| n >= 16) {
            self.entry(&symbol, windows).reserve(n);
        }
    }

    /// A new book for `symbol`; its place.
    #[inline(never)]
    fn open(&mut self, symbol: Symbol, windows: &[u64]) -> usize {
        let i = self.list.len();
        self.list.push(SymbolBook::new(windows));
        self.symbols.push(symbol);
        self.places.insert(symbol, i);
        self.recent.put(symbol, i as u32);
        i
    }
}

/// A message of sequenced trades as `match_alerts` holds it: `next` is where matching
/// stands.
struct Message {
    cap: Capability<u64>,
    records: Vec<Sequenced>,
    next: usize,
    /// The order to match them in, when matched symbol by symbol (see [`groupable`]).
    grouped: Option<Grouped>,
}

/// A message's trades in the order they are matched symbol by symbol.
struct Grouped {
    /// Indexes into the message's records: each symbol's trades in the message's order, the
    /// symbols in order.
    order: Vec<u32>,
    /// The least grid time of the message's trades.
    least: u64,
}

/// Whether a message's trades may be matched symbol by symbol rather than in time order, and
/// if so its least and greatest grid times. In time order, each grid time's trades visit the
/// books of its symbols, and the next grid time's visit them again, each time out of the
/// cache; symbol by symbol, a book takes all of its trades in the message at once. The
/// events are the same when no rule change can fall within the message's grid times (every
/// change in by its greatest, and none pending between its least and greatest): each book
/// sees its own trades in `(t, seq)` order, closes its own bars as its trades pass them, and
/// the bars of books without a trade are closed once the message is done, as in time order
/// (their books have no trade in between). Only messages of several grid times gain: one
/// holds many when a backlog or a file is read; live, mostly one.
fn groupable(
    records: &[Sequenced],
    rules_frontier: timely::progress::frontier::AntichainRef<u64>,
    pending: &[Change],
) -> Option<(u64, u64)> {
    let (first, last) = (records.first()?.time, records.last()?.time);
    if first == last
        || rules_frontier.less_equal(&last)
        || !records.is_sorted_by_key(|s| s.time)
        || pending
            .iter()
            .find(|c| c.1 > first)
            .is_some_and(|c| c.1 <= last)
    {
        return None;
    }
    Some((first, last))
}

/// The buffers of [`Grouping::order`], kept from one message to the next.
#[derive(Default)]
struct Grouping {
    /// Per book: how many of the message's trades it has, then where its trades start.
    counts: Vec<u32>,
    /// Each trade's book.
    places: Vec<u32>,
    /// The books with trades in the message.
    present: Vec<u32>,
    /// An order vector given back, for the next message.
    spare: Vec<u32>,
}

impl Grouping {
    /// The order to match `records` in symbol by symbol (a counting sort by book, stable, the
    /// books by symbol: the same order whatever order the symbols first came in). Opens a
    /// book for a symbol that has none.
    fn order(
        &mut self,
        records: &[Sequenced],
        books: &mut Books,
        windows: &[u64],
        least: u64,
    ) -> Grouped {
        self.places.clear();
        for s in records {
            let place = match books.place(&s.trade.symbol) {
                Some(i) => i,
                None => books.open(s.trade.symbol, windows),
            };
            self.places.push(place as u32);
        }
        if self.counts.len() < books.list.len() {
            self.counts.resize(books.list.len(), 0);
        }
        for &p in &self.places {
            let count = &mut self.counts[p as usize];
            if *count == 0 {
                self.present.push(p);
            }
            *count += 1;
        }
        self.present
            .sort_unstable_by_key(|&p| books.symbols[p as usize]);
        let mut at = 0;
        for &p in &self.present {
            let count = &mut self.counts[p as usize];
            (*count, at) = (at, at + *count);
        }
        let mut order = std::mem::take(&mut self.spare);
        order.clear();
        order.resize(records.len(), 0);
        for (i, &p) in self.places.iter().enumerate() {
            let slot = &mut self.counts[p as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        for p in self.present.drain(..) {
            self.counts[p as usize] = 0;
        }
        Grouped { order, least }
    }

    /// Takes back a message's order vector.
    fn recycle(&mut self, order: Vec<u32>) {
        self.spare = order;
    }
}

/// How many events `match_alerts` gathers before it hands them on.
const EVENTS_AT_ONCE: usize = 1024;

/// How many events `match_alerts` hands on before it yields to the operators downstream: what
/// waits between them is bounded, and stays in the cache (a storm's events of one activation,
/// all kept until it ended, were megabytes; 16,384 events are about 1.4 MB).
const EVENTS_PER_ACTIVATION: usize = 16_384;

/// Closes every bar that ends before `before` (all of their trades, and every rule change up to
/// their end, are in): their events go to `closed`. Called for every trade: the common case,
/// no bar due, is settled inline.
#[inline]
fn close_before(
    books: &mut Books,
    closing: &mut BTreeSet<(u64, Symbol)>,
    before: u64,
    closed: &mut Vec<AlertEvent>,
) {
    if closing.first().is_some_and(|&(end, _)| end < before) {
        close_due(books, closing, before, closed);
    }
}

#[inline(never)]
fn close_due(
    books: &mut Books,
    closing: &mut BTreeSet<(u64, Symbol)>,
    before: u64,
    closed: &mut Vec<AlertEvent>,
) {
    while let Some(&(end, symbol)) = closing.first() {
        if end >= before {
            break;
        }
        closing.pop_first();
        if let Some(book) = books.get_mut(&symbol) {
            book.close_bars(before, closed);
            if let Some(next) = book.next_close() {
                closing.insert((next, symbol));
            }
        }
    }
}

/// What comes before matching a trade of grid time `until`: the first of `pending` (sorted by
/// time) up to `until` applied, each after closing the bars that end before it (a bar that
/// ends before a change was final without it), then the bars that end before `until` closed
/// (every trade of an earlier grid time is in). Returns how many changes were applied.
fn catch_up(
    books: &mut Books,
    closing: &mut BTreeSet<(u64, Symbol)>,
    windows: &[u64],
    pending: &[Change],
    until: u64,
    closed: &mut Vec<AlertEvent>,
) -> usize {
    let mut n = 0;
    for (rule, time, diff) in pending.iter().take_while(|c| c.1 <= until) {
        close_before(books, closing, *time, closed);
        change(books, closing, windows, rule, *diff);
        n += 1;
    }
    close_before(books, closing, until, closed);
    n
}

/// Moves `symbol`'s entry in `closing` from `before` to `after`.
fn resync(
    closing: &mut BTreeSet<(u64, Symbol)>,
    symbol: Symbol,
    before: Option<u64>,
    after: Option<u64>,
) {
    if let Some(b) = before {
        closing.remove(&(b, symbol));
    }
    if let Some(a) = after {
        closing.insert((a, symbol));
    }
}

/// Applies a rule change, keeping `closing` in step with the book.
fn change(
    books: &mut Books,
    closing: &mut BTreeSet<(u64, Symbol)>,
    windows: &[u64],
    rule: &AlertRule,
    diff: isize,
) {
    let before = books.get(&rule.symbol).and_then(|b| b.next_close());
    apply(books, windows, rule, diff);
    let after = books.get(&rule.symbol).and_then(|b| b.next_close());
    if before != after {
        resync(closing, rule.symbol, before, after);
    }
}

fn apply(books: &mut Books, windows: &[u64], rule: &AlertRule, diff: isize) {
    let book = books.entry(&rule.symbol, windows);
    if diff < 0 {
        book.remove(&rule.id);
    } else if diff > 0 {
        book.insert(rule.clone());
    }
}
