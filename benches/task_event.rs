//! Criterion benchmark of `on-task-event`'s per-event decision: the CPU an ECS Task State Change
//! costs the handler before (and, for most events, instead of) any AWS call. `make bench` runs
//! it and BENCHMARKS.md reports it next to the release binary's CPU per event.
//!
//! The events are the benchmark's 10,000-event mixed stream (`kanaria_local::bench::mixed_task_events`:
//! nine in ten irrelevant, one in ten a CannotPullContainerError failure), cycled through one
//! per iteration so the figures are averages over the stream, not one event's.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use kanaria::handlers::on_task_event::{triage, Triage};
use serde_json::Value;

/// The handler's own triage (`kanaria::handlers::on_task_event::triage`), reduced to whether the
/// event is a failure that goes on to DynamoDB.
fn is_failure(event: Value) -> bool {
    matches!(triage(event), Ok(Triage::Failed(_)))
}

fn events() -> (Vec<Value>, Vec<Value>) {
    let (irrelevant, failures): (Vec<_>, Vec<_>) = kanaria_local::bench::mixed_task_events(10_000).into_iter().partition(|(i, _)| *i);
    (irrelevant.into_iter().map(|(_, e)| e).collect(), failures.into_iter().map(|(_, e)| e).collect())
}

fn per_event(c: &mut Criterion) {
    let (irrelevant, failures) = events();
    // The stream is what it claims to be: otherwise the figures below measure something else.
    assert!(irrelevant.iter().all(|e| !is_failure(e.clone())), "an irrelevant event was taken for a failure");
    assert!(failures.iter().all(|e| is_failure(e.clone())), "a failure event was not recognised");
    let bytes: Vec<Vec<u8>> = irrelevant.iter().map(|e| serde_json::to_vec(e).expect("JSON")).collect();

    let mut group = c.benchmark_group("on_task_event");
    for (name, stream) in [("irrelevant", &irrelevant), ("failure", &failures)] {
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                // The handler owns its event: clone outside the timed part.
                || {
                    next = (next + 1) % stream.len();
                    stream[next].clone()
                },
                |event| black_box(triage(event)),
                BatchSize::SmallInput,
            )
        });
    }
    // For scale: decoding the event's JSON, which lambda_runtime does before the handler runs.
    let mut next = 0;
    group.bench_function("json_decode", |b| {
        b.iter(|| {
            next = (next + 1) % bytes.len();
            black_box(serde_json::from_slice::<Value>(&bytes[next]).expect("JSON"))
        })
    });
    group.finish();
}

criterion_group!(benches, per_event);
criterion_main!(benches);
