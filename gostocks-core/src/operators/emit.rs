//! `emit_ordered`: hands each final timestamp's records, sorted, to one closure on worker 0.

use timely::dataflow::StreamVec;
use timely::dataflow::operators::generic::operator::Operator;

use super::stash::Stash;

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
        // Per time, the runs that came for it (each as its sender ordered it), and emptied
        // buffers for the next runs. A sink holds no capability.
        let mut pending: Stash<Vec<Vec<D>>> = Stash::new(0);
        let mut spare: Vec<Vec<D>> = Vec::new();
        let mut merged: Vec<D> = Vec::new();
        self.sink(
            super::route::whole_pact(|_: &D| 0),
            "EmitOrdered",
            move |(input, frontier)| {
                input.for_each_stamp(|_cap, data| {
                    for container in data {
                        // Records come in runs of equal time: each is moved, not cloned, into
                        // a run of its time (a clone of an event costs an allocation).
                        let mut records = container.drain(..).peekable();
                        while let Some(first) = records.next() {
                            let time = time_of(&first);
                            let mut run = spare.pop().unwrap_or_default();
                            run.push(first);
                            while let Some(r) = records.next_if(|r| time_of(r) == time) {
                                run.push(r);
                            }
                            pending.entry(time).push(run);
                        }
                    }
                });
                let is_final = |time| !frontier.less_equal(&time);
                pending.release(is_final, |time, runs| {
                    if let [run] = &mut runs[..] {
                        if !run.is_sorted() {
                            run.sort_unstable();
                        }
                        sink(time, run);
                    } else {
                        // A time's records come in several runs (one per message): moved
                        // into one vector in arrival order, then a stable sort, which finds
                        // the sorted runs and merges them (a record-at-a-time merge across
                        // many runs cost more than the alerts it ordered). Runs that follow
                        // one another in order (one worker's, cut into messages) are already
                        // the answer: the check is a comparison per record, where the sort
                        // also allocates half the records again.
                        for run in runs.iter_mut() {
                            merged.append(run);
                        }
                        if !merged.is_sorted() {
                            merged.sort();
                        }
                        sink(time, &mut merged);
                        merged.clear();
                    }
                    for mut run in runs.drain(..) {
                        run.clear();
                        spare.push(run);
                    }
                });
            },
        );
    }
}
