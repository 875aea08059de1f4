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

impl<D: Ord + timely::ExchangeData> EmitOrdered<D> for StreamVec<'_, u64, D> {
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
                    for run in runs.iter_mut() {
                        if !run.is_sorted() {
                            run.sort_unstable();
                        }
                    }
                    // Each worker sends a time's records in order, mostly as one run: merge
                    // the runs rather than sort them all again.
                    if let [run] = &mut runs[..] {
                        sink(time, run);
                    } else {
                        merge(runs, &mut merged);
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

/// Moves the records of the sorted `runs` to `out` in order, leaving the runs empty; of equal
/// records, the earlier run's first.
fn merge<D: Ord>(runs: &mut [Vec<D>], out: &mut Vec<D>) {
    out.reserve(runs.iter().map(Vec::len).sum());
    let mut heads: Vec<_> = runs.iter_mut().map(|r| r.drain(..).peekable()).collect();
    loop {
        let mut best: Option<usize> = None;
        for i in 0..heads.len() {
            let Some(x) = heads[i].peek() else { continue };
            if best.is_none_or(|b| heads[b].peek().is_some_and(|y| x < y)) {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        out.extend(heads[i].next());
    }
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn merge_interleaves_sorted_runs() {
        let mut out = Vec::new();
        let mut runs = [vec![1, 4, 4, 9], vec![], vec![2, 4, 10], vec![0]];
        merge(&mut runs, &mut out);
        assert!(runs.iter().all(Vec::is_empty));
        assert_eq!(out, [0, 1, 2, 4, 4, 4, 9, 10]);
    }
}
