//! A pool of workers that runs jobs in parallel, except that jobs of the
//! same key run one at a time, in the order they were dispatched.
//!
//! The dispatcher takes each job's ticket with `enqueue()` as it reads the
//! job, so the queue order is the dispatch order; a worker then waits for
//! the ticket to be served. Workers need not pick jobs up in order, and a
//! slow job holds up only the jobs of its own key.
//!
//! ```text
//! cargo run --example worker_pool
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ticketlock::{LockStore, QueuedTicket};

struct Job {
    key: String,
    step: u32,
}

#[tokio::main]
async fn main() -> ticketlock::Result<()> {
    // In memory for the example; a Redis store (`LockStore::create` from
    // a configuration) spreads the same pool over many machines.
    let store = LockStore::in_memory();
    let (tx, rx) = tokio::sync::mpsc::channel::<(Job, QueuedTicket)>(64);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let done = Arc::new(Mutex::new(Vec::new()));

    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (rx, done) = (rx.clone(), done.clone());
            tokio::spawn(async move {
                loop {
                    let Some((job, ticket)) = rx.lock().await.recv().await else {
                        return;
                    };
                    // Waits for the jobs of the same key dispatched earlier.
                    let guard = match ticket.acquired().await {
                        Ok(guard) => guard,
                        Err(e) => {
                            eprintln!("job {}#{} dropped: {e}", job.key, job.step);
                            continue;
                        }
                    };
                    // Some steps take longer than others.
                    let work = Duration::from_millis(u64::from(3 - job.step % 3));
                    tokio::time::sleep(work).await;
                    done.lock().unwrap().push((job.key.clone(), job.step));
                    if let Err(e) = guard.release().await {
                        eprintln!("job {}#{}: {e}", job.key, job.step);
                    }
                }
            })
        })
        .collect();

    // The dispatcher: jobs of three keys, interleaved.
    for step in 0..10 {
        for key in ["invoice-1", "invoice-2", "invoice-3"] {
            let ticket = store.lock(key).enqueue().await?;
            let job = Job {
                key: key.to_string(),
                step,
            };
            tx.send((job, ticket))
                .await
                .expect("the workers are running");
        }
    }
    drop(tx);
    for w in workers {
        w.await.expect("a worker panicked");
    }

    let done = done.lock().unwrap();
    for key in ["invoice-1", "invoice-2", "invoice-3"] {
        let steps: Vec<u32> = done
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(steps, (0..10).collect::<Vec<_>>(), "{key} ran out of order");
        println!("{key}: steps {steps:?}, in dispatch order");
    }
    Ok(())
}
