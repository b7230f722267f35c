//! What one group-commit round writes: the batches of the round merged into one batch when
//! that is safe, and applied one by one when the merged batch overflows a counter, so that
//! only the guilty batches fail.

use std::collections::BTreeMap;

use crate::store::{Batch, StoreError};

/// Applies the batches of a round with `apply_one` and returns one result per batch, in order:
/// a lone batch as is; several merged into one call; one by one when merging overflows (in
/// memory or in the database).
pub(super) fn apply_group(
    group: &[Batch],
    apply_one: impl Fn(&Batch) -> Result<(), StoreError>,
) -> Vec<Result<(), StoreError>> {
    if let [batch] = group {
        return vec![apply_one(batch)];
    }
    let one_by_one = || group.iter().map(&apply_one).collect();
    let Some(merged) = merge(group) else {
        return one_by_one();
    };
    match apply_one(&merged) {
        Ok(()) => vec![Ok(()); group.len()],
        Err(StoreError::Overflow { .. }) => one_by_one(),
        Err(e) => vec![Err(e); group.len()],
    }
}

/// The batches as one, in order: counter deltas add up, the last gauge value wins. `None` when
/// a sum overflows (the batches are then applied one by one).
fn merge(group: &[Batch]) -> Option<Batch> {
    let mut gauges = BTreeMap::new();
    let mut counters: BTreeMap<&str, i64> = BTreeMap::new();
    for batch in group {
        for (name, value) in &batch.gauges {
            gauges.insert(name.as_str(), *value);
        }
        for (name, delta) in &batch.counters {
            let sum = counters.entry(name.as_str()).or_insert(0);
            *sum = sum.checked_add(*delta)?;
        }
    }
    Some(Batch {
        gauges: gauges.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
        counters: counters
            .into_iter()
            .map(|(n, d)| (n.to_owned(), d))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn batch(gauges: &[(&str, f64)], counters: &[(&str, i64)]) -> Batch {
        Batch {
            gauges: gauges.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
            counters: counters
                .iter()
                .map(|(n, d)| ((*n).to_owned(), *d))
                .collect(),
        }
    }

    #[test]
    fn merging_adds_deltas_keeps_the_last_gauge_and_sorts() {
        let merged = merge(&[
            batch(&[("x", 1.0), ("b", 2.0)], &[("c", 1)]),
            batch(&[("x", 3.0)], &[("c", 2), ("a", 5)]),
        ])
        .unwrap();
        assert_eq!(
            merged,
            batch(&[("b", 2.0), ("x", 3.0)], &[("a", 5), ("c", 3)])
        );
        assert_eq!(
            merge(&[batch(&[], &[("c", i64::MAX)]), batch(&[], &[("c", 1)])]),
            None
        );
    }

    /// A fake database: totals in memory, an overflow names the counter, every call recorded.
    struct Fake {
        totals: Mutex<BTreeMap<String, i64>>,
        calls: Mutex<Vec<Batch>>,
    }

    impl Fake {
        fn new(totals: &[(&str, i64)]) -> Self {
            Self {
                totals: Mutex::new(totals.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect()),
                calls: Mutex::new(Vec::new()),
            }
        }

        fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
            self.calls.lock().unwrap().push(batch.clone());
            let mut totals = self.totals.lock().unwrap();
            let mut next = totals.clone();
            for (name, delta) in &batch.counters {
                let total = next.entry(name.clone()).or_insert(0);
                *total = total
                    .checked_add(*delta)
                    .ok_or_else(|| StoreError::Overflow { name: name.clone() })?;
            }
            *totals = next;
            Ok(())
        }
    }

    #[test]
    fn a_lone_batch_is_applied_as_is() {
        let fake = Fake::new(&[]);
        let lone = batch(&[("g", 1.0)], &[("c", 1)]);
        assert_eq!(
            apply_group(std::slice::from_ref(&lone), |b| fake.apply(b)),
            [Ok(())]
        );
        assert_eq!(*fake.calls.lock().unwrap(), [lone]);
    }

    #[test]
    fn several_batches_are_one_call() {
        let fake = Fake::new(&[]);
        let group = [batch(&[], &[("c", 1)]), batch(&[], &[("c", 2), ("d", 1)])];
        assert_eq!(apply_group(&group, |b| fake.apply(b)), [Ok(()), Ok(())]);
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
        assert_eq!(fake.totals.lock().unwrap()["c"], 3);
    }

    #[test]
    fn an_overflow_fails_only_the_guilty_batch() {
        // The merged batch overflows in the database: one by one, only the second fails.
        let fake = Fake::new(&[("c", i64::MAX - 5)]);
        let group = [
            batch(&[], &[("c", 2)]),
            batch(&[], &[("c", 10)]),
            batch(&[], &[("d", 1)]),
        ];
        let overflow = Err(StoreError::Overflow { name: "c".into() });
        assert_eq!(
            apply_group(&group, |b| fake.apply(b)),
            [Ok(()), overflow, Ok(())]
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 4, "merged, then 3 alone");
        assert_eq!(fake.totals.lock().unwrap()["c"], i64::MAX - 3);

        // The sum overflows already in memory: one by one without a merged call.
        let fake = Fake::new(&[]);
        let group = [batch(&[], &[("c", i64::MAX)]), batch(&[], &[("c", 1)])];
        let overflow = Err(StoreError::Overflow { name: "c".into() });
        assert_eq!(apply_group(&group, |b| fake.apply(b)), [Ok(()), overflow]);
        assert_eq!(fake.calls.lock().unwrap().len(), 2);
    }

    #[test]
    fn another_error_fails_the_whole_round() {
        let group = [batch(&[("g", 1.0)], &[]), batch(&[("h", 1.0)], &[])];
        let down = StoreError::Unavailable("down".into());
        let calls = Mutex::new(0);
        let results = apply_group(&group, |_| {
            *calls.lock().unwrap() += 1;
            Err(down.clone())
        });
        assert_eq!(results, [Err(down.clone()), Err(down)]);
        assert_eq!(*calls.lock().unwrap(), 1, "not retried one by one");
    }
}
