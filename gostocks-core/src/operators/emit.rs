//! `emit_ordered`: hands each final timestamp's records, sorted, to one closure on worker 0.

use timely::dataflow::StreamVec;
use timely::dataflow::operators::generic::operator::Operator;

use super::stash::{Reuse, Stash};

/// One time's records, in arrival order.
struct Arrived<D> {
    records: Vec<D>,
    /// Whether each record came at or after the one before.
    sorted: bool,
}

impl<D> Default for Arrived<D> {
    fn default() -> Self {
        Arrived {
            records: Vec::new(),
            sorted: true,
        }
    }
}

impl<D: Ord> Arrived<D> {
    #[inline]
    fn push(&mut self, record: D) {
        if self.sorted && self.records.last().is_some_and(|last| *last > record) {
            self.sorted = false;
        }
        self.records.push(record);
    }
}

impl<D> Reuse for Arrived<D> {
    #[inline]
    fn clear(&mut self) {
        self.records.clear();
        self.sorted = true;
    }
}

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
        // Per time, its records in arrival order, and whether that order is already the
        // sorted one. A sink holds no capability.
        let mut pending: Stash<Arrived<D>> = Stash::new(0);
        self.sink(
            super::route::whole_pact(|_: &D| 0),
            "EmitOrdered",
            move |(input, frontier)| {
                input.for_each_stamp(|_cap, data| {
                    for container in data {
                        // Records come in runs of equal time: each is moved, not cloned, to
                        // its time's records (a clone of an event costs an allocation).
                        let mut records = container.drain(..).peekable();
                        while let Some(first) = records.next() {
                            let time = time_of(&first);
                            let arrived = pending.entry(time);
                            arrived.push(first);
                            while let Some(r) = records.next_if(|r| time_of(r) == time) {
                                arrived.push(r);
                            }
                        }
                    }
                });
                let is_final = |time| !frontier.less_equal(&time);
                pending.release(is_final, |time, arrived| {
                    // Out of order (several workers, or one worker's records of a time in
                    // several runs): a stable sort finds the sorted runs and merges them (a
                    // record-at-a-time merge across many runs cost more than the alerts it
                    // ordered). In order, as one worker's output mostly is, nothing moves:
                    // the check was one comparison per record as it came.
                    if !arrived.sorted {
                        arrived.records.sort();
                    }
                    sink(time, &mut arrived.records);
                });
            },
        );
    }
}
