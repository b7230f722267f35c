//! The combiner with real threads and fake apply functions.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::{Abandoned, Combiner};

/// How long a test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(20);

fn unit(_: &u64) -> usize {
    1
}

fn itself(item: &u64) -> usize {
    *item as usize
}

/// Polls `probe` until it holds or `limit` passes; returns whether it held.
fn eventually(limit: Duration, probe: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !probe() {
        if start.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

/// The result a fake apply gives for `item`: distinct per item, so a result handed to the
/// wrong submitter shows.
fn result_of(item: u64) -> u64 {
    item * 10 + 7
}

fn fake(group: Vec<u64>) -> Vec<u64> {
    group.into_iter().map(result_of).collect()
}

#[test]
fn a_lone_submitter_applies_at_once_on_its_own_thread() {
    let combiner = Combiner::new(2, 100, unit);
    let me = thread::current().id();
    let result = combiner.submit(4, |group| {
        assert_eq!(thread::current().id(), me);
        assert_eq!(group, [4]);
        fake(group)
    });
    assert_eq!(result, Ok(result_of(4)));
    assert!(combiner.is_idle());
}

#[test]
fn concurrent_submitters_each_get_their_own_result() {
    let combiner = Arc::new(Combiner::new(2, 16, unit));
    let applied = Arc::new(Mutex::new(Vec::<u64>::new()));
    let (threads, each) = (8, 100);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (combiner, applied) = (combiner.clone(), applied.clone());
            thread::spawn(move || {
                for i in 0..each {
                    let item = t * 1000 + i;
                    let result = combiner.submit(item, |group| {
                        assert!(group.len() <= 16, "a round over the weight limit");
                        applied.lock().unwrap().extend(&group);
                        thread::sleep(Duration::from_micros(200));
                        fake(group)
                    });
                    assert_eq!(result, Ok(result_of(item)), "item {item}");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    // Every item applied exactly once.
    let mut applied = applied.lock().unwrap().clone();
    applied.sort_unstable();
    let expected: Vec<u64> = (0..threads)
        .flat_map(|t| (0..each).map(move |i| t * 1000 + i))
        .collect();
    assert_eq!(applied, expected);
    assert!(combiner.is_idle());
}

#[test]
fn waiting_submitters_are_applied_in_one_round() {
    let combiner = Arc::new(Combiner::new(1, 1000, unit));
    let rounds = Arc::new(Mutex::new(Vec::new()));
    let submitters = 16;
    let handles: Vec<_> = (0..submitters)
        .map(|item| {
            let (combiner, rounds) = (combiner.clone(), rounds.clone());
            thread::spawn(move || {
                combiner.submit(item, |group| {
                    let first = rounds.lock().unwrap().is_empty();
                    rounds.lock().unwrap().push(group.len());
                    if first {
                        // Slow: everybody else queues meanwhile.
                        let queued = || combiner.queued() == submitters as usize - 1;
                        assert!(eventually(PATIENCE, queued), "the others never queued");
                    }
                    fake(group)
                })
            })
        })
        .collect();
    for (item, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), Ok(result_of(item as u64)));
    }
    assert_eq!(*rounds.lock().unwrap(), [1, submitters as usize - 1]);
    assert!(combiner.is_idle());
}

#[test]
fn slow_applies_take_fewer_rounds_than_submissions() {
    let combiner = Arc::new(Combiner::new(2, 1000, unit));
    let rounds = Arc::new(AtomicUsize::new(0));
    let (threads, each) = (16, 10);
    let start = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (combiner, rounds, start) = (combiner.clone(), rounds.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..each {
                    let item = t * 100 + i;
                    let result = combiner.submit(item, |group| {
                        rounds.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(5));
                        fake(group)
                    });
                    assert_eq!(result, Ok(result_of(item)));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let rounds = rounds.load(Ordering::Relaxed);
    let submissions = (threads * each) as usize;
    assert!(
        rounds < submissions / 2,
        "{rounds} rounds for {submissions} submissions"
    );
}

#[test]
fn rounds_are_the_front_of_the_queue_in_order_within_the_weight_limit() {
    let combiner = Arc::new(Combiner::new(1, 10, itself));
    let rounds = Arc::new(Mutex::new(Vec::<Vec<u64>>::new()));
    let later = [3, 4, 5, 2, 12, 1, 1];
    let release = Arc::new(AtomicBool::new(false));
    let submit = |item: u64| {
        let (combiner, rounds, release) = (combiner.clone(), rounds.clone(), release.clone());
        thread::spawn(move || {
            combiner.submit(item, |group| {
                rounds.lock().unwrap().push(group.clone());
                assert!(eventually(PATIENCE, || release.load(Ordering::SeqCst)));
                fake(group)
            })
        })
    };
    // The first round holds the only flusher until every later item has queued, one by one
    // so that the queue order is known.
    let mut handles = vec![(1, submit(1))];
    assert!(eventually(PATIENCE, || rounds.lock().unwrap().len() == 1));
    for (n, item) in later.into_iter().enumerate() {
        handles.push((item, submit(item)));
        assert!(eventually(PATIENCE, || combiner.queued() == n + 1));
    }
    release.store(true, Ordering::SeqCst);
    for (item, handle) in handles {
        assert_eq!(handle.join().unwrap(), Ok(result_of(item)));
    }
    // 3+4 fit, +5 would not; 5+2 fit, +12 would not; 12 alone though heavier than the limit.
    let expected: [&[u64]; 5] = [&[1], &[3, 4], &[5, 2], &[12], &[1, 1]];
    assert_eq!(*rounds.lock().unwrap(), expected);
    assert!(combiner.is_idle());
}

#[test]
fn at_most_the_flushers_apply_at_once_and_they_do_overlap() {
    let combiner = Arc::new(Combiner::new(2, 3, unit));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(AtomicBool::new(true));
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let (combiner, in_flight, most, first) = (
                combiner.clone(),
                in_flight.clone(),
                most.clone(),
                first.clone(),
            );
            thread::spawn(move || {
                for i in 0..30 {
                    let item = t * 100 + i;
                    let result = combiner.submit(item, |group| {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        if first.swap(false, Ordering::SeqCst) {
                            // The second flusher starts while the first round is applied.
                            let both = || in_flight.load(Ordering::SeqCst) == 2;
                            assert!(eventually(PATIENCE, both), "no second flusher");
                        } else {
                            thread::sleep(Duration::from_micros(500));
                        }
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        fake(group)
                    });
                    assert_eq!(result, Ok(result_of(item)));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
    assert!(combiner.is_idle());
}

#[test]
fn a_panic_in_apply_fails_its_round_and_later_rounds_work() {
    let combiner = Arc::new(Combiner::new(1, 1000, unit));
    let others = 5;
    // Round 1 is item 0 alone, held until the others queue; round 2 (the others) panics.
    let apply = {
        let combiner = combiner.clone();
        move |group: Vec<u64>| {
            if group == [0] {
                assert!(eventually(PATIENCE, || combiner.queued() == others));
            } else {
                panic!("fake apply fails on {group:?}");
            }
            fake(group)
        }
    };
    let (tx, rx) = mpsc::channel();
    let spawn = |item: u64| {
        let (combiner, apply, tx) = (combiner.clone(), apply.clone(), tx.clone());
        thread::spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(|| combiner.submit(item, &apply)));
            tx.send((item, outcome.map_err(|_| "panicked"))).unwrap();
        });
    };
    spawn(0);
    assert!(eventually(PATIENCE, || combiner.lock().flushing == 1));
    for item in 1..=others as u64 {
        spawn(item);
    }
    let mut outcomes: Vec<_> = (0..=others)
        .map(|_| rx.recv_timeout(PATIENCE).expect("a submitter hangs"))
        .collect();
    outcomes.sort_by_key(|(item, _)| *item);
    assert_eq!(outcomes[0], (0, Ok(Ok(result_of(0)))));
    let panicked = outcomes.iter().filter(|(_, o)| o.is_err()).count();
    let abandoned = outcomes
        .iter()
        .filter(|(_, o)| *o == Ok(Err(Abandoned)))
        .count();
    assert_eq!(
        (panicked, abandoned),
        (1, others - 1),
        "the thread that applied round 2 panics, the others get an error: {outcomes:?}"
    );
    assert!(combiner.is_idle(), "nothing left of the failed round");

    // Later rounds work, alone and combined.
    assert_eq!(combiner.submit(7, fake), Ok(result_of(7)));
    let handles: Vec<_> = (10..20u64)
        .map(|item| {
            let combiner = combiner.clone();
            thread::spawn(move || combiner.submit(item, fake))
        })
        .collect();
    for (item, handle) in (10..20u64).zip(handles) {
        assert_eq!(handle.join().unwrap(), Ok(result_of(item)));
    }
    assert!(combiner.is_idle());
}

#[test]
fn a_panic_in_a_lone_round_leaves_nothing_behind() {
    let combiner = Combiner::new(1, 10, unit);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        combiner.submit(1, |_: Vec<u64>| -> Vec<u64> { panic!("fake apply fails") })
    }));
    assert!(outcome.is_err());
    assert!(combiner.is_idle());
    assert_eq!(combiner.submit(2, fake), Ok(result_of(2)));
}

#[test]
fn items_without_a_result_are_abandoned() {
    let combiner = Combiner::new(1, 10, unit);
    assert_eq!(combiner.submit(1, |_| Vec::<u64>::new()), Err(Abandoned));
    assert!(combiner.is_idle());
}
