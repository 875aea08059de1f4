//! `emit_ordered`: hands each final timestamp's records, sorted, to one closure on worker 0.

use std::collections::BTreeMap;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

/// Ordered, single-writer output.
pub trait EmitOrdered<D> {
    /// Routes every record to worker 0 and, once the frontier has passed a timestamp, calls
    /// `sink(time, records)` with that timestamp's records sorted: the output is identical
    /// whatever the number of workers. No other worker calls `sink`.
    ///
    /// # Examples
    /// ```
    /// use gostocks_core::operators::EmitOrdered;
    /// use timely::dataflow::operators::ToStream;
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&seen);
    /// timely::example(move |scope| {
    ///     vec![3, 1, 2].to_stream(scope).emit_ordered(move |time, rows: &mut Vec<i32>| {
    ///         sink.lock().unwrap().push((time, rows.clone()));
    ///     });
    /// });
    /// assert_eq!(*seen.lock().unwrap(), vec![(0, vec![1, 2, 3])]);
    /// ```
    fn emit_ordered<F: FnMut(u64, &mut Vec<D>) + 'static>(self, sink: F);
}

impl<D: Ord + timely::ExchangeData> EmitOrdered<D> for StreamVec<'_, u64, D> {
    fn emit_ordered<F: FnMut(u64, &mut Vec<D>) + 'static>(self, mut sink: F) {
        let mut pending: BTreeMap<u64, Vec<D>> = BTreeMap::new();
        self.sink(
            Exchange::new(|_: &D| 0),
            "EmitOrdered",
            move |(input, frontier)| {
                input.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let rows = pending.entry(time).or_default();
                    for container in data {
                        rows.append(container);
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let time = *entry.key();
                    let mut rows = entry.remove();
                    rows.sort_unstable();
                    sink(time, &mut rows);
                }
            },
        );
    }
}
