//! `emit_ordered`: hands each final timestamp's records, sorted, to one closure on worker 0.

use std::collections::BTreeMap;

use timely::dataflow::StreamVec;
use timely::dataflow::operators::generic::operator::Operator;

/// Ordered, single-writer output.
pub trait EmitOrdered<D> {
    /// Routes every record to worker 0 and, once the frontier has passed a record's time
    /// (`time_of(record)`, never earlier than its message's timestamp), calls
    /// `sink(time, records)` with that time's records sorted: the output is identical whatever
    /// the number of workers. No other worker calls `sink`.
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
    ///     vec![3, 1, 2].to_stream(scope).emit_ordered(|_| 0, move |time, rows: &mut Vec<i32>| {
    ///         sink.lock().unwrap().push((time, rows.clone()));
    ///     });
    /// });
    /// assert_eq!(*seen.lock().unwrap(), vec![(0, vec![1, 2, 3])]);
    /// ```
    fn emit_ordered<T, F>(self, time_of: T, sink: F)
    where
        T: Fn(&D) -> u64 + 'static,
        F: FnMut(u64, &mut Vec<D>) + 'static;
}

impl<D: Ord + Clone + timely::ExchangeData> EmitOrdered<D> for StreamVec<'_, u64, D> {
    fn emit_ordered<T, F>(self, time_of: T, mut sink: F)
    where
        T: Fn(&D) -> u64 + 'static,
        F: FnMut(u64, &mut Vec<D>) + 'static,
    {
        let mut pending: BTreeMap<u64, Vec<D>> = BTreeMap::new();
        self.sink(
            super::route::whole_pact(|_: &D| 0),
            "EmitOrdered",
            move |(input, frontier)| {
                // Records mostly come in runs of equal time: one map lookup per run.
                let mut run: Vec<D> = Vec::new();
                let mut run_time = 0;
                input.for_each_stamp(|_cap, data| {
                    for container in data {
                        for record in container.drain(..) {
                            let time = time_of(&record);
                            if time != run_time && !run.is_empty() {
                                super::runs::settle(&mut pending, run_time, &mut run);
                            }
                            run_time = time;
                            run.push(record);
                        }
                    }
                });
                if !run.is_empty() {
                    super::runs::settle(&mut pending, run_time, &mut run);
                }
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
